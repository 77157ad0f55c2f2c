"""The real command line, run as a process against the fake GitHub over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import MakeFake
from tests.fake_github import FakeFile, FakeGist, FakeGitHub, gist_id, make_gists


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]

    @property
    def summary(self) -> dict[str, Any]:
        last = self.records[-1]
        assert last["type"] == "summary"
        return last


async def gistscan(*args: str, env: dict[str, str] | None = None, limit: float = 60) -> Run:
    """Run `python -m gistscan ARGS` without blocking the loop the fake serves on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gistscan", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode is not None
    run = Run(proc.returncode, out.decode(), err.decode())
    assert "Traceback" not in run.err, run.err
    return run


def search(fake: FakeGitHub, user: str, pattern: str, *extra: str) -> list[str]:
    return ["search", user, pattern, "--api-url", fake.api_url, *extra]


async def test_many_pages_scanned_completely_and_exactly(fake: FakeGitHub) -> None:
    """A user of 11 pages: every gist listed once, every planted match found once, exactly."""
    n = 1050

    def content(i: int, j: int) -> bytes:
        filler = "".join(f"line {k} of gist {i}\n" for k in range(i % 7))
        return f"{filler}TOKEN-{i:04d}-{j} here\nnothing\n".encode()

    fake.add_user("many", make_gists("many", n, 2, content=content))
    run = await gistscan(*search(fake, "many", r"TOKEN-\d{4}-\d", "--json"))
    assert run.code == 0
    matches = [r for r in run.records if r["type"] == "match"]
    got = sorted(
        (m["gist_id"], m["filename"], m["line_number"], m["column"], m["match"]) for m in matches
    )
    expected = sorted(
        (gist_id("many", i), f"gist{i}_file{j}.txt", i % 7 + 1, 1, f"TOKEN-{i:04d}-{j}")
        for i in range(n)
        for j in range(2)
    )
    assert got == expected
    assert run.summary | {"elapsed_ms": 0, "bytes": 0} == {
        "type": "summary", "username": "many", "pattern": r"TOKEN-\d{4}-\d", "gists": n,
        "files": 2 * n, "skipped": 0, "bytes": 0, "matches": 2 * n, "errors": 0,
        "complete": True, "elapsed_ms": 0,
    }  # fmt: skip
    assert fake.requests["list"] == 11


async def test_downloads_overlap_listing_and_respect_concurrency(make_fake: MakeFake) -> None:
    """Downloads overlap the listing (pages prefetched); never more than --concurrency at once."""
    fake = await make_fake(latency=0.05, raw_latency=0.02)
    fake.add_user("slow", make_gists("slow", 500, 1))
    run = await gistscan(*search(fake, "slow", "gist", "--concurrency", "3", "--json"))
    assert run.code == 0
    first_raw = min(t for t, _ in fake.raw_started)
    last_page = max(t for t, _ in fake.list_served)
    assert first_raw < last_page
    # The next page is asked for as soon as one arrives, not when its files run out.
    page_two = sorted(t for t, _ in fake.list_served)[1]
    assert page_two < sorted(t for t, _ in fake.raw_started)[50]
    assert fake.peak_raw_in_flight == 3
    assert fake.requests["raw"] == 500


async def test_max_count_stops_early_and_leaves_nothing_running(make_fake: MakeFake) -> None:
    """-m 1 prints one match, a summary with complete false, and cancels the downloads."""
    fake = await make_fake(raw_latency=0.05)
    fake.add_user("lots", make_gists("lots", 300, 1))
    run = await gistscan(*search(fake, "lots", "gist", "-m", "1", "--json"))
    assert run.code == 0
    assert [r["type"] for r in run.records] == ["match", "summary"]
    assert run.summary["complete"] is False
    assert fake.requests["raw"] < 50
    for _ in range(50):
        if fake.raw_in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert fake.raw_in_flight == 0


async def test_catastrophic_pattern_times_out_per_file_and_scan_goes_on(fake: FakeGitHub) -> None:
    """`(a|aa)+$` burns its budget on lines of a's then '!', other files still match."""
    evil = ("a" * 40 + "!\n") * 20
    gists = [
        FakeGist(gist_id("evil", i), [FakeFile("evil.txt", evil.encode())]) for i in range(2)
    ] + [FakeGist(gist_id("evil", 9), [FakeFile("good.txt", b"xx\naaaa\n")])]
    fake.add_user("evil", gists)
    started = time.monotonic()
    run = await gistscan(*search(fake, "evil", r"(a|aa)+$", "--timeout", "0.3", "--json"))
    elapsed = time.monotonic() - started
    assert run.code == 2
    errors = [r for r in run.records if r["type"] == "error"]
    assert sorted(e["gist_id"] for e in errors) == [gist_id("evil", 0), gist_id("evil", 1)]
    assert {e["code"] for e in errors} == {"regex_timeout"}
    matches = [r for r in run.records if r["type"] == "match"]
    assert [(m["filename"], m["line_number"], m["match"]) for m in matches] == [
        ("good.txt", 2, "aaaa")
    ]
    assert run.summary["errors"] == 2 and run.summary["complete"] is False
    assert elapsed < 15  # two budgets of 0.3 s, not the minutes a full backtrack takes


