"""Item 4: the server under load: concurrent streaming searches, and /ping beside a bad pattern.

`python -m gistscan serve` runs against the fake GitHub (LATENCY per request). Each round
uses users never searched before, so the server's cache does not help. Four measurements
per round: `profile.server_users` concurrent streaming searches of different users; /ping
on an idle server; /ping while one client streams `(a|aa)+$` over files of lines of 30
`a`s and a `!` (catastrophic backtracking: each file runs out of its regex budget); and
fairness: one normal search alone, then another (of a twin user, so the cache does not
help) beside FAIR_EVIL clients each streaming `(a|aa)+$`, the ratio of the two times.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from benchmarks.common import (
    Profile,
    Section,
    fake_github,
    gistscan_server,
    median,
    now,
    percentile,
    ratio,
    server_missing,
    verdict,
)

LATENCY = 0.02
PATTERN = "import requests"
EVIL = "(a|aa)+$"
GISTS_PER_USER = 20
SHAPES = [1, 2]
FILES_PER_USER = sum(SHAPES[i % 2] for i in range(GISTS_PER_USER))
EVIL_FILES = 24
PING_GAP = 0.01  # seconds between two pings
SETTLE = 2.5  # after the bad search is dropped: its threads finish (each file's budget: 2 s)
TARGET_PING_P99 = 0.050
FAIR_EVIL = 4  # clients running the catastrophic pattern beside one normal search
FAIR_BURN = 5.0  # seconds the bad searches run first (long enough to spend file budgets)
TARGET_FAIR_RATIO = 3.0


@dataclass
class Streamed:
    status: int
    first: float | None  # seconds from request to the first record
    total: float
    matches: int
    errors: int
    summary: dict[str, object] | None


async def stream_search(
    session: aiohttp.ClientSession, base: str, user: str, pattern: str
) -> Streamed:
    started = now()
    first = None
    matches = errors = 0
    summary = None
    url = f"{base}/api/v1/users/{user}/search"
    async with session.get(url, params={"pattern": pattern}) as resp:
        async for line in resp.content:
            if first is None:
                first = now() - started
            record = json.loads(line)
            kind = record.get("type")
            matches += kind == "match"
            errors += kind == "error"
            if kind == "summary":
                summary = record
        return Streamed(resp.status, first, now() - started, matches, errors, summary)


async def pings(session: aiohttp.ClientSession, base: str, seconds: float) -> list[float]:
    """Ping back to back (PING_GAP apart) for `seconds`; each round trip's latency."""
    latencies = []
    until = now() + seconds
    while now() < until:
        started = now()
        async with session.get(f"{base}/ping") as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"/ping answered {resp.status}")
        latencies.append(now() - started)
        await asyncio.sleep(PING_GAP)
    return latencies


async def evil_stream(
    session: aiohttp.ClientSession, base: str, user: str, seen: list[int]
) -> None:
    """Stream the bad search until cancelled, counting in `seen` [records, regex_timeout]."""
    url = f"{base}/api/v1/users/{user}/search"
    async with session.get(url, params={"pattern": EVIL}) as resp:
        async for line in resp.content:
            seen[0] += 1
            seen[1] += b'"regex_timeout"' in line


