"""Two real `python -m gistscan serve` processes sharing one real redis-server, against the fake
GitHub: what a search on one replica saves the other, the shared budget's reserve, and Redis
killed and started again under them. Without GISTSCAN_REDIS_URL, redis-py is never imported."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fake_github import FakeGitHub, make_gists
from tests.redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parent.parent
SEARCH = "/api/v1/users/{}/search"


@dataclass
class Replica:
    """One server process: its URL, its stderr (the log), and every status it answered."""

    base: str
    proc: asyncio.subprocess.Process
    log: Path
    session: aiohttp.ClientSession
    statuses: list[int] = field(default_factory=list)

    async def search(self, user: str, pattern: str = "fox") -> tuple[int, list[dict[str, Any]]]:
        """A streamed search: its status and its records (the summary last)."""
        url = self.base + SEARCH.format(user)
        async with self.session.get(url, params={"pattern": pattern}) as resp:
            self.statuses.append(resp.status)
            lines = (await resp.read()).splitlines()
            return resp.status, [json.loads(line) for line in lines]

    async def complete(self, user: str, files: int, pattern: str = "fox") -> None:
        """Search `user`: 200, every one of its `files` scanned, no error record."""
        status, records = await self.search(user, pattern)
        assert status == 200, records
        summary = records[-1]
        assert summary["type"] == "summary" and summary["complete"], summary
        assert (summary["files"], summary["errors"]) == (files, 0)

    def log_lines(self, words: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if words in line]


Start = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def replicas(fake: FakeGitHub, tmp_path: Path) -> AsyncIterator[Start]:
    """Start `gistscan serve` processes against the fake; `env` adds GISTSCAN_* settings.
    Each is stopped (SIGTERM, then SIGKILL) after the test, and must never have answered 5xx."""
    started: list[Replica] = []
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def start(name: str, **env: str) -> Replica:
            port = free_port()
            log = tmp_path / f"{name}.log"
            environ = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("GISTSCAN_") and k != "GITHUB_TOKEN"
            }
            environ |= {
                "PYTHONPATH": str(REPO),
                "GISTSCAN_API_URL": fake.api_url,
                "GISTSCAN_RETRIES": "1",
                "GISTSCAN_BACKOFF": "0.01",
                "GISTSCAN_REDIS_TIMEOUT": "0.2",
                **env,
            }
            argv = [sys.executable, "-m", "gistscan", "serve", "--port", str(port)]
            with log.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    *argv, cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=err
                )
            replica = Replica(f"http://127.0.0.1:{port}", proc, log, session)
            started.append(replica)
            deadline = time.monotonic() + 30
            while True:
                assert proc.returncode is None, log.read_text()
                try:
                    async with session.get(replica.base + "/ping") as resp:
                        if resp.status == 200:
                            return replica
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.05)

        yield start
    for replica in started:
        if replica.proc.returncode is None:
            replica.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(replica.proc.wait(), 15)
            except TimeoutError:
                replica.proc.kill()
                await replica.proc.wait()
        assert all(status < 500 for status in replica.statuses), replica.statuses


def users(fake: FakeGitHub, *names: str, gists: int = 5, files: int = 2) -> None:
    for name in names:
        fake.add_user(name, make_gists(name, gists, files))


@pytest.mark.parametrize("page_ttl", ["60", "0"])
async def test_b_repeating_as_search_downloads_nothing(
    fake: FakeGitHub, replicas: Start, redis_server: RedisServer, page_ttl: str
) -> None:
    """A searched alice; B's search of her (another pattern) costs no raw download and no
    list page: none while A's page is fresh, one 304 once it is stale (TTL 0)."""
    users(fake, "alice")
    env = {"GISTSCAN_REDIS_URL": redis_server.url, "GISTSCAN_CACHE_PAGE_TTL": page_ttl}
    a, b = await replicas("a", **env), await replicas("b", **env)
    await a.complete("alice", 10)
    assert (fake.requests["list"], fake.requests["raw"]) == (1, 10)
    fake.reset_counters()
    await b.complete("alice", 10, pattern="lazy")
    assert fake.requests["raw"] == 0 and fake.requests["list"] == 0
    assert fake.requests["list_304"] == (0 if page_ttl == "60" else 1)


async def test_an_unknown_user_probed_on_a_costs_b_nothing(
    fake: FakeGitHub, replicas: Start, redis_server: RedisServer
) -> None:
    a = await replicas("a", GISTSCAN_REDIS_URL=redis_server.url)
    b = await replicas("b", GISTSCAN_REDIS_URL=redis_server.url)
    status, records = await a.search("ghost")
    assert status == 404 and records[0]["error"] == "not_found"
    assert fake.requests["list"] == 1
    assert (await b.search("ghost"))[0] == 404
    async with b.session.get(b.base + "/ghost") as resp:
        assert resp.status == 404
    assert fake.requests["list"] == 1


