"""The scanner gives the matches `regex.finditer` gives on the whole decoded file (docs/)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import regex
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gistscan import scanner as scanner_module
from gistscan.config import compile_pattern
from gistscan.errors import UsageError
from gistscan.fair import FairPool
from gistscan.scanner import FileScanner, Hit, Scanner, ScanTimeout, count_newlines, plan
from tests.fake_github import minified_bundle

T = TypeVar("T")


def oracle(pattern: regex.Pattern[str], data: bytes) -> list[tuple[object, ...]] | None:
    """docs/matching.md written out for the whole file at once; None for a binary file."""
    if b"\0" in data[:8192]:
        return None
    text = data.decode("utf-8-sig", errors="replace")
    hits = []
    # Newlines counted once, each line found once: a file of one long line stays linear.
    counted, lines = 0, 1
    line_start, line_end = 0, -1
    for m in pattern.finditer(text):
        start, end = m.span()
        if start == end:
            continue
        lines += text.count("\n", counted, start)
        counted = start
        if start > line_end:
            line_start = text.rfind("\n", 0, start) + 1
            found = text.find("\n", start)
            line_end = len(text) if found < 0 else found
            whole = text[line_start:line_end].removesuffix("\r")
        line = whole
        if len(whole) > 400:
            cut = max(0, start - line_start - 100)
            line = whole[cut : cut + 400]
        hits.append((start, end, lines, start - line_start + 1, line, m.group()))
    return hits


def scan(
    pattern: regex.Pattern[str],
    data: bytes,
    chunk: int,
    max_carry: int = 1 << 20,
    *,
    block: int = 1,
    prefilter: bool = True,
) -> tuple[list[tuple[object, ...]] | None, bool]:
    """Feed `data` in `chunk`-byte pieces (each scanned as it comes unless `block` gathers
    them); return (hits as oracle tuples, overflowed)."""
    fs = FileScanner(pattern, max_carry=max_carry, block=block, prefilter=prefilter)
    hits = []
    for i in range(0, len(data), chunk):
        hits += fs.feed(data[i : i + chunk])
    hits += fs.close()
    if fs.binary:
        assert hits == []
        return None, fs.overflowed
    return [(h.start, h.end, h.line_number, h.column, h.line, h.text) for h in hits], fs.overflowed


def chunk_sizes(data: bytes, needle: int = 3) -> list[int]:
    return sorted(
        {1, 2, 3, max(1, needle - 1), needle, needle + 1, 7, 64, 4096, 65536, max(1, len(data))}
    )


def assert_exact(pattern: str, data: bytes, **kw: object) -> None:
    compiled = compile_pattern(pattern, **kw)  # type: ignore[arg-type]
    expected = oracle(compiled, data)
    for chunk in chunk_sizes(data, len(pattern)):
        got, overflowed = scan(compiled, data, chunk)
        assert not overflowed
        assert got == expected, f"pattern {pattern!r}, chunk {chunk}"


def compiled_or_rejected(pattern: str, ignore_case: bool = False) -> regex.Pattern[str]:
    """The pattern compiled as the CLI compiles it; a generated pattern it refuses is
    rejected as an example (hypothesis draws another)."""
    try:
        return compile_pattern(pattern, ignore_case=ignore_case)
    except UsageError:
        assume(False)
        raise


PATTERNS = [
    r"import requests",
    r"foo",
    r"a+",
    r"a*",
    r"x?",
    r"\bab\b",
    r"^ab",
    r"ab$",
    r"^$",
    r"\w+@\w+\.com",
    r"[A-Z][a-z]+[0-9]{3}",
    r"a\s+b",
    r"a[^x]*b",
    r"(?s)a.*b",
    r"a.*b",
    r"(?<=a)b",
    r"(?<!a)b",
    r"b(?=a)",
    r"b(?!a+c)",
    r"\Aab",
    r"ab\Z",
    r"(ab)+",
    r"(a)\1",
    r"abcd|b",
    r"\s\b",
    r"é+",
    r"\n",
    r"a\nb",
    r"\p{L}+",
    r"[[:digit:]]+",
    r"(?:ab){e<=1}",
    r"password|secret|token",
    r"(?i)ab",
    r"(?m:^)a",
    r".{3}",
    r"\r",
    r"a\s*=\s*\S+",
    r"(ab|x)\s+[^a]+",
    r"b\w*\s[^\n]*",
]

ALPHABET = "ab \nx@.cAZ01é\r€"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_fixed_texts_every_chunk_size(pattern: str) -> None:
    """Hand-made texts with boundaries everywhere give the whole-file answer."""
    texts = [
        "",
        "ab",
        "a b\nab\nxab ab\n\nb a ab\r\n" * 5,
        "import requests\nfrom x import requests\n  import   requests",
        "bob@example.com alice@x.com\nZed123 Abc9999",
        "aaaa\n\naab\na   \n\n  b" + "ab" * 50,
        "é€éé\nàb" * 7,
        "ab",
        "\nab\n",
    ]
    for text in texts:
        assert_exact(pattern, text.encode())


def test_long_lines_are_cut_around_the_match() -> None:
    """A match in a 5,000-character line reports 400 characters starting 100 before it."""
    text = ("x" * 3000 + "NEEDLE" + "y" * 2000 + "\nshort NEEDLE line\n").encode()
    compiled = compile_pattern("NEEDLE")
    for chunk in (1, 7, 100, 401, 4096, len(text)):
        got, _ = scan(compiled, text, chunk)
        assert got is not None
        assert got[0][2:5] == (1, 3001, "x" * 100 + "NEEDLE" + "y" * 294)
        assert got[1][2:5] == (2, 7, "short NEEDLE line")


def test_match_near_end_of_long_line() -> None:
    """A cut line that runs into the line's end is shorter, never starting earlier."""
    text = ("x" * 1000 + "END").encode()
    got, _ = scan(compile_pattern("END"), text, 64)
    assert got == [(1000, 1003, 1, 1001, "x" * 100 + "END", "END")]


def test_utf8_split_across_chunks_and_bom() -> None:
    """A multi-byte character split over pieces decodes whole; a leading BOM is dropped."""
    data = "\ufeffé€😀 x😀y\n".encode()
    for chunk in range(1, 8):
        got, _ = scan(compile_pattern("😀"), data, chunk)
        assert got == [(2, 3, 1, 3, "é€😀 x😀y", "😀"), (5, 6, 1, 6, "é€😀 x😀y", "😀")]


def test_invalid_utf8_is_replaced_like_the_whole_file() -> None:
    """Invalid bytes become U+FFFD exactly as a whole-file decode makes them."""
    data = b"ab\xff\xfecd\xe2\x82 ok \xf0\x9f\x98\n\xc3"
    assert_exact("\ufffd", data)
    assert_exact("ok", data)


