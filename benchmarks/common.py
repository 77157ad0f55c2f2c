"""What the benchmark sections share: the run profile, statistics, child processes, the table."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
# Generated inputs (the corpus) are kept between runs here, outside the repository.
CACHE = Path(tempfile.gettempdir()) / "gistscan-bench"

KiB = 1024
MiB = 1024 * 1024
MB = 1_000_000  # throughput and memory are reported in MB = 10^6 bytes


@dataclass(frozen=True)
class Profile:
    """How big and how often: the full run, or `--quick` (under 2 minutes on 2 cores)."""

    quick: bool
    reps: int  # repetitions of every timed measurement; the median is reported
    # Latency-bound runs that take over a minute each (sequential baseline, concurrency 1)
    # are repeated this often: their time is requests x latency, so their spread is tiny.
    slow_reps: int
    corpus_bytes: int
    e2e_gists: int
    memory_sizes: tuple[int, int]  # (big, small) single-file sizes, bytes
    server_users: int
    ping_seconds: float

    @classmethod
    def make(cls, quick: bool) -> Profile:
        if quick:
            return cls(True, 3, 1, 10 * MB, 120, (100 * MB, 10 * MB), 50, 2.0)
        return cls(False, 5, 1, 100 * MB, 1000, (300 * MB, 30 * MB), 50, 4.0)


# -- statistics -----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the two nearest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    lo = math.floor(at)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


# -- the table ------------------------------------------------------------------------------


@dataclass
class Section:
    """One item of the issue: a small table of its own (rows are column -> value)."""

    key: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # "ok", "absent: why" or "failed: why"

    def add(self, **row: Any) -> dict[str, Any]:
        self.rows.append(row)
        return row


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 0.1 or value == 0:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(sections: Sequence[Section], header: str) -> str:
    lines = [header]
    for section in sections:
        lines += ["", f"== {section.title}"]
        if section.status != "ok":
            lines.append(f"   {section.status}")
        if section.rows:
            cells = [[fmt(row.get(c)) for c in section.columns] for row in section.rows]
            widths = [
                max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(section.columns)
            ]

            def line(values: Sequence[str], widths: list[int] = widths) -> str:
                first = values[0].ljust(widths[0])
                rest = (v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))
                return "  ".join([first, *rest]).rstrip()

            lines.append(line(section.columns))
            lines.append("  ".join("-" * w for w in widths))
            lines += [line(r) for r in cells]
        lines += [f"   * {note}" for note in section.notes]
    return "\n".join(lines)


def to_json(sections: Sequence[Section], meta: dict[str, Any]) -> str:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    payload = {
        "meta": meta,
        "sections": [
            {
                "key": s.key,
                "title": s.title,
                "status": s.status,
                "columns": s.columns,
                "rows": [{k: clean(v) for k, v in row.items()} for row in s.rows],
                "notes": s.notes,
            }
            for s in sections
        ],
    }
    return json.dumps(payload, indent=1, ensure_ascii=False) + "\n"


# -- child processes --------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every process a benchmark starts: this checkout importable, no token
    (every request goes to the fake on loopback anyway)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GISTSCAN_API_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


async def stop(proc: asyncio.subprocess.Process, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps the process."""
    if proc.returncode is None:
        try:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), grace)
        except ProcessLookupError:
            pass
        except TimeoutError:
            proc.kill()
    await proc.wait()


@asynccontextmanager
async def child(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdout: int | None = None,
    grace: float = 3.0,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process that is stopped and reaped whatever happens in the block (its stderr goes
    to a temporary file: see `stderr_tail`)."""
    with tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=REPO,
            env=env or child_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=log,
        )
        proc.log = log  # type: ignore[attr-defined]
        try:
            yield proc
        finally:
            await stop(proc, grace)


def stderr_tail(proc: asyncio.subprocess.Process, n: int = 600) -> str:
    log = proc.log  # type: ignore[attr-defined]
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-n:].strip()


# -- the fake GitHub ----------------------------------------------------------------------------


@dataclass
class Fake:
    """A running `benchmarks.fakeserve` process: its URL, and its counters over HTTP."""

    url: str
    session: aiohttp.ClientSession

    async def counters(self) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/_bench/counters") as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data

    async def reset(self) -> None:
        async with self.session.post(f"{self.url}/_bench/reset") as resp:
            resp.raise_for_status()


@asynccontextmanager
async def fake_github(spec: dict[str, Any]) -> AsyncIterator[Fake]:
    """Start a fake GitHub on 127.0.0.1 in its own process (see fakeserve.py), stop it after."""
    argv = python("-m", "benchmarks.fakeserve", "--spec", json.dumps(spec))
    async with child(argv, stdout=asyncio.subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 300)
        except TimeoutError:
            line = b""
        url = line.decode().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the fake GitHub did not start: {stderr_tail(proc)}")
        async with aiohttp.ClientSession() as session:
            yield Fake(url, session)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def now() -> float:
    """The clock every benchmark and the fake share (CLOCK_MONOTONIC is system-wide on Linux)."""
    return time.monotonic()


# -- the gistscan server ------------------------------------------------------------------------


def server_missing() -> str | None:
    """Why `python -m gistscan serve` cannot run here (None when it can)."""
    import subprocess

    argv = python("-m", "gistscan", "serve", "--help")
    try:
        done = subprocess.run(
            argv, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return "`python -m gistscan serve --help` did not answer within 60 s"
    if done.returncode != 0:
        return f"`python -m gistscan serve --help` failed: {done.stderr.strip()[-300:]}"
    return None


@asynccontextmanager
async def gistscan_server(api_url: str, **env: str) -> AsyncIterator[str]:
    """`python -m gistscan serve` on a free loopback port against `api_url`; yields its URL.

    `env` adds GISTSCAN_* settings. Stopped with SIGTERM (a graceful shutdown waits for the
    matching threads, each bounded by the per-file regex budget), killed if it lingers.
    """
    port = free_port()
    argv = python("-m", "gistscan", "serve", "--host", "127.0.0.1", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    env_ = child_env(GISTSCAN_API_URL=api_url, **env)
    async with (
        child(argv, env=env_, stdout=asyncio.subprocess.DEVNULL, grace=15.0) as proc,
        aiohttp.ClientSession() as session,
    ):
        deadline = time.monotonic() + 60
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"the gistscan server exited: {stderr_tail(proc)}")
            try:
                async with session.get(f"{base}/ping") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gistscan server did not answer: {stderr_tail(proc)}")
            await asyncio.sleep(0.1)
        yield base
