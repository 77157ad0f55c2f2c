"""Pattern analysis: what a pattern lets the streaming scanner decide early, read from `regex`'s
own parse tree (so its own syntax is understood: `(?<n>…)`, `\\p{..}`, `[[:alpha:]]`, fuzzy
`{e<=1}`, atomic and possessive forms, scoped flags).

Every figure is an upper bound on what one *match attempt* (the engine trying the pattern at
one start position) can do, whatever the text. The scanner relies on them to decide attempts
before the end of the text; an analysis that cannot vouch for a figure makes it unbounded,
which is exact too, only less economical.
"""

from __future__ import annotations

import functools
import importlib
import math
from dataclasses import dataclass
from typing import Any

import regex

# `regex`'s parser and case tables: private, untyped, and the only faithful reading of its
# syntax. Any surprise in them makes `plan` give UNKNOWN_PLAN (exact, less economical).
core: Any = importlib.import_module("regex._regex_core")
_regex: Any = importlib.import_module("regex._regex")

INF = math.inf
# Characters an attempt may peek at beyond what it consumes (`\b`, `$`, `\Z` look at the next
# character; non-MULTILINE `$` at the one after it).
PEEK = 2
ASCII = range(128)
_MAX_LITERALS = 16  # an alternation of more words than this gets no prefilter
# Delimiters preferred as a fence (see Plan.fence), most frequent in real files first.
_FENCE_ORDER = "\n \"',;:=)(}{][><\t/&|.-+*#!?%$@^`~\\"


@dataclass(frozen=True, slots=True)
class Plan:
    """What the scanner may rely on for one pattern.

    - `width`: most characters one attempt examines from its start, peeks included (None:
      unbounded). `consumed`: most characters one match spans (None: unbounded).
    - `behind`: most characters an attempt examines before its start (look-behind, and one
      for `\\b`/`^`); None: unbounded.
    - `stops`: ASCII characters no attempt can consume, look-arounds included (so an attempt
      starting at p examines nothing past the first of them at or after p, plus `PEEK`).
      `line_local` is `"\\n" in stops`.
    - `fence`: (c, n): an attempt examines nothing past the n-th character c at or after
      its start, plus `PEEK` (it consumes at most n - 1 of them, or n when its last
      consumption is that c: `"token":\\s*"[^"]*"` ends at its fourth quote); None when no c
      bounds it.
    - `literals`: every match contains one of these strings (compared case-insensitively
      under the pattern's own case folding when `fold`); () when there is no such set.
      `lead`: a match starts at most this many characters before that string (0 for
      `apiKey\\d+`; None: unbounded). `full_fold`: some part of the pattern folds case fully
      (`(?fi)`: `ß` matches `ss`), so a literal's occurrence may differ from it in length.
    - `restartable`: a search started anywhere finds what the search through the whole
      text finds from there on. False for fuzzy patterns: the first attempt of a `regex`
      fuzzy search takes no insertion before its first character (`(?:ab){e<=1}` finds
      `ab` in `Kab` but `Kab` in `xKab`), so they are searched again only from the end of
      a match, or from an attempt the whole-text search made and found failing (there the
      first attempt's narrower choice fails too, and the attempts after it are ordinary).
    - `tail`: (head stops, tail ends) for a pattern that ends with a greedy, unbounded
      repeat of one character class C (`KEY\\s*=\\s*\\S+`, `Bearer\\s+\\S+`): the head (all
      before the repeat) consumes none of the head stops, C none of the tail ends (both
      ASCII). The repeat ends the pattern, so the engine never backtracks out of it: an
      attempt starting at p examines nothing past the first tail end at or after the first
      head stop at or after p, plus `PEEK`. None when the pattern has no such shape.
    - `partial_safe`: every item consumes (characters, classes, greedy or possessive repeats,
      groups, alternations; no assertion, look-around, lazy repeat, back-reference or fuzzy
      item). Then `regex`'s partial search is trusted where it finds no match, or only a
      partial one: an attempt before that start fails whatever text follows. Where it finds
      a complete match, it says nothing of the attempts before it (`ab+c|b` on `zab` gives
      the complete `b`, not the live `ab`), and with assertions or lazy repeats even its
      partial answers can skip a live attempt (measured: `a\\B`, `[ab](?:[^a]\\b){2,}`).
    """

    width: int | None
    consumed: int | None
    behind: int | None
    stops: str
    fence: tuple[str, int] | None
    literals: tuple[str, ...]
    fold: bool
    lead: int | None = None
    restartable: bool = True
    full_fold: bool = False
    tail: tuple[str, str] | None = None
    partial_safe: bool = False

    @property
    def line_local(self) -> bool:
        return "\n" in self.stops