async def test_below_the_reserve_both_replicas_refuse_uncached_searches_only(
    fake: FakeGitHub, replicas: Start, redis_server: RedisServer
) -> None:
    """A's page of alice leaves GitHub's budget under the reserve: on both replicas a search
    needing the API (bob) gets 429 with Retry-After up to the reset, and GitHub is not asked;
    alice, whose page is kept, still answers 200 on both."""
    users(fake, "alice", "bob")
    env = {"GISTSCAN_REDIS_URL": redis_server.url, "GISTSCAN_RATELIMIT_RESERVE": "100"}
    a, b = await replicas("a", **env), await replicas("b", **env)
    fake.remaining = 100  # the page A asks for leaves 99
    fake.rate_reset = int(time.time()) + 1800
    await a.complete("alice", 10)
    fake.reset_counters()
    for replica in (b, a):
        status, records = await replica.search("bob")
        assert status == 429 and records[0]["error"] == "rate_limited"
        url = replica.base + SEARCH.format("bob")
        async with replica.session.get(url, params={"pattern": "x"}) as resp:
            after = int(resp.headers["Retry-After"])
        left = fake.rate_reset - time.time()
        assert left - 5 < after <= math.ceil(left) + 1
    for replica in (b, a):
        await replica.complete("alice", 10, pattern="dog")
    assert fake.requests["list"] == 0 and fake.requests["list_304"] == 0


async def test_a_secondary_limit_met_by_a_holds_b_too(
    fake: FakeGitHub, replicas: Start, redis_server: RedisServer
) -> None:
    """GitHub's secondary limit (429, Retry-After: 30) answered to A: B, asked for another
    user, answers 429 with the same wait without asking GitHub."""
    users(fake, "alice", "bob")
    fake.set_list_fault("alice", "rate_limited_429", times=1)
    a = await replicas("a", GISTSCAN_REDIS_URL=redis_server.url)
    b = await replicas("b", GISTSCAN_REDIS_URL=redis_server.url)
    status, records = await a.search("alice")
    assert status == 429 and records[0]["error"] == "rate_limited"
    assert fake.requests["list"] == 1
    url = b.base + SEARCH.format("bob")
    async with b.session.get(url, params={"pattern": "fox"}) as resp:
        b.statuses.append(resp.status)
        assert resp.status == 429 and 25 <= int(resp.headers["Retry-After"]) <= 30
    assert fake.requests["list"] == 1


@pytest.mark.parametrize(("outage", "kind"), [("kill", "connection"), ("pause", "timeout")])
async def test_redis_down_or_hung_and_back_under_two_replicas(
    fake: FakeGitHub, replicas: Start, redis_server: RedisServer, outage: str, kind: str
) -> None:
    """Redis killed (or hung: SIGSTOP, connections accepted and never answered) mid-test:
    both replicas go on from memory and GitHub (no 5xx, searches complete), each logs the
    outage once; started again (empty) or resumed, it is used again: a user searched on A
    then costs B nothing."""
    later = iter([f"carol{i}" for i in range(60)])
    users(fake, "alice", "bob", *[f"carol{i}" for i in range(60)], gists=2, files=1)
    env = {"GISTSCAN_REDIS_URL": redis_server.url}
    a, b = await replicas("a", **env), await replicas("b", **env)
    await a.complete("alice", 2)
    stop, start = (
        (redis_server.kill, redis_server.start)
        if outage == "kill"
        else (redis_server.pause, redis_server.resume)
    )
    stop()
    await b.complete("alice", 2)  # B's memory has nothing: from GitHub
    for replica in (a, b, a, b):
        await replica.complete("bob", 2)
        assert (await replica.search("ghost"))[0] == 404
    start()
    deadline = time.monotonic() + 20
    while not a.log_lines("answers again after"):  # new users, until A uses Redis again
        await a.complete(next(later), 2)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    name = next(later)
    await a.complete(name, 2)
    fake.reset_counters()
    await b.complete(name, 2)
    assert fake.requests["raw"] == 0 and fake.requests["list"] == 0
    for replica in (a, b):
        assert len(replica.log_lines(f"failed ({kind}")) == 1
        assert len(replica.log_lines("failed (")) == 1
        assert len(replica.log_lines("answers again after")) == 1
        async with replica.session.get(replica.base + "/metrics") as resp:
            metrics = await resp.text()
        assert "\ngistscan_redis_outages_total 1.0\n" in metrics
        assert "\ngistscan_redis_up 1.0\n" in metrics
        assert re.search(rf'\ngistscan_redis_errors_total{{kind="{kind}"}} [1-9]', metrics)


def test_without_a_redis_url_redis_is_never_imported(tmp_path: Path) -> None:
    """The server's app started and searched without GISTSCAN_REDIS_URL, and the CLI's search:
    the `redis` package is never imported."""
    script = """
import asyncio, sys, threading
from aiohttp.test_utils import TestClient, TestServer
from gistscan import cli
from gistscan.server import ServerConfig, make_app
from tests.fake_github import FakeGitHub, make_gists

fake = FakeGitHub()
fake.add_user("alice", make_gists("alice", 2))
loop = asyncio.new_event_loop()  # the fake serves from its own thread, for both searches
threading.Thread(target=loop.run_forever, daemon=True).start()
api = asyncio.run_coroutine_threadsafe(fake.start(), loop).result()

async def serve():
    config = ServerConfig.from_env({"GISTSCAN_API_URL": api})
    async with TestClient(TestServer(make_app(config))) as client:
        resp = await client.get("/api/v1/users/alice/search", params={"pattern": "fox"})
        assert resp.status == 200, resp.status
        assert b'"complete":true' in await resp.read()

asyncio.run(serve())
assert cli.main(["search", "alice", "fox", "--api-url", api, "--json"]) == 0
print("redis imported:", sorted(m for m in sys.modules if m == "redis" or m.startswith("redis.")))
"""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GISTSCAN_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "redis imported: []"
