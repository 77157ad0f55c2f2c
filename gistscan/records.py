"""The records a scan yields (docs/records.md) and their NDJSON encoding."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Match:
    """One match: where it starts (1-based line and column) and the text of its line."""

    gist_id: str
    filename: str
    line_number: int
    column: int
    line: str
    match: str
    html_url: str
    raw_url: str

    type = "match"


@dataclass(frozen=True, slots=True)
class Context:
    """A line printed for context around a matching line (asked for with -A/-B/-C).

    `line` is decoded as a match's line is (UTF-8 with replacement, a BOM dropped from line
    1, one trailing carriage return dropped) and cut to its first 400 characters when longer.
    """

    gist_id: str
    filename: str
    line_number: int
    line: str

    type = "context"


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong with one file, or (both ids None) with the whole listing."""

    gist_id: str | None
    filename: str | None
    code: str
    message: str
    # Not part of the record (never serialized): GitHub's primary API rate limit, the one a
    # token raises; the command line's token hint is shown for it only.
    primary_limit: bool = field(default=False, compare=False, metadata={"internal": True})

    type = "error"


@dataclass(frozen=True, slots=True)
class Summary:
    """The last record of every scan.

    `files`: files searched (to their end, or to the per-file stop of -m/-l); `skipped`:
    binary files; `filtered`: files left out by the glob and language filters, never
    requested; `bytes`: bytes downloaded (raw URLs and git, retries included), not scanned:
    a file served from the server's cache counts 0.
    """

    username: str
    pattern: str
    gists: int
    files: int
    skipped: int
    filtered: int
    bytes: int
    matches: int
    errors: int
    complete: bool
    elapsed_ms: int

    type = "summary"


Record = Match | Context | Error | Summary


def to_dict(record: Record, *, with_type: bool = True) -> dict[str, Any]:
    """The record as a JSON-ready dict, `type` first (left out when `with_type` is false)."""
    fields = {
        f.name: getattr(record, f.name)
        for f in dataclasses.fields(record)
        if not f.metadata.get("internal")
    }
    return {"type": record.type, **fields} if with_type else fields


def encode(record: Record) -> bytes:
    """One NDJSON line: UTF-8 JSON, `\\n`-terminated.

    orjson encodes a record 7-15 times faster than `json.dumps`, and encoding runs on the
    server's event loop. It refuses a lone surrogate (a gist's file name may hold one, from a
    JSON `\\ud800` escape): such a record is written with ASCII escapes instead.
    """
    fields = to_dict(record)
    try:
        return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return json.dumps(fields).encode() + b"\n"