UNKNOWN_PLAN = Plan(None, None, None, "", None, (), False, None, False)


class Unsupported(Exception):
    """The pattern uses a construct the streaming scanner cannot honour exactly."""


_UNSUPPORTED_FLAGS = {
    regex.REVERSE: "the reverse flag (?r)",
    regex.BESTMATCH: "the best-match flag (?b)",
    regex.ENHANCEMATCH: "the enhance-match flag (?e)",
}
_UNSUPPORTED_NODES = {
    "CallGroup": "recursion and subroutine calls ((?R), (?1), (?&name))",
    "CallRef": "recursion and subroutine calls ((?R), (?1), (?&name))",
    "SearchAnchor": "the search anchor \\G",
    "Keep": "\\K (keep)",
    "Skip": "(*SKIP)",
}


def unsupported(pattern: regex.Pattern[str]) -> str | None:
    """The name of a construct in `pattern` that chunked scanning cannot honour, else None.

    Refused: reverse matching `(?r)` (attempts run right to left), best-match and
    enhance-match fuzzy flags (they compare candidates across the whole text), recursion
    and subroutine calls (unbounded, and `regex` allocates gigabytes for them), `\\G` (it
    anchors at where the previous search stopped), `\\K` and `(*SKIP)` (a reported start or a
    resumed search that no longer equals where the attempt began).
    """
    for flag, name in _UNSUPPORTED_FLAGS.items():
        if pattern.flags & flag:
            return name
    tree, _flags = _parse(pattern)
    for node in _walk(tree):
        found = _UNSUPPORTED_NODES.get(type(node).__name__)
        if found is not None:
            return found
    return None


def case_variants(flags: int, ch: str) -> list[str]:
    """Every character `regex` matches `ch` against under `flags`' simple case folding
    (`k`: k, K and the Kelvin sign), `ch` included."""
    return [chr(c) for c in _regex.get_all_cases(flags, ord(ch))] + [ch]


def _parse(pattern: regex.Pattern[str]) -> tuple[Any, int]:
    """`regex`'s own parse tree of `pattern`, as `regex.compile` builds it, and its flags."""
    flags = pattern.flags & ~regex.UNICODE
    while True:
        source = core.Source(pattern.pattern)
        info = core.Info(flags, source.char_type, {})
        info.guess_encoding = core.UNICODE
        source.ignore_space = bool(info.flags & regex.VERBOSE)
        try:
            tree = core._parse_pattern(source, info)
            break
        except core._UnscopedFlagSet:
            flags = info.global_flags  # a global inline flag: parse again with it, as regex does
    tree.fix_groups(pattern.pattern, False, False)
    tree = tree.optimise(info, False).pack_characters(info)
    return tree, info.flags


def _children(node: Any) -> list[Any]:
    kids = []
    for name in ("items", "branches"):
        kids += list(getattr(node, name, None) or [])
    for name in ("subpattern", "yes_item", "no_item"):
        child = getattr(node, name, None)
        if child is not None:
            kids.append(child)
    return kids


def _walk(node: Any) -> list[Any]:
    out = [node]
    for child in _children(node):
        out += _walk(child)
    return out


@functools.lru_cache(maxsize=256)
def plan(pattern: regex.Pattern[str]) -> Plan:
    """Analyse `pattern` (compiled by `compile_pattern`); UNKNOWN_PLAN when it cannot vouch.

    Cached: every file of a search has the same pattern.
    """
    try:
        tree, flags = _parse(pattern)
        walker = _Walker(flags)
        shape = walker.node(tree)
    except Exception:  # any surprise in regex's private parser: trust nothing
        return UNKNOWN_PLAN
    width = None if shape.examined == INF else int(shape.examined) + PEEK
    consumed = None if shape.consumed == INF else int(shape.consumed)
    behind = None if walker.behind == INF else int(walker.behind) + 1
    stops = "".join(chr(c) for c in ASCII if shape.counts[c] == 0)
    fence = None
    last = _final_character(tree, walker)
    finite = [
        (shape.counts[ord(c)] + (0 if c == last else 1), c)
        for c in _FENCE_ORDER
        if 0 < shape.counts[ord(c)] < INF
    ]
    if finite:
        n, c = min(finite, key=lambda nc: (nc[0], _FENCE_ORDER.index(nc[1])))
        fence = (c, int(n))
    literals, fold, lead = _literals(tree, walker)
    nodes = _walk(tree)
    restartable = not any(isinstance(node, core.Fuzzy) for node in nodes)
    full_fold = any(getattr(node, "case_flags", 0) & core.FULLCASE for node in nodes)
    tail = _tail(tree, walker) if restartable else None
    partial_safe = all(type(node).__name__ in _CONSUMING for node in nodes)
    return Plan(
        width,
        consumed,
        behind,
        stops,
        fence,
        literals,
        fold,
        lead,
        restartable,
        full_fold,
        tail,
        partial_safe,
    )


