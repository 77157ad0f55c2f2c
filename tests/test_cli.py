"""The real command line, run as a process against the fake GitHub over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import io
import json
import os
import re
import shlex
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import regex

from gistscan import __version__
from gistscan.cli import use_color
from tests.conftest import MakeFake
from tests.fake_github import (
    LANGUAGES,
    FakeFile,
    FakeGist,
    FakeGitHub,
    big_text,
    gist_id,
    make_gists,
)
from tests.hostile_github import HostileGitHub


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def records(self) -> list[dict[str, Any]]:
        # NDJSON lines end at "\n" only: a line may hold U+2028, which splitlines() splits on.
        return [json.loads(line) for line in self.out.split("\n") if line]

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


# A process started in the background by a non-interactive shell (`pytest &`, some CI
# runners) inherits SIGINT *ignored*, and so would gistscan: it would then rightly run to its
# end and exit 0. Tests that send SIGINT restore its default disposition first, then exec.
_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
    " os.execv(sys.executable, [sys.executable, '-m', 'gistscan', *sys.argv[1:]])"
)


async def interruptible(
    *args: str, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """`python -m gistscan ARGS`, started with SIGINT at its default (see above), pipes open."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DEFAULT_SIGINT, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


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
        "files": 2 * n, "skipped": 0, "filtered": 0, "bytes": 0, "matches": 2 * n,
        "errors": 0, "complete": True, "elapsed_ms": 0,
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


async def test_max_total_stops_early_and_leaves_nothing_running(make_fake: MakeFake) -> None:
    """--max-total 1 prints one match, a summary with complete false, cancels the downloads."""
    fake = await make_fake(raw_latency=0.05)
    fake.add_user("lots", make_gists("lots", 300, 1))
    run = await gistscan(*search(fake, "lots", "gist", "--max-total", "1", "--json"))
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


async def test_color_always_highlights_every_match_of_the_line(fake: FakeGitHub) -> None:
    """--color always marks each match in the line, the file name and line number too."""
    fake.add_user("octo", [FakeGist("abc123", [FakeFile("a.txt", b"say hello world\n")])])
    run = await gistscan(*search(fake, "octo", "hello|wor", "--color", "always"))
    assert run.out == (
        "\x1b[35mabc123/a.txt\x1b[0m:\x1b[32m1\x1b[0m:"
        "say \x1b[1;31mhello\x1b[0m \x1b[1;31mwor\x1b[0mld\n"
    )


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
        (
            ["search", "octo", "x", "--concurrency", "0"],
            "--concurrency must be an integer from 1 to 100",
        ),
        (["search", "octo", "x", "--retries", "11"], "--retries must be from 0 to 10"),
        (["search", "octo", "x", "--max-total", "0"], "must be 1 or more"),
        (["search", "octo", "x", "-m", "-1"], "must be 0 or more"),
        (["search", "octo", "x", "-v"], "-v (--invert-match) is not supported"),
        (["search", "octo", "x", "-g", "["], "unclosed character class"),
        (["search", "octo", "x", "-g", "{a"], "unclosed alternate group"),
        (["search", "octo", "x", "-g", "[c-a].py"], "invalid range; 'c' > 'a'"),
        (["search", "octo", "x", "--since", "0001-01-01T00:00+01:00"], "outside the years"),
        (["search", "octo", "x", "-m", "many"], "-m/--max-count"),
        (["search", "octo", "x", "--timeout", "-1"], "--timeout"),
        (["search", "octo", "x", "--api-url", "ftp://x"], "must start with http"),
        (["search", "octo", "x", "--api-url", "http://[::1"], "Invalid IPv6 URL"),
        (["search", "octo", "x", "--api-url", "http://127.0.0.1:99999"], "Port out of range"),
        (["search", "octo", "x", "--api-url", "http:///gists"], "names no host"),
        (["search", "octo", "x", "--chunk-size", "99999999999999"], "from 1 to 16777216"),
        (["search", "octo", "x", "--max-carry", "99999999999999"], "from 1 to 67108864"),
        (["search", "octo", "x", "--concurrency", "100000"], "from 1 to 100"),
        (["search", "octo", "x", "--since", "yesterday"], "ISO 8601"),
        (["search", "octo", "x", "-g", "!"], "an empty glob"),
        (["search", "octo", "x", "-g", "{a,b}" * 12], "expands to over 1000"),
        (["search", "octo", "x", "-A", "-1"], "-A/--after-context"),
        (["search", "octo", "x", "-C", "100000"], "must be from 0 to 1000"),
        (["search", "octo", "x", "--json", "-l"], "cannot be used with -l"),
        (["search", "octo", "x", "-l", "-c"], "cannot be used together"),
        (["search", "octo", "x", "-e", "y"], "not both"),
        (["search", "octo"], "PATTERN (or -e PATTERN) is required"),
        (["search", "octo", "-w", "-e", "a)|(b"], "does not compile"),
        (["serve", "--port", "99999"], "must be from 0 to 65535"),
        (["frobnicate"], "invalid choice"),
    ],
)
async def test_bad_input_is_refused_before_any_request(
    fake: FakeGitHub, args: list[str], message: str
) -> None:
    """Bad patterns, names and options: one line on stderr, exit 2, no request made."""
    if "--api-url" not in args and args[0] == "search":
        args = [*args, "--api-url", fake.api_url]
    run = await gistscan(*args)
    assert run.code == 2
    assert run.out == ""
    assert message in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert "9223372036854775807" not in run.err  # a bound is the real one
    assert sum(fake.requests.values()) == 0


