"""The overlap-aware scanner: a file's bytes in, in pieces of any size; its matches out, exact.

The contract (docs/matching.md): the matches reported for a file are those
`regex.finditer` gives on the whole file decoded at once, unless the file overflowed its carry
(`overflowed`). The scanner keeps only the text that a live match attempt may still examine:
O(block + max_carry) characters whatever the size of the file or the length of its lines.

How a match becomes final. After each piece of text the scanner computes a *commit horizon*
`h` and a *limit*: every match attempt (the engine trying the pattern at one start) that starts
before `h` examines only text before `limit`, which is already here, so its outcome can no
longer change. The scanner runs `finditer(text, pos, limit)` from its resume point, reports the
matches that start before `h`, and resumes at `max(h, end of the last one)`. The pattern's
`Plan` (gistscan.analysis) gives the horizons, the largest of which is used:

- width: an attempt examines at most `width` characters, so attempts starting before
  `end - width` are decided;
- stops: no attempt can consume a stop character (for a pattern that cannot match a newline,
  `\\n` is one; for `\\w+`, any non-word character), so an attempt starting at or before the
  last stop `z` ends by `z` and is decided once `PEEK` characters after `z` are here;
- fence (c, n): an attempt examines nothing past the n-th c after its start (for
  `"token":\\s*"[^"]*"`, the fourth quote), so attempts starting at or before the n-th last
  c are decided;
- tail (head stops, tail ends): a pattern ending with a greedy unbounded repeat of one class
  (`KEY\\s*=\\s*\\S+`) is never backtracked out of that repeat, so an attempt examines
  nothing past the first tail end (whitespace, for `\\S+`) after the first head stop after
  its start; attempts starting at or before the last head stop before the last tail end are
  decided;
- none of them: nothing is decided before the end of the file; the text is kept whole, up to
  `max_carry` characters. Beyond that the oldest text is committed as it stands and dropped,
  and the file is flagged `overflowed` (its matches may then differ from the whole-file ones).

So a minified one-line file costs what the same bytes cut into lines cost, and keeps only the
span between stops.

The literal prefilter. When every match contains one of a few literals (`Plan.literals`), the
scanner runs `regex` only in windows around their occurrences: a match containing an
occurrence at i starts at most `consumed` characters before it, or after the last stop before
it. Pure-ASCII blocks of raw bytes with no occurrence are not even decoded: their newlines are
counted in bytes and only the tail a later match may need is kept. Case-insensitive literals
are searched in bytes only in pure-ASCII blocks, where no Unicode case folding (the Kelvin
sign matching `k`, the long s matching `s`) can occur; elsewhere the decoded text is searched
with the pattern's own case folding.

The regex budget (`Guard`): the CPU time of the matching thread itself, refilled as the file is
read; see the README ("The regex budget").
"""

from __future__ import annotations

import codecs
import functools
import importlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import regex

from gistscan.analysis import PEEK, UNKNOWN_PLAN, Plan, case_variants, plan, re2_superset

__all__ = [
    "PEEK",
    "UNKNOWN_PLAN",
    "FileScanner",
    "Guard",
    "Hit",
    "Plan",
    "ScanTimeout",
    "Scanner",
    "plan",
]

BINARY_SNIFF_BYTES = 8192
LINE_CUT = 400  # a longer line is cut to this many characters around its match
LINE_LEAD = 100  # a cut line starts at most this many characters before the match
# Bytes gathered before any work, unless a line can settle first (a few bytes past a newline):
# small pieces (a 7-byte `--chunk-size`) cost per line or per block, not per piece; larger
# pieces are taken as they come.
BLOCK = 4096
BUDGET_BYTES = 1024 * 1024  # each MiB read adds one `timeout` to the file's regex budget

T = TypeVar("T")

# numpy (the `speed` extra) counts newlines at memory speed, five times `bytes.count`: for a
# literal search that is most of the work, every byte's newlines being counted for the line
# numbers of later matches. Without it, `bytes.count`.
try:
    _np: Any = importlib.import_module("numpy")
except ImportError:  # pragma: no cover - the speed extra is not installed
    _np = None
try:  # google-re2 (the `speed` extra): one pass for an alternation of literals
    _re2: Any = importlib.import_module("re2")
except ImportError:  # pragma: no cover
    _re2 = None
FAST_COUNT_MIN = 4096  # shorter spans: the plain count is cheaper than numpy's call


def count_newlines(data: str | bytes, lo: int, hi: int) -> int:
    """`data.count("\\n", lo, hi)` for text or UTF-8 bytes (a newline byte is never part of
    another character), at memory speed with numpy on bytes and on pure-ASCII text."""
    if _np is not None and hi - lo >= FAST_COUNT_MIN:
        if isinstance(data, bytes):
            window = _np.frombuffer(data, _np.uint8, count=hi - lo, offset=lo)
            return int(_np.count_nonzero(window == 10))
        if data.isascii():
            raw = data[lo:hi].encode("ascii")
            return int(_np.count_nonzero(_np.frombuffer(raw, _np.uint8) == 10))
    return data.count(b"\n" if isinstance(data, bytes) else "\n", lo, hi)  # type: ignore[arg-type]


class ScanTimeout(Exception):
    """The file's regex time budget ran out (raised by `FileScanner.feed` and `.close`)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One match: absolute offsets in the file's text (characters), and where it stands."""

    start: int
    end: int
    line_number: int
    column: int
    line: str
    text: str


# -- the regex budget ---------------------------------------------------------------------------


