"""Matching lines, per-file stops and context lines (lines.py), against a whole-file oracle."""

from __future__ import annotations

from typing import Any

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from gistscan.config import compile_pattern
from gistscan.lines import FileLines, LineDone, LineOptions
from gistscan.listing import GistFile
from gistscan.records import Context, Match
from gistscan.scanner import FileScanner

FILE = GistFile("g1", "f.txt", "https://raw/f.txt", 0, "https://gist/g1")


def expected_events(pattern: regex.Pattern[str], data: bytes, options: LineOptions) -> list[Any]:
    """grep's answer, from `finditer` on the whole decoded file (docs/cli.md)."""
    if b"\0" in data[:8192]:
        return []
    text = data.decode("utf-8-sig", errors="replace")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the empty "line" after a final newline is no line

    def shown(n: int) -> str:
        line = lines[n - 1]
        return (line[:-1] if line.endswith("\r") else line)[:400]

    by_line: dict[int, list[tuple[int, str]]] = {}
    for m in pattern.finditer(text):
        if m.end() > m.start():
            n = text.count("\n", 0, m.start()) + 1
            by_line.setdefault(n, []).append(
                (m.start() - text.rfind("\n", 0, m.start()), m.group())
            )
    matching = sorted(by_line)
    if options.first_match_only:
        matching = matching[:1]
        by_line = {n: by_line[n][:1] for n in matching}
    elif options.max_count is not None:
        matching = matching[: options.max_count]
    stop = matching[-1] if matching and (options.first_match_only or (
        options.max_count is not None and len(matching) == options.max_count
    )) else None  # fmt: skip
    events: list[Any] = []
    for n in range(1, len(lines) + 1):
        if n in matching:
            events += [("match", n, col, found) for col, found in by_line[n]]
            events.append(("done", n))
        elif stop is not None and n > stop:
            if n <= stop + options.after:
                events.append(("context", n, shown(n)))
        elif any(m < n <= m + options.after for m in matching) or any(
            m - options.before <= n < m for m in matching
        ):
            events.append(("context", n, shown(n)))
    return events


def run_lines(
    pattern: regex.Pattern[str], data: bytes, chunk: int, options: LineOptions
) -> list[Any]:
    """Feed the file in `chunk`-byte pieces through the scanner and FileLines, as scan_file does."""
    scanner = FileScanner(pattern)
    lines = FileLines(FILE, options)
    events: list[Any] = []
    done_early = False
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        lines.feed(piece)
        hits = scanner.feed(piece) if lines.scanning else []
        events += lines.add(hits, scanner.settled_lines)
        if lines.done:
            done_early = True
            break
    if not done_early:
        events += lines.close(scanner.close() if lines.scanning else [])
    # A LineDone is left out when another record of the file follows at once (that record
    # completes the line as well): put the implied ones back to compare with the oracle.
    out: list[Any] = []
    current = None
    for e in events:
        if isinstance(e, LineDone):
            assert e.file == FILE and e.line_number == current
            out.append(("done", current))
            current = None
            continue
        if current is not None and (isinstance(e, Context) or e.line_number != current):
            out.append(("done", current))
            current = None
        if isinstance(e, Match):
            out.append(("match", e.line_number, e.column, e.match))
            current = e.line_number
        else:
            out.append(("context", e.line_number, e.line))
    if current is not None:
        out.append(("done", current))  # the file's end
    return out


WORDS = ["foo", "bar", "a", " ", "\n", "\n", "\n", "\r\n", "é", "\ufeff", "x" * 30, "foo bar"]


@settings(max_examples=400, deadline=None)
@given(
    pattern=st.sampled_from([r"foo", r"^bar", r"a+", r"o\s+b", r"(?s)foo.*?bar", r"\w+$"]),
    parts=st.lists(st.sampled_from(WORDS), max_size=50),
    chunk=st.integers(1, 40),
    before=st.integers(0, 3),
    after=st.integers(0, 3),
    max_count=st.one_of(st.none(), st.integers(1, 3)),
    first_only=st.booleans(),
)
def test_records_equal_the_whole_file_answer(
    pattern: str,
    parts: list[str],
    chunk: int,
    before: int,
    after: int,
    max_count: int | None,
    first_only: bool,
) -> None:
    """Any text, chunking and options: the records equal grep's answer on the whole file."""
    compiled = compile_pattern(pattern)
    data = "".join(parts).encode()
    options = LineOptions(max_count, first_only, before, after)
    assert run_lines(compiled, data, chunk, options) == expected_events(compiled, data, options)