def test_the_flags_bounds_are_the_settings_bounds() -> None:
    """The bounds --help and the errors state are the ones Settings and Query enforce."""
    from gistscan.cli import build_parser
    from gistscan.config import MAX_CARRY_LIMIT, MAX_CHUNK_SIZE, MAX_CONCURRENCY, MAX_CONTEXT

    text = build_parser()._subparsers._group_actions[0].choices["search"].format_help()  # type: ignore[union-attr]
    text = " ".join(text.split())
    assert f"downloads in flight, 1-{MAX_CONCURRENCY}" in text
    assert f"read size, 1 to {MAX_CHUNK_SIZE}" in text
    assert f"1 to {MAX_CARRY_LIMIT}" in text
    assert MAX_CONTEXT == 1000  # cli._lines


@pytest.mark.parametrize(
    "args",
    [
        ["octo", "-i", "DEPLOY"],
        ["-i", "octo", "DEPLOY"],
        ["octo", "DEPLOY", "-i"],
        ["octo", "-i", "--json", "DEPLOY", "--concurrency", "1"],
        ["octo", "-g", "*.md", "-C", "0", "-m", "5", "-i", "DEPLOY"],
    ],
)
async def test_options_may_come_between_user_and_pattern(fake: FakeGitHub, args: list[str]) -> None:
    """As grep's: options before, between or after USER and PATTERN all mean the same."""
    fake.add_user("octo", [FakeGist("g1", [FakeFile("a.md", b"deploy now\n")])])
    run = await gistscan("search", *args, "--api-url", fake.api_url)
    assert run.code == 0, run.err
    if "--json" in args:
        assert [r["line"] for r in run.records if r["type"] == "match"] == ["deploy now"]
    else:
        assert run.out == "g1/a.md:1:deploy now\n"


async def test_after_double_dash_and_with_e_a_pattern_may_start_with_a_dash(
    fake: FakeGitHub,
) -> None:
    """`--` ends the options (what follows is USER and PATTERN); `-e -x` is a pattern."""
    fake.add_user("octo", [FakeGist("g1", [FakeFile("a.md", b"a -x b\n-i\n")])])
    dashed = await gistscan("search", "--api-url", fake.api_url, "octo", "--", "-x")
    assert dashed.out == "g1/a.md:1:a -x b\n"
    option_like = await gistscan("search", "--api-url", fake.api_url, "-F", "octo", "--", "-i")
    assert option_like.out == "g1/a.md:2:-i\n"
    with_e = await gistscan("search", "octo", "-e", "-x", "-i", "--api-url", fake.api_url)
    assert with_e.out == "g1/a.md:1:a -x b\n"
    late = await gistscan("search", "octo", "--", "-x", "-i", "--api-url", fake.api_url)
    assert late.code == 2 and "unrecognized arguments: -i --api-url" in late.err
    fake.add_user("-octo-", [FakeGist("g2", [FakeFile("b.md", b"-y\n")])])
    both = await gistscan("search", "--api-url", fake.api_url, "--", "-octo-", "-y")
    assert both.out == "g2/b.md:1:-y\n"


async def test_max_count_zero_reads_nothing_and_exits_1(fake: FakeGitHub) -> None:
    """-m 0 as grep's and ripgrep's: nothing requested, nothing printed, exit 1; a bad
    option beside it is still refused."""
    fake.add_user("octo", [FakeGist("g1", [FakeFile("a.md", b"deploy\n")])])
    for extra in ((), ("--json",)):
        run = await gistscan(*search(fake, "octo", "deploy", "-m", "0", *extra))
        assert (run.code, run.out, run.err) == (1, "", "")
    assert sum(fake.requests.values()) == 0
    bad = await gistscan(*search(fake, "octo", "(", "-m", "0"))
    assert bad.code == 2 and "does not compile" in bad.err


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


@pytest.mark.parametrize("json_out", [False, True])
async def test_a_full_disk_is_a_write_error(fake: FakeGitHub, json_out: bool) -> None:
    """`gistscan ... > /dev/full`: grep's "write error", status 2, no traceback; the scan
    stops (stdout refuses every write, so nothing else could be said)."""
    fake.add_user("octo", make_gists("octo", 200, 1))
    extra = ["--json"] if json_out else []
    cmd = shlex.join([sys.executable, "-m", "gistscan", *search(fake, "octo", "gist", *extra)])
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", f"{cmd} > /dev/full", stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    text = err.decode()
    assert "gistscan: write error: No space left on device" in text
    assert "Traceback" not in text and "Exception" not in text
    assert fake.requests["raw"] < 200  # stopped, not run to the end


async def test_ctrl_c_exits_cleanly(make_fake: MakeFake) -> None:
    """SIGINT mid-scan: exit 130, a short message, no traceback."""
    fake = await make_fake(raw_latency=0.5)
    fake.add_user("octo", make_gists("octo", 100, 1))
    proc = await interruptible(*search(fake, "octo", "gist"))
    for _ in range(200):
        if fake.raw_in_flight:
            break
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130
    assert "Traceback" not in err.decode()
    assert "interrupted" in err.decode()