def test_binary_file_is_skipped() -> None:
    """A NUL in the first 8,192 bytes makes the file binary: no hits."""
    fs = FileScanner(compile_pattern("a"))
    assert fs.feed(b"a" * 100 + b"\0") == []
    assert fs.close() == []
    assert fs.binary is True
    fs = FileScanner(compile_pattern("a"))
    hits = fs.feed(b"b" * 8192 + b"\0a")
    hits += fs.close()
    assert fs.binary is False
    assert [h.text for h in hits] == ["a"]


def test_plans() -> None:
    """The analysis finds bounded, line-local and unknown patterns."""
    assert plan(compile_pattern("import requests")).width is not None
    assert plan(compile_pattern(r"\w+@\w+\.com")).line_local
    assert plan(compile_pattern(r"\w+@\w+\.com")).width is None
    assert not plan(compile_pattern(r"a\s+b")).line_local
    assert plan(compile_pattern(r"a\s+b")).width is None
    assert plan(compile_pattern(r"\p{L}")).width is not None
    assert plan(compile_pattern(r"(?:ab){e<=1}")).width is not None
    assert plan(compile_pattern(r"[[:alpha:]]")).width is not None
    assert not plan(compile_pattern(r"[^x]")).line_local
    assert not plan(compile_pattern(r"(?s).")).line_local
    assert plan(compile_pattern(r".")).line_local


def test_carry_is_bounded_and_overflow_flagged() -> None:
    """A pattern needing the whole file overflows a small carry and says so; memory is bounded."""
    compiled = compile_pattern(r"a[\s\S]*b")
    scanner = Scanner(compiled, max_carry=1000)
    peak = 0
    for _ in range(500):
        scanner.feed("a" + "x" * 99)
        peak = max(peak, len(scanner._buf))
    scanner.close()
    assert scanner.overflowed
    assert peak <= 1000 + 100 + 402


def test_bounded_pattern_keeps_little_carry() -> None:
    """A literal on a single huge line keeps only a small window, exactly."""
    compiled = compile_pattern("needle")
    scanner = Scanner(compiled, max_carry=1000)
    hits = []
    for i in range(2000):
        hits += scanner.feed("x" * 97 + ("needle" if i % 10 == 0 else "yyyyyy"))
        assert len(scanner._buf) < 700
    hits += scanner.close()
    assert not scanner.overflowed
    assert len(hits) == 200
    assert hits[1].column == 10 * 103 + 98


def test_regex_timeout_is_a_per_file_budget() -> None:
    """A catastrophic pattern raises ScanTimeout once its budget is spent, over chunks."""
    compiled = compile_pattern(r"(a|aa)+$")
    fs = FileScanner(compiled, timeout=0.2)
    with pytest.raises(ScanTimeout):
        for _ in range(100):
            fs.feed(b"a" * 40 + b"!\n")
        fs.close()


texts = st.text(alphabet=ALPHABET, max_size=300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.sampled_from(PATTERNS),
    text=texts,
    chunk=st.integers(min_value=1, max_value=80),
    ignore_case=st.booleans(),
)
@example(pattern=r"\s\b", text="a b", chunk=2, ignore_case=False)
def test_property_same_as_whole_text(
    pattern: str, text: str, chunk: int, ignore_case: bool
) -> None:
    """For random texts, chunk sizes and patterns, chunked hits equal whole-text finditer."""
    compiled = compile_pattern(pattern, ignore_case=ignore_case)
    data = text.encode()
    got, overflowed = scan(compiled, data, chunk)
    assert not overflowed
    assert got == oracle(compiled, data)


# Patterns built from pieces: literals, classes, anchors, repeats, groups, look-arounds.
_atoms = st.sampled_from(
    [
        "a",
        "b",
        "x",
        "é",
        r"\n",
        r"\s",
        r"\w",
        r"\d",
        ".",
        "[ab]",
        "[^a]",
        r"\b",
        "^",
        "$",
        r"\.",
        "@",
    ]
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, children).map("".join),
        st.tuples(children, children).map(lambda t: f"{t[0]}|{t[1]}"),
        st.tuples(children, st.sampled_from(["*", "+", "?", "{1,3}", "*?", "+?", "{2}"])).map(
            lambda t: f"(?:{t[0]}){t[1]}"
        ),
        children.map(lambda c: f"({c})"),
        children.map(lambda c: f"(?={c})"),
        children.map(lambda c: f"(?!{c})"),
    )


random_patterns = st.recursive(_atoms, _combine, max_leaves=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=random_patterns,
    text=st.text(alphabet="ab x\né.@1", max_size=200),
    chunk=st.integers(min_value=1, max_value=40),
)
def test_property_random_patterns(pattern: str, text: str, chunk: int) -> None:
    """Random patterns (look-arounds, repeats, newline-crossing) match as on the whole text."""
    compiled = compiled_or_rejected(pattern)
    data = text.encode()
    got, overflowed = scan(compiled, data, chunk)
    assert not overflowed
    assert got == oracle(compiled, data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=random_patterns,
    text=st.text(alphabet="ab x\né.@1", max_size=300),
    chunk=st.integers(min_value=1, max_value=40),
    max_carry=st.integers(min_value=8, max_value=64),
)
# regex's partial search gave a complete match past a live attempt (found by a fuzzer)
@example(
    pattern=r"\s*=\ba[^x]*",
    text="a\n xé=é;éa \n=é=\n=aba\tx \t b\n\tx=a\ta1xx=éx11abé=\t;xbx\n; ;\t\n"
    "= = x\tax\t=b;=béba\t1\n",
    chunk=17,
    max_carry=8,
)
def test_property_a_small_carry_is_exact_or_flagged(
    pattern: str, text: str, chunk: int, max_carry: int
) -> None:
    """With a carry of a few dozen characters, random patterns either overflow (flagged) or
    give the whole-text answer: the text let go before max_carry is reached (the plan's
    bounds, the partial-search sweep of failed attempts) never held a live attempt."""
    compiled = compiled_or_rejected(pattern)
    data = text.encode()
    got, overflowed = scan(compiled, data, chunk, max_carry=max_carry)
    if not overflowed:
        assert got == oracle(compiled, data)


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(alphabet="ab\nx", min_size=0, max_size=3000),
    chunk=st.integers(min_value=1, max_value=300),
    pattern=st.sampled_from([r"ab", r"a+b", r"^a.*b$", r"b\n+a", r"(?<=x)a"]),
)
def test_property_small_carry_is_exact_or_flagged(text: str, chunk: int, pattern: str) -> None:
    """With a tiny max_carry the answer is still exact unless the file says it overflowed."""
    compiled = compile_pattern(pattern)
    data = text.encode()
    got, overflowed = scan(compiled, data, chunk, max_carry=64)
    if not overflowed:
        assert got == oracle(compiled, data)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=400),
    chunk=st.integers(min_value=1, max_value=50),
    pattern=st.sampled_from(["\ufffd", "a", r"\w+", "."]),
)
def test_property_random_bytes_decode_like_whole_file(
    data: bytes, chunk: int, pattern: str
) -> None:
    """Arbitrary bytes (invalid UTF-8, NULs, BOMs) decode and match as the whole file does."""
    compiled = compile_pattern(pattern)
    got, _ = scan(compiled, data, chunk)
    assert got == oracle(compiled, data)