class Guard:
    """A file's regex budget, in CPU seconds of the thread that runs its matching.

    The budget starts at `timeout` and grows by `timeout` for every MiB (`BUDGET_BYTES`) of
    the file read, holding at most `timeout` unspent: a pattern that decides a MiB in less
    than `timeout` seconds never runs out, whatever the file's size. Each call is charged
    this thread's own CPU time (`time.thread_time`), so files matched in parallel do not
    spend each other's budgets.

    `regex`'s own `timeout=` (the only way to stop a call midway) counts the whole process's
    CPU time, which every thread advances; a call stopped before this thread had spent its
    budget would have to run again from its start, its work lost. So a call gets the budget
    left times `threads()`: the threads of the process, or the cores when more (a pool may
    start its threads as work comes, up to one per core). The operating system shares the
    cores between the runnable threads, so the process clock runs at most that many times
    faster than this thread's, and the call cannot stop before the budget is spent. The
    price: one attempt that backtracks catastrophically may run up to that many times the
    budget when its thread has the cores to itself (a call that finishes past the budget
    raises ScanTimeout all the same). A call stopped early all the same (its
    thread starved of its share) runs again with twice the allowance, the lost time not
    charged, at most `RETRIES` times.
    """

    RETRIES = 3

    def __init__(
        self,
        timeout: float | None,
        *,
        own_clock: Callable[[], float] = time.thread_time,
        threads: Callable[[], int] = lambda: max(threading.active_count(), os.cpu_count() or 1),
    ) -> None:
        self.timeout = timeout
        self.left = timeout if timeout is not None else 0.0
        self._own_clock = own_clock
        self._threads = threads

    def refill(self, n_bytes: int) -> None:
        if self.timeout is not None:
            self.left = min(self.timeout, self.left + self.timeout * n_bytes / BUDGET_BYTES)

    def run(self, call: Callable[[float | None], T]) -> T:
        """`call(timeout)` under the budget (timeout in process CPU seconds, or None).
        Raises ScanTimeout when the budget is spent."""
        if self.timeout is None:
            return call(None)
        ratio = float(max(1, self._threads()))
        for retry in range(self.RETRIES + 1):
            if self.left <= 0:
                raise ScanTimeout("the pattern ran out of its regex time budget")
            own = self._own_clock()
            try:
                result = call(self.left * ratio * 1.05 + 0.002)
            except TimeoutError:
                own = self._own_clock() - own
                if own >= 0.9 * self.left or retry == self.RETRIES:
                    self.left = 0.0
                    raise ScanTimeout("the pattern ran out of its regex time budget") from None
                ratio *= 2  # other threads ran the process clock ahead: not this file's work
                continue
            self.left -= self._own_clock() - own
            if self.left < 0:  # finished, but past the budget: the pattern is too slow all the same
                raise ScanTimeout("the pattern ran out of its regex time budget")
            return result
        raise AssertionError("unreachable")


# -- literal search -----------------------------------------------------------------------------


class _TextFinder:
    """Occurrences of the plan's literals in text, with the pattern's own case folding.

    `find` gives ranges (first, last) of possible occurrence starts: every occurrence lying
    whole in the searched span starts in one of them. Plain `str.find` gives each start
    (first == last); google-re2 (the `speed` extra), which finds an alternation of words in
    one pass where `str.find` takes one per word, reports leftmost non-overlapping matches,
    so an occurrence overlapping a reported one [a, b) starts in [a, b - 1]. re2 searches
    only pure-ASCII text with ASCII literals, where its case folding and `regex`'s agree.
    """

    def __init__(self, pattern: regex.Pattern[str], plan: Plan) -> None:
        literals, fold = plan.literals, plan.fold
        self.literals = literals
        self.shortest = min(map(len, literals))
        self.longest = max(map(len, literals))
        self._regex: regex.Pattern[str] | None = None
        self._re2: Any = None
        if fold:
            flags = pattern.flags & (regex.IGNORECASE | regex.FULLCASE | regex.ASCII)
            flags |= regex.FULLCASE if plan.full_fold else 0
            alternation = "|".join(regex.escape(s) for s in literals)
            self._regex = regex.compile(alternation, flags | regex.VERSION0 | regex.IGNORECASE)
            if plan.full_fold:
                # `ß` matches `ss`: an occurrence may be up to 3 times as long or as short.
                self.shortest = 1
                self.longest *= 3
        if _re2 is not None and len(literals) > 1 and all(s.isascii() for s in literals):
            options = _re2.Options()
            options.case_sensitive = not fold
            alternation_bytes = b"|".join(_re2_escape(s) for s in literals)
            self._re2 = _re2.compile(alternation_bytes, options)

    def find(self, text: str, start: int, stop: int) -> list[tuple[int, int]]:
        """Sorted ranges (first, last) of possible starts of the occurrences that lie whole
        in text[start:stop]."""
        if self._re2 is not None and text.isascii():
            data = text.encode("ascii")
            return [(m.start(), m.end() - 1) for m in self._re2.finditer(data, start, stop)]
        if self._regex is not None:
            found = self._regex.finditer(text, start, stop, overlapped=True)
            return [(m.start(), m.start()) for m in found]
        starts: list[int] = []
        for s in self.literals:
            i = text.find(s, start, stop)
            while i >= 0:
                starts.append(i)
                i = text.find(s, i + 1, stop)
        if len(self.literals) > 1:
            starts.sort()
        return [(i, i) for i in starts]


@functools.lru_cache(maxsize=64)
def _text_finder(pattern: regex.Pattern[str], plan: Plan) -> _TextFinder:
    """One `_TextFinder` per pattern, shared by its files (it keeps no state of a search)."""
    return _TextFinder(pattern, plan)


@functools.lru_cache(maxsize=64)  # compiled for every file, once per pattern
def _superset_filter(pattern: regex.Pattern[str], plan: Plan) -> Any:
    """A compiled RE2 superset of `pattern` for pure-ASCII text, or None: when re2 is not
    installed, the pattern has no translation, or it could match the empty string (then it
    filters nothing). Only for plans whose windows have bounds (width or stops)."""
    if _re2 is None or not plan.restartable or plan.behind is None:
        return None
    if plan.width is None and not plan.stops:
        return None
    source = re2_superset(pattern)
    if source is None:
        return None
    options = _re2.Options()
    options.encoding = _re2.Options.Encoding.LATIN1
    try:
        compiled = _re2.compile(source, options)
    except Exception:  # RE2 refuses it (too big, say): no filter, which is exact too
        return None
    return None if compiled.search(b"") is not None else compiled


def _re2_escape(literal: str) -> bytes:
    """An ASCII literal as an RE2 pattern: every byte but letters and digits escaped."""
    return b"".join(
        bytes([c]) if chr(c).isalnum() else b"\\x%02x" % c for c in literal.encode("ascii")
    )


# How common each ASCII byte is in source code, commonest first (counted over the Python
# standard library; for the rare-byte search; lower-case letters stand for both cases).
_FREQUENT = b" etsarinol\ncdfpu_'m.h)(,0gbx\":=y#w-kv>1\\2[]534q*86jz97+/%<;{}`|!@?^~&$"
_RANK = {c: len(_FREQUENT) - i for i, c in enumerate(_FREQUENT)}