# -- grep's options, against an oracle computed here from the fake's files --------------------


def _lang(name: str) -> str | None:
    """The language the fake lists for a file name (by its extension)."""
    return LANGUAGES.get("." + name.rpartition(".")[2]) if "." in name else None


def _kept_by_globs(name: str, globs: tuple[str, ...]) -> bool:
    """ripgrep's -g: the last glob that matches decides; none: kept unless one includes."""
    verdict = all(g.startswith("!") for g in globs)
    for glob in globs:
        alternatives = [glob.lstrip("!")]
        while any("{" in a for a in alternatives):
            a = next(a for a in alternatives if "{" in a)
            head, _, rest = a.partition("{")
            inner, _, tail = rest.partition("}")
            alternatives.remove(a)
            alternatives += [head + part + tail for part in inner.split(",")]
        if any(fnmatch.fnmatchcase(name, a) for a in alternatives):
            verdict = not glob.startswith("!")
    return verdict


@dataclass(frozen=True)
class Grep:
    """The options of one run, and what grep would print for them (`expected`)."""

    patterns: tuple[str, ...]
    args: tuple[str, ...] = ()
    ignore_case: bool = False
    fixed: bool = False
    word: bool = False
    max_count: int | None = None
    max_total: int | None = None
    before: int = 0
    after: int = 0
    mode: str = "lines"  # lines, column, only, only-column, files, count
    globs: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    since: str | None = None

    def compiled(self) -> regex.Pattern[str]:
        source = "|".join(f"(?:{regex.escape(p) if self.fixed else p})" for p in self.patterns)
        if self.word:
            source = rf"(?<!\w)(?:{source})(?!\w)"
        return regex.compile(source, regex.V0 | regex.M | (regex.I if self.ignore_case else 0))

    def read(self, gist: FakeGist, file: FakeFile) -> bool:
        """Whether the file is read at all (listed since `since`, kept by the filters)."""
        if self.since is not None and gist.updated_at < self.since:
            return False
        if self.globs and not _kept_by_globs(file.name, self.globs):
            return False
        language = _lang(file.name)
        return not self.languages or (
            language is not None and language.lower() in {x.lower() for x in self.languages}
        )

    def events(self, gists: list[FakeGist]) -> list[tuple[Any, ...]]:
        """Per file in listing order: ("match", prefix, n, column, text, line), ("done", ...),
        ("context", prefix, n, line), ("end", prefix); cut after the --max-total-th match."""
        out: list[tuple[Any, ...]] = []
        total = 0
        for gist in gists:
            for file in gist.files:
                if not self.read(gist, file) or b"\0" in file.content[:8192]:
                    continue
                prefix = f"{gist.id}/{file.name}"
                text = file.content.decode("utf-8-sig", "replace")
                lines = [x.removesuffix("\r") for x in text.split("\n")]
                if lines[-1] == "":
                    lines.pop()
                by_line: dict[int, list[tuple[int, str]]] = {}
                for m in self.compiled().finditer(text):
                    if m.end() > m.start():
                        n = text.count("\n", 0, m.start()) + 1
                        column = m.start() - text.rfind("\n", 0, m.start())
                        by_line.setdefault(n, []).append((column, m.group()))
                matching = sorted(by_line)
                if self.mode == "files":
                    matching, by_line = matching[:1], {n: by_line[n][:1] for n in matching[:1]}
                elif self.max_count is not None:
                    matching = matching[: self.max_count]
                capped = self.mode == "files" or (
                    self.max_count is not None and len(matching) == self.max_count
                )
                stop = matching[-1] if matching and capped else None
                for n in range(1, len(lines) + 1):
                    if n in matching:
                        for column, found in by_line[n]:
                            out.append(("match", prefix, n, column, found, lines[n - 1]))
                            total += 1
                            if total == self.max_total:
                                return out
                        out.append(("done", prefix, n))
                    elif stop is not None and n > stop:
                        if n <= stop + self.after:
                            out.append(("context", prefix, n, lines[n - 1]))
                    elif any(m < n <= m + self.after for m in matching) or any(
                        m - self.before <= n < m for m in matching
                    ):
                        out.append(("context", prefix, n, lines[n - 1]))
                out.append(("end", prefix))
        return out

    def expected(self, gists: list[FakeGist]) -> str:
        """The exact stdout (one download at a time: files in listing order)."""
        printed: list[str] = []
        last: tuple[str, int] | None = None
        counts: dict[str, int] = {}

        def show(prefix: str, n: int, line: str) -> None:
            nonlocal last
            if (self.before or self.after) and last is not None and last != (prefix, n - 1):
                printed.append("--")
            last = (prefix, n)
            printed.append(line)

        pending: tuple[str, int, str] | None = None
        for event in self.events(gists):
            kind, prefix = event[0], event[1]
            if kind == "match":
                _, _, n, column, found, line = event
                if self.mode == "files":
                    printed.append(prefix)
                elif self.mode == "count":
                    counts[prefix] = counts.get(prefix, 0) + (pending is None)
                    pending = (prefix, n, line)
                elif self.mode == "lines":
                    pending = (prefix, n, line)
                else:
                    where = f"{n}:{column}" if "column" in self.mode else str(n)
                    shown = found if self.mode.startswith("only") else line
                    show(prefix, n, f"{prefix}:{where}:{shown}")
            elif kind == "done":
                if pending is not None and self.mode == "lines":
                    show(prefix, pending[1], f"{prefix}:{pending[1]}:{pending[2]}")
                pending = None
            elif kind == "context" and self.mode in ("lines", "column"):
                show(prefix, event[2], f"{prefix}-{event[2]}-{event[3]}")
            elif kind == "end" and counts.get(prefix):
                printed.append(f"{prefix}:{counts[prefix]}")
        if pending is not None and self.mode == "lines":  # stopped by --max-total mid-line
            printed.append(f"{pending[0]}:{pending[1]}:{pending[2]}")
        return "".join(line + "\n" for line in printed)

    def command(self, fake: FakeGitHub, user: str) -> list[str]:
        args = ["search", user, "--api-url", fake.api_url, "--concurrency", "1", *self.args]
        return args + [a for p in self.patterns for a in ("-e", p)]