# Nodes that only consume (Plan.partial_safe), as `regex`'s parser names them.
_CONSUMING = {
    *("Sequence", "Branch", "Group", "Atomic", "GreedyRepeat", "PossessiveRepeat"),
    *("Character", "String", "Literal", "Any", "AnyAll", "AnyU", "Property", "Range"),
    *("SetUnion", "SetInter", "SetDiff", "SetSymDiff"),
}


_CLASS_NODES = ("Character", "Any", "AnyAll", "AnyU")


def _tail(tree: Any, walker: _Walker) -> tuple[str, str] | None:
    """Plan.tail: (head stops, tail ends) when the pattern is a sequence whose last item is
    a greedy (or possessive) repeat with no upper bound of one character class, else None."""
    node = tree
    while type(node).__name__ == "Group":
        node = node.subpattern
    if type(node).__name__ != "Sequence" or len(node.items) < 2:
        return None
    end = node.items[-1]
    if type(end).__name__ not in ("GreedyRepeat", "PossessiveRepeat") or end.max_count is not None:
        return None
    leaf = end.subpattern
    one_class = type(leaf).__name__ in _CLASS_NODES or isinstance(
        leaf, core.SetBase | core.Property | core.Range
    )
    if not one_class or getattr(leaf, "zerowidth", False) or leaf.max_width() != 1:
        return None
    behind, groups = walker.behind, dict(walker.groups)
    try:
        head = walker.node(core.Sequence(node.items[:-1]))
        repeated = walker.node(leaf)
    finally:
        walker.behind, walker.groups = behind, groups
    head_stops = "".join(chr(c) for c in ASCII if head.counts[c] == 0)
    tail_ends = "".join(chr(c) for c in ASCII if repeated.counts[c] == 0)
    return (head_stops, tail_ends) if head_stops and tail_ends else None


def _final_character(tree: Any, walker: _Walker) -> str | None:
    """c when every match that consumes the most c's a match can consume ends with that c
    (the pattern is a sequence whose last consuming item is the plain character c, after
    items that consume one c fewer), else None."""
    node = tree
    while type(node).__name__ == "Group":
        node = node.subpattern
    if type(node).__name__ != "Sequence":
        return None
    items = list(node.items)
    while items and isinstance(items[-1], core.ZeroWidthBase):
        items.pop()  # assertions after it only peek
    if len(items) < 2:
        return None
    end = items[-1]
    if type(end).__name__ != "Character" or not end.positive or end.case_flags or end.zerowidth:
        return None
    if end.value >= 128:
        return None
    behind = walker.behind
    try:
        before = walker.node(core.Sequence(items[:-1])).counts[end.value]
        total = walker.node(tree).counts[end.value]
    finally:
        walker.behind = behind
    return chr(end.value) if before == total - 1 else None


@dataclass(slots=True)
class _Shape:
    consumed: float  # most characters a match of the node spans
    examined: float  # most characters examined from its start (look-ahead included)
    counts: list[float]  # for each ASCII c, most characters c it consumes (look-arounds included)


def _zero() -> _Shape:
    return _Shape(0, 0, [0.0] * 128)


def _all(n: float) -> list[float]:
    return [n] * 128