CASES = {
    "start and end": b"foo 1\n2\n3\n4\n5\n6\nfoo 7",
    "overlapping groups": b"1\nfoo 2\n3\n4\nfoo 5\n6\n7\n8\n9\nfoo 10\n11\n",
    "adjacent matches": b"foo\nfoo\nfoo\n1\n2\n",
    "crlf, bom, long": b"\xef\xbb\xbf1\r\n"
    + b"y" * 2000
    + b"\r\nfoo\r\n"
    + "é".encode() * 900
    + b"\n",
    "no newline at all": b"abc foo def",
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(
    "options",
    [
        LineOptions(before=2, after=2),
        LineOptions(before=1),
        LineOptions(after=3),
        LineOptions(max_count=1, after=2),
        LineOptions(max_count=2, before=1, after=1),
        LineOptions(first_match_only=True),
    ],
)
def test_named_cases_every_chunk_size(name: str, options: LineOptions) -> None:
    """Context at file starts and ends, overlapping groups, long and CRLF lines: exact."""
    data = CASES[name]
    compiled = compile_pattern("foo")
    expected = expected_events(compiled, data, options)
    assert any(e[0] == "match" for e in expected)
    for chunk in (1, 2, 3, 5, 64, 4096, len(data)):
        assert run_lines(compiled, data, chunk, options) == expected, chunk


def test_the_oracle_itself_on_a_hand_checked_file() -> None:
    """The oracle's answer for one small file, written out by hand."""
    data = b"foo 1\n2\n3\n4\n5\n6\nfoo 7"
    got = expected_events(compile_pattern("foo"), data, LineOptions(before=1, after=1))
    assert got == [
        ("match", 1, 1, "foo"), ("done", 1), ("context", 2, "2"),
        ("context", 6, "6"), ("match", 7, 1, "foo"), ("done", 7),
    ]  # fmt: skip


def test_long_context_line_is_cut_to_400_characters() -> None:
    """A context line over 400 characters is cut to its first 400; multi-byte text too."""
    data = "é".encode() * 1000 + b"\nfoo\n"
    events = run_lines(compile_pattern("foo"), data, 7, LineOptions(before=1))
    assert events[0] == ("context", 1, "é" * 400)


def test_stop_reads_no_further_than_the_trailing_context() -> None:
    """-m 1 -A 1: done once the line after the first matching line is out."""
    data = b"foo\nnext\n" + b"z\n" * 100_000
    lines = FileLines(FILE, LineOptions(max_count=1, after=1))
    scanner = FileScanner(compile_pattern("foo"))
    fed = 0
    while not lines.done:
        piece = data[fed : fed + 10_000]
        fed += len(piece)
        lines.feed(piece)
        lines.add(scanner.feed(piece) if lines.scanning else [], scanner.settled_lines)
    assert fed == 10_000  # the 8 KiB binary sniff, then the first piece settles line 1


def test_binary_file_gives_no_context_either() -> None:
    """A NUL in the first 8 KiB: no match and no context line."""
    data = b"foo\n1\n\0\n" + b"foo\n" * 5000
    assert run_lines(compile_pattern("foo"), data, 100, LineOptions(before=2, after=2)) == []


def test_a_matching_line_is_done_as_soon_as_the_scanner_settles_it() -> None:
    """LineDone comes a few bytes past the line's end, not at the next match or the end."""
    data = b"z" * 9000 + b"\nfoo here\nmore text here\n" + b"w\n" * 10
    scanner = FileScanner(compile_pattern("foo"))
    lines = FileLines(FILE)
    done_at = None
    for i in range(len(data)):
        events = lines.add(scanner.feed(data[i : i + 1]), scanner.settled_lines)
        if done_at is None and any(isinstance(e, LineDone) for e in events):
            done_at = i
    end_of_line = data.index(b"foo here\n") + len(b"foo here\n")
    assert done_at is not None and done_at <= end_of_line + len("foo") + 3
