"""The scanner's cases end to end: a search against the fake GitHub gives the right records."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import time
from typing import Any

import pytest

from gistscan import files as files_module
from gistscan.config import Query, Settings, compile_pattern
from gistscan.pipeline import search
from gistscan.records import Error, Match, Record, Summary
from gistscan.server import ServerConfig, make_app
from tests.fake_github import FakeFile, FakeGist, FakeGitHub, gist_id


async def run(fake: FakeGitHub, user: str, pattern: str, **settings: Any) -> list[Record]:
    records = []
    query = Query(user, pattern)
    async for record in search(query, Settings(api_url=fake.api_url, **settings)):
        records.append(record)
    return records


def app_log() -> bytes:
    """120 log lines, 3 of them holding an AWS key (lines 1, 41 and 81)."""
    lines = [f"line {i}: plain text here, nothing to see" for i in range(120)]
    for i in (0, 40, 80):
        lines[i] += " AWS_KEY=AKIAABCDEFGHIJKLMNOP"
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?<key>AKIA[0-9A-Z]{16})",
        r"\p{Lu}{4}[0-9A-Z]{16}",
        r"[[:upper:]]{4}[0-9A-Z]{16}",
        r"(?:AKIA[0-9A-Z]{16}){e<=1}",
        r"(?P<key>AKIA[0-9A-Z]{16})",
    ],
)
@pytest.mark.parametrize("big", [False, True])
async def test_case_07_regex_only_syntax(fake: FakeGitHub, pattern: str, big: bool) -> None:
    """Case 07: syntax only `regex` knows, on a log over max_carry (2,000 characters, or a
    2.3 MB log at the default): 3 matches per copy of the log, no carry_overflow."""
    copies = 460 if big else 1
    fake.add_user(
        "synuser", [FakeGist(gist_id("synuser", 0), [FakeFile("app.log", app_log() * copies)])]
    )
    settings = {} if big else {"max_carry": 2000}
    records = await run(fake, "synuser", pattern, **settings)
    matches = [r for r in records if isinstance(r, Match)]
    assert [(m.line_number, m.match[-20:]) for m in matches] == [
        (120 * c + n + 1, "AKIAABCDEFGHIJKLMNOP") for c in range(copies) for n in (0, 40, 80)
    ]
    assert not [r for r in records if isinstance(r, Error)]
    summary = records[-1]
    assert isinstance(summary, Summary) and summary.complete and summary.files == 1


def minified(size: int) -> bytes:
    """bundle.min.js: `;`-separated words on one line, `apiKey<N>` among them."""
    rng = random.Random(8)
    words = ["this", "z", "token", "y", "if", "return", "else", "for", "null", "var", "apiKey"]
    out = []
    total = 0
    while total < size:
        piece = f"{rng.choice(words)}{rng.randrange(100)};"
        out.append(piece)
        total += len(piece)
    return ("".join(out)[:-1] + "\n").encode()


@pytest.mark.parametrize(("size", "max_carry"), [(6000, 2000), (3_000_000, 1024 * 1024)])
async def test_case_08_minified_one_line(fake: FakeGitHub, size: int, max_carry: int) -> None:
    """Case 08: one long line over max_carry gives its apiKey matches and no carry_overflow."""
    data = minified(size)
    fake.add_user("minuser", [FakeGist(gist_id("minuser", 0), [FakeFile("bundle.min.js", data)])])
    records = await run(fake, "minuser", r"apiKey\d+", max_carry=max_carry)
    text = data.decode()
    expected = []
    for word_start in range(len(text)):
        if text.startswith("apiKey", word_start) and (
            word_start == 0 or text[word_start - 1] == ";"
        ):
            end = word_start + 6
            while text[end].isdigit():
                end += 1
            expected.append((1, word_start + 1, text[word_start:end]))
    matches = [(m.line_number, m.column, m.match) for m in records if isinstance(m, Match)]
    assert matches == expected and expected
    assert not [r for r in records if isinstance(r, Error)]
    assert isinstance(records[-1], Summary) and records[-1].complete


def lines_needing(cpu_seconds: float, pattern: str) -> int:
    """How many of case 09's lines ("a" * 22 + "b") `pattern` needs about `cpu_seconds` of a
    thread's CPU to match, here and now, two files at a time with the regex timeout armed, as
    the search runs them (the machine is shared: case 09's 120 lines took 1.2 s where it was
    written, 1.5 to 2.9 s on busier days; `regex` reads the process clock to time itself out,
    which costs more while other threads run). At most 120."""
    compiled = compile_pattern(pattern)
    sample = ("a" * 22 + "b\n") * 10
    spent: list[float] = []

    def match() -> None:
        started = time.thread_time()
        for _ in range(3):
            list(compiled.finditer(sample, timeout=1e6))
        spent.append(time.thread_time() - started)

    threads = [threading.Thread(target=match) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    per_line = max(spent) / 30
    return max(10, min(120, int(cpu_seconds / per_line)))


async def test_case_09_parallel_files_do_not_spend_each_others_budget(fake: FakeGitHub) -> None:
    """Case 09: four files that each need more than half their regex budget (1.2 s of the
    default 2 s, as the case was written) pass at default settings, matched two at a time:
    no regex_timeout, 4 files scanned, no match."""
    lines = (b"a" * 22 + b"b\n") * lines_needing(1.2, r"(?:a|aa)+$")
    gists = [
        FakeGist(gist_id("slowuser", i), [FakeFile(f"part{i}.txt", lines + f"file {i}\n".encode())])
        for i in range(4)
    ]
    fake.add_user("slowuser", gists)
    records = await run(fake, "slowuser", r"(?:a|aa)+$")
    summary = records[-1]
    assert isinstance(summary, Summary)
    assert [r for r in records if not isinstance(r, Summary)] == []
    assert (summary.files, summary.matches, summary.errors, summary.complete) == (4, 0, 0, True)


async def test_pathological_files_stop_within_their_budget_and_others_go_on(
    fake: FakeGitHub,
) -> None:
    """(a|aa)+$ on lines of a's: the bad files get regex_timeout, the good one its match."""
    bad = (b"a" * 40 + b"b\n") * 20
    gists = [FakeGist(gist_id("patho", i), [FakeFile("bad.txt", bad)]) for i in range(2)]
    gists.append(FakeGist(gist_id("patho", 2), [FakeFile("good.txt", b"xx\naaaa\n")]))
    fake.add_user("patho", gists)
    records = await run(fake, "patho", r"(a|aa)+$", regex_timeout=0.3)
    errors = sorted((r.gist_id, r.code) for r in records if isinstance(r, Error))
    assert errors == [
        (gist_id("patho", 0), "regex_timeout"),
        (gist_id("patho", 1), "regex_timeout"),
    ]
    matches = [(m.filename, m.line_number, m.match) for m in records if isinstance(m, Match)]
    assert matches == [("good.txt", 2, "aaaa")]