async def test_grep_like_output_and_summary_on_stderr(fake: FakeGitHub) -> None:
    """Default output is GIST_ID/FILENAME:LINE:TEXT, the summary goes to stderr."""
    fake.add_user("octo", [FakeGist("abc123", [FakeFile("hello.py", b"x = 1\nimport requests\n")])])
    run = await gistscan(*search(fake, "octo", "import requests"))
    assert run.code == 0
    assert run.out == "abc123/hello.py:2:import requests\n"
    assert "1 match in 1 file of 1 gist" in run.err


async def test_color_always_highlights_the_match(fake: FakeGitHub) -> None:
    """--color always marks the match in the line."""
    fake.add_user("octo", [FakeGist("abc123", [FakeFile("a.txt", b"say hello world\n")])])
    run = await gistscan(*search(fake, "octo", "hello", "--color", "always"))
    assert run.out == "abc123/a.txt:1:say \x1b[1;31mhello\x1b[0m world\n"


async def test_no_match_exits_one(fake: FakeGitHub) -> None:
    """Nothing matched: exit 1, nothing on stdout."""
    fake.add_user("octo", make_gists("octo", 3))
    run = await gistscan(*search(fake, "octo", "zzz-not-there"))
    assert (run.code, run.out) == (1, "")


async def test_binary_files_are_skipped(fake: FakeGitHub) -> None:
    """A file with a NUL in its head is counted as skipped, never matched."""
    fake.add_user(
        "bin", [FakeGist("b1", [FakeFile("x.bin", b"needle\0needle"), FakeFile("t", b"needle")])]
    )
    run = await gistscan(*search(fake, "bin", "needle", "--json"))
    assert [r["filename"] for r in run.records if r["type"] == "match"] == ["t"]
    assert (run.summary["skipped"], run.summary["files"], run.summary["complete"]) == (1, 1, True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "bad.name", "x"], "invalid GitHub user name"),
        (["search", "octo", ""], "pattern is empty"),
        (["search", "octo", "(unclosed"], "does not compile"),
        (["search", "octo", "x" * 1001], "1001 characters long"),
        (["search", "octo", "(?V1)a"], "does not compile"),
        (["search", "octo", "(?:a{1000}){1000}"], "unroll to about 1000000 items"),
        (["search", "octo", "x", "--concurrency", "0"], "--concurrency"),
        (["search", "octo", "x", "-m", "many"], "-m/--max-count"),
        (["search", "octo", "x", "--timeout", "-1"], "--timeout"),
        (["search", "octo", "x", "--api-url", "ftp://x"], "must start with http"),
        (["search", "octo"], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
async def test_bad_input_is_refused_before_any_request(
    fake: FakeGitHub, args: list[str], message: str
) -> None:
    """Bad patterns, names and options: one line on stderr, exit 2, no request made."""
    if "--api-url" not in args:
        args = [*args, "--api-url", fake.api_url] if args[0] == "search" and len(args) > 2 else args
    run = await gistscan(*args)
    assert run.code == 2
    assert run.out == ""
    assert message in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert sum(fake.requests.values()) == 0


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        ("rate_limited", "rate_limited", "resets in"),
        ("rate_limited_429", "rate_limited", "resets in 30 s"),
        ("not_array", "invalid_response", "not a JSON array"),
        ("truncated_json", "invalid_response", "not valid JSON"),
        ("503", "upstream_error", "503"),
    ],
)
async def test_listing_faults_end_the_scan(
    fake: FakeGitHub, fault: str, code: str, words: str
) -> None:
    """A failing listing is one error record with null ids, then the summary; exit 2."""
    fake.add_user("octo", make_gists("octo", 3))
    fake.set_list_fault("octo", fault)
    run = await gistscan(*search(fake, "octo", "gist", "--json", "--retries", "1"))
    assert run.code == 2
    error, summary = run.records
    assert (error["type"], error["gist_id"], error["filename"], error["code"]) == (
        "error",
        None,
        None,
        code,
    )
    assert words in error["message"]
    assert summary["complete"] is False
    plain = await gistscan(*search(fake, "octo", "gist", "--retries", "0"))
    assert plain.code == 2 and f"{code}: " in plain.err and words in plain.err