def corpus() -> list[FakeGist]:
    """Gists whose files put matches at file starts and ends, in overlapping groups, twice on
    a line, in a binary file, in files of several languages and none, updated at three times."""
    return [
        FakeGist("a" * 20, updated_at="2024-05-01T00:00:00Z", files=[
            FakeFile("app.py", b"TODO first\nx = 1\ny = 2\nz = 3\n# TODO middle\n"
                     + b"".join(b"line %d\n" % i for i in range(6, 12)) + b"TODO last"),
            FakeFile("notes.md", b"a\nb\nTODO c\nd\nTODO e\nf\ng\nh\ni\nj\nk\nTODO l\nm\n"),
            FakeFile("data.bin", b"TODO\0TODO\n"),
        ]),
        FakeGist("b" * 20, updated_at="2023-01-01T00:00:00Z", files=[
            FakeFile("script.js", b"// x\n// TODO TODO twice\n// TODO\n// TODO\nend\n"),
            FakeFile("README.txt", b"todo lower\nTODOs plural\nTODO-list\n(TODO)\n-x flag\n"),
        ]),
        FakeGist("c" * 20, updated_at="2025-01-01T00:00:00Z", files=[
            FakeFile("main.rb", b"puts 1\n# TODO ruby\r\nputs 2\n"),
            FakeFile("Makefile", b"all:\n\t# TODO make\n"),
            FakeFile("test_app.py", b"def test():\n    pass  # TODO test\n"),
        ]),
    ]  # fmt: skip


TODO = ("TODO",)
GREPS = [
    Grep(TODO),
    Grep(TODO, ("-C", "2"), before=2, after=2),
    Grep(TODO, ("-A", "1"), after=1),
    Grep(TODO, ("-B", "3"), before=3),
    Grep(TODO, ("-B", "1", "-A", "4"), before=1, after=4),
    Grep(TODO, ("-m", "1"), max_count=1),
    Grep(TODO, ("-m", "2", "-A", "1"), max_count=2, after=1),
    Grep(TODO, ("--max-total", "4"), max_total=4),
    Grep(TODO, ("--max-total", "3", "-C", "1"), max_total=3, before=1, after=1),
    Grep(TODO, ("-m", "1", "--max-total", "3"), max_count=1, max_total=3),
    Grep(TODO, ("--column",), mode="column"),
    Grep(TODO, ("--column", "-C", "1"), mode="column", before=1, after=1),
    Grep(TODO, ("-o",), mode="only"),
    Grep(TODO, ("-o", "--column", "-m", "1"), mode="only-column", max_count=1),
    Grep(TODO, ("-l",), mode="files"),
    Grep(TODO, ("-c",), mode="count"),
    Grep(TODO, ("-c", "-m", "2"), mode="count", max_count=2),
    Grep(("todo",), ("-i", "-n"), ignore_case=True),
    Grep(("TODO",), ("-w",), word=True),
    Grep(("TODO", "-x", "ruby"), ("-F",), fixed=True),
    Grep(("T.DO", "pu[t]s"), ()),
    Grep(("(TODO",), ("-F", "-o"), fixed=True, mode="only"),
    Grep(TODO, ("-g", "*.py"), globs=("*.py",)),
    Grep(TODO, ("-g", "!*.py"), globs=("!*.py",)),
    Grep(TODO, ("-g", "*.{py,md}", "-g", "!test_*"), globs=("*.{py,md}", "!test_*")),
    Grep(TODO, ("-g", "!*.md", "-g", "notes.*"), globs=("!*.md", "notes.*")),
    Grep(TODO, ("--language", "python", "--language", "RUBY"), languages=("python", "RUBY")),
    Grep(
        TODO,
        ("--language", "Markdown", "-g", "!notes.md"),
        globs=("!notes.md",),
        languages=("Markdown",),
    ),
    Grep(TODO, ("--since", "2024-01-01"), since="2024-01-01T00:00:00Z"),
    Grep(TODO, ("--since", "2024-06-01T02:00:00+02:00"), since="2024-06-01T00:00:00Z"),
]


