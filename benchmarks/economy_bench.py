"""Item 5: upstream economy: what one scan costs GitHub, counted by the fake.

Requests are counted, not timed, so each scan runs once. The CLI keeps no cache between
processes, so every search pays the whole list and every file; the server caches list pages
(fresh for GISTSCAN_CACHE_PAGE_TTL seconds, then revalidated with If-None-Match, where a
304 is free of rate limit) and raw bytes (immutable: the raw URL names the revision).
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
    section.notes += [
        "list 304 = conditional list requests answered Not Modified (free of rate limit);"
        " raw = raw file downloads; other = any other request.",
        "Two concurrent searches: identical requests in flight at once share one (a"
        " single-flight map keyed by URL), so they cost GitHub what one search does.",
        "TTL 0 (GISTSCAN_CACHE_PAGE_TTL=0) shows a stale page being revalidated rather than"
        " waiting out the default 60 s lifetime.",
    ]
    return section
