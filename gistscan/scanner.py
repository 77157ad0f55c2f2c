"""The overlap-aware scanner: a file's bytes in, in pieces of any size; its matches out, exact.

The contract (docs/matching.md): the matches reported for a file are those `regex.finditer` gives on
the whole file decoded at once, unless the file overflowed its carry (`overflowed`). The
scanner keeps only the text it still needs: O(chunk + max_carry) characters whatever the size
of the file.

How a match becomes final. After each piece the scanner computes a *commit horizon* `h`: an
absolute text offset such that every match attempt starting before `h` can no longer change
when more text arrives. It then runs `finditer` from its resume point, reports the matches
that start before `h`, and resumes at `max(h, end of the last reported match)`. What decides
`h` is the pattern (see `Plan`):

- bounded: an attempt never examines more than `width` characters from its start (look-ahead
  included), so attempts starting before `end - width - 2` are decided;
- line-local: no part of the pattern can match `\\n`, so attempts starting before the last
  `\\n` that is not the final character are decided;
- neither: nothing is decided before the end of the file; the text is kept whole, up to
  `max_carry` characters. Beyond that the oldest text is committed as it stands and dropped,
  and the file is flagged `overflowed` (its matches may then differ from the whole-file ones).
"""

from __future__ import annotations

import codecs
import functools
import re
import time
import warnings
from dataclasses import dataclass
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import regex

BINARY_SNIFF_BYTES = 8192
LINE_CUT = 400  # a longer line is cut to this many characters around its match
LINE_LEAD = 100  # a cut line starts at most this many characters before the match

_INF = float("inf")