@pytest.mark.parametrize("grep", GREPS, ids=lambda g: " ".join(g.args) or "plain")
async def test_options_print_what_grep_prints(fake: FakeGitHub, grep: Grep) -> None:
    """Each option's output equals grep's, computed from the whole files here; filtered files
    and gists listed before --since are never requested."""
    gists = corpus()
    fake.add_user("corpus", gists)
    run = await gistscan(*grep.command(fake, "corpus"))
    expected = grep.expected(gists)
    assert run.out == expected
    assert run.code == (0 if expected else 1), run.err
    read = [(g, f) for g in gists for f in g.files if grep.read(g, f)]
    requested = sorted(path.rpartition("/")[2] for _, path in fake.raw_started)
    if grep.max_total is None:
        assert requested == sorted(f.name for _, f in read)
        listed = sum(
            len(g.files) for g in gists if grep.since is None or g.updated_at >= grep.since
        )
        assert f"{listed - len(read)} filtered" in run.err or listed == len(read)
    else:
        assert set(requested) <= {f.name for _, f in read}


@pytest.mark.parametrize("grep", [g for g in GREPS if g.mode not in ("files", "count")][:12],
                         ids=lambda g: " ".join(g.args) or "plain")  # fmt: skip
async def test_json_records_equal_the_oracle(fake: FakeGitHub, grep: Grep) -> None:
    """--json: one match record per match and one context record per context line, in file
    order, with the summary's filtered count."""
    gists = corpus()
    fake.add_user("corpus", gists)
    run = await gistscan(*grep.command(fake, "corpus"), "--json")
    got = [
        ("match", f"{r['gist_id']}/{r['filename']}", r["line_number"], r["column"], r["match"],
         r["line"]) if r["type"] == "match"
        else ("context", f"{r['gist_id']}/{r['filename']}", r["line_number"], r["line"])
        for r in run.records if r["type"] in ("match", "context")
    ]  # fmt: skip
    expected = [e for e in grep.events(gists) if e[0] in ("match", "context")]
    if grep.mode.startswith("only"):
        expected = [e for e in expected if e[0] == "match"]
    assert got == expected
    listed = [f for g in gists for f in g.files if grep.since is None or g.updated_at >= grep.since]
    read = [f for g in gists for f in g.files if grep.read(g, f)]
    assert run.summary["filtered"] == (len(listed) - len(read) if grep.max_total is None else 0)


async def test_per_file_max_count_and_max_total_differ(fake: FakeGitHub) -> None:
    """-m 1 is one matching line in each file; --max-total 1 is one match in all."""
    files = [FakeFile("a.txt", b"hit 1\nhit 2\n"), FakeFile("b.txt", b"hit 3\nhit 4\n")]
    fake.add_user("two", [FakeGist("g1", files)])
    per_file = await gistscan(*search(fake, "two", "hit", "-m", "1", "--concurrency", "1"))
    assert per_file.out == "g1/a.txt:1:hit 1\ng1/b.txt:1:hit 3\n"
    in_all = await gistscan(*search(fake, "two", "hit", "--max-total", "1", "--concurrency", "1"))
    assert in_all.out == "g1/a.txt:1:hit 1\n"
    assert "1 match (stopped at --max-total 1) in 1 gist of two" in in_all.err
    assert "in 0 files" not in in_all.err


async def test_a_line_with_several_matches_is_printed_once(fake: FakeGitHub) -> None:
    """Default output is one line per matching line; --column and -o one per match."""
    fake.add_user("octo", [FakeGist("g1", [FakeFile("a.txt", b"ab ab ab\nno\nab\n")])])
    assert (
        await gistscan(*search(fake, "octo", "ab"))
    ).out == "g1/a.txt:1:ab ab ab\ng1/a.txt:3:ab\n"
    column = await gistscan(*search(fake, "octo", "ab", "--column"))
    assert (
        column.out == "".join(f"g1/a.txt:1:{c}:ab ab ab\n" for c in (1, 4, 7)) + "g1/a.txt:3:1:ab\n"
    )


async def test_max_count_closes_the_download(make_fake: MakeFake) -> None:
    """-m 1 on a 6 MB file whose first line matches: reading stops near the start."""
    fake = await make_fake(piece_size=64 * 1024)
    content = b"needle\n" + big_text(6 * 1024 * 1024)
    fake.add_user("big", [FakeGist("g1", [FakeFile("big.txt", content)])])
    run = await gistscan(
        *search(fake, "big", "needle|fox", "-m", "1", "--json", "--chunk-size", "8192")
    )
    assert [r["line_number"] for r in run.records if r["type"] == "match"] == [1]
    assert run.summary["bytes"] < 1024 * 1024 < len(content)
    assert run.summary["files"] == 1 and run.summary["complete"] is True
    files_with = await gistscan(*search(fake, "big", "fox", "-l", "--chunk-size", "8192"))
    assert files_with.out == "g1/big.txt\n"
    assert "1 match in 1 file" in files_with.err