def test_wide_lookbehind_keeps_its_context() -> None:
    """A look-behind wider than a line's cut still sees its whole context across chunks."""
    data = ("a" * 600 + "b" + "c" * 50 + "a" * 599 + "b").encode()
    assert_exact(r"(?<=a{600})b", data)
    compiled = compile_pattern(r"(?<=a{600})b")
    got, _ = scan(compiled, data, 64)
    assert got is not None and [g[0] for g in got] == [600]


# -- scanner v2: regex's own syntax, long lines, tiny chunks, the prefilter, case folding ----

# Text with the characters that make case folding and decoding hard: the Kelvin sign (folds
# to k), the long s (to s), sharp s (to ss under full folding), astral, U+FFFD, quotes.
WIDE_ALPHABET = "ab \nx@.cAZ01é\r€kK\u212as\u017fßS\"':;_😀\ufffd"

REGEX_ONLY = [
    r"(?<key>ab[0-9A-Z]{2})",
    r"\p{Lu}{2}[0-9]",
    r"\p{L}+",
    r"[[:upper:]]{2}",
    r"[[:digit:]]+",
    r"(?:ab){e<=1}",
    r"(?:abc){i<=1}",
    r"(?:AKIA[0-9A-Z]{2}){e<=1}",
    r"(?>a+)b",
    r"a++b",
    r"(?i:k)s",
    r"(?i)\u212a",
    "(?i)\u017f",
    r"(?fi)ss",
    r"(?fi)ß",
    r"(?i)straße",
    r"(?a)\w+",
    r"\X",
    r"(?w)\bab\b",
    r"(?p)a|ab",
    r"\m\w+\M",
    r"(?|(a)|(b))\1",
    r"(a)?(?(1)b|c)",
    r"(?<=\p{L})\d",
    r"(?<![[:alpha:]])ab",
    r"\w+@\w+\.com",
    r"apiKey\d+",
    r'"token":\s*"[^"]*"',
    r"\w+",
    r"SECRET_\d+",
    r"password|secret|token",
    r"(?i)password|secret|K",
    r"(?i)import requests",
    r"[A-Z][a-z]+[0-9]{3}",
    r"a\s+b",
    r"ab|b\n|\nc",
    "\ufffd",
    r"😀+",
]


def scan_scanner_v2(
    compiled: regex.Pattern[str],
    data: bytes,
    pieces: list[int],
    *,
    block: int,
    prefilter: bool,
    max_carry: int = 1 << 20,
) -> tuple[list[tuple[object, ...]] | None, bool]:
    """Feed `data` in pieces whose sizes cycle through `pieces`; check settled_lines after
    every piece (a match on a settled line has been returned); return (hits, overflowed)."""
    fs = FileScanner(compiled, max_carry=max_carry, block=block, prefilter=prefilter)
    expected = oracle(compiled, data) or []
    hits: list[Hit] = []
    settled_upto = 0  # expected[:settled_upto] lie on settled lines: all must be returned
    i = 0
    k = 0
    while i < len(data):
        n = pieces[k % len(pieces)]
        hits += fs.feed(data[i : i + n])
        i += n
        k += 1
        settled = fs.settled_lines
        while settled_upto < len(expected) and expected[settled_upto][2] <= settled:  # type: ignore[operator]
            settled_upto += 1
        if not fs.overflowed:
            assert len(hits) >= settled_upto
            assert hits[settled_upto - 1 : settled_upto] == [
                Hit(*e)
                for e in expected[settled_upto - 1 : settled_upto]  # type: ignore[misc]
            ]
    hits += fs.close()
    if fs.binary:
        return None, fs.overflowed
    assert fs.settled_lines == data.decode("utf-8", "replace").count("\n") + 1
    return [(h.start, h.end, h.line_number, h.column, h.line, h.text) for h in hits], fs.overflowed


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.sampled_from(REGEX_ONLY + PATTERNS),
    text=st.text(alphabet=WIDE_ALPHABET, max_size=300),
    pieces=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=4),
    block=st.sampled_from([1, 5, 64, 65536]),
    prefilter=st.booleans(),
    ignore_case=st.booleans(),
)
@example(pattern="(?i)\u017f", text="s S", pieces=[1], block=1, prefilter=True, ignore_case=False)
@example(pattern=r"(?i)\u212a", text="k K", pieces=[2], block=1, prefilter=True, ignore_case=False)
@example(pattern=r"(?:ab){e<=1}", text="a b\nab\nxab ab", pieces=[1], block=1, prefilter=True,
         ignore_case=False)  # fmt: skip
def test_property_regex_syntax_tiny_chunks_prefilter(
    pattern: str, text: str, pieces: list[int], block: int, prefilter: bool, ignore_case: bool
) -> None:
    """regex-only syntax, pieces of 1-7 bytes, blocks of any size, the prefilter on and off,
    -i and non-ASCII text: the whole-text answer, never an overflow."""
    compiled = compile_pattern(pattern, ignore_case=ignore_case)
    data = text.encode()
    got, overflowed = scan_scanner_v2(compiled, data, pieces, block=block, prefilter=prefilter)
    assert not overflowed
    assert got == oracle(compiled, data)


# Tokens of a minified bundle: words, numbers, keys, quotes, separators, non-ASCII.
_TOKENS = st.sampled_from(
    ["apiKey", "7", "42", ";", " ", "SECRET_", '"token": "', '"', "x", "é", "K", "\u017f", ","]
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.sampled_from(
        [r"\w+", r"apiKey\d+", r'"token":\s*"[^"]*"', r"SECRET_\d+", r"(?i)apikey\d", r"\d+;"]
    ),
    unit=st.lists(_TOKENS, min_size=1, max_size=12),
    repeat=st.integers(min_value=1, max_value=4000),
    pieces=st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=3),
    block=st.sampled_from([1, 4096, 65536]),
    prefilter=st.booleans(),
)
def test_property_one_long_line_is_exact_without_overflow(
    pattern: str, unit: list[str], repeat: int, pieces: list[int], block: int, prefilter: bool
) -> None:
    """One line of up to ~100 KB, with separators the pattern cannot cross, scanned with a
    max_carry of 1,000: the whole-text answer and no carry_overflow."""
    body = ";".join(unit) + ";"  # a separator every few tokens: real attempts stay short
    data = (body * repeat).encode()
    compiled = compile_pattern(pattern)
    got, overflowed = scan_scanner_v2(
        compiled, data, pieces, block=block, prefilter=prefilter, max_carry=1000
    )
    assert not overflowed
    assert got == oracle(compiled, data)