class _ByteFinder:
    """Is there an occurrence of the plan's literals in a block of raw bytes?

    Exact on any bytes for case-sensitive literals (their UTF-8 encoding; a literal holding
    U+FFFD, which decoding makes of invalid bytes, gets no byte finder). Case-insensitive ones
    are looked for as their ASCII case variants, which is exact in a block holding none of
    the non-ASCII characters that fold like one of theirs (`exotic`: the long s for `s`, the
    Kelvin sign for `k`...). A pattern with full case folding (`ß` matching `ss`) gets none.
    """

    def __init__(self, literals: list[bytes], fold: bool, exotic: tuple[str, ...] = ()) -> None:
        self.fold = fold
        self.exotic = exotic
        self.literals = literals
        self._lower = fold and len(literals) > 1
        self._frequent = 0  # blocks left before the rare byte is tried again
        if len(literals) == 1 and literals[0]:
            first = literals[0]
            self._rare_at = min(range(len(first)), key=lambda i: _RANK.get(first[i] | 0x20, 0))
            rare = first[self._rare_at : self._rare_at + 1]
            self._rare = tuple(dict.fromkeys((rare.lower(), rare.upper()) if fold else (rare,)))
        # Non-ASCII bytes never match an ASCII literal byte, so lower-casing only ASCII
        # letters (what bytes.lower does) keeps the comparison exact on any block.
        single = fold and len(literals) == 1
        self._regex = regex.compile(regex.escape(literals[0]), regex.IGNORECASE) if single else None

    @classmethod
    def make(cls, plan: Plan, pattern: regex.Pattern[str]) -> _ByteFinder | None:
        forms = _byte_forms(plan, pattern)
        return None if forms is None else cls(list(forms[0]), forms[1], forms[2])

    def usable_on(self, text: str) -> bool:
        """Does `any_in` answer exactly for the block decoded as `text`?"""
        if not self.fold or text.isascii():
            return True
        return not any(e in text for e in self.exotic)

    def any_in(self, block: bytes) -> bool:
        if not self.literals:
            return False
        if len(self.literals) == 1:
            return self._rare_byte_search(block)
        return self._whole_search(block)

    def _rare_byte_search(self, block: bytes) -> bool:
        """ripgrep's trick for one literal: memchr for its rarest byte (in both cases when
        folding), then compare the literal around each hit. A Python-level look at a hit
        costs what a whole-literal search of about 2 KiB does: once the byte proves that
        frequent, here or in the last block, the whole literal is searched instead."""
        if self._frequent:
            self._frequent -= 1
            return self._whole_search(block)
        literal = self.literals[0]
        at = self._rare_at
        fold = self.fold
        budget = 2 + len(block) // 2048
        for byte in self._rare:
            j = block.find(byte)
            while j >= 0:
                start = j - at
                if start >= 0 and (
                    block[start : start + len(literal)].lower() == literal
                    if fold
                    else block.startswith(literal, start)
                ):
                    return True
                budget -= 1
                if budget < 0:
                    self._frequent = 8  # blocks to search whole before trying again
                    return self._whole_search(block)
                j = block.find(byte, j + 1)
        return False

    def _whole_search(self, block: bytes) -> bool:
        if self._regex is not None and not self._lower:
            return self._regex.search(block) is not None
        hay = block.lower() if self._lower else block
        return any(s in hay for s in self.literals)


@functools.lru_cache(maxsize=64)  # worked out for every file, once per pattern
def _byte_forms(
    plan: Plan, pattern: regex.Pattern[str]
) -> tuple[tuple[bytes, ...], bool, tuple[str, ...]] | None:
    """`_ByteFinder`'s literals, fold and exotic characters for `pattern`, or None."""
    if not plan.fold:
        if any("\ufffd" in s for s in plan.literals):
            return None
        return tuple(s.encode() for s in plan.literals), False, ()
    if plan.full_fold:
        return None  # `ß` matches `ss`: not one ASCII byte per character
    flags = pattern.flags & (regex.IGNORECASE | regex.ASCII)
    flags |= regex.IGNORECASE | regex.VERSION0
    ascii_forms = []
    exotic: set[str] = set()
    for s in plan.literals:
        form = []
        for ch in s:
            exotic.update(c for c in case_variants(flags, ch) if not c.isascii())
            same = regex.compile(regex.escape(ch), flags)
            variants = [chr(c) for c in range(128) if same.fullmatch(chr(c))]
            if not variants:
                break  # no ASCII text holds this literal
            if {v.lower() for v in variants} != {variants[0].lower()}:
                return None
            form.append(variants[0].lower())
        else:
            ascii_forms.append("".join(form).encode())
    return tuple(ascii_forms), True, tuple(sorted(exotic))


# -- the text scanner ---------------------------------------------------------------------------