async def test_unknown_user(fake: FakeGitHub) -> None:
    """An unknown user is `not_found` naming the user; exit 2."""
    run = await gistscan(*search(fake, "ghost", "x"))
    assert run.code == 2
    assert "not_found: GitHub has no user 'ghost'" in run.err


async def test_transient_5xx_is_retried(fake: FakeGitHub) -> None:
    """A listing that fails once with 502 then succeeds is scanned completely."""
    fake.add_user("octo", make_gists("octo", 3))
    fake.set_list_fault("octo", "502", times=1)
    run = await gistscan(*search(fake, "octo", "gist 1 ", "--json"))
    assert run.code == 0 and run.summary["complete"] is True
    assert fake.requests["list"] == 2


async def test_file_faults_become_error_records(fake: FakeGitHub) -> None:
    """A file that fails after retries is one error record; the other files still match."""
    fake.add_user(
        "octo",
        [
            FakeGist("g1", [FakeFile("broken.txt", b"needle\n", fault="500")]),
            FakeGist("g2", [FakeFile("gone.txt", b"needle\n", fault="404")]),
            FakeGist("g3", [FakeFile("fine.txt", b"a needle\n")]),
        ],
    )
    run = await gistscan(*search(fake, "octo", "needle", "--json", "--retries", "1"))
    assert run.code == 2
    errors = {r["filename"]: r["code"] for r in run.records if r["type"] == "error"}
    assert errors == {"broken.txt": "upstream_error", "gone.txt": "not_found"}
    assert [r["filename"] for r in run.records if r["type"] == "match"] == ["fine.txt"]
    assert run.summary["files"] == 1 and run.summary["errors"] == 2


async def test_reset_mid_body_is_resumed_without_duplicates(fake: FakeGitHub) -> None:
    """A connection reset mid-body is retried; the matches equal a clean read, none twice."""
    content = "".join(f"{k} needle\n" for k in range(20000)).encode()
    fake.add_user(
        "octo", [FakeGist("g1", [FakeFile("big.txt", content, fault="reset", fault_times=2)])]
    )
    run = await gistscan(*search(fake, "octo", "needle", "--json", "--chunk-size", "1000"))
    assert run.code == 0
    lines = [r["line_number"] for r in run.records if r["type"] == "match"]
    assert lines == list(range(1, 20001))
    assert run.summary["bytes"] > len(content)  # the broken tries are counted too


async def test_token_goes_to_the_api_host_only(fake: FakeGitHub) -> None:
    """GITHUB_TOKEN is a Bearer token on API requests, absent from raw requests."""
    fake.add_user("octo", make_gists("octo", 2))
    await gistscan(*search(fake, "octo", "x"), env={"GITHUB_TOKEN": "s3cret"})
    assert fake.seen_headers and all(
        h["Authorization"] == "Bearer s3cret" for h in fake.seen_headers
    )
    assert fake.raw_seen_headers and all("Authorization" not in h for h in fake.raw_seen_headers)
    for h in fake.seen_headers:
        assert h["Accept"] == "application/vnd.github+json"
        assert h["X-GitHub-Api-Version"] == "2022-11-28"
        assert h["User-Agent"].startswith("gistscan/")
    fake.reset_counters()
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gistscan", *search(fake, "octo", "x"), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await proc.wait()
    assert fake.seen_headers and all("Authorization" not in h for h in fake.seen_headers)


async def test_closed_pipe_ends_quietly(fake: FakeGitHub) -> None:
    """`gistscan ... | head -1`: one line, no traceback, the scan stops."""
    fake.add_user("octo", make_gists("octo", 200, 1))
    cmd = (
        f"{sys.executable} -m gistscan search octo gist --api-url {fake.api_url} | head -1;"
        " echo status=${PIPESTATUS[0]}"
    )
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = out.decode().splitlines()
    assert len(lines) == 2 and lines[1] == "status=0"
    assert "Traceback" not in err.decode() and "Exception" not in err.decode()


async def test_ctrl_c_exits_cleanly(make_fake: MakeFake) -> None:
    """SIGINT mid-scan: exit 130, a short message, no traceback."""
    fake = await make_fake(raw_latency=0.5)
    fake.add_user("octo", make_gists("octo", 100, 1))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gistscan", *search(fake, "octo", "gist"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    for _ in range(200):
        if fake.raw_in_flight:
            break
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130
    assert "Traceback" not in err.decode()
    assert "interrupted" in err.decode()
