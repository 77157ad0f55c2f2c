"""Item 5: upstream economy: what one scan costs GitHub, counted by the fake.

Requests are counted, not timed, so each scan runs once. The CLI keeps no cache between
processes, so every search pays the whole list and every file; the server caches list pages
(fresh for GISTSCAN_CACHE_PAGE_TTL seconds, then revalidated with If-None-Match, where a
304 is free of rate limit) and raw bytes (immutable: the raw URL names the revision).

Two replicas (two server processes, as behind a load balancer) each pay for everything
without Redis; with one Redis (GISTSCAN_REDIS_URL, a real redis-server started here) what
one replica fetched the other reads from Redis, and the same requests at the same moment on
both are made once (a Redis lock per URL).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

import aiohttp

from benchmarks.common import (
    Fake,
    Profile,
    Section,
    child,
    fake_github,
    gistscan_server,
    python,
    server_missing,
    stderr_tail,
    verdict,
)

USER = "econ"
GISTS = 100  # one list page
SHAPES = [1, 2]
FILES = sum(SHAPES[i % 2] for i in range(GISTS))
PAGES = math.ceil(GISTS / 100)
FIRST, SECOND = "import requests", r"def \w+\("


def counted(counters: dict[str, Any]) -> dict[str, int]:
    requests = counters["requests"]
    return {
        "list 200": requests.get("list", 0),
        "list 304": requests.get("list_304", 0),
        "raw": requests.get("raw", 0) + requests.get("raw_403", 0),
        "other": requests.get("other", 0) + requests.get("gist", 0),
    }


async def cli_search(fake: Fake, pattern: str) -> dict[str, Any]:
    argv = python("-m", "gistscan", "search", USER, pattern, "--json", "--api-url", fake.url)
    async with child(argv, stdout=asyncio.subprocess.PIPE) as proc:
        out, _ = await proc.communicate()
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"gistscan search exited {proc.returncode}: {stderr_tail(proc)}")
    summary: dict[str, Any] = json.loads(out.splitlines()[-1])
    return summary


async def server_search(base: str, pattern: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/api/v1/users/{USER}/search", params={"pattern": pattern}) as resp,
    ):
        lines = (await resp.read()).splitlines()
        if resp.status != 200:
            raise RuntimeError(f"the server answered {resp.status}: {lines[:1]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


async def run(profile: Profile, progress: Callable[[str], None]) -> Section:
    section = Section(
        "economy",
        f"5. Upstream economy: requests the fake received per scan ({USER}: {GISTS} gists,"
        f" {PAGES} page, {FILES} files)",
        ["scan", "list 200", "list 304", "raw", "other", "files scanned", "target", "met?"],
    )
    spec = {"latency": 0.0, "users": [{"login": USER, "gists": GISTS, "files": SHAPES}]}

    async def scan(label: str, fake: Fake, search: Any, pattern: str) -> dict[str, Any]:
        progress(f"economy: {label}")
        await fake.reset()
        summary = await search(pattern)
        row = section.add(scan=label, **counted(await fake.counters()))
        row["files scanned"] = summary.get("files")
        if summary.get("files") != FILES or not summary.get("complete"):
            section.notes.append(f"{label}: incomplete scan: {summary}")
        return row

    async with fake_github(spec) as fake:
        await scan(
            "CLI: a search (no cache between processes)", fake, lambda p: cli_search(fake, p), FIRST
        )
        await scan(
            "CLI: the same user, another pattern", fake, lambda p: cli_search(fake, p), SECOND
        )
        missing = server_missing()
        if missing:
            section.status = f"server rows absent: {missing}"
            return section
        async with gistscan_server(fake.url) as base:
            await scan(
                "server: first search of the user", fake, lambda p: server_search(base, p), FIRST
            )
            row = await scan(
                "server: same user, another pattern, page fresh (default TTL 60 s)",
                fake,
                lambda p: server_search(base, p),
                SECOND,
            )
            ok = row["list 200"] == 0 and row["list 304"] <= PAGES and row["raw"] == 0
            row["target"] = f"≤ {PAGES} list (304), 0 raw"
            row["met?"] = verdict(ok and row["files scanned"] == FILES)
        async with gistscan_server(fake.url, GISTSCAN_CACHE_PAGE_TTL="0") as base:
            await scan(
                "server (TTL 0): first search of the user",
                fake,
                lambda p: server_search(base, p),
                FIRST,
            )
            row = await scan(
                "server (TTL 0): same user, another pattern, page stale",
                fake,
                lambda p: server_search(base, p),
                SECOND,
            )
            ok = row["list 200"] == 0 and row["list 304"] == PAGES and row["raw"] == 0
            row["target"] = f"{PAGES} list answered 304, 0 raw"
            row["met?"] = verdict(ok and row["files scanned"] == FILES)
    # Two searches of one user at once on a cold server share every request (single flight):
    # the fake answers after a little latency, so that the two really overlap.
    twin_spec = {**spec, "latency": 0.02}
    async with fake_github(twin_spec) as fake:
        async with gistscan_server(fake.url) as base:
            alone = await scan(
                "server (cold): one search alone", fake, lambda p: server_search(base, p), FIRST
            )
        async with gistscan_server(fake.url) as base:
            progress("economy: two concurrent searches")
            await fake.reset()
            both = await asyncio.gather(server_search(base, FIRST), server_search(base, SECOND))
            row = section.add(
                scan="server (cold): two concurrent searches of the same user",
                **counted(await fake.counters()),
            )
            row["files scanned"] = " + ".join(str(summary.get("files")) for summary in both)
            same = all(row[k] == alone[k] for k in ("list 200", "list 304", "raw", "other"))
            row["target"] = "= one search alone"
            row["met?"] = verdict(same and all(s.get("files") == FILES for s in both))
    await two_replicas(section, scan, spec, twin_spec, progress)
    section.notes += [
        "list 304 = conditional list requests answered Not Modified (free of rate limit);"
        " raw = raw file downloads; other = any other request but GET /rate_limit (a new"
        " server asks it once at start; GitHub does not count it).",
        "Two concurrent searches: identical requests in flight at once share one (a"
        " single-flight map keyed by URL), so they cost GitHub what one search does.",
        "TTL 0 (GISTSCAN_CACHE_PAGE_TTL=0) shows a stale page being revalidated rather than"
        " waiting out the default 60 s lifetime.",
        "Two replicas: two `gistscan serve` processes; with Redis, both point at one"
        " redis-server (GISTSCAN_REDIS_URL); B's search follows A's, or both run at once.",
    ]
    return section


async def two_replicas(
    section: Section, scan: Any, spec: dict[str, Any], twin_spec: dict[str, Any], progress: Any
) -> None:
    """Rows: A then B on the same user, and A and B at once, without and with one Redis."""
    try:
        from tests.redis_server import RedisServer

        redis_server = RedisServer()
        import redis  # noqa: F401  (the `redis` extra: the servers need it)
    except (FileNotFoundError, ImportError) as exc:
        section.notes.append(f"two-replica rows absent: {exc}")
        return
    redis_server.start()
    try:
        for label, env in (
            ("no Redis", {}),
            ("one Redis", {"GISTSCAN_REDIS_URL": redis_server.url}),
        ):
            async with (
                fake_github(spec) as fake,
                gistscan_server(fake.url, **env) as a,
                gistscan_server(fake.url, **env) as b,
            ):
                await scan(
                    f"2 replicas, {label}: A, first search of the user",
                    fake,
                    lambda p, base=a: server_search(base, p),
                    FIRST,
                )
                row = await scan(
                    f"2 replicas, {label}: B, same user, another pattern",
                    fake,
                    lambda p, base=b: server_search(base, p),
                    SECOND,
                )
                if env:
                    ok = row["list 200"] == 0 and row["list 304"] <= PAGES and row["raw"] == 0
                    row["target"] = f"0 list 200, ≤ {PAGES} list 304, 0 raw"
                    row["met?"] = verdict(ok and row["files scanned"] == FILES)
            async with (
                fake_github(twin_spec) as fake,
                gistscan_server(fake.url, **env) as a,
                gistscan_server(fake.url, **env) as b,
            ):
                progress(f"economy: two replicas at once, {label}")
                await redis_flush(redis_server)
                await fake.reset()
                both = await asyncio.gather(server_search(a, FIRST), server_search(b, SECOND))
                row = section.add(
                    scan=f"2 replicas, {label}, cold: A and B search the same user at once",
                    **counted(await fake.counters()),
                )
                row["files scanned"] = " + ".join(str(summary.get("files")) for summary in both)
                if env:
                    ok = row["list 200"] == PAGES and row["raw"] == FILES
                    row["target"] = f"= one search alone ({PAGES} list, {FILES} raw)"
                    row["met?"] = verdict(ok and all(s.get("files") == FILES for s in both))
    finally:
        redis_server.stop()


async def redis_flush(server: Any) -> None:
    """Empty the Redis between rows (a cold fleet)."""
    import redis.asyncio as aioredis

    async with aioredis.Redis.from_url(server.url) as client:
        await client.flushall()
