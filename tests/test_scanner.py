"""The scanner gives the matches `regex.finditer` gives on the whole decoded file (docs/)."""

from __future__ import annotations

import pytest
import regex
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gistscan.config import compile_pattern
from gistscan.scanner import UNKNOWN_PLAN, FileScanner, Scanner, ScanTimeout, plan


def oracle(pattern: regex.Pattern[str], data: bytes) -> list[tuple[object, ...]] | None:
    """docs/matching.md written out for the whole file at once; None for a binary file."""
    if b"\0" in data[:8192]:
        return None
    text = data.decode("utf-8-sig", errors="replace")
    hits = []
    for m in pattern.finditer(text):
        start, end = m.span()
        if start == end:
            continue
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", start)
        line = text[line_start : len(text) if line_end < 0 else line_end]
        if line.endswith("\r"):
            line = line[:-1]
        if len(line) > 400:
            cut = max(0, start - line_start - 100)
            line = line[cut : cut + 400]
        hits.append(
            (start, end, text.count("\n", 0, start) + 1, start - line_start + 1, line, m.group())
        )
    return hits


def scan(
    pattern: regex.Pattern[str], data: bytes, chunk: int, max_carry: int = 1 << 20
) -> tuple[list[tuple[object, ...]] | None, bool]:
    """Feed `data` in `chunk`-byte pieces; return (hits as oracle tuples, overflowed)."""
    fs = FileScanner(pattern, max_carry=max_carry)
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
    assert plan(compile_pattern(r"\p{L}")) == UNKNOWN_PLAN
    assert plan(compile_pattern(r"(?:ab){e<=1}")) == UNKNOWN_PLAN
    assert plan(compile_pattern(r"[[:alpha:]]")) == UNKNOWN_PLAN
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
    try:
        compiled = compile_pattern(pattern)
    except Exception:
        assume(False)
        raise
    data = text.encode()
    got, overflowed = scan(compiled, data, chunk)
    assert not overflowed
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
