"""Records and their NDJSON encoding."""

from __future__ import annotations

import json

from gistscan.records import Context, Error, Match, Summary, encode


def test_encode_is_one_utf8_json_line_type_first() -> None:
    """A record is one UTF-8 JSON object (non-ASCII as is), `type` first, `\\n`-terminated."""
    match = Match("g1", "ünï.py", 3, 2, "x café", "café", "https://h/g1", "https://r/g1")
    line = encode(match)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert "café".encode() in line
    decoded = json.loads(line)
    assert next(iter(decoded)) == "type" and decoded["type"] == "match"
    assert decoded["filename"] == "ünï.py" and decoded["line_number"] == 3


def test_encode_survives_a_lone_surrogate_from_upstream() -> None:
    """A file name with a lone surrogate (JSON allows "\\ud800") still gives a valid line."""
    line = encode(Error("g1", "bad\ud800name", "not_found", "gone"))
    assert line.endswith(b"\n")
    assert json.loads(line)["filename"] == "bad\ud800name"
    line.decode("utf-8")  # valid UTF-8, escapes and all


def test_summary_fields_in_order() -> None:
    """The summary carries every count, `type` first."""
    summary = Summary("octocat", "x", 1, 2, 0, 4, 10, 3, 0, True, 5)
    assert list(json.loads(encode(summary))) == [
        "type", "username", "pattern", "gists", "files", "skipped", "filtered", "bytes",
        "matches", "errors", "complete", "elapsed_ms",
    ]  # fmt: skip


def test_context_record() -> None:
    """A context line: where it is and its text, `type` first."""
    line = encode(Context("g1", "a.py", 7, "x = 1"))
    assert json.loads(line) == {
        "type": "context", "gist_id": "g1", "filename": "a.py", "line_number": 7, "line": "x = 1",
    }  # fmt: skip