async def cpu_seconds(session: aiohttp.ClientSession, base: str) -> float:
    """The server process's CPU seconds so far (process_cpu_seconds_total of /metrics)."""
    async with session.get(f"{base}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("process_cpu_seconds_total "):
                return float(line.split()[1])
    return float("nan")


def users(rep: int, n: int) -> list[str]:
    return [f"r{rep}-user{k:02d}" for k in range(n)]


async def run(profile: Profile, progress: Callable[[str], None]) -> Section:
    section = Section(
        "server",
        f"4. Server: `gistscan serve` against the fake ({LATENCY * 1000:.0f} ms per request),"
        f" median of {profile.reps} rounds",
        ["run", "n", "complete", "errors", "p50 ms", "p99 ms", "max ms", "target", "met?"],
    )
    missing = server_missing()
    if missing:
        section.status = f"absent: {missing}"
        return section
    n_users = profile.server_users
    spec_users: list[dict[str, object]] = []
    for rep in range(profile.reps):
        spec_users += [
            {"login": u, "gists": GISTS_PER_USER, "files": SHAPES, "content": "code"}
            for u in users(rep, n_users)
        ]
        spec_users.append(
            {"login": f"r{rep}-evil", "gists": EVIL_FILES, "content": "aaa", "size": 32 * 100}
        )
        spec_users += [
            {"login": f"r{rep}-fair-{twin}", "gists": GISTS_PER_USER, "files": SHAPES,
             "content": "code"}
            for twin in ("alone", "beside")
        ]  # fmt: skip
        spec_users += [
            {"login": f"r{rep}-fevil{k}", "gists": EVIL_FILES, "content": "aaa", "size": 32 * 100}
            for k in range(FAIR_EVIL)
        ]
    spec = {"latency": LATENCY, "users": spec_users}
    first_p50, first_p99, first_max, total_p50 = [], [], [], []
    complete, errors = [], []
    idle: list[list[float]] = []
    loaded: list[list[float]] = []
    evil_seen: list[list[int]] = []
    # Every client here is 127.0.0.1: the per-client limit would refuse most of them.
    env = {
        "GISTSCAN_MAX_CONCURRENT_SEARCHES": str(n_users + 1),
        "GISTSCAN_MAX_SEARCHES_PER_CLIENT": str(n_users + 1),
    }
    fair_alone: list[float] = []
    fair_beside: list[float] = []
    fair_ok: list[bool] = []
    fair_timeouts: list[int] = []
    fair_cores: list[float] = []  # the server's CPU seconds per second while they burn
    async with (
        fake_github(spec) as fake,
        gistscan_server(fake.url, **env) as base,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=120)
        ) as session,
    ):
        for rep in range(profile.reps):
            progress(f"server: round {rep + 1}/{profile.reps}: {n_users} concurrent searches")
            got = await asyncio.gather(
                *(stream_search(session, base, u, PATTERN) for u in users(rep, n_users))
            )
            firsts = [s.first for s in got if s.first is not None]
            first_p50.append(percentile(firsts, 50))
            first_p99.append(percentile(firsts, 99))
            first_max.append(max(firsts, default=float("nan")))
            total_p50.append(percentile([s.total for s in got], 50))
            complete.append(
                sum(
                    s.status == 200
                    and s.summary is not None
                    and s.summary.get("complete") is True
                    and s.matches == FILES_PER_USER
                    for s in got
                )
            )
            errors.append(sum(s.errors for s in got) + sum(s.status != 200 for s in got))

            progress(f"server: round {rep + 1}/{profile.reps}: /ping, idle then beside {EVIL}")
            idle.append(await pings(session, base, profile.ping_seconds / 4))
            seen = [0, 0]
            bad = asyncio.create_task(evil_stream(session, base, f"r{rep}-evil", seen))
            await asyncio.sleep(0.2)  # the bad search has listed and started matching
            loaded.append(await pings(session, base, profile.ping_seconds))
            if bad.done():
                section.notes.append(f"round {rep + 1}: the bad search ended before the pings")
            bad.cancel()  # the client hangs up: the server cancels the scan
            await asyncio.gather(bad, return_exceptions=True)
            evil_seen.append(seen)
            await asyncio.sleep(SETTLE)

            progress(
                f"server: round {rep + 1}/{profile.reps}: a search alone, then beside"
                f" {FAIR_EVIL} clients running {EVIL}"
            )
            alone = await stream_search(session, base, f"r{rep}-fair-alone", PATTERN)
            seens = [[0, 0] for _ in range(FAIR_EVIL)]
            bad_ones = [
                asyncio.create_task(evil_stream(session, base, f"r{rep}-fevil{k}", seens[k]))
                for k in range(FAIR_EVIL)
            ]
            cpu_before, burn_started = await cpu_seconds(session, base), now()
            await asyncio.sleep(FAIR_BURN)  # every bad search is matching by now
            fair_cores.append(
                (await cpu_seconds(session, base) - cpu_before) / (now() - burn_started)
            )
            beside = await stream_search(session, base, f"r{rep}-fair-beside", PATTERN)
            if any(b.done() for b in bad_ones):
                section.notes.append(f"round {rep + 1}: a bad search ended before the normal one")
            for b in bad_ones:
                b.cancel()
            await asyncio.gather(*bad_ones, return_exceptions=True)
            fair_timeouts.append(sum(seen[1] for seen in seens))
            fair_alone.append(alone.total)
            fair_beside.append(beside.total)
            fair_ok.append(
                all(
                    s.status == 200 and s.summary is not None and s.summary.get("complete") is True
                    for s in (alone, beside)
                )
            )
            if rep + 1 < profile.reps:
                await asyncio.sleep(SETTLE)

    def ms(values: list[float]) -> float:
        return median(values) * 1000

    ok = min(complete) == n_users and max(errors) == 0
    section.add(
        **{
            "run": f"{n_users} concurrent streaming searches: time to first record",
            "n": n_users,
            "complete": f"{min(complete)}/{n_users}",
            "errors": max(errors),
            "p50 ms": ms(first_p50),
            "p99 ms": ms(first_p99),
            "max ms": ms(first_max),
            "target": "all complete, 0 errors",
            "met?": verdict(ok),
        }
    )
    section.add(
        **{
            "run": f"  the same searches: time to the summary (p50 {median(total_p50):.2f} s)",
            "n": n_users,
        }
    )
    idle_p99 = median([percentile(x, 99) for x in idle])
    loaded_p99 = median([percentile(x, 99) for x in loaded])
    section.add(
        **{
            "run": "GET /ping, idle server",
            "n": median([len(x) for x in idle]),
            "p50 ms": ms([percentile(x, 50) for x in idle]),
            "p99 ms": idle_p99 * 1000,
            "max ms": ms([max(x) for x in idle]),
        }
    )
    section.add(
        **{
            "run": f"GET /ping beside one client running {EVIL}",
            "n": median([len(x) for x in loaded]),
            "p50 ms": ms([percentile(x, 50) for x in loaded]),
            "p99 ms": loaded_p99 * 1000,
            "max ms": ms([max(x) for x in loaded]),
            "target": f"p99 < {TARGET_PING_P99 * 1000:.0f} ms",
            "met?": verdict(loaded_p99 < TARGET_PING_P99),
        }
    )
    fair_ratio = ratio(median(fair_beside), median(fair_alone))
    section.add(
        **{
            "run": "one search alone: time to its summary",
            "n": len(fair_alone),
            "complete": f"{sum(fair_ok)}/{len(fair_ok)}",
            "p50 ms": ms(fair_alone),
            "max ms": max(fair_alone) * 1000,
        }
    )
    section.add(
        **{
            "run": f"the same search beside {FAIR_EVIL} clients running {EVIL}"
            f" ({fair_ratio or 0:.1f}x alone)",
            "n": len(fair_beside),
            "complete": f"{sum(fair_ok)}/{len(fair_ok)}",
            "p50 ms": ms(fair_beside),
            "max ms": max(fair_beside) * 1000,
            "target": f"<= {TARGET_FAIR_RATIO:g}x alone",
            "met?": verdict(
                fair_ratio is not None and fair_ratio <= TARGET_FAIR_RATIO and all(fair_ok)
            ),
        }
    )
    slowdown = ratio(loaded_p99, idle_p99)
    section.notes += [
        f"each user: {GISTS_PER_USER} gists, {FILES_PER_USER} files, one match per file; a search"
        " is complete when its summary says complete and every match arrived. First record ="
        " first NDJSON line (the server fetches page one before it answers).",
        f"server started with GISTSCAN_MAX_CONCURRENT_SEARCHES={n_users + 1}: its default (8)"
        f" would answer 503 to {n_users - 8} of the {n_users}.",
        f"/ping: one request at a time, {PING_GAP * 1000:.0f} ms apart, for"
        f" {profile.ping_seconds:g} s beside the bad search ({EVIL_FILES} files of lines"
        f" 'a'*30+'!'); its p99 is {slowdown or 0:.1f}x the idle p99.",
    ]
    section.notes.append(
        f"fairness: each bad client streams {EVIL} over {EVIL_FILES} files; the normal search"
        f" starts {FAIR_BURN:g} s after them; per round alone/beside (s):"
        + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(fair_alone, fair_beside, strict=True))
        + f"; regex_timeout records the bad clients got, per round: {fair_timeouts}; the"
        " server's CPU use while they burned (CPU s per s, 2 = both cores): "
        + ", ".join(f"{c:.2f}" for c in fair_cores)
    )
    timeouts = [t for _records, t in evil_seen]
    section.notes.append(
        f"the bad search's regex_timeout records while pinged, per round: {timeouts}"
    )
    return section
