"""`python -m gistscan serve` as a real process against the fake GitHub: its log on stderr,
SIGTERM's drain and exit status, the listening address, a busy port, an unreachable GitHub."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.fake_github import FakeFile, FakeGist, FakeGitHub, gist_id, make_gists

REPO = Path(__file__).resolve().parent.parent
SEARCH = "/api/v1/users/{}/search"
START_TIMEOUT = 60.0  # seconds for the process to import and listen (a loaded CI machine)


@dataclass
class Served:
    """A running `gistscan serve`: its base URL, and its stderr lines as they come."""

    proc: asyncio.subprocess.Process
    url: str = ""
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    async def wait(self, within: float) -> int:
        return await asyncio.wait_for(self.proc.wait(), within)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GISTSCAN_", "GITHUB_"))}
    env.pop("PORT", None)
    env.pop("HOST", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


async def _start(*args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gistscan",
        "serve",
        *args,
        cwd=REPO,
        env=_env(**env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


@asynccontextmanager
async def gistscan_serve(*args: str, **env: str) -> AsyncIterator[Served]:
    """Start the server (port 0 unless `args` say otherwise); yield once it listens.
    Killed on the way out if the test left it running."""
    if "--port" not in args and "PORT" not in env:
        args = (*args, "--port", "0")
    served = Served(await _start(*args, **env))
    assert served.proc.stderr is not None
    stderr = served.proc.stderr

    async def read_rest() -> None:
        async for raw in stderr:
            served.lines.append(raw.decode().rstrip("\n"))

    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not served.url:
            raw = await asyncio.wait_for(stderr.readline(), max(0.1, deadline - time.monotonic()))
            assert raw, f"the server exited before listening: {served.lines}"
            served.lines.append(raw.decode().rstrip("\n"))
            line = served.lines[-1]
            if line.startswith("{"):
                record = json.loads(line)
                if record["message"] == "listening":
                    served.url = record["url"]
            elif " listening url=" in line:  # --log-format text
                served.url = line.rsplit("url=", 1)[1]
        served.reader = asyncio.create_task(read_rest())
        yield served
    finally:
        if served.proc.returncode is None:
            served.proc.kill()
            await served.proc.wait()
        if served.reader is not None:
            await served.reader


# -- the log ----------------------------------------------------------------------------------


async def test_log_is_json_lines_with_request_ids_and_no_secrets(fake: FakeGitHub) -> None:
    """Every stderr line is one JSON object; each request has an access line with method,
    route template, status, duration and request id; each search a line with its outcome
    and counts. Nowhere a pattern, a query string, a request body or the token."""
    fake.add_user("alice", make_gists("alice", 3, 2))
    token = "ghp_" + "Zq9TokenNeverLogged" * 2
    pattern = "qu[i]ck-SECRET-PATTERN|brown"
    body_pattern = "lazy-BODY-SECRET|lazy"
    async with (
        gistscan_serve(GITHUB_TOKEN=token, GISTSCAN_API_URL=fake.api_url) as served,
        aiohttp.ClientSession(served.url) as http,
    ):
        async with http.get(
            SEARCH.format("alice"),
            params={"pattern": pattern, "ignore_case": "true"},
            headers={"X-Request-Id": "req-get-1"},
        ) as resp:
            assert resp.status == 200 and resp.headers["X-Request-Id"] == "req-get-1"
            records = [json.loads(line) async for line in resp.content]
            assert records[-1]["matches"] == 6
        async with http.post(
            "/api/v1/search", json={"username": "alice", "pattern": body_pattern}
        ) as resp:
            assert resp.status == 200
            made_up = resp.headers["X-Request-Id"]
            assert (await resp.json())["summary"]["matches"] == 6
        async with http.get(SEARCH.format("alice"), params={"pattern": pattern + "("}) as resp:
            assert resp.status == 400  # the message names the pattern's fault: not logged
        async with http.post("/api/v1/search", data=body_pattern) as resp:
            assert resp.status == 415
        async with http.get("/alice", params={"per_page": "2"}) as resp:
            assert resp.status == 200
        # A request line too long to parse: aiohttp refuses it before any handler, and
        # its parser's error holds the line's start (the query string).
        async with http.get(
            SEARCH.format("alice"), params={"pattern": pattern, "pad": "x" * 600_000}
        ) as resp:
            assert resp.status == 400
        # The token reached GitHub: it was in use, yet must be in no log line.
        assert any(h.get("Authorization") == f"Bearer {token}" for h in fake.seen_headers)
        served.proc.send_signal(signal.SIGTERM)
        assert await served.wait(30) == 0
    assert served.reader is not None
    await served.reader
    text = "\n".join(served.lines)
    for secret in (
        token,
        pattern,
        quote(pattern),
        quote(pattern, safe=""),
        "SECRET-PATTERN",
        "BODY-SECRET",
        body_pattern,
        "pattern=",
        "per_page=",
    ):
        assert secret not in text, f"{secret!r} is in the log"
    records = served.records()  # each line parses: one JSON object per line
    assert all(isinstance(r, dict) and {"time", "level", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "gistscan.access"]
    assert [(r["method"], r["route"], r["status"]) for r in access] == [
        ("GET", "/api/v1/users/{username}/search", 200),
        ("POST", "/api/v1/search", 200),
        ("GET", "/api/v1/users/{username}/search", 400),
        ("POST", "/api/v1/search", 415),
        ("GET", "/{username}", 200),
    ]
    assert all(r["duration_ms"] >= 0 and r["request_id"] for r in access)
    assert access[0]["request_id"] == "req-get-1" and access[1]["request_id"] == made_up
    searches = [r for r in records if r["message"] == "search finished"]
    assert len(searches) == 2
    first, second = searches
    assert first["request_id"] == "req-get-1" and second["request_id"] == made_up
    assert first["outcome"] == "complete" and first["matches"] == 6 and first["files"] == 6
    # Named by a keyed hash: 12 hex digits, one per pattern, not its plain SHA-256 (which
    # anyone could check a guess against).
    hashes = [first["pattern_hash"], second["pattern_hash"]]
    assert all(len(h) == 12 and int(h, 16) >= 0 for h in hashes) and hashes[0] != hashes[1]
    plain = hashlib.sha256(pattern.encode()).hexdigest()
    assert not any(plain.startswith(h) for h in hashes)
    assert first["upstream_api_requests"] == 1 and first["upstream_raw_requests"] == 6
    assert second["upstream_raw_requests"] == 0  # every raw file was in the cache by then


async def test_text_log_format(fake: FakeGitHub) -> None:
    """--log-format text keeps one plain line per record, for a terminal."""
    async with gistscan_serve(
        "--log-format", "text", "--port", "0", GISTSCAN_API_URL=fake.api_url
    ) as served:
        async with aiohttp.ClientSession(served.url) as http, http.get("/healthz") as resp:
            assert resp.status == 200
        served.proc.send_signal(signal.SIGTERM)
        assert await served.wait(30) == 0
    assert served.reader is not None
    await served.reader
    access = [line for line in served.lines if "gistscan.access" in line]
    assert len(access) == 1 and "route=/healthz" in access[0] and "status=200" in access[0]
    with pytest.raises(ValueError):
        json.loads(access[0])


# -- SIGTERM ----------------------------------------------------------------------------------


async def test_sigterm_drains_then_exits_zero(make_fake: Any) -> None:
    """On SIGTERM: /readyz 503 at once, new searches 503 with Retry-After; a search that
    can finish does, one that cannot ends with deadline_exceeded and its summary; the
    process exits 0 within the shutdown timeout."""
    fake: FakeGitHub = await make_fake(piece_size=2000)
    # Slow files: 0.2 s between 2000-byte pieces. "quick": 3 pieces; "slow": 100 pieces.
    fake.add_user(
        "quick",
        [FakeGist(gist_id("quick", 0), [FakeFile("a.txt", b"quick\n" * 1000, "slow")])],
    )
    fake.add_user(
        "slow",
        [FakeGist(gist_id("slow", 0), [FakeFile("b.txt", b"quick\n" + b"x" * 200_000, "slow")])],
    )
    shutdown = 4.0
    async with (
        gistscan_serve(
            GISTSCAN_API_URL=fake.api_url,
            GISTSCAN_SHUTDOWN_TIMEOUT=str(shutdown),
            GISTSCAN_BUSY_RETRY_AFTER="9",
            GISTSCAN_CHUNK_SIZE="2000",
        ) as served,
        aiohttp.ClientSession(served.url) as http,
    ):
        async with http.get("/readyz") as resp:
            assert resp.status == 200
        slow = await http.get(SEARCH.format("slow"), params={"pattern": "quick"})
        first = json.loads(await slow.content.readline())
        assert first["type"] == "match", first
        quick = await http.get(SEARCH.format("quick"), params={"pattern": "quick"})
        assert quick.status == 200
        served.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with http.get("/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["error"] == "shutting_down"
        async with http.get(SEARCH.format("quick"), params={"pattern": "quick"}) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "9"
        quick_records = [json.loads(line) async for line in quick.content]
        assert quick_records[-1]["type"] == "summary" and quick_records[-1]["complete"] is True
        assert sum(r["type"] == "match" for r in quick_records) == 1000
        slow_records = [json.loads(line) async for line in slow.content]
        assert [r["type"] for r in slow_records[-2:]] == ["error", "summary"]
        assert slow_records[-2]["code"] == "deadline_exceeded"
        assert slow_records[-1]["complete"] is False and slow_records[-1]["matches"] == 1
        assert await served.wait(shutdown + 5) == 0
        exited = time.monotonic() - signalled
    assert exited < shutdown + 1.0, exited  # the shutdown timeout, plus the exit itself
    assert fake.raw_in_flight == 0
    records = served.records()
    draining = next(r for r in records if r["message"] == "draining")
    assert draining["running"] == 2  # both searches were running when SIGTERM came
    assert records[-1]["message"] == "stopped"
    outcomes = sorted(r["outcome"] for r in records if r["message"] == "search finished")
    assert outcomes == ["complete", "partial"]


# -- where it listens -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_port_and_host_from_the_environment_flags_win(fake: FakeGitHub) -> None:
    """PORT and HOST are honoured; --port and --host win over them."""
    port = _free_port()
    async with gistscan_serve(
        PORT=str(port), HOST="127.0.0.1", GISTSCAN_API_URL=fake.api_url
    ) as served:
        assert served.url == f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http, http.get(f"{served.url}/ping") as resp:
            assert await resp.text() == "pong\n"
    flag_port = _free_port()
    async with gistscan_serve(
        "--port", str(flag_port), PORT=str(port), GISTSCAN_API_URL=fake.api_url
    ) as served:
        assert served.url == f"http://127.0.0.1:{flag_port}"


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        ((), {"PORT": "http"}, "PORT='http'"),
        (("--port", "99999"), {}, "--port"),
        ((), {"GISTSCAN_STALL_TIMEOUT": "soon"}, "GISTSCAN_STALL_TIMEOUT"),
    ],
)
async def test_bad_address_or_setting_is_one_line(
    args: tuple[str, ...], env: dict[str, str], words: str
) -> None:
    """A bad port or setting: one line naming it on stderr, exit 2, no traceback."""
    proc = await _start(*args, **env)
    _, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
    text = err.decode()
    assert proc.returncode == 2
    assert text.count("\n") == 1 and words in text and "Traceback" not in text


async def test_busy_port_is_one_line_and_exit_2() -> None:
    """A port already in use: one line naming it, exit 2 (no 23-line traceback)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await _start("--port", str(port))
        _, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
    text = err.decode()
    assert proc.returncode == 2
    assert text == f"gistscan: cannot serve on 127.0.0.1:{port}: the port is already in use\n"