class ScanTimeout(Exception):
    """The file's regex time budget ran out (raised by `FileScanner.feed` and `.close`)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One match: absolute offsets in the file's text, and where it stands (docs/matching.md)."""

    start: int
    end: int
    line_number: int
    column: int
    line: str
    text: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What a pattern lets the scanner decide before the end of the text.

    `width`: most characters one match attempt examines from its start, look-ahead and one
    character of assertion peeking included (None: unbounded). `behind`: most characters it
    examines before its start (None: unbounded). `line_local`: no part of it, look-arounds
    included, can match a `\\n`.
    """

    width: int | None
    behind: int | None
    line_local: bool


UNKNOWN_PLAN = Plan(width=None, behind=None, line_local=False)


@functools.lru_cache(maxsize=256)
def plan(pattern: regex.Pattern[str]) -> Plan:
    """Analyse `pattern` with the stdlib's parser; UNKNOWN_PLAN for anything it cannot vouch for.

    `regex` (VERSION0) is re-compatible, so a pattern the stdlib parses the same way has the
    same widths. Syntax only `regex` knows (`\\p{..}`, fuzzy `{e<=1}`, POSIX `[[:alpha:]]`,
    recursion...) either fails to parse here, warns, or hides behind a literal `{`: all three
    give UNKNOWN_PLAN, which is exact too, only less economical. Cached: every file of a
    search has the same pattern.
    """
    flags = re.MULTILINE
    if pattern.flags & regex.IGNORECASE:
        flags |= re.IGNORECASE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tree = sre_parse.parse(pattern.pattern, flags)
        walker = _Walker()
        _consumed, examined, newline = walker.sequence(list(tree), tree.state.flags)
    except Exception:  # any surprise in a private parser means: do not trust the analysis
        return UNKNOWN_PLAN
    if walker.brace:
        return UNKNOWN_PLAN
    width = None if examined == _INF else int(examined) + 1
    behind = None if walker.behind == _INF else int(walker.behind) + 1
    return Plan(width=width, behind=behind, line_local=not newline)


class _Walker:
    """Walks a stdlib parse tree: widths (consumed, examined), look-behind reach, newlines."""

    def __init__(self) -> None:
        self.behind: float = 0
        self.brace = False
        self.groups: dict[int, tuple[float, bool]] = {}

    def sequence(self, items: list[Any], flags: int) -> tuple[float, float, bool]:
        offset: float = 0
        examined: float = 0
        newline = False
        for op, av in items:
            c, ex, nl = self.item(op, av, flags)
            examined = max(examined, offset + ex)
            offset += c
            newline = newline or nl
        return offset, max(examined, offset), newline

    def item(self, op: Any, av: Any, flags: int) -> tuple[float, float, bool]:
        if op is sre_c.LITERAL:
            if av == ord("{"):
                self.brace = True  # `regex` may read braces as a fuzzy constraint
            return 1, 1, av == 10
        if op is sre_c.NOT_LITERAL:
            return 1, 1, av != 10
        if op is sre_c.ANY:
            return 1, 1, bool(flags & re.DOTALL)
        if op is sre_c.IN:
            return 1, 1, _set_has_newline(av)
        if op is sre_c.AT:
            return 0, 1, False  # peeks at one character (\b, $, ^ ...); `behind` adds one too
        if op is sre_c.BRANCH:
            alts = [self.sequence(list(alt), flags) for alt in av[1]]
            return (
                max(a[0] for a in alts),
                max(a[1] for a in alts),
                any(a[2] for a in alts),
            )
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            _lo, hi, sub = av
            c, ex, nl = self.sequence(list(sub), flags)
            if hi == sre_c.MAXREPEAT:
                return (_INF if c > 0 else 0), (_INF if c > 0 else ex), nl
            if hi == 0:
                return 0, 0, False
            return hi * c, (hi - 1) * c + ex, nl
        if op is sre_c.SUBPATTERN:
            group, add_flags, del_flags, sub = av
            inner = (flags | add_flags) & ~del_flags
            c, ex, nl = self.sequence(list(sub), inner)
            if group is not None:
                self.groups[group] = (c, nl)
            return c, ex, nl
        if op is sre_c.ATOMIC_GROUP:
            return self.sequence(list(av), flags)
        if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            direction, sub = av
            c, ex, nl = self.sequence(list(sub), flags)
            if direction < 0:
                self.behind += ex  # nested look-behinds add up: stay on the safe side
            return 0, ex, nl
        if op is sre_c.GROUPREF:
            c, nl = self.groups.get(av, (_INF, True))
            return c, c, nl
        if op is sre_c.GROUPREF_EXISTS:
            _group, yes, no = av
            a = self.sequence(list(yes), flags)
            b = self.sequence(list(no), flags) if no is not None else (0, 0, False)
            return max(a[0], b[0]), max(a[1], b[1]), a[2] or b[2]
        if op in (sre_c.FAILURE, sre_c.SUCCESS):
            return 0, 0, False
        raise ValueError(f"unknown node {op}")


_NEWLINE_CATEGORIES = {
    sre_c.CATEGORY_SPACE,
    sre_c.CATEGORY_NOT_DIGIT,
    sre_c.CATEGORY_NOT_WORD,
    sre_c.CATEGORY_LINEBREAK,
}
_NO_NEWLINE_CATEGORIES = {
    sre_c.CATEGORY_DIGIT,
    sre_c.CATEGORY_NOT_SPACE,
    sre_c.CATEGORY_WORD,
    sre_c.CATEGORY_NOT_LINEBREAK,
}


def _set_has_newline(items: list[tuple[Any, Any]]) -> bool:
    negate = False
    hit = False
    for op, av in items:
        if op is sre_c.NEGATE:
            negate = True
        elif op is sre_c.LITERAL:
            hit = hit or av == 10
        elif op is sre_c.RANGE:
            hit = hit or av[0] <= 10 <= av[1]
        elif op is sre_c.CATEGORY and av in _NEWLINE_CATEGORIES:
            hit = True
        elif op is sre_c.CATEGORY and av in _NO_NEWLINE_CATEGORIES:
            pass
        else:
            return True  # unknown member: assume the worst
    return hit != negate


class Scanner:
    """Text in, in pieces of any size; `Hit`s out, in order, each exactly once.

    Invariants, with every offset absolute in the file's text:
    - `_buf` holds the text from `_base` to `_end`; nothing before `_base` is needed again.
    - `_pos`: every match attempt starting before it is decided and, when it matched,
      reported (or pending). The next `finditer` starts there.
    - `_nl_pos`, `_nl_count`, `_last_nl`: the text before `_nl_pos` holds `_nl_count`
      newlines, the last of them at `_last_nl` (-1 when none); they give line numbers and
      columns without keeping old text.
    - `_pending`: matches already decided whose line is not yet complete in `_buf`
      (a match's `line` may need up to `LINE_CUT` characters after it).
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
    ) -> None:
        self.pattern = pattern
        self.plan = plan(pattern)
        self.max_carry = max_carry
        self.overflowed = False
        # The regex budget: CPU seconds of matching left for this file.
        self._budget = timeout
        self._buf = ""
        self._base = 0
        self._pos = 0
        self._nl_pos = 0
        self._nl_count = 0
        self._last_nl = -1
        self._pending: list[tuple[int, int, str, int, int]] = []
        self._closed = False

    @property
    def _end(self) -> int:
        return self._base + len(self._buf)

    @property
    def settled_lines(self) -> int:
        """Lines whose matches are all returned: every match starting on a line numbered
        `settled_lines` or less has been returned by `feed`/`close` (after `close`, every
        line of the text, the last one included)."""
        if self._closed:
            return self._nl_count + self._buf.count("\n", self._nl_pos - self._base) + 1
        # Every attempt starting before `_pos` is decided; a line whose `\n` lies before it
        # is settled. (Matches still pending are on the last, incomplete line: they are
        # flushed as soon as a `\n` follows them.) `_pos` and `_nl_pos` are both in `_buf`.
        lo, hi = sorted((self._pos, self._nl_pos))
        between = self._buf.count("\n", lo - self._base, hi - self._base)
        return self._nl_count + (between if self._pos > self._nl_pos else -between)

    def feed(self, text: str) -> list[Hit]:
        """Add text; return the matches it made final. Raises `ScanTimeout`."""
        if not text:
            return []
        self._buf += text
        hits: list[Hit] = []
        horizon = self._horizon()
        if horizon is not None and horizon > self._pos:
            self._commit(horizon)
        self._flush_pending(hits, final=False)
        self._trim(hits)
        return hits

    def close(self) -> list[Hit]:
        """The end of the text: return the remaining matches. Raises `ScanTimeout`."""
        hits: list[Hit] = []
        self._commit(self._end + 1)
        self._flush_pending(hits, final=True)
        self._closed = True
        return hits

    def _horizon(self) -> int | None:
        """The commit horizon for the text so far (see the module docstring), or None."""
        plan = self.plan
        candidates = []
        if plan.width is not None and plan.behind is not None:
            candidates.append(self._end - plan.width - 2)
        if plan.line_local and plan.behind is not None:
            i = self._buf.rfind("\n", 0, len(self._buf) - 1)
            if i >= 0:
                candidates.append(self._base + i + 1)
        return max(candidates) if candidates else None

    def _commit(self, horizon: int) -> None:
        """Decide every attempt starting before `horizon`: pend its matches, advance `_pos`."""
        base = self._base
        resume = self._pos
        # Charged in this thread's CPU time: the matching of this file, not what other
        # threads (downloads, other files) burn meanwhile. `regex` checks its own timeout
        # against process CPU time, so within one call it may fire early, never late.
        started = time.thread_time()
        budget = self._budget
        try:
            if budget is not None and budget <= 0:
                raise TimeoutError("regex timed out")
            for m in self.pattern.finditer(self._buf, self._pos - base, timeout=budget):
                start, end = m.span()
                if start + base >= horizon:
                    break
                resume = end + base
                if start != end:
                    self._pend(start + base, end + base, m.group())
        except TimeoutError as exc:
            self._budget = 0
            raise ScanTimeout(
                f"the pattern ran out of its regex time budget near offset {resume}"
            ) from exc
        finally:
            if budget is not None:
                self._budget = max(0.0, (self._budget or 0) - (time.thread_time() - started))
        self._pos = max(resume, min(horizon, self._end))

    def _pend(self, start: int, end: int, text: str) -> None:
        # Matches come in order, so line numbers are counted incrementally.
        self._count_lines_to(start)
        self._pending.append((start, end, text, self._nl_count + 1, self._last_nl + 1))

    def _flush_pending(self, hits: list[Hit], *, final: bool) -> None:
        """Turn the pending matches whose line is known into hits (all of them when `final`)."""
        done = 0
        for start, end, text, line_number, line_start in self._pending:
            nl = self._buf.find("\n", start - self._base)
            if nl >= 0:
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
        """The `line` of a match (docs/records.md): the whole line when at most LINE_CUT characters,
        else LINE_CUT characters of it starting at most LINE_LEAD before the match.
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

    def _trim(self, hits: list[Hit]) -> None:
        """Drop the text no longer needed; past `max_carry`, commit by force and flag it."""
        if self._end - self._keep_for_matching() > self.max_carry:
            forced = self._end - self.max_carry
            self.overflowed = True
            if forced > self._pos:
                self._commit(forced)
            # Lines of pending matches are cut at what is left; the file is flagged anyway.
            self._flush_pending(hits, final=True)
            keep = max(self._keep(), forced - LINE_CUT - 1)
        else:
            keep = self._keep()
        if keep > self._base:
            self._count_lines_to(keep)
            self._buf = self._buf[keep - self._base :]
            self._base = keep

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
        self._nl_count += self._buf.count("\n", lo, hi)
        i = self._buf.rfind("\n", lo, hi)
        if i >= 0:
            self._last_nl = self._base + i
        self._nl_pos = pos

    def _line_start(self, pos: int) -> int:
        """Offset where the line holding `pos` starts (`pos` >= `_nl_pos`)."""
        i = self._buf.rfind("\n", self._nl_pos - self._base, pos - self._base)
        return self._base + i + 1 if i >= 0 else self._last_nl + 1


class FileScanner:
    """Bytes in, hits out: binary sniffing, incremental UTF-8 decoding, then `Scanner`.

    A file is binary when a NUL byte occurs in its first `BINARY_SNIFF_BYTES` bytes: it is
    never reported (`binary` is True and every call returns no hits). Until those bytes are
    seen, bytes are scanned as they come but their hits are held back. Decoding is UTF-8
    with invalid bytes replaced and a leading BOM dropped (as `utf-8-sig` does),
    incremental so a character split across pieces decodes whole. `timeout` is the file's
    regex budget in CPU seconds (None: none).
    """

    def __init__(
        self,
        pattern: regex.Pattern[str],
        *,
        max_carry: int = 1024 * 1024,
        timeout: float | None = None,
    ) -> None:
        self.scanner = Scanner(pattern, max_carry=max_carry, timeout=timeout)
        self.binary: bool | None = None  # None until the first BINARY_SNIFF_BYTES are seen
        self._sniffed = 0
        self._held: list[Hit] = []
        # Plain utf-8 and a BOM dropped by hand: the incremental utf-8-sig decoder loses a
        # lone b"\xef" at the end of a file, where the whole-file decode gives U+FFFD.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True

    @property
    def overflowed(self) -> bool:
        return self.scanner.overflowed

    @property
    def settled_lines(self) -> int:
        """Every match starting on a line numbered `settled_lines` or less has been returned
        by `feed`/`close`; after `close`, every line. Lines are counted by `\n` (as in the
        bytes). 0 while the file may still turn out binary (its hits are held back)."""
        return self.scanner.settled_lines if self.binary is False else 0

    def feed(self, data: bytes) -> list[Hit]:
        """Scan the next bytes; return the matches they made final."""
        if self.binary:
            return []
        if self.binary is None:
            head = data[: BINARY_SNIFF_BYTES - self._sniffed]
            self._sniffed += len(head)
            if b"\0" in head:
                self.binary = True
                self._held = []
                return []
        hits = self.scanner.feed(self._decode(data))
        if self.binary is None:
            self._held += hits
            if self._sniffed < BINARY_SNIFF_BYTES:
                return []
            self.binary = False
            hits, self._held = self._held, []
        return hits

    def _decode(self, data: bytes, final: bool = False) -> str:
        # Most chunks are pure ASCII: decoding them whole is twice as fast as the incremental
        # decoder, and exact when it holds no partial character from the previous chunk.
        if data.isascii() and not self._decoder.getstate()[0]:
            text = data.decode("ascii")
        else:
            text = self._decoder.decode(data, final)
        if self._at_start and text:
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        return text

    def close(self) -> list[Hit]:
        """The end of the file: return the remaining matches."""
        if self.binary:
            return []
        self.binary = False
        hits, self._held = self._held, []
        hits += self.scanner.feed(self._decode(b"", final=True))
        hits += self.scanner.close()
        return hits