async def test_an_engine_failure_is_that_files_error_record(
    fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A MemoryError while matching one file becomes its `regex_error` record; the other file
    is scanned and the summary comes."""
    fake.add_user(
        "memuser",
        [
            FakeGist(gist_id("memuser", 0), [FakeFile("boom.txt", b"boom needle\n")]),
            FakeGist(gist_id("memuser", 1), [FakeFile("fine.txt", b"fine needle\n")]),
        ],
    )
    real_close = files_module.FileScanner.close

    def close(self: files_module.FileScanner) -> list[Any]:
        if self._parts and self._parts[0].startswith(b"boom"):
            raise MemoryError  # what regex raises when a pattern's stack outgrows memory
        return real_close(self)

    monkeypatch.setattr(files_module.FileScanner, "close", close)
    records = await run(fake, "memuser", "needle", concurrency=1)
    errors = [(r.filename, r.code, r.message) for r in records if isinstance(r, Error)]
    assert errors == [("boom.txt", "regex_error", "the regex engine failed: MemoryError")]
    assert [m.filename for m in records if isinstance(m, Match)] == ["fine.txt"]
    summary = records[-1]
    assert isinstance(summary, Summary) and summary.errors == 1 and summary.files == 1


async def test_case_18_reverse_flag_is_refused_before_any_request(fake: FakeGitHub) -> None:
    """Case 18: `(?r)needle` is refused with one line naming the flag, exit 2, no request."""
    fake.add_user(
        "revuser",
        [FakeGist(gist_id("revuser", 0), [FakeFile("notes.txt", b"alpha needle\nbeta\n")])],
    )
    for pattern, construct in [("(?r)needle", "(?r)"), ("(?R)", "(?R)"), ("(a)(?1)", "(?1)")]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gistscan", "search", "revuser", pattern,
            "--api-url", fake.api_url, "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2
        assert out == b""
        message = err.decode().strip()
        assert "\n" not in message and construct in message and "Traceback" not in message
    assert sum(fake.requests.values()) == 0


@pytest.mark.parametrize(("pattern", "construct"), [("(?r)needle", "(?r)"), ("(?R)", "(?R)")])
async def test_server_refuses_unsupported_constructs(
    fake: FakeGitHub, aiohttp_client: Any, pattern: str, construct: str
) -> None:
    """The server answers 400 invalid_pattern naming the construct, before any request."""
    fake.add_user("revuser", [FakeGist(gist_id("revuser", 0), [FakeFile("n.txt", b"needle\n")])])
    app = make_app(ServerConfig(settings=Settings(api_url=fake.api_url)))
    client = await aiohttp_client(app)
    resp = await client.get("/api/v1/users/revuser/search", params={"pattern": pattern})
    body = await resp.json()
    assert resp.status == 400
    assert body["error"] == "invalid_pattern" and construct in body["message"]
    assert sum(fake.requests.values()) == 0