class _Walker:
    """Computes a `_Shape` for each node of a `regex` parse tree, and the look-behind reach."""

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.behind: float = 0
        self.groups: dict[int, _Shape] = {}

    def node(self, node: Any) -> _Shape:
        kind = type(node).__name__
        method = getattr(self, "_" + kind, None)
        if method is None:
            if isinstance(node, core.ZeroWidthBase):
                self.behind = max(self.behind, 1)
                return _Shape(0, 1, _all(0))
            if isinstance(node, core.SetBase | core.Property | core.Range):
                return self._leaf(node)
            raise ValueError(f"unknown node {kind}")
        shape: _Shape = method(node)
        return shape

    # -- leaves ------------------------------------------------------------------------------

    def _members(self, node: Any) -> list[float]:
        """1 for each ASCII character the one-character node can consume, else 0."""
        case_flags = getattr(node, "case_flags", 0)
        if case_flags & core.FULLCASE:
            return _all(1)  # full case folding may consume several characters: assume any
        hits = _all(0)
        for c in ASCII:
            cases = _regex.get_all_cases(self.flags, c) if case_flags & core.IGNORECASE else [c]
            if any(node.matches(x) for x in cases):
                hits[c] = 1
        return hits

    def _leaf(self, node: Any) -> _Shape:
        if getattr(node, "zerowidth", False):
            raise ValueError("zero-width set")
        width = node.max_width()
        counts = self._members(node)
        return _Shape(width, width, [width if n else 0 for n in counts])

    _Character = _leaf

    def _String(self, node: Any) -> _Shape:
        width = node.max_width()
        counts = _all(0)
        for ch in node.characters:
            one = core.Character(ch, case_flags=node.case_flags)
            each = one.max_width()  # more than 1 only under full case folding
            for c, n in enumerate(self._members(one)):
                counts[c] += n * each
        return _Shape(width, width, counts)

    _Literal = _String

    def _Any(self, node: Any) -> _Shape:
        counts = _all(1)
        counts[10] = 0
        return _Shape(1, 1, counts)

    def _AnyAll(self, node: Any) -> _Shape:
        return _Shape(1, 1, _all(1))

    def _AnyU(self, node: Any) -> _Shape:
        counts = _all(1)
        for c in (10, 11, 12, 13):
            counts[c] = 0
        return _Shape(1, 1, counts)

    def _Grapheme(self, node: Any) -> _Shape:
        self.behind = INF  # cluster boundaries may look back across regional indicators
        return _Shape(INF, INF, _all(INF))

    # -- structure -----------------------------------------------------------------------------

    def _Sequence(self, node: Any) -> _Shape:
        total = _zero()
        for item in node.items:
            shape = self.node(item)
            total.examined = max(total.examined, total.consumed + shape.examined)
            total.consumed += shape.consumed
            total.counts = [a + b for a, b in zip(total.counts, shape.counts, strict=True)]
        total.examined = max(total.examined, total.consumed)
        return total

    def _Branch(self, node: Any) -> _Shape:
        shapes = [self.node(b) for b in node.branches]
        return _Shape(
            max(s.consumed for s in shapes),
            max(s.examined for s in shapes),
            [max(col) for col in zip(*(s.counts for s in shapes), strict=True)],
        )

    def _StringSet(self, node: Any) -> _Shape:
        raise ValueError("named lists are not analysed")

    def _GreedyRepeat(self, node: Any) -> _Shape:
        sub = self.node(node.subpattern)
        top = INF if node.max_count is None else node.max_count
        if top == 0:
            return _zero()

        def times(x: float, k: float = top) -> float:
            return 0 if x == 0 or k == 0 else x * k  # 0 * INF is 0 here, not NaN

        return _Shape(
            times(sub.consumed),
            max(times(sub.consumed, top - 1) + sub.examined, times(sub.consumed)),
            [times(n) for n in sub.counts],
        )

    _LazyRepeat = _GreedyRepeat
    _PossessiveRepeat = _GreedyRepeat

    def _Group(self, node: Any) -> _Shape:
        shape = self.node(node.subpattern)
        self.groups[node.group] = shape
        return shape

    def _Atomic(self, node: Any) -> _Shape:
        return self.node(node.subpattern)

    def _LookAround(self, node: Any) -> _Shape:
        sub = self.node(node.subpattern)
        if node.behind:
            # Nested or repeated look-behinds add up: only ever too large.
            self.behind += sub.examined + 1
            return _Shape(0, 1, _all(0))
        return _Shape(0, sub.examined, sub.counts)

    def _LookAroundConditional(self, node: Any) -> _Shape:
        test = self._LookAround(node)
        yes = self.node(node.yes_item)
        no = self.node(node.no_item) if node.no_item is not None else _zero()
        return _Shape(
            max(yes.consumed, no.consumed),
            max(test.examined, yes.examined, no.examined),
            [a + max(b, c) for a, b, c in zip(test.counts, yes.counts, no.counts, strict=True)],
        )

    def _Conditional(self, node: Any) -> _Shape:
        yes = self.node(node.yes_item)
        no = self.node(node.no_item) if node.no_item is not None else _zero()
        return _Shape(
            max(yes.consumed, no.consumed),
            max(yes.examined, no.examined),
            [max(a, b) for a, b in zip(yes.counts, no.counts, strict=True)],
        )

    def _RefGroup(self, node: Any) -> _Shape:
        group = self.groups.get(node.group)
        if group is None:  # a forward reference: nothing known
            return _Shape(INF, INF, _all(INF))
        counts = group.counts
        if node.case_flags:  # may match other cases than the group did
            counts = _all(group.consumed)
            counts[10] = group.counts[10]
        return _Shape(group.consumed, group.consumed, list(counts))

    def _Fuzzy(self, node: Any) -> _Shape:
        sub = self.node(node.subpattern)
        inserted, changed = _fuzzy_extra(node.constraints)
        changed = min(changed, inserted + sub.consumed)  # substitutions replace consumed ones
        return _Shape(
            sub.consumed + inserted,  # a substitution replaces one character, a deletion none
            sub.examined + inserted,
            # An inserted or substituted character may be any character, newlines included.
            [n + changed for n in sub.counts],
        )

    def _Prune(self, node: Any) -> _Shape:
        return _zero()

    def _Failure(self, node: Any) -> _Shape:
        return _zero()