async def test_unreachable_github_is_a_friendly_hint() -> None:
    """When GitHub cannot be reached at all, serve logs a hint naming the URL it tried and
    GISTSCAN_API_URL, and keeps serving."""
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there: connection refused
    async with gistscan_serve(GISTSCAN_API_URL=dead) as served:
        deadline = time.monotonic() + 30
        while not any(r["level"] == "warning" for r in served.records()):
            assert time.monotonic() < deadline, served.lines
            await asyncio.sleep(0.05)
        hint = next(r for r in served.records() if r["level"] == "warning")
        assert f"{dead}/rate_limit" in hint["message"] and "GISTSCAN_API_URL" in hint["message"]
        async with aiohttp.ClientSession() as http, http.get(f"{served.url}/readyz") as resp:
            assert resp.status == 200


def test_a_pattern_is_named_alike_within_a_process_and_unlike_across_processes() -> None:
    """pattern_hash: the same pattern, the same name in one process's logs; another process
    (another key) names it otherwise, so a name cannot be checked against a guess."""
    import subprocess

    from gistscan import logs

    secret = "AKIAABCDEFGHIJKLMNOP"
    mine = logs.pattern_hash(secret)
    assert mine == logs.pattern_hash(secret) and mine != logs.pattern_hash(secret + "Q")
    code = f"from gistscan import logs; print(logs.pattern_hash({secret!r}))"
    theirs = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert len(theirs) == 12 and theirs != mine