async def test_quiet_prints_nothing_and_stops_at_the_first_match(make_fake: MakeFake) -> None:
    """-q: no output at all, exit 0 on a match (1 without), few files requested."""
    fake = await make_fake(raw_latency=0.05)
    fake.add_user("lots", make_gists("lots", 300, 1))
    run = await gistscan(*search(fake, "lots", "gist", "-q"))
    assert (run.code, run.out, run.err) == (0, "", "")
    assert fake.requests["raw"] < 50
    fake.reset_counters()
    none = await gistscan(*search(fake, "lots", "zzz-nothing", "-q", "--concurrency", "32"))
    assert (none.code, none.out, none.err) == (1, "", "")
    assert fake.requests["raw"] == 300


async def test_since_is_sent_to_github_and_saves_list_pages(fake: FakeGitHub) -> None:
    """--since reaches GitHub's `since` (every page): only recent gists are even listed."""
    gists = make_gists("old", 450, 1)
    for i, gist in enumerate(gists):
        gist.updated_at = "2025-03-01T00:00:00Z" if i % 3 == 0 else "2021-01-01T00:00:00Z"
    fake.add_user("old", gists)
    run = await gistscan(*search(fake, "old", "gist", "--since", "2025-01-01", "--json"))
    assert run.summary["gists"] == 150 and run.summary["files"] == 150
    assert fake.requests["list"] == 2  # 150 gists: two pages of 100, not five
    assert fake.requests["raw"] == 150
    assert {r["gist_id"] for r in run.records if r["type"] == "match"} == {
        gist_id("old", i) for i in range(0, 450, 3)
    }


async def test_pattern_starting_with_a_dash_and_several_patterns(fake: FakeGitHub) -> None:
    """-e -x searches for "-x"; several -e match any; -e with -F escapes each."""
    fake.add_user("octo", [FakeGist("g1", [FakeFile("a.txt", b"run -x now\na.b\naxb\n-y\n")])])
    dash = await gistscan("search", "octo", "-e", "-x", "--api-url", fake.api_url)
    assert dash.out == "g1/a.txt:1:run -x now\n"
    both = await gistscan(
        "search", "octo", "-F", "-e", "a.b", "-e", "-y", "--api-url", fake.api_url
    )
    assert both.out == "g1/a.txt:2:a.b\ng1/a.txt:4:-y\n"


# -- terminal safety, encodings, colour -------------------------------------------------------


async def test_escape_sequences_are_shown_escaped_and_cp1252_never_crashes(
    fake: FakeGitHub,
) -> None:
    """A gist cannot clear a screen or forge a line: control characters in names and lines
    print as \\x1b, \\n, \\r; on a cp1252 stdout, what it lacks prints as "?"."""
    fake.add_user("winuser", [
        FakeGist("aaaa0010", [
            FakeFile("todo.md", "- [x] deploy ✓ done\n- [ ] deploy 🚀 later\n".encode()),
            FakeFile("evil\x1b[2J\nname.txt", b"deploy \x1b[31mred\x1b[0m\rfake:1:forged\n"),
        ]),
    ])  # fmt: skip
    cmd = (
        f"{shlex.quote(sys.executable)} -m gistscan search winuser deploy --concurrency 1"
        f" --api-url {fake.api_url} | cat"
    )
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "cp1252"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert b"Traceback" not in err and proc.returncode == 0
    assert out == (
        b"aaaa0010/todo.md:1:- [x] deploy ? done\n"
        b"aaaa0010/todo.md:2:- [ ] deploy ? later\n"
        b"aaaa0010/evil\\x1b[2J\\nname.txt:1:deploy \\x1b[31mred\\x1b[0m\\rfake:1:forged\n"
    )
    assert b"\x1b" not in out


async def test_invisible_line_breaks_and_direction_controls_are_shown_escaped(
    fake: FakeGitHub,
) -> None:
    """A name with U+202E shows "gnp.exe" as "exe.png"; U+2028 is a new line to some
    terminals: both kinds (Unicode's Bidi_Control set, line and paragraph separators) print
    as \\u escapes in names, lines and -o matches; --json keeps the text as it is."""
    name = "photo\u202egnp.exe"
    body = "key=1\u2028aaaa0012/forged.txt:1:key=2 \u2066\u200f\u2029 key=3\n".encode()
    fake.add_user("bidi", [FakeGist("aaaa0012", [FakeFile(name, body)])])
    run = await gistscan(*search(fake, "bidi", "key=\\d"))
    assert run.code == 0
    assert run.out == (
        "aaaa0012/photo\\u202egnp.exe:1:"
        "key=1\\u2028aaaa0012/forged.txt:1:key=2 \\u2066\\u200f\\u2029 key=3\n"
    )
    only = await gistscan(*search(fake, "bidi", "key=1.", "-o"))
    assert only.out == "aaaa0012/photo\\u202egnp.exe:1:key=1\\u2028\n"
    as_json = await gistscan(*search(fake, "bidi", "key=1", "--json"))
    assert [(r["filename"], r["line"]) for r in as_json.records if r["type"] == "match"] == [
        (name, body.decode().rstrip("\n"))
    ]