def _fuzzy_extra(constraints: dict[str, Any]) -> tuple[float, float]:
    """(most insertions, most insertions plus substitutions) a fuzzy item allows: the extra
    characters it may consume, and how many of those it consumes may be any character.

    `constraints` is `regex`'s: `e`, `i`, `s` map to (min, max or None), `cost` to the
    weights `i`, `s` and their `max` (None): `{e<=1}`, `{i<=1,d<=1}`, `{2i+1s<=4}`."""

    def most(kind: str) -> float:
        top = constraints.get(kind, (0, None))[1]
        return INF if top is None else float(top)

    cost = constraints.get("cost", {})
    budget = INF if cost.get("max") is None else float(cost["max"])

    def affordable(kind: str) -> float:
        weight = cost.get(kind, 1)
        return budget / weight if weight > 0 else INF

    errors = most("e")
    inserted = min(errors, most("i"), affordable("i"))
    substituted = min(errors, most("s"), affordable("s"))
    cheapest = min(cost.get("i", 1), cost.get("s", 1))
    either = budget / cheapest if cheapest > 0 else INF
    changed = min(errors, inserted + substituted, either)
    return _whole(inserted), _whole(changed)


def _whole(x: float) -> float:
    """Weighted costs can leave a fraction of an edit: only whole ones happen."""
    return x if x == INF else math.floor(x)


# -- required literals --------------------------------------------------------------------------


def _literals(tree: Any, walker: _Walker) -> tuple[tuple[str, ...], bool, int | None]:
    """Strings one of which every match contains, whether they compare case-insensitively,
    and the most characters a match consumes before that string (None: unbounded)."""
    found = _Required(walker).node(tree)
    if not found:
        return (), False, None
    alternatives, fold, lead = found
    if not alternatives or any(not s for s in alternatives):
        return (), False, None
    return tuple(sorted(set(alternatives))), fold, None if lead == INF else int(lead)


class _Required:
    """The required literals of a node: (alternatives, fold, lead) or None (see `_literals`)."""

    def __init__(self, walker: _Walker) -> None:
        self.walker = walker

    def consumed(self, node: Any) -> float:
        behind = self.walker.behind  # measuring again must not count look-behinds twice
        try:
            return self.walker.node(node).consumed
        finally:
            self.walker.behind = behind

    def node(self, node: Any) -> tuple[list[str], bool, float] | None:
        kind = type(node).__name__
        if kind in ("String", "Literal"):
            text = "".join(chr(c) for c in node.characters)
            return [text], bool(node.case_flags), 0
        if kind == "Character":
            if not node.positive or node.zerowidth:
                return None
            return [chr(node.value)], bool(node.case_flags), 0
        if kind == "Sequence":
            best: tuple[list[str], bool, float] | None = None
            before: float = 0
            for item in node.items:
                got = self.node(item)
                if got is not None:
                    got = (got[0], got[1], before + got[2])
                    if best is None or _better(got, best):
                        best = got
                before += self.consumed(item)
            return best
        if kind == "Branch":
            alternatives: list[str] = []
            fold = False
            lead: float = 0
            for branch in node.branches:
                got = self.node(branch)
                if got is None:
                    return None
                alternatives += got[0]
                fold = fold or got[1]
                lead = max(lead, got[2])
            return (alternatives, fold, lead) if len(alternatives) <= _MAX_LITERALS else None
        if kind in ("GreedyRepeat", "LazyRepeat", "PossessiveRepeat"):
            return self.node(node.subpattern) if node.min_count >= 1 else None
        if kind in ("Group", "Atomic"):
            return self.node(node.subpattern)
        return None