class Scanner:
    """Text in, in pieces of any size; `Hit`s out, in order, each exactly once.

    Invariants, with every offset absolute in the file's text:
    - `_buf` holds the text from `_base` to `_end`; nothing before `_base` is needed again.
    - `_pos`: every match attempt starting before it is decided and, when it matched,
      reported (or pending). The next search starts there.
    - `_nl_pos`, `_nl_count`, `_last_nl`: the text before `_nl_pos` holds `_nl_count`
      newlines, the last of them at `_last_nl` (-1 when none); they give line numbers and
      columns without keeping old text.
    - `_pending`: matches already decided whose line is not yet complete in `_buf`
      (a match's `line` may need up to `LINE_CUT` characters after it).
    - `_seen`: the stops and fences (see the module docstring) before it are known:
      `_last_stop` is the last stop before it (-1 when none), `_fences` the last n fence
      characters, `_last_tail_end` the last of the plan's tail ends (-1 when none). Only
      characters at least `PEEK` before `_end` are looked at.
    - `_occ`: the literal occurrences at or after `_pos` found so far: all those lying
      whole in the text, so all those starting before `_occ_from` (prefilter only).
    - Kept text: look-behind context before `_pos`, the start of `_pos`'s line (at most
      `LINE_CUT` + 1 characters back), and the lines of pending matches. When what must be
      kept outgrows `max_carry`, the oldest text is committed as it stands and dropped, and
      `overflowed` becomes true.
    """

    def __init__(
        self,
        pattern: regex.Pattern[str],
        *,
        max_carry: int = 1024 * 1024,
        timeout: float | None = None,
        prefilter: bool = True,
    ) -> None:
        self.pattern = pattern
        self.plan = plan(pattern)
        self.max_carry = max_carry
        self.overflowed = False
        self._swept = 0  # where the last sweep of failed attempts (`_sweep`) ended
        self.closed = False
        self.guard = Guard(timeout)
        self._buf = ""
        self._base = 0
        self._pos = 0
        self._nl_pos = 0
        self._nl_count = 0
        self._last_nl = -1
        self._pending: list[tuple[int, int, str, int, int]] = []
        p = self.plan
        self._seen = 0
        self._last_stop = -1
        self._stop_back = _class_regex(p.stops, reverse=True)
        self._stop_back_bytes = _class_regex_bytes(p.stops)
        self._fence_n = p.fence[1] if p.fence else 0
        self._fences: deque[int] = deque(maxlen=max(1, self._fence_n))
        self._last_tail_end = -1
        head_stops, tail_ends = p.tail or ("", "")
        self._head_stop_back = _class_regex(head_stops, reverse=True)
        self._tail_end_back = _class_regex(tail_ends, reverse=True)
        # Where windows start and end (`_window_start`, `_window_bound`): asked for one
        # occurrence after another, so each character is searched about once per commit, not
        # once per occurrence (a long line of occurrences with no stop was quadratic).
        self._stop_before = _Behind(self._stop_back)
        self._stop_after = _Ahead(_class_regex(p.stops))
        self._fence_after = _Ahead(_class_regex(p.fence[0] if p.fence else ""))
        self._head_stop_after = _Ahead(_class_regex(head_stops))
        self._tail_end_after = _Ahead(_class_regex(tail_ends))
        # The prefilter needs to know where a match containing an occurrence can start.
        usable = (
            p.literals
            and p.restartable
            and p.behind is not None
            and (p.lead is not None or p.stops)
        )
        # Without `prefilter` the literals still decide attempts (the plan's knowledge), but
        # every search runs over the whole decided span, as a check of the windows.
        self.prefilter = prefilter
        self.finder = _text_finder(pattern, p) if usable else None
        self._occ: list[tuple[int, int]] = []  # ranges of possible occurrence starts
        self._occ_from = 0
        self._occ_last = -1
        self.occurrences = 0  # found so far (FileScanner skips the byte check in hot spans)
        # Without literals: google-re2 (the `speed` extra, linear time, no regex budget to
        # arm) finds where a match may start in pure-ASCII text, regex decides there.
        self._superset = _superset_filter(pattern, p) if prefilter and self.finder is None else None

    @property
    def _end(self) -> int:
        return self._base + len(self._buf)

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, text: str) -> list[Hit]:
        """Add text; return the matches it made final. Raises `ScanTimeout`."""
        if not text:
            return []
        self.guard.refill(len(text))
        self._buf += text
        self._find_occurrences()
        self._track()
        hits: list[Hit] = []
        classic = self._horizon()
        if self.finder is not None:
            self._commit_windows(classic)
        elif classic is not None and classic[0] > self._pos + (not self.plan.restartable):
            if self._superset is not None and self._buf.isascii():
                self._commit_superset(*classic)
            else:
                self._commit(*classic)
        self._flush_pending(hits, final=False)
        self._trim(hits)
        return hits

    def close(self) -> list[Hit]:
        """The end of the text: return the remaining matches. Raises `ScanTimeout`."""
        hits: list[Hit] = []
        self._find_occurrences(final=True)
        if self.finder is not None:
            self._commit_windows((self._end + 1, self._end), final=True)
        else:
            self._commit(self._end + 1, self._end)
        self._flush_pending(hits, final=True)
        self._count_lines_to(self._end)
        self.closed = True
        return hits

    def skip(self, block: bytes | str) -> bool:
        """Take the next block of text, in which the caller found no literal occurrence,
        without searching it: count its newlines and keep only the tail a later match may
        need. `block` is raw bytes when pure ASCII (then not even decoded), else its decoded
        text. Returns False (nothing done) when that is not safe here; then `feed` it."""
        p = self.plan
        f = self.finder
        if f is None or not self.prefilter or self._pending or self._occ or p.behind is None:
            return False
        raw = isinstance(block, bytes)
        newline: bytes | str = b"\n" if raw else "\n"
        n = len(block)
        end = self._end
        # An occurrence straddling the old text and the block? In decoded text, also one
        # starting at the block's first character, whose bytes may have begun in the last
        # block (the byte search saw them split).
        head = self._buf[max(self._occ_from, self._pos) - self._base :]
        piece = block[: f.longest - 1] if raw else block[: f.longest]
        head += piece.decode("ascii") if isinstance(piece, bytes) else piece
        if f.find(head, 0, len(head)):
            return False
        # Every match now contains an occurrence starting at or after `first`, so attempts
        # starting before `decided` cannot match.
        first = max(end + n - f.longest + 1, self._occ_from)
        decided = self._pos
        if p.lead is not None:
            decided = max(decided, first - p.lead)
        stop_back = self._stop_back_bytes if raw else self._stop_back
        if stop_back is not None and p.lead != 0 and first > end:
            m = stop_back.search(block, 0, first - end)  # type: ignore[arg-type]
            if m is not None:
                decided = max(decided, end + m.start() + 1)
        decided = min(decided, end + n)
        line_start = block.rfind(newline, 0, max(0, decided - end)) + 1 + end  # type: ignore[arg-type]
        if line_start <= end:
            line_start = self._line_start(min(decided, end))
        keep = min(decided - p.behind - 1, max(line_start, decided - LINE_CUT - 1))
        if keep < end:
            return False  # the old text is still needed: not worth a special case
        self.guard.refill(n)
        self._count_lines_to(end)
        cut = keep - end
        self._nl_count += count_newlines(block, 0, cut)
        last = block.rfind(newline, 0, cut)  # type: ignore[arg-type]
        if last >= 0:
            self._last_nl = end + last
        self._nl_pos = keep
        tail = block[cut:]
        self._buf = tail.decode("ascii") if isinstance(tail, bytes) else tail
        self._base = keep
        self._pos = decided
        self._occ_from = first
        self._seen = keep
        self._last_stop = -1
        self._last_tail_end = -1
        self._fences.clear()
        return True

    @property
    def settled_lines(self) -> int:
        """Every match starting on a line numbered at most this has been returned."""
        if self.closed:
            return self._nl_count + 1
        if self._pending:
            return self._pending[0][3] - 1
        if self._pos < self._nl_pos:  # cannot happen without pending matches; stay safe
            return 0
        return self._nl_count + self._buf.count(
            "\n", self._nl_pos - self._base, self._pos - self._base
        )

    # -- deciding ----------------------------------------------------------------------------

    def _find_occurrences(self, final: bool = False) -> None:
        """Record the occurrences lying whole in the text new since the last call. Those
        starting before the new `_occ_from` are then all known; a shorter literal near the
        end may be recorded earlier (`_occ_last` keeps it from being recorded twice)."""
        f = self.finder
        if f is None:
            return
        start = max(self._occ_from, self._pos)
        base = self._base
        found = [
            (first + base, last + base)
            for first, last in f.find(self._buf, start - base, self._end - base)
            if first + base > self._occ_last
        ]
        if found:
            self._occ += found
            self._occ_last = found[-1][0]
            self.occurrences += len(found)
        self._occ_from = max(self._occ_from, self._end if final else self._end - f.longest + 1)

    def _track(self) -> None:
        """Record the stops and fence characters of the text new since the last call."""
        top = self._end - PEEK  # characters at least PEEK before the end
        lo = max(self._seen, self._base)
        if top <= lo:
            return
        base = self._base
        if self._stop_back is not None:
            m = self._stop_back.search(self._buf, lo - base, top - base)
            if m is not None:
                self._last_stop = base + m.start()
        if self.plan.fence is not None:
            c = self.plan.fence[0]
            found: list[int] = []
            hi = top - base
            while len(found) < self._fence_n:
                i = self._buf.rfind(c, lo - base, hi)
                if i < 0:
                    break
                found.append(base + i)
                hi = i
            self._fences.extend(reversed(found))
        if self._tail_end_back is not None:
            m = self._tail_end_back.search(self._buf, lo - base, top - base)
            if m is not None:
                self._last_tail_end = base + m.start()
        self._seen = top

    def _horizon(self) -> tuple[int, int] | None:
        """(h, limit): attempts starting before h examine only text before limit; or None."""
        p = self.plan
        best: tuple[int, int] | None = None
        if p.width is not None and p.behind is not None:
            best = (self._end - p.width, self._end)
        if p.behind is None:
            return best
        if self._last_stop >= 0:
            candidate = (self._last_stop + 1, self._last_stop + PEEK + 1)
            if best is None or candidate[0] > best[0]:
                best = candidate
        if p.fence is not None and len(self._fences) == self._fence_n:
            candidate = (self._fences[0] + 1, self._fences[-1] + PEEK + 1)
            if best is None or candidate[0] > best[0]:
                best = candidate
        end = self._last_tail_end
        if self._head_stop_back is not None and end >= self._pos:
            # An attempt at or before the last head stop z before `end` reaches its first
            # head stop by z, and the tail end after that by `end`.
            base = self._base
            m = self._head_stop_back.search(self._buf, self._pos - base, end - base + 1)
            if m is not None:
                candidate = (m.start() + base + 1, end + PEEK + 1)
                if best is None or candidate[0] > best[0]:
                    best = candidate
        return best

    def _commit(self, horizon: int, limit: int) -> None:
        """Decide every attempt starting before `horizon` (each examines text before `limit`):
        pend its matches, advance `_pos`."""
        found, resume = self.guard.run(lambda t: self._search(horizon, limit, t))
        for start, end, text in found:
            self._pend(start, end, text)
        decided = min(horizon, self._end)
        if self.plan.restartable:
            self._pos = max(resume, decided)
        else:
            # The next search starts at a match end or at an attempt that failed
            # (Plan.restartable): attempts in [resume, horizon) all did.
            self._pos = max(resume, decided - 1)
        self._drop_decided_occurrences()

    def _drop_decided_occurrences(self) -> None:
        """An occurrence starting before `_pos` is only in matches that start before it."""
        k = 0
        while k < len(self._occ) and self._occ[k][1] < self._pos:
            k += 1
        del self._occ[:k]

    def _search(self, horizon: int, limit: int, timeout: float | None) -> tuple[list[Match], int]:
        base = self._base
        resume = self._pos
        found: list[Match] = []
        for m in self.pattern.finditer(self._buf, self._pos - base, limit - base, timeout=timeout):
            start, end = m.span()
            if start + base >= horizon:
                break
            resume = end + base
            if start != end:
                found.append((start + base, end + base, m.group()))
        return found, resume

    def _commit_superset(self, horizon: int, limit: int) -> None:
        """`_commit` for pure-ASCII text, regex run only where RE2 found a match of the
        pattern's superset (`analysis.re2_superset`): every match of the pattern starts
        inside one of those, or at its start, so [a, b - 1] of each RE2 match [a, b) holds
        all the starts worth an attempt. Matches are never empty here (the superset matches
        no empty string), so the windows' search applies."""
        base = self._base
        data = self._buf.encode("ascii")
        windows: list[tuple[int, int, int]] = []
        for m in self._superset.finditer(data, self._pos - base, limit - base):  # type: ignore[union-attr]
            first = m.start() + base
            if first >= horizon:
                break
            if len(windows) >= 16 and (first - self._pos) < len(windows) * _SPARSE:
                # Dense matches: a regex call per window costs more than one search of the
                # whole text. So for the rest of the file.
                self._superset = None
                self._commit(horizon, limit)
                return
            last = min(m.end() - 1 + base, horizon - 1)
            bound = self._window_bound(last)
            stop = limit if bound is None else min(bound, limit)
            if windows and first <= windows[-1][1] + 1:
                lo, hi, endpos = windows[-1]
                windows[-1] = (lo, max(hi, last), max(endpos, stop))
            else:
                windows.append((first, last, stop))
        found: list[Match] = []
        resume = self._pos
        if windows:
            found, resume = self.guard.run(lambda t: self._search_windows(windows, t))
        for start, end, text in found:
            self._pend(start, end, text)
        self._pos = max(resume, horizon)

    def _commit_windows(self, classic: tuple[int, int] | None, final: bool = False) -> None:
        """The prefilter's commit: decide the attempts that cannot reach a literal occurrence
        without running `regex`, and run it only in windows around the occurrences.

        Attempts before the classic horizon are decided as in `_commit`. Past it, with a
        bounded `lead`, an attempt at p can only match with an occurrence in [p, p + lead]:
        with none there (all occurrences before `_occ_from` are known) it fails; in a window
        [i - lead, i] it is decided when the window's own bound (width, the stop after i, the
        n-th fence after i) is in the text.
        """
        p = self.plan
        f = self.finder
        assert f is not None
        end = self._end
        horizon, limit = classic if classic is not None else (self._pos, self._pos)
        open_from = None if final or p.lead is None else self._occ_from - p.lead
        windows: list[tuple[int, int, int]] = []
        for first, i in self._occ:
            lo = self._window_start(first)
            bound = end if final else self._window_bound(i)
            if bound is None:
                # Attempts in [lo, i] past the classic horizon may examine text not yet
                # here: they stay open (and so do all later windows': bounds only grow).
                if open_from is not None:
                    open_from = min(open_from, max(lo, horizon))
                if lo >= horizon:
                    break
                stop, hi = limit, min(i, horizon - 1)
            else:
                stop, hi = bound, i
            if windows and lo <= windows[-1][1] + 1:
                first, last, endpos = windows[-1]
                windows[-1] = (first, max(last, hi), max(endpos, stop))
            else:
                windows.append((lo, hi, stop))
        if open_from is not None:
            horizon = max(horizon, min(open_from, end))
        if horizon <= self._pos:
            return
        windows = [(lo, min(hi, horizon - 1), e) for lo, hi, e in windows if lo < horizon]
        found: list[Match] = []
        resume = self._pos
        if not self.prefilter:
            found, resume = self.guard.run(lambda t: self._search(horizon, end, t))
        elif windows:
            found, resume = self.guard.run(lambda t: self._search_windows(windows, t))
        for start, stop_, text in found:
            self._pend(start, stop_, text)
        self._pos = max(resume, horizon)
        self._drop_decided_occurrences()

    def _window_start(self, i: int) -> int:
        """The earliest start of a match containing the occurrence at `i`."""
        lead = self.plan.lead
        if lead is not None:
            return max(self._pos, i - lead)
        assert self._stop_back is not None  # the prefilter needs a lead or stops
        back = self._stop_before.last(self._buf, self._base, self._pos, i)
        return self._pos if back < 0 else back + 1

    def _window_bound(self, i: int) -> int | None:
        """An end (exclusive) of what every attempt starting at or before `i` examines, when
        the text already holds it; else None."""
        p = self.plan
        base = self._base
        top = self._end - PEEK  # a bound character must be followed by PEEK characters
        if p.width is not None and i + p.width <= self._end:
            return i + p.width  # seldom beaten, and free
        bounds = []
        buf = self._buf
        j = self._stop_after.nth(buf, base, i, top, 1)
        if j >= 0:
            bounds.append(j + PEEK + 1)
        if p.fence is not None:
            j = self._fence_after.nth(buf, base, i, top, p.fence[1])
            if j >= 0:
                bounds.append(j + PEEK + 1)
        if not bounds and p.tail is not None:
            # Only where nothing cheaper bounds the window: any bound is exact.
            j = self._head_stop_after.nth(buf, base, i, top, 1)
            if j >= 0:
                j = self._tail_end_after.nth(buf, base, j, top, 1)
                if j >= 0:
                    bounds.append(j + PEEK + 1)
        return min(bounds) if bounds else None

    def _search_windows(
        self, windows: list[tuple[int, int, int]], timeout: float | None
    ) -> tuple[list[Match], int]:
        # Matches here contain a literal, so they are never empty: a window of one start is
        # one anchored attempt (`match`), as finditer would make it.
        base = self._base
        buf = self._buf
        finditer = self.pattern.finditer
        match = self.pattern.match
        resume = self._pos
        found: list[Match] = []
        started = time.process_time()
        left = timeout
        for n, (first, last, endpos) in enumerate(windows):
            if resume > last:
                continue
            if timeout is not None and n % 8 == 7:  # the clock is a system call
                left = timeout - (time.process_time() - started)
                if left <= 0:
                    raise TimeoutError("regex timed out")
            start = max(first, resume)
            if start == last:
                m = match(buf, start - base, endpos - base, timeout=left)
                if m is not None:
                    resume = m.end() + base
                    found.append((start, resume, m.group()))
                continue
            for m in finditer(buf, start - base, endpos - base, timeout=left):
                begin, end = m.span()
                if begin + base > last:
                    break
                resume = end + base
                found.append((begin + base, end + base, m.group()))
        return found, resume

    # -- reporting ---------------------------------------------------------------------------

    def _pend(self, start: int, end: int, text: str) -> None:
        # Matches come in order, so line numbers are counted incrementally.
        self._count_lines_to(start)
        self._pending.append((start, end, text, self._nl_count + 1, self._last_nl + 1))

    def _flush_pending(self, hits: list[Hit], *, final: bool) -> None:
        """Turn the pending matches whose line is known into hits (all of them when `final`)."""
        done = 0
        nl = -1  # the newline ending the line of the match at hand (-1: none in the buffer)
        for start, end, text, line_number, line_start in self._pending:
            if nl < start - self._base:
                # Searched once per line, not once per match: a minified line holds many.
                nl = self._buf.find("\n", start - self._base)
                if nl < 0:
                    nl = len(self._buf) + 1  # no newline after here: later matches neither
            if nl <= len(self._buf) - 1:
                line = self._line(start, line_start, self._base + nl, complete=True)
            elif final:
                line = self._line(start, line_start, self._end, complete=True)
            elif self._end - start > LINE_CUT:
                # The line is longer than LINE_CUT: its cut is already in the buffer.
                line = self._line(start, line_start, self._end, complete=False)
            else:
                break
            hits.append(Hit(start, end, line_number, start - line_start + 1, line, text))
            done += 1
        del self._pending[:done]

    def _line(self, start: int, line_start: int, line_end: int, *, complete: bool) -> str:
        """The `line` of a match: the whole line when at most LINE_CUT characters, else
        LINE_CUT characters of it starting at most LINE_LEAD before the match.
        `line_end` is exact when `complete`, else a lower bound past the cut."""
        base = self._base
        if complete and line_end > line_start and self._buf[line_end - base - 1] == "\r":
            line_end -= 1
        if complete and line_end - line_start <= LINE_CUT:
            cut = line_start
        else:
            cut = max(line_start, start - LINE_LEAD)
        cut = max(cut, base)  # only after an overflow can the line's start be gone
        return self._buf[cut - base : min(line_end, cut + LINE_CUT) - base]

    # -- forgetting --------------------------------------------------------------------------

    def _trim(self, hits: list[Hit]) -> None:
        """Drop the text no longer needed; past `max_carry`, commit by force and flag it."""
        if self._end - self._keep_for_matching() > self.max_carry:
            self._sweep()
        if self._end - self._keep_for_matching() > self.max_carry:
            forced = self._end - self.max_carry
            self.overflowed = True
            if forced > self._pos:
                self._commit(forced, self._end)
                self._pos = max(self._pos, forced)
            # Lines of pending matches are cut at what is left; the file is flagged anyway.
            self._flush_pending(hits, final=True)
            keep = max(self._keep(), forced - LINE_CUT - 1)
        else:
            keep = self._keep()
        if keep > self._base:
            self._count_lines_to(keep)
            self._buf = self._buf[keep - self._base :]
            self._base = keep
            self._seen = max(self._seen, keep)
            if self._last_stop < keep:
                self._last_stop = -1
            if self._last_tail_end < keep:
                self._last_tail_end = -1
            while self._fences and self._fences[0] < keep:
                self._fences.popleft()

    def _sweep(self) -> None:
        """Before giving up text to `max_carry`: move `_pos` past the attempts that have
        failed for good, which the plan's bounds could not vouch for (`"[^"]*",` where no
        quote follows, `\\{[^}]*\\}x` after its one `{b}`: attempts that end, though nothing
        in the pattern says where). For a pattern whose items all consume
        (`Plan.partial_safe`), `regex`'s partial search finds the leftmost attempt that
        reaches the end of the text when it finds no complete match; every attempt before it
        failed without needing more text. A complete match at q hides the live attempts
        before it, so the text before q is searched again, alone: an attempt that went
        past q now reaches its end. At most once per `max_carry // 2` characters read, so a
        live attempt that does outgrow `max_carry` costs each character a few more
        searches, not a few per block."""
        p = self.plan
        if not p.partial_safe or p.behind is None or self._end - self._swept < self.max_carry // 2:
            return
        self._swept = self._end
        base = self._base
        pos = self._pos - base
        leftmost = None
        end = len(self._buf)
        for _ in range(_SWEEP_SEARCHES):

            def search(timeout: float | None, end: int = end) -> Any:
                return self.pattern.search(self._buf, pos, end, partial=True, timeout=timeout)

            found = self.guard.run(search)
            if found is None or found.partial or found.start() == pos:
                leftmost = end if found is None else found.start()
                break
            end = found.start()  # a complete match: the attempts before it, alone
        if leftmost is not None and leftmost > pos:
            self._pos = leftmost + base
            self._drop_decided_occurrences()

    def _keep_for_matching(self) -> int:
        """The oldest offset a later match attempt may examine (its look-behind context)."""
        behind = self.plan.behind
        return self._base if behind is None else max(self._base, self._pos - behind - 1)

    def _keep(self) -> int:
        """The oldest offset still needed: matching context, and the text of lines a match
        may still be reported in (bounded by LINE_CUT, so not counted against max_carry)."""
        pos = self._pos
        keep = min(self._keep_for_matching(), max(self._line_start(pos), pos - LINE_CUT - 1))
        if self._pending:
            start, _end, _text, _line_number, line_start = self._pending[0]
            keep = min(keep, max(line_start, start - LINE_LEAD))
        return max(keep, self._base)

    def _count_lines_to(self, pos: int) -> None:
        """Advance the newline bookkeeping to `pos` (text before it may then be dropped)."""
        if pos <= self._nl_pos:
            return
        lo = self._nl_pos - self._base
        hi = pos - self._base
        self._nl_count += count_newlines(self._buf, lo, hi)
        i = self._buf.rfind("\n", lo, hi)
        if i >= 0:
            self._last_nl = self._base + i
        self._nl_pos = pos

    def _line_start(self, pos: int) -> int:
        """Offset where the line holding `pos` starts (`pos` >= `_nl_pos`)."""
        i = self._buf.rfind("\n", self._nl_pos - self._base, pos - self._base)
        return self._base + i + 1 if i >= 0 else self._last_nl + 1


