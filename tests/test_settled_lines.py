"""`FileScanner.settled_lines`: how far a file's matches are final, for the stages after it."""

from __future__ import annotations

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from gistscan.config import compile_pattern
from gistscan.scanner import FileScanner


def whole_file_lines(pattern: regex.Pattern[str], data: bytes) -> list[int]:
    """The line number of every non-empty match of `finditer` on the whole decoded file."""
    text = data.decode("utf-8-sig", errors="replace")
    return [
        text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text) if m.end() > m.start()
    ]


def check_promise(pattern: regex.Pattern[str], data: bytes, chunk: int) -> list[int]:
    """Feed `data` in `chunk`-byte pieces; after each call, every match on a line up to
    `settled_lines` must already be out. Returns settled_lines after each feed."""
    expected = whole_file_lines(pattern, data)
    fs = FileScanner(pattern)
    seen: list[int] = []
    history = []
    for i in range(0, len(data), chunk):
        seen += [h.line_number for h in fs.feed(data[i : i + chunk])]
        settled = fs.settled_lines
        history.append(settled)
        assert seen == expected[: len(seen)]
        assert [n for n in expected if n <= settled] == [n for n in seen if n <= settled]
        assert settled <= data[: i + chunk].count(b"\n") + 1
    seen += [h.line_number for h in fs.close()]
    assert seen == expected
    assert fs.settled_lines == data.count(b"\n") + 1  # after close: every line
    assert history == sorted(history)  # never goes back
    return history


PATTERNS = [r"foo", r"^b", r"o$", r"\w+", r"a\s+b", r"(?s)x.*?y", r"(?<=a)b", r"\n", r"[^\n]{3}"]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(PATTERNS),
    st.lists(st.sampled_from(["foo", "a", "b", " ", "\n", "x", "y", "é", "\r"]), max_size=60),
    st.integers(1, 12),
)
def test_every_match_on_a_settled_line_is_already_out(
    pattern: str, parts: list[str], chunk: int
) -> None:
    """For any text, pattern and chunk size: no match ever comes for a settled line."""
    data = "".join(parts).encode()
    check_promise(compile_pattern(pattern), data, chunk)


def test_line_local_pattern_settles_each_line_as_its_newline_arrives() -> None:
    """A pattern that cannot cross a newline settles a line once the next one has started."""
    data = b"".join(b"line %d foo\n" % i for i in range(20_000))  # over the 8 KiB binary sniff
    history = check_promise(compile_pattern("foo"), data, 4096)
    assert history[-1] >= data.count(b"\n") - 500  # the scanner keeps up, a line or so behind
    assert history[0] == 0  # the first 4 KiB may still turn out binary: nothing settled


def test_binary_file_settles_nothing() -> None:
    """A file with a NUL in its head reports nothing, so it settles nothing before close."""
    fs = FileScanner(compile_pattern("foo"))
    fs.feed(b"foo\n\0foo\n" * 2000)
    assert fs.settled_lines == 0