def _better(a: tuple[list[str], bool, float], b: tuple[list[str], bool, float]) -> bool:
    """Is `a` a better filter than `b`: a longer shortest string, then a bounded lead, then
    fewer alternatives?"""

    def key(x: tuple[list[str], bool, float]) -> tuple[int, bool, int]:
        return (min(map(len, x[0])), x[2] < INF, -len(x[0]))

    return key(a) > key(b)


# -- an RE2 pattern for pure-ASCII text ---------------------------------------------------------

_RE2_MAX_REPEAT = 1000  # RE2's own limit on {m,n}


@functools.lru_cache(maxsize=256)
def re2_superset(pattern: regex.Pattern[str]) -> bytes | None:
    """An RE2 pattern (bytes) matching, on pure-ASCII text, every string `pattern` can match
    there, and maybe more: look-arounds and anchors are dropped (they only restrict), atomic
    and possessive forms become plain groups, character classes become their ASCII members.
    None when some construct has no such translation (back-references, fuzzy matching...).

    On pure-ASCII text every match of `pattern` starts inside a match of it, or at a match's
    start, as RE2 reports them left to right: a filter for patterns without literals.
    """
    try:
        tree, flags = _parse(pattern)
        return _Re2(flags).node(tree)
    except Exception:  # anything unforeseen: no filter, which is exact too
        return None


class _Re2:
    def __init__(self, flags: int) -> None:
        self.walker = _Walker(flags)

    def node(self, node: Any) -> bytes:
        kind = type(node).__name__
        if kind == "Sequence":
            return b"".join(self.node(item) for item in node.items)
        if kind == "Branch":
            return b"(?:" + b"|".join(self.node(b) for b in node.branches) + b")"
        if kind in ("String", "Literal"):
            return b"".join(
                self.chars(core.Character(c, case_flags=node.case_flags)) for c in node.characters
            )
        if kind in ("Group", "Atomic"):
            return b"(?:" + self.node(node.subpattern) + b")"
        if kind in ("GreedyRepeat", "LazyRepeat", "PossessiveRepeat"):
            low = node.min_count
            high = node.max_count
            if low > _RE2_MAX_REPEAT:
                raise ValueError("repeat too long for RE2")
            top = b"" if high is None or high > _RE2_MAX_REPEAT else str(high).encode()
            return b"(?:" + self.node(node.subpattern) + b"){%d,%s}" % (low, top)
        if kind in ("LookAround", "Prune", "Failure") or isinstance(node, core.ZeroWidthBase):
            if kind in ("SearchAnchor", "Keep", "Skip"):
                raise ValueError(kind)
            return b""  # only restricts what matches (Failure: the superset is fine too)
        if kind in ("Conditional", "LookAroundConditional"):
            yes = self.node(node.yes_item)
            no = self.node(node.no_item) if node.no_item is not None else b""
            return b"(?:" + yes + b"|" + no + b")"
        if kind == "Any":
            return b"[^\\n\\x80-\\xff]"
        if kind in ("AnyAll", "AnyU"):
            return b"[\\x00-\\x7f]"
        if kind == "Character" or isinstance(node, core.SetBase | core.Property | core.Range):
            if getattr(node, "zerowidth", False):
                raise ValueError("zero-width set")
            return self.chars(node)
        raise ValueError(f"no RE2 form for {kind}")

    def chars(self, node: Any) -> bytes:
        """The ASCII characters a one-character node matches, as an RE2 class."""
        if getattr(node, "case_flags", 0) & core.FULLCASE:
            raise ValueError("full case folding")  # one character may match several
        members = self.walker._members(node)
        inside = b"".join(b"\\x%02x" % c for c in range(128) if members[c])
        return b"[" + inside + b"]" if inside else b"[^\\x00-\\xff]"