Match = tuple[int, int, str]


class _Ahead:
    """The n-th position of a class at or after a point, for points that move forward:
    what was found is kept (`_at`: every position in [`_lo`, `_hi`), absolute), so each
    character is searched about once. A point behind `_lo` or past `_hi` starts afresh."""

    __slots__ = ("_at", "_class", "_hi", "_lo")

    def __init__(self, chars: regex.Pattern[str] | None) -> None:
        self._class = chars  # one character of the class (`_class_regex`)
        self._at: deque[int] = deque()
        self._lo = self._hi = -1

    def nth(self, text: str, base: int, i: int, top: int, n: int) -> int:
        """Absolute position of the n-th occurrence at or after `i` and before `top` in
        `text` (which starts at `base`), or -1."""
        if self._class is None:
            return -1
        at = self._at
        if not self._lo <= i <= self._hi:
            at.clear()
            self._hi = i
        while at and at[0] < i:
            at.popleft()
        self._lo = i
        while len(at) < n and self._hi < top:
            m = self._class.search(text, self._hi - base, top - base)
            if m is None:
                self._hi = top
                break
            at.append(base + m.start())
            self._hi = at[-1] + 1
        return at[n - 1] if len(at) >= n else -1


class _Behind:
    """The last position of a class in [lo, i), for a fixed lo and points i that move
    forward: only the text since the last point is searched."""

    __slots__ = ("_back", "_hi", "_last", "_lo")

    def __init__(self, back: regex.Pattern[str] | None) -> None:
        self._back = back  # the class, searching backwards
        self._lo = self._hi = self._last = -1

    def last(self, text: str, base: int, lo: int, i: int) -> int:
        if self._back is None:
            return -1
        if lo == self._lo and self._hi <= i:
            start = self._hi  # the last one before it is known
        else:
            start, self._last = lo, -1
        m = self._back.search(text, start - base, i - base)
        if m is not None:
            self._last = base + m.start()
        self._lo, self._hi = lo, i
        return self._last