async def test_stderr_replaces_what_it_cannot_encode_as_stdout_does(fake: FakeGitHub) -> None:
    """On a cp1252 stderr, an error naming a file "✓.txt" prints "?.txt", as stdout would;
    so does a refused input."""
    fake.add_user("winuser", [FakeGist("aaaa0011", [FakeFile("✓.txt", b"x\n", fault="404")])])
    cp1252 = {"PYTHONIOENCODING": "cp1252"}
    run = await gistscan(*search(fake, "winuser", "x"), env=cp1252)
    assert run.code == 2
    assert "gistscan: aaaa0011/?.txt: not_found:" in run.err and "\\u2713" not in run.err
    refused = await gistscan(*search(fake, "winuser", "x", "-g", "✓["), env=cp1252)
    assert refused.code == 2 and "invalid glob '?['" in refused.err


async def test_json_is_utf8_whatever_the_terminal_encoding(fake: FakeGitHub) -> None:
    """--json is UTF-8 NDJSON on any stdout (case 10-stdout-encoding): both lines, exit 0."""
    todo = FakeFile("todo.md", "- [x] deploy ✓ done\n- [ ] deploy 🚀 later\n".encode())
    fake.add_user("winuser", [FakeGist("aaaa0010", [todo])])
    run = await gistscan(
        *search(fake, "winuser", "deploy", "--json"), env={"PYTHONIOENCODING": "cp1252"}
    )
    assert run.code == 0
    assert [r["line"] for r in run.records if r["type"] == "match"] == [
        "- [x] deploy ✓ done",
        "- [ ] deploy 🚀 later",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("choice", "terminal", "environ", "coloured"),
    [
        ("auto", True, {}, True),
        ("auto", True, {"NO_COLOR": "1"}, False),
        ("auto", True, {"NO_COLOR": ""}, True),  # empty: as unset (no-color.org's rule)
        ("auto", True, {"TERM": "dumb"}, False),
        ("auto", False, {}, False),
        ("always", False, {"NO_COLOR": "1"}, True),
        ("never", True, {}, False),
    ],
)
def test_color_auto_is_for_terminals_and_honours_no_color(
    choice: str, terminal: bool, environ: dict[str, str], coloured: bool
) -> None:
    """--color auto colours on a terminal only, unless NO_COLOR is set or TERM is dumb."""
    out = _Terminal() if terminal else io.StringIO()
    assert use_color(choice, out, environ) is coloured


# -- help, version, hints -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["search", "serve"])
async def test_help_ends_with_the_environment_github_token_first(command: str) -> None:
    """--help of both commands ends with the variables that matter, GITHUB_TOKEN first."""
    run = await gistscan(command, "--help")
    assert run.code == 0
    tail = run.out[run.out.index("environment") :]
    variables = re.findall(r"\b(?:GITHUB_TOKEN|GISTSCAN_[A-Z_*]+)", tail)
    assert variables[0] == "GITHUB_TOKEN" and "GISTSCAN_API_URL" in variables
    assert "5,000" in tail and run.out.rstrip().endswith(tail.rstrip())


async def test_version() -> None:
    """--version prints the version."""
    run = await gistscan("--version")
    assert (run.code, run.out) == (0, f"gistscan {__version__}\n")


@pytest.mark.parametrize(
    ("user", "hinted"),
    [
        ("resetinf", True),  # the primary limit: 403, x-ratelimit-remaining 0
        ("secondary403", False),  # a secondary limit, remaining 4987
        ("secondary429", False),  # a bare 429 with a secondary limit's message
        ("rawlimit", False),  # the raw host's 429: the API is fine
    ],
)
async def test_the_token_hint_is_for_the_primary_limit_only(
    hostile: HostileGitHub, user: str, hinted: bool
) -> None:
    """A token lifts GitHub's primary API limit (60 to 5,000 an hour), nothing else: the
    hint shows for that limit only, and an empty GITHUB_TOKEN counts as none."""
    hostile.n_files = 2
    run = await gistscan(
        "search", user, "needle", "--api-url", hostile.api_url, "--retries", "0",
        env={"GITHUB_TOKEN": ""},
    )  # fmt: skip
    assert run.code == 2 and "rate_limited" in run.err
    assert ("hint: set GITHUB_TOKEN" in run.err) is hinted


async def test_an_exhausted_limit_seen_on_a_200_gets_the_hint(make_fake: MakeFake) -> None:
    """The answer that spends the last request is a 200 (remaining 0): the next page is then
    held until the reset, without asking; that refusal is the primary limit too."""
    fake = await make_fake(rate_limit=1)
    fake.add_user("octo", make_gists("octo", 3))
    env = {"GITHUB_TOKEN": "", "GISTSCAN_PER_PAGE": "1"}
    run = await gistscan(*search(fake, "octo", "x"), env=env)
    assert run.code == 2 and "rate_limited" in run.err
    assert "hint: set GITHUB_TOKEN" in run.err, run.err
    assert fake.remaining == 0


async def test_rate_limit_says_how_to_set_the_token(fake: FakeGitHub) -> None:
    """An exhausted rate limit names GITHUB_TOKEN; with a token set, no such hint."""
    fake.add_user("octo", make_gists("octo", 3))
    fake.set_list_fault("octo", "rate_limited")
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gistscan", *search(fake, "octo", "x"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "hint: set GITHUB_TOKEN" in err.decode() and "5,000 requests an hour" in err.decode()
    with_token = await gistscan(*search(fake, "octo", "x"), env={"GITHUB_TOKEN": "t"})
    assert "rate_limited" in with_token.err and "hint" not in with_token.err