@pytest.mark.parametrize("pattern", [r"\w+", r"apiKey\d+", r'"token":\s*"[^"]*"', r"SECRET_\d+"])
def test_a_three_megabyte_line_is_exact_without_overflow(pattern: str) -> None:
    """Case 08 at full size: one 3 MB line, default settings and a 2,000-character max_carry,
    gives the whole-text matches with no carry_overflow."""
    data = minified_bundle(3_000_000)
    compiled = compile_pattern(pattern)
    expected = oracle(compiled, data)
    assert expected
    for max_carry, chunk in ((1 << 20, 65536), (2000, 7000)):
        fs = FileScanner(compiled, max_carry=max_carry, timeout=2.0)
        hits: list[Hit] = []
        for i in range(0, len(data), chunk):
            hits += fs.feed(data[i : i + chunk])
        hits += fs.close()
        assert not fs.overflowed
        assert [(h.start, h.end, h.line_number, h.column, h.line, h.text) for h in hits] == expected


def test_case_07_regex_only_syntax_keeps_a_small_carry() -> None:
    """Case 07: a 120-line log with 3 keys; each regex-only spelling of the 20-character
    pattern finds the 3 keys with a 2,000-character max_carry and no overflow."""
    lines = [f"line {i}: plain text here, nothing to see" for i in range(120)]
    for i in (0, 40, 80):
        lines[i] += " AWS_KEY=AKIAABCDEFGHIJKLMNOP"
    data = ("\n".join(lines) + "\n").encode()
    for pattern in [
        r"(?<key>AKIA[0-9A-Z]{16})",
        r"\p{Lu}{4}[0-9A-Z]{16}",
        r"[[:upper:]]{4}[0-9A-Z]{16}",
        r"(?:AKIA[0-9A-Z]{16}){e<=1}",
        r"(?P<key>AKIA[0-9A-Z]{16})",
    ]:
        compiled = compile_pattern(pattern)
        for pieces in ([1], [7], [64], [4096]):
            got, overflowed = scan_scanner_v2(
                compiled, data, pieces, block=1, prefilter=True, max_carry=2000
            )
            assert not overflowed, pattern
            assert got == oracle(compiled, data), pattern
            assert got is not None
            # Fuzzy matching takes the `=` before the key as an insertion, as finditer does.
            assert [(g[2], g[5][-20:]) for g in got] == [
                (n + 1, "AKIAABCDEFGHIJKLMNOP") for n in (0, 40, 80)
            ], pattern


def test_settled_lines_grows_and_covers_the_file_after_close() -> None:
    """settled_lines is 0 before anything is known, grows as lines are decided, and counts
    every line after close (a lower bound: matches on settled lines were all returned)."""
    fs = FileScanner(compile_pattern("needle"), block=1)
    assert fs.settled_lines == 0
    seen = [fs.settled_lines]
    for i in range(3000):
        fs.feed(f"line {i} {'needle' if i % 7 == 0 else 'hay'}\n".encode())
        seen.append(fs.settled_lines)
    assert seen == sorted(seen)
    assert seen[-1] >= 2990  # all but the lines a live attempt may still examine
    fs.close()
    assert fs.settled_lines == 3001


def test_settled_lines_waits_for_a_match_whose_line_is_incomplete() -> None:
    """A decided match whose line has not ended is not returned yet: its line is not settled."""
    fs = FileScanner(compile_pattern("needle"), block=1)
    assert fs.feed(b"a\n" * 8192) == []
    settled = fs.settled_lines
    hits = fs.feed(b"b needle and more")
    assert hits == [] and fs.settled_lines <= 8192
    assert settled <= fs.settled_lines
    hits = fs.close()
    assert [(h.line_number, h.line) for h in hits] == [(8193, "b needle and more")]


def test_tiny_pieces_of_a_five_megabyte_file_stay_exact_and_within_budget() -> None:
    """7-byte pieces of a 5 MiB file cost what big ones cost: exact, no regex_timeout at the
    default budget."""
    text = "".join(f"{i} some text here and an import requests\n" for i in range(120_000))
    data = text.encode()[: 5 * 1024 * 1024]
    compiled = compile_pattern("import requests")
    fs = FileScanner(compiled, timeout=2.0)
    hits: list[Hit] = []
    for i in range(0, len(data), 7):
        hits += fs.feed(data[i : i + 7])
    hits += fs.close()
    assert [(h.start, h.line_number) for h in hits] == [
        (e[0], e[2]) for e in oracle(compiled, data) or []
    ]


def test_budget_grows_with_the_bytes_read() -> None:
    """A linear pattern on a big file never runs out of a budget far smaller than its total
    matching time: each MiB read adds one budget."""
    compiled = compile_pattern(r"(?:\w+\s+){3}\d+")  # slow but linear
    line = b"alpha beta gamma delta epsilon zeta eta theta iota kappa lambda 12\n"
    mib = line * (1024 * 1024 // len(line))

    def cpu_to_scan(copies: int, timeout: float | None) -> float:
        started = time.thread_time()
        fs = FileScanner(compiled, timeout=timeout)
        for _ in range(copies):
            fs.feed(mib)
        fs.close()
        return time.thread_time() - started

    budget = 3 * cpu_to_scan(1, None)  # three times what one MiB needs
    assert cpu_to_scan(8, budget) > budget  # eight MiB took more than one budget, and passed


def test_catastrophic_pattern_stops_once_its_budget_is_spent() -> None:
    """(a|aa)+$ on lines of a's then b runs out of its budget and raises ScanTimeout."""
    compiled = compile_pattern(r"(a|aa)+$")
    fs = FileScanner(compiled, timeout=0.3, block=1)
    with pytest.raises(ScanTimeout):
        fs.feed((b"a" * 40 + b"b\n") * 5)
        fs.close()


def cpu_alone(compiled: regex.Pattern[str], data: bytes) -> float:
    """This thread's CPU seconds to scan `data` as one file, with no budget."""
    started = time.thread_time()
    alone = FileScanner(compiled)
    alone.feed(data)
    alone.close()
    return time.thread_time() - started


def test_the_budget_is_this_threads_cpu_time() -> None:
    """Eight files that each need a good part of their budget pass when matched on eight
    threads at once (on fewer cores): another thread's CPU time is not charged to a file,
    though `regex`'s own timeout counts the whole process's (eight times as fast here). The
    budget is 6 times what one file needs alone: eight threads sharing few cores each spend
    up to about 3 times a lone thread's CPU time on the same work (measured on a 2-core VM),
    and the process as a whole spends 8 times a file's work."""
    compiled = compile_pattern(r"(?:a|aa)+$")
    data = (b"a" * 22 + b"b\n") * 120
    budget = cpu_alone(compiled, data) * 6

    def run(_: int) -> int:
        fs = FileScanner(compiled, timeout=budget)
        return len(fs.feed(data) + fs.close())

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(run, range(8))) == [0] * 8


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        ("(?r)needle", "(?r)"),
        ("needle(?r)", "(?r)"),
        ("(?R)", "(?R)"),
        ("(a)(?1)", "(?1)"),
        ("(?<n>a)(?&n)", "(?&name)"),
        (r"\Gab", r"\G"),
        (r"a\Kb", r"\K"),
        ("a(*SKIP)(*FAIL)|b", "(*SKIP)"),
        ("(?b)(?:ab){e<=1}", "(?b)"),
        ("(?e)(?:ab){e<=1}", "(?e)"),
    ],
)
def test_unsupported_constructs_are_refused_by_name(pattern: str, construct: str) -> None:
    """Constructs a streaming search cannot honour are refused with a one-line message
    naming them."""
    with pytest.raises(UsageError) as caught:
        compile_pattern(pattern)
    assert construct in caught.value.message
    assert "\n" not in caught.value.message