# The RE2 superset (Scanner._commit_superset) pays while its matches are sparser than one per
# this many characters (measured: `\\d+` costs the same either way at one match per ~1,600
# characters, three times more through windows at one per 100).
_SPARSE = 1024
# Partial searches of one sweep (Scanner._sweep), each on the text before the last one's
# complete match: when they all find one, the sweep gives up (exact, only less economical).
_SWEEP_SEARCHES = 4


@functools.lru_cache(maxsize=64)  # built for every file, once per pattern
def _class_regex(chars: str, reverse: bool = False) -> regex.Pattern[str] | None:
    """A pattern matching any one of the ASCII `chars` (searching backwards when `reverse`);
    None when `chars` is empty."""
    if not chars:
        return None
    body = "[" + "".join(f"\\x{ord(c):02x}" for c in chars) + "]"
    return regex.compile(("(?r)" if reverse else "") + body)


@functools.lru_cache(maxsize=64)
def _class_regex_bytes(chars: str) -> regex.Pattern[bytes] | None:
    """`_class_regex(chars, reverse=True)` for bytes."""
    if not chars:
        return None
    body = "[" + "".join(f"\\x{ord(c):02x}" for c in chars) + "]"
    return regex.compile(("(?r)" + body).encode())


# -- the file scanner ---------------------------------------------------------------------------