async def test_unreachable_github_gets_a_hint_naming_the_url_and_setting() -> None:
    """Nothing listens at the API root: a hint names the URL tried and --api-url."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    run = await gistscan(
        "search", "octo", "x", "--api-url", f"http://127.0.0.1:{port}", "--retries", "0"
    )
    assert run.code == 2
    hint = next(line for line in run.err.splitlines() if "hint" in line)
    assert f"http://127.0.0.1:{port}/users/octo/gists" in hint
    assert "--api-url" in hint and "GISTSCAN_API_URL" in hint


async def test_a_silent_github_gets_a_hint_about_time_not_reachability() -> None:
    """The API root accepts connections and never answers: the hint says it did not answer
    in time and names GISTSCAN_REQUEST_TIMEOUT, not "could not be reached"."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # the kernel accepts connections; nothing ever answers
        port = sock.getsockname()[1]
        run = await gistscan(
            "search", "octo", "x", "--api-url", f"http://127.0.0.1:{port}", "--retries", "0",
            env={"GISTSCAN_REQUEST_TIMEOUT": "0.5"},
        )  # fmt: skip
    assert run.code == 2 and "upstream_error" in run.err
    hint = next(line for line in run.err.splitlines() if "hint" in line)
    assert f"did not answer in time at http://127.0.0.1:{port}/users/octo/gists" in hint
    assert "GISTSCAN_REQUEST_TIMEOUT" in hint and "could not be reached" not in hint


async def test_settings_come_from_the_environment_and_flags_win(fake: FakeGitHub) -> None:
    """GISTSCAN_API_URL points search at the fake; a bad GISTSCAN_* is one line, exit 2."""
    fake.add_user("octo", [FakeGist("g1", [FakeFile("a.txt", b"hello\n")])])
    run = await gistscan("search", "octo", "hello", env={"GISTSCAN_API_URL": fake.api_url})
    assert run.out == "g1/a.txt:1:hello\n"
    bad = await gistscan("search", "octo", "hello", env={"GISTSCAN_CHUNK_SIZE": "0"})
    assert bad.code == 2 and bad.err.startswith("gistscan: GISTSCAN_CHUNK_SIZE: chunk_size")
    wins = await gistscan(
        *search(fake, "octo", "hello", "--chunk-size", "10"), env={"GISTSCAN_CHUNK_SIZE": "0"}
    )
    assert wins.out == "g1/a.txt:1:hello\n"


# -- Ctrl-C ---------------------------------------------------------------------------------


async def test_ctrl_c_during_json_still_ends_with_the_summary(make_fake: MakeFake) -> None:
    """SIGINT mid --json scan: the output still ends with a summary, complete false; 130."""
    fake = await make_fake(raw_latency=0.5)
    fake.add_user("octo", make_gists("octo", 100, 1))
    proc = await interruptible(*search(fake, "octo", "gist", "--json"))
    for _ in range(500):
        if fake.raw_in_flight:
            break
        await asyncio.sleep(0.02)
    assert fake.raw_in_flight
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130 and b"Traceback" not in err
    records = [json.loads(line) for line in out.splitlines()]
    assert records[-1]["type"] == "summary" and records[-1]["complete"] is False
    assert [r["type"] for r in records].count("summary") == 1
    matches = [r for r in records if r["type"] == "match"]
    assert records[-1]["matches"] == len(matches) and records[-1]["gists"] >= 1


async def _loading_gistscan(pid: int) -> None:
    """Wait until process `pid` has begun loading gistscan's own modules (the `regex`
    extension, which gistscan imports first, is mapped): before that, a SIGINT lands in
    CPython's own start-up (its `site` import), which no program can guard."""
    maps = Path(f"/proc/{pid}/maps")
    for _ in range(2000):
        with contextlib.suppress(OSError):
            if "_regex" in await asyncio.to_thread(maps.read_text):
                return
        await asyncio.sleep(0.005)
    raise AssertionError("gistscan never started loading")


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3])
async def test_ctrl_c_during_start_up_prints_no_traceback(
    make_fake: MakeFake, delay: float
) -> None:
    """SIGINT while gistscan loads and starts: no traceback, exit 130."""
    fake = await make_fake(latency=30)  # the listing never comes in time
    proc = await interruptible(*search(fake, "octo", "x"))
    await _loading_gistscan(proc.pid)
    await asyncio.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert b"Traceback" not in err, err
    assert proc.returncode == 130, (proc.returncode, err)


async def test_serve_on_an_address_it_cannot_have_is_one_line() -> None:
    """serve on a taken port, or a host that is no address: one line, exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = await gistscan("serve", "--port", port, limit=30)
    assert busy.code == 2 and busy.err.startswith(f"gistscan: cannot serve on 127.0.0.1:{port}")
    assert len(busy.err.strip().splitlines()) == 1
    nowhere = await gistscan("serve", "--host", "999.0.0.1", "--port", "8080", limit=30)
    assert nowhere.code == 2 and "cannot serve on 999.0.0.1:8080" in nowhere.err