def test_prefilter_literals_and_stops_of_the_issue_patterns() -> None:
    """The analysis finds what the prefilter and the long-line horizons need."""
    assert plan(compile_pattern("import requests")).literals == ("import requests",)
    alternation = plan(compile_pattern("password|secret|token|api_key|private_key"))
    assert set(alternation.literals) == {"password", "secret", "token", "api_key", "private_key"}
    email = plan(compile_pattern(r"\w+@\w+\.com"))
    assert email.literals and email.line_local and ";" in email.stops
    assert plan(compile_pattern(r"[A-Z][a-z]+[0-9]{3}")).literals == ()
    token = plan(compile_pattern(r'"token":\s*"[^"]*"'))
    assert token.fence == ('"', 4) and not token.line_local  # ends at its fourth quote
    assert plan(compile_pattern(r"\w+")).stops.count(";") == 1
    assert plan(compile_pattern("(?i)import requests")).fold


_LITERAL_TOKENS = st.sampled_from(
    [
        *["import", " ", "requests", "IMPORT", "Requests", "q", "Q", "\n", "import requests"],
        *["é", "ImPoRt ReQuEsTs", "reqQuests", "\u212a", "s", "\u017f", "xyz" * 40],
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tokens=st.lists(_LITERAL_TOKENS, max_size=400),
    pattern=st.sampled_from(["import requests", "q", "requests|import", r"\w*q\w*", "ks"]),
    ignore_case=st.booleans(),
    block=st.sampled_from([1, 50, 700, 65536]),
    piece=st.integers(min_value=1, max_value=3000),
)
def test_property_literal_search_in_raw_blocks(
    tokens: list[str], pattern: str, ignore_case: bool, block: int, piece: int
) -> None:
    """Blocks of raw bytes skipped by the literal search (rare byte, case variants, the
    Kelvin sign and the long s next to ASCII) lose no match."""
    data = "".join(tokens).encode()
    compiled = compile_pattern(pattern, ignore_case=ignore_case)
    got, overflowed = scan_scanner_v2(compiled, data, [piece], block=block, prefilter=True)
    assert not overflowed
    assert got == oracle(compiled, data)


@pytest.mark.parametrize("pattern", ["(?fi:ß)", "x(?fi:ß)", "(?i:(?f)ß)", "(?fi)ß", "(?i:\u017f)"])
def test_scoped_full_case_folding(pattern: str) -> None:
    """Full case folding in a scoped group still finds `ss` for `ß` in raw ASCII blocks."""
    data = ("aaa xss yyy xSS\n" * 5000).encode()
    compiled = compile_pattern(pattern)
    expected = oracle(compiled, data)
    assert expected
    for block in (1, 4096, 65536):
        got, overflowed = scan_scanner_v2(compiled, data, [777], block=block, prefilter=True)
        assert not overflowed and got == expected


@pytest.mark.parametrize("with_numpy", [True, False])
def test_count_newlines_with_and_without_numpy(
    with_numpy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newline counter gives str.count's answer on bytes, ASCII and non-ASCII text, with
    numpy (the speed extra) and without it."""
    if not with_numpy:
        monkeypatch.setattr(scanner_module, "_np", None)
    rng = random.Random(5)
    for _ in range(50):
        text = "".join(rng.choice("ab\n\n é€😀") for _ in range(rng.randrange(20000)))
        lo = rng.randrange(len(text) + 1)
        hi = rng.randrange(lo, len(text) + 1)
        assert count_newlines(text, lo, hi) == text.count("\n", lo, hi)
        ascii_text = text.encode("ascii", "ignore").decode()
        lo, hi = min(lo, len(ascii_text)), min(hi, len(ascii_text))
        assert count_newlines(ascii_text, lo, hi) == ascii_text.count("\n", lo, hi)
        data = text.encode()
        assert count_newlines(data, 0, len(data)) == data.count(b"\n")
        assert count_newlines(data, len(data) // 3, len(data) // 2) == data.count(
            b"\n", len(data) // 3, len(data) // 2
        )


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.one_of(st.sampled_from(REGEX_ONLY + PATTERNS), random_patterns),
    text=st.text(alphabet="ab xAZ01\n@.;_-\"'\t", max_size=400),
    pieces=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=3),
    block=st.sampled_from([1, 16, 65536]),
    ignore_case=st.booleans(),
)
def test_property_re2_superset_filter_on_ascii_text(
    pattern: str, text: str, pieces: list[int], block: int, ignore_case: bool
) -> None:
    """On pure-ASCII text, patterns without literals run regex only where their RE2
    superset matched (when google-re2 is installed): the whole-text answer all the same."""
    compiled = compiled_or_rejected(pattern, ignore_case=ignore_case)
    data = text.encode()
    got, overflowed = scan_scanner_v2(compiled, data, pieces, block=block, prefilter=True)
    assert not overflowed
    assert got == oracle(compiled, data)


def test_re2_superset_filter_is_used_for_patterns_without_literals() -> None:
    """The no-literal patterns of the benchmarks get an RE2 filter when re2 is installed."""
    pytest.importorskip("re2")
    for pattern in (r"[A-Z][a-z]+[0-9]{3}", r"\p{Lu}{4}[0-9A-Z]{16}", r"[[:upper:]]\d+"):
        assert Scanner(compile_pattern(pattern))._superset is not None, pattern
    assert Scanner(compile_pattern(r"(\d)\1"))._superset is None  # a back-reference
    assert Scanner(compile_pattern(r"a*"))._superset is None  # matches the empty string


def test_dense_superset_matches_give_way_to_one_search() -> None:
    """Where the RE2 superset matches more than once per ~1,000 characters, a regex call per
    window costs more than one search: the file goes on without the filter, exact all the
    same; a sparse file keeps it."""
    pytest.importorskip("re2")
    compiled = compile_pattern(r"\d+")
    for every, kept in ((3, False), (4000, True)):
        data = "\n".join("word " * (every // 5) + str(n) for n in range(400)).encode()
        fs = FileScanner(compiled)
        hits = [h for i in range(0, len(data), 4096) for h in fs.feed(data[i : i + 4096])]
        hits += fs.close()
        assert [(h.start, h.end, h.line_number) for h in hits] == [
            (s, e, n) for s, e, n, *_ in oracle(compiled, data)
        ]
        assert (fs.scanner._superset is not None) is kept


# -- QA defects: optional pieces before a literal, fuzzy widths, the budget under parallelism --

# A literal with an optional piece before it (lead > 0), so a window around an occurrence
# may start before the horizon its stops give: attempts past that horizon stayed decided.
LEAD_PATTERNS = [
    ("é?cafe", "xxxxxxxxxx\nnaive\nthe cafe\nfoo bar\naéb\n"),
    ("ö?bar", "x" * 13 * 2000 + "\nbar\nöbar\n"),
    ("(?:é)?a", "xxxxxxxxxx\nnaive\naéb\n"),
    ("[é]?a", "xxxxxxxxxx\nnaive\néa\n"),
    ("(?:é|)a", "xxxxxxxxxx\nnaive\néa\n"),
    ("n?aïve|naive", "xxxxxxxxxx\nnaive\naïve\n"),
    ("cafe|x?é", "the cafe\naéb\nxé\n"),
    ("x?é", "aéb\n"),
    ("x?cafe", "the cafe\n"),
    ("(?:y|)a", "xxxxxxxxxx\nnaive\n"),
    (r"b{0,2}\Z*+(?i:\n)+?", "\n xk\nkaa\n"),
]


@pytest.mark.parametrize(("pattern", "text"), LEAD_PATTERNS)
def test_optional_piece_before_a_literal_loses_no_match(pattern: str, text: str) -> None:
    compiled = compile_pattern(pattern)
    data = text.encode()
    expected = oracle(compiled, data)
    assert expected  # each text holds a match
    for chunk in sorted({*range(1, 17), 64, 4096, len(data)}):
        for block in (1, 16, 4096):
            got, overflowed = scan(compiled, data, chunk, block=block)
            assert not overflowed
            assert got == expected, (pattern, chunk, block)


_lead_atoms = st.sampled_from(
    ["a", "b", "é", "ï", "ab", "aé", r"\n", "[é]", "[aé]", "[^é]", r"\w", ".", r"\s", "k"]
)
_anchors = st.sampled_from(["", "", "", r"\Z", r"\A", "^", "$", r"\b", r"\Z*+", r"(?i:\n)+?"])
_quantifiers = st.sampled_from(["", "", "?", "??", "*", "*?", "+?", "{0,2}", "{0,2}?", "{1,2}"])


def _optional_pieces(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, _quantifiers, children).map(lambda t: f"(?:{t[0]}){t[1]}{t[2]}"),
        st.tuples(children, children).map(lambda t: f"(?:{t[0]}|){t[1]}"),  # empty branch
        st.tuples(children, children).map(lambda t: f"{t[0]}|{t[1]}"),
        st.tuples(_anchors, children, _anchors).map("".join),
        children.map(lambda c: f"(?i:{c})"),
    )


lead_patterns = st.recursive(
    st.tuples(_lead_atoms, _quantifiers).map("".join), _optional_pieces, max_leaves=5
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=lead_patterns,
    text=st.text(alphabet="abké ï\nx", max_size=120),
    chunk=st.one_of(st.integers(min_value=1, max_value=16), st.sampled_from([64, 4096])),
    block=st.sampled_from([1, 16, 4096]),
)
@example(pattern=r"b{0,2}\Z*+(?i:\n)+?", text="\n xk\nkaa\n", chunk=7, block=1)
@example(pattern="é?cafe", text="the cafe\n", chunk=1, block=4096)
def test_property_optional_and_non_ascii_pieces(
    pattern: str, text: str, chunk: int, block: int
) -> None:
    """Optional, lazy and empty-able pieces, non-ASCII literals and classes, anchors: with
    the prefilter on, the whole-text hits (span, line, column, line text, match)."""
    compiled = compiled_or_rejected(pattern)
    data = text.encode()
    got, overflowed = scan(compiled, data, chunk, block=block)
    assert not overflowed
    assert got == oracle(compiled, data)


FUZZY_FORMS = [
    "(?:AKIA[0-9A-Z]{16}){e<=1}",
    "(?:AKIA[0-9A-Z]{16}){i<=1,d<=1}",
    "(?:AKIA[0-9A-Z]{16}){s<=2}",
    "(?:AKIA[0-9A-Z]{16}){1<=e<=2}",
    "AKIA{e<=1}[0-9A-Z]{16}",
    "AKIA[0-9A-Z]{e<=1}[0-9A-Z]{15}",  # a single item
]


@pytest.mark.parametrize(
    ("pattern", "consumed"),
    [
        ("(?:AKIA[0-9A-Z]{16}){e<=1}", 21),  # one insertion at most
        ("(?:AKIA[0-9A-Z]{16}){i<=1,d<=1}", 21),
        ("(?:AKIA[0-9A-Z]{16}){s<=2}", 20),  # substitutions replace, they do not widen
        ("(?:AKIA[0-9A-Z]{16}){1<=e<=2}", 22),
        ("AKIA{e<=1}[0-9A-Z]{16}", 21),
        ("(?:ab){2i+2d+1s<=5}", 4),  # two insertions cost 4 of 5
    ],
)
def test_fuzzy_width_grows_by_the_insertions_only(pattern: str, consumed: int) -> None:
    p = plan(compile_pattern(pattern))
    assert p.consumed == consumed
    assert p.width == consumed + 2  # PEEK
    assert "\n" not in p.stops  # an inserted or substituted character may be a newline


def test_fuzzy_insertions_may_be_newlines() -> None:
    compiled = compile_pattern("(?:AKIA[0-9A-Z]{16}){e<=1}")
    assert_exact("(?:AKIA[0-9A-Z]{16}){e<=1}", b"x AKIA\nABCDEFGHIJKLMNOP y\n")
    assert oracle(compiled, b"AKIA\nABCDEFGHIJKLMNOP")  # the newline is a substitution


@pytest.mark.parametrize("pattern", FUZZY_FORMS)
def test_fuzzy_pattern_on_a_long_log_keeps_a_small_carry(pattern: str) -> None:
    """Matches far apart (more text between them than max_carry): exact, no overflow."""
    compiled = compile_pattern(pattern)
    line = b"2024-01-01T00:00:00Z INFO request served path=/api/v1/items status=200 in 12ms\n"
    data = line * 700 + b"key=AKIAABCDEFGHIJKLMNOP\n" + line * 700 + b"k AKIAABCDEFGHIJKLMNO\n"
    expected = oracle(compiled, data)
    assert expected
    for chunk in (7, 4096, 65536):
        got, overflowed = scan(compiled, data, chunk, max_carry=2000, block=4096)
        assert not overflowed, (pattern, chunk)
        assert got == expected, (pattern, chunk)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.sampled_from(
        [
            *FUZZY_FORMS[:2],
            "(?:ab){e<=1}",
            "(?:abc){i<=1,d<=1}",
            "a{e<=1}b",
            "(?:ab){e<=1}$",
            r"\b(?:abc){e<=1}\b",
            "(?:a\nb){s<=1}",
            "(?:ab|ba){i<=2}",
        ]
    ),
    text=st.text(alphabet="abcAKIX1 \n", max_size=200),
    chunk=st.integers(min_value=1, max_value=16),
    block=st.sampled_from([1, 16, 4096]),
)
def test_property_fuzzy_patterns_restart_exactly(
    pattern: str, text: str, chunk: int, block: int
) -> None:
    """Fuzzy searches restart between pieces one character before the horizon (regex's
    first attempt takes no leading insertion): the whole-text hits all the same."""
    compiled = compile_pattern(pattern)
    data = text.encode()
    got, overflowed = scan(compiled, data, chunk, max_carry=64, block=block)
    assert not overflowed
    assert got == oracle(compiled, data)


class _FakeClocks:
    """A thread's CPU clock under fair sharing: the process clock runs `ratio` times as fast."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.own = 0.0
        self.calls = 0

    def work(self, need: float) -> Callable[[float | None], str]:
        """A regex call needing `need` of this thread's CPU; it raises TimeoutError once the
        process clock passes its timeout, as regex does."""

        def call(timeout: float | None) -> str:
            self.calls += 1
            if timeout is not None and need * self.ratio >= timeout:
                self.own += timeout / self.ratio
                raise TimeoutError("regex timed out")
            self.own += need
            return "done"

        return call


@pytest.mark.parametrize("threads", [1, 2, 3, 8, 16, 64])
def test_guard_never_stops_a_call_that_fits_the_budget(threads: int) -> None:
    """However many threads share the cores, a call needing 1.1 s of its own thread at the
    default 2 s budget runs once, and is charged only its own time."""
    clocks = _FakeClocks(ratio=threads)
    guard = scanner_module.Guard(2.0, own_clock=lambda: clocks.own, threads=lambda: threads)
    assert guard.run(clocks.work(1.1)) == "done"
    assert clocks.calls == 1
    assert guard.left == pytest.approx(0.9)


@pytest.mark.parametrize("threads", [1, 2, 8, 64])
def test_guard_stops_a_catastrophic_call_once_without_running_it_again(threads: int) -> None:
    clocks = _FakeClocks(ratio=threads)
    guard = scanner_module.Guard(2.0, own_clock=lambda: clocks.own, threads=lambda: threads)
    with pytest.raises(ScanTimeout):
        guard.run(clocks.work(1000.0))
    assert clocks.calls == 1
    assert 2.0 <= clocks.own <= 2.0 * 1.05 + 0.002  # its own share: the budget
    assert guard.left == 0
    with pytest.raises(ScanTimeout):  # spent: later calls do not run
        guard.run(clocks.work(0.001))
    assert clocks.calls == 1


def test_guard_times_out_a_call_that_finishes_past_the_budget() -> None:
    """Alone on the cores, a call may run past the budget before regex's clock stops it;
    when it finishes there, the file has still spent more than its budget."""
    clocks = _FakeClocks(ratio=1)
    guard = scanner_module.Guard(2.0, own_clock=lambda: clocks.own, threads=lambda: 4)
    with pytest.raises(ScanTimeout):
        guard.run(clocks.work(5.0))
    assert clocks.calls == 1


def test_guard_runs_a_starved_call_again_uncharged() -> None:
    """A thread given less than its share (the process clock 5 times as fast with 2
    threads) is stopped early: the call runs again with more allowance, the lost time is
    not charged, and the file does not time out."""
    clocks = _FakeClocks(ratio=5)
    guard = scanner_module.Guard(2.0, own_clock=lambda: clocks.own, threads=lambda: 2)
    assert guard.run(clocks.work(1.1)) == "done"
    assert clocks.calls == 2
    assert guard.left > 0


def test_parallel_files_within_budget_never_time_out_nor_rerun_a_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight searches of one file each, (?:a|aa)+$, on the server's pool (its threads
    started up front, more of them than cores): each file needs well under its budget; none
    times out and no regex call runs twice."""
    compiled = compile_pattern(r"(?:a|aa)+$")
    data = (b"a" * 22 + b"b\n") * 30
    # Far under its budget: threads sharing few cores each spend up to about 3 times a lone
    # thread's CPU time on the same work (measured on a 2-core VM).
    budget = cpu_alone(compiled, data) * 8
    calls: list[int] = []
    real_run = scanner_module.Guard.run

    def counting_run(self: scanner_module.Guard, call: Callable[[float | None], T]) -> T:
        n = len(calls)
        calls.append(0)

        def counted(timeout: float | None) -> T:
            calls[n] += 1
            return call(timeout)

        return real_run(self, counted)

    monkeypatch.setattr(scanner_module.Guard, "run", counting_run)

    def run(_: int) -> int:
        fs = FileScanner(compiled, timeout=budget)
        return len(fs.feed(data) + fs.close())

    pool = FairPool(cores=2, threads=2 + 8)
    try:
        futures = [pool.share().submit(run, n) for n in range(8)]
        assert [f.result() for f in futures] == [0] * 8
    finally:
        pool.shutdown()
    assert len(calls) >= 8 and set(calls) == {1}


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        # no quote at all: every attempt fails at once, though the pattern's fence (its third
        # quote) never comes
        ('"[^"]*",', "plain words, and more words\n"),
        # one early {b} whose attempt ends at once; then no brace for far longer than max_carry
        (r"\{[^}]*\}x", "f(a){b}\n" + "filler words here\n"),
        (r"<[^>]*>x", "<b>\n" + "filler words here\n"),
    ],
)
@pytest.mark.parametrize("chunk", [7, 4096])
def test_attempts_that_end_never_overflow_the_carry(pattern: str, text: str, chunk: int) -> None:
    """Attempts that fail for good are dropped even where the plan's bounds (width, stops,
    fence) cannot vouch for where they end: no false carry_overflow, exact matches."""
    compiled = compile_pattern(pattern)
    head, _, filler = text.partition("\n")
    data = (head + "\n" + (filler or "filler words here\n") * 400 + 'end "x",\n').encode()
    got, overflowed = scan(compiled, data, chunk, max_carry=2000, block=1)
    assert not overflowed
    assert got == oracle(compiled, data)


def test_a_live_attempt_longer_than_max_carry_still_overflows() -> None:
    """A `{` whose `}` comes only after more than max_carry characters is a real attempt that
    outgrows the carry: flagged, never silently wrong."""
    compiled = compile_pattern(r"\{[^}]*\}x")
    data = ("{" + "filler words here\n" * 400 + "}x\n").encode()
    _, overflowed = scan(compiled, data, 4096, max_carry=2000, block=1)
    assert overflowed


def test_plan_tail_is_read_only_from_a_final_unbounded_repeat_of_one_class() -> None:
    """Plan.tail: the head's stops and the repeated class's ends, for patterns ending with
    C+, C*, C{n,} (greedy or possessive); None where the engine may backtrack out of the end
    or nothing ends it."""
    head_stops, tail_ends = plan(compile_pattern(r"KEY\s*=\s*\S+")).tail or ("", "")
    assert "K" not in head_stops and " " not in head_stops and "=" not in head_stops
    assert "a" in head_stops and ";" in head_stops
    assert sorted(tail_ends) == sorted(" \t\n\r\x0b\x0c")
    for pattern in [r"Bearer\s+\S+", r"(k\s*=\s*\S*)", r"k=\s*\S{2,}", r"k=\s*\S++"]:
        assert plan(compile_pattern(pattern)).tail is not None, pattern
    for pattern in [
        r"\S+",  # nothing before it: its own stops serve
        r"k=\S+$",  # something after it
        r"k=\S+?",  # lazy
        r"k=\S{1,9}",  # bounded
        r"k=(?:\S\s)+",  # not one class
        r"k=\S+|x",  # an alternation
        r"(?s)k.*",  # a class refusing nothing
        r"(?:k=\S+){e<=1}",  # fuzzy
        r"[\s\S]*=\S+",  # a head refusing nothing
    ]:
        assert plan(compile_pattern(pattern)).tail is None, pattern


_TAIL_TOKENS = st.sampled_from(
    ["KEY", "=", " ", "  ", "\t", "\n", "Bearer", "abc", "9", ";", "é", "key", ":", '"']
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern_and_match=st.sampled_from(
        [
            (r"KEY\s*=\s*\S+", "KEY =  v1"),
            (r"Bearer\s+\S+", "Bearer\tt0k"),
            (r"(?i)key\s*[:=]\s*[^\s;]+", "Key:x"),
            (r'"\s*:\s*\S*', '"a": 1'),
        ]
    ),
    unit=st.lists(_TAIL_TOKENS, min_size=1, max_size=12),
    at=st.integers(min_value=0, max_value=12),
    repeat=st.integers(min_value=1, max_value=3000),
    pieces=st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=3),
    block=st.sampled_from([1, 4096, 65536]),
    prefilter=st.booleans(),
)
def test_property_a_final_unbounded_class_ends_attempts_on_long_lines(
    pattern_and_match: tuple[str, str],
    unit: list[str],
    at: int,
    repeat: int,
    pieces: list[int],
    block: int,
    prefilter: bool,
) -> None:
    """Text up to ~100 KB (one line when the tokens hold no newline) holding a match every
    few tokens, where matches and the rest of the pattern's runs stay short (a space every
    few tokens) but `\\s` and `\\S` together consume anything: with a max_carry of 1,000,
    the whole-text answer and no carry_overflow."""
    pattern, match = pattern_and_match
    unit.insert(at, f" {match} ")
    data = (("".join(unit) + " ") * repeat).encode()
    compiled = compile_pattern(pattern)
    got, overflowed = scan_scanner_v2(
        compiled, data, pieces, block=block, prefilter=prefilter, max_carry=1000
    )
    assert not overflowed
    assert got == oracle(compiled, data)


@pytest.mark.parametrize("pattern", [r"KEY\s*=\s*\S+", r"Bearer\s+\S+"])
def test_secret_patterns_ending_in_a_class_run_on_one_long_line(pattern: str) -> None:
    """`KEY\\s*=\\s*\\S+` and `Bearer\\s+\\S+` over one 2 MB line of words: the whole-text
    matches, no carry_overflow, at the default and at a 2,000-character max_carry."""
    rng = random.Random(5)
    words = ["foo", "bar;", "x=1,", "{a:1}", '"s"', "KEY =  v1", "Bearer  t0k"]
    line = " ".join(rng.choice(words) if i % 50 else rng.choice(words[-2:]) for i in range(250_000))
    data = (line + "\n").encode()
    compiled = compile_pattern(pattern)
    expected = oracle(compiled, data)
    assert len(expected) > 1000
    for max_carry, chunk in ((1 << 20, 65536), (2000, 7000)):
        got, overflowed = scan(compiled, data, chunk, max_carry=max_carry)
        assert not overflowed and got == expected


@pytest.mark.parametrize("pattern", [r"k\d+=v\d+;", r"\w+=\w+;", r"[a-z]\d+=[a-z]\d+;"])
def test_window_ends_are_looked_for_once_per_character_on_a_long_line(pattern: str) -> None:
    """One 300 KB line of `k0=v0;k1=v1;...`, where no character stops an attempt: finding
    where the windows around the 20,000 occurrences start and end reads each character a
    few times, not once per occurrence (it was quadratic: minutes for a megabyte)."""
    data = ("".join(f"k{n}=v{n};" for n in range(30_000))).encode()
    compiled = compile_pattern(pattern)
    fs = FileScanner(compiled)
    scanner = fs.scanner
    read = [0]

    class Counting:
        """A class pattern that counts the characters its searches read: forwards, up to
        what it finds; backwards, the whole range searched."""

        def __init__(self, pattern: regex.Pattern[str], forwards: bool) -> None:
            self.pattern, self.forwards = pattern, forwards

        def search(self, text: str, start: int, end: int) -> Any:
            m = self.pattern.search(text, start, end)
            stop = m.start() + 1 if self.forwards and m is not None else end
            read[0] += max(0, stop - start)
            return m

    for cursor in (scanner._stop_after, scanner._fence_after, scanner._tail_end_after):
        if cursor._class is not None:
            cursor._class = Counting(cursor._class, forwards=True)  # type: ignore[assignment]
    if scanner._stop_before._back is not None:
        counting = Counting(scanner._stop_before._back, forwards=False)
        scanner._stop_before._back = counting  # type: ignore[assignment]
    hits = [h for i in range(0, len(data), 65536) for h in fs.feed(data[i : i + 65536])]
    hits += fs.close()
    assert [(h.start, h.end) for h in hits] == [m.span() for m in compiled.finditer(data.decode())]
    assert not fs.overflowed
    assert read[0] <= 4 * len(data)