class FileScanner:
    """Bytes in, hits out: binary sniffing, incremental UTF-8 decoding, then `Scanner`.

    A file is binary when a NUL byte occurs in its first `BINARY_SNIFF_BYTES` bytes: it is
    never reported (`binary` is True and every call returns no hits). Until those bytes are
    seen, hits are held back. Decoding is UTF-8 with invalid bytes replaced and a leading BOM
    dropped (as `utf-8-sig` does), incremental so a character split across pieces decodes
    whole. Bytes are gathered into blocks of at least `block` bytes, or until a line can
    settle (`PEEK` + 1 bytes past a newline), before any work: tiny pieces do not each pay a
    search. `timeout` is the file's regex
    budget (see `Guard`; None: none). `prefilter=False` turns the literal prefilter off.

    `settled_lines`: every match starting on a line numbered at most this has already been
    returned by `feed`/`close` (0 until the file is known not to be binary; after `close`,
    the number of lines of the file).
    """

    def __init__(
        self,
        pattern: regex.Pattern[str],
        *,
        max_carry: int = 1024 * 1024,
        timeout: float | None = None,
        prefilter: bool = True,
        block: int = BLOCK,
    ) -> None:
        self.scanner = Scanner(pattern, max_carry=max_carry, timeout=timeout, prefilter=prefilter)
        self.block = block
        self.binary: bool | None = None  # None until the first BINARY_SNIFF_BYTES are seen
        self._sniffed = 0
        self._held: list[Hit] = []
        self._parts: list[bytes] = []  # gathered, not yet scanned
        self._size = 0
        self._first_nl: int | None = None  # offset in the gathered bytes of their first \n
        # Plain utf-8 and a BOM dropped by hand: the incremental utf-8-sig decoder loses a
        # lone b"\xef" at the end of a file, where the whole-file decode gives U+FFFD.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True
        self._blocks = 0  # blocks scanned so far
        use = self.scanner.finder is not None and prefilter
        self._bytes = _ByteFinder.make(self.scanner.plan, pattern) if use else None

    @property
    def overflowed(self) -> bool:
        return self.scanner.overflowed

    @property
    def settled_lines(self) -> int:
        if self.binary is not False or self._held:
            return 0
        return self.scanner.settled_lines

    def feed(self, data: bytes) -> list[Hit]:
        """Scan the next bytes; return the matches they made final."""
        block = self.gather(data)
        return [] if block is None else self.scan(block)

    def gather(self, data: bytes) -> list[bytes] | None:
        """The first half of `feed`, cheap (no matching, no copy): keep `data`; return the
        pieces to `scan` now, or None while they are too few to be worth a search (or the
        file is binary). A caller that matches in another thread calls this one inline."""
        if self.binary:
            return None
        if self.binary is None:
            head = data[: BINARY_SNIFF_BYTES - self._sniffed]
            self._sniffed += len(head)
            if b"\0" in head:
                self.binary = True
                self._held = []
                self._parts = []
                return None
        if self._first_nl is None and b"\n" in data:
            self._first_nl = self._size + data.index(b"\n")
        self._parts.append(data)
        self._size += len(data)
        if self._size < self.block and (
            self._first_nl is None or self._size - self._first_nl <= PEEK + 1
        ):
            return None  # a line settles PEEK + 1 characters past its newline: work then
        parts, self._parts = self._parts, []
        self._first_nl = None
        self._size = 0
        return parts

    def scan(self, parts: list[bytes]) -> list[Hit]:
        """The second half of `feed`: match the pieces `gather` returned. Raises
        `ScanTimeout`."""
        hits = self._scan(parts[0] if len(parts) == 1 else b"".join(parts))
        if self.binary is None:
            self._held += hits
            if self._sniffed < BINARY_SNIFF_BYTES:
                return []
            self.binary = False
            hits, self._held = self._held, []
        return hits

    def close(self) -> list[Hit]:
        """The end of the file: return the remaining matches."""
        if self.binary:
            return []
        self.binary = False
        hits, self._held = self._held, []
        block = b"".join(self._parts)
        self._parts = []
        hits += self.scanner.feed(self._decode(block, final=True))
        hits += self.scanner.close()
        return hits

    def _scan(self, block: bytes) -> list[Hit]:
        finder = self._bytes
        self._blocks += 1
        # Where literals occur in most blocks (an alternation of common words), the text path
        # searches them anyway: checking the bytes first would only double the search.
        if finder is None or 2 * self.scanner.occurrences > self._blocks:
            return self.scanner.feed(self._decode(block))
        if block.isascii():
            if (
                not self._decoder.getstate()[0]
                and not finder.any_in(block)
                and self.scanner.skip(block)
            ):
                self._at_start = False
                return []
            return self.scanner.feed(self._decode(block))
        text = self._decode(block)
        if finder.usable_on(text) and not finder.any_in(block) and self.scanner.skip(text):
            return []
        return self.scanner.feed(text)

    def _decode(self, data: bytes, final: bool = False) -> str:
        # Most blocks are pure ASCII: decoding them whole is twice as fast as the incremental
        # decoder, and exact when it holds no partial character from the previous block.
        if data.isascii() and not self._decoder.getstate()[0]:
            text = data.decode("ascii")
        else:
            text = self._decoder.decode(data, final)
        if self._at_start and text:
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        return text
