"""Item 3: peak RSS of a search over one big file and one ten times smaller, and the baseline's.

Each search is a fresh child process; its peak RSS is `ru_maxrss` from `os.wait4`, i.e. its
own high-water mark, taken by the kernel (through benchmarks/rss.py: see why there). The
fake GitHub, a separate process whose memory is not counted, serves the files with GitHub's
10 MB raw limit lifted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.common import (
    MB,
    REPO,
    Profile,
    Section,
    child_env,
    fake_github,
    median,
    python,
    ratio,
    verdict,
)

PATTERN = r"[A-Z][a-z]+[0-9]{3}"  # no literal in it: the scanner does real work per byte
# The per-file regex budget (CPU s) of the measured searches: armed, but the measurement is
# of memory; what the default budget (2 s) does to a big file is reported in a note.
BUDGET = 3600
TARGET_SPREAD = 0.10  # big and small within 10 % of each other
# Searched once over the big file at the default regex budget: a linear pattern must complete
# whatever the file's size (the budget grows with the bytes read).
ALTERNATION = "password|secret|token|api_key|private_key"
TARGET_PEAK = 100 * MB


@dataclass
class Measured:
    wall: float
    peak: int  # bytes
    out: bytes  # the last line of stdout


def measure(argv: Sequence[str], *, check: bool = True) -> Measured:
    """Run `argv` to its end (through benchmarks/rss.py); its wall time, peak RSS, and last
    stdout line."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as peak,
    ):
        started = time.monotonic()
        done = subprocess.run(
            python("-m", "benchmarks.rss", peak.name, *argv),
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            check=False,
        )
        wall = time.monotonic() - started
        out.seek(max(0, out.seek(0, os.SEEK_END) - 4096))
        last = (out.read().rstrip(b"\n").rsplit(b"\n", 1) or [b""])[-1]
        if check and done.returncode not in (0, 1):
            err.seek(0)
            why = err.read()[-600:] or last  # with --json, errors are records on stdout
            raise RuntimeError(f"{' '.join(argv[1:4])} exited {done.returncode}: {why!r}")
        return Measured(wall, int(peak.read()), last)


async def run(profile: Profile, progress: Callable[[str], None]) -> Section:
    big, small = profile.memory_sizes
    sizes = {"big": big, "small": small}
    spec = {
        "latency": 0.0,
        "piece_size": 64 * 1024,
        "raw_limit": 4 * big,
        "users": [
            {"login": name, "gists": 1, "files": [1], "content": "lines", "size": size}
            for name, size in sizes.items()
        ],
    }
    section = Section(
        "memory",
        f"3. Memory: peak RSS of one search over a single file (median of {profile.reps})",
        ["run", "file MB", "peak RSS MB", "wall s", "big÷small RSS", "target", "met?"],
    )
    floor_argv = python("-c", "import gistscan.cli, gistscan.pipeline, aiohttp, regex")
    results: dict[str, list[Measured]] = {}
    async with fake_github(spec) as fake:
        cases = {"floor": floor_argv}
        search = python("-m", "gistscan", "search")
        for name in sizes:
            argv = [*search, name, PATTERN, "--json", "--api-url", fake.url]
            cases[f"gistscan {name}"] = [*argv, "--timeout", str(BUDGET)]
            cases[f"naive {name}"] = python("-m", "benchmarks.naive", fake.url, name, PATTERN)
        # Once with the default per-file regex budget, to report what it does to a big file.
        progress("memory: the big file with the default regex budget")
        default_budget = await asyncio.to_thread(
            measure, [*search, "big", PATTERN, "--json", "--api-url", fake.url], check=False
        )
        progress("memory: an alternation of five words over the big file, default budget")
        alternation = await asyncio.to_thread(
            measure, [*search, "big", ALTERNATION, "--json", "--api-url", fake.url], check=False
        )
        for rep in range(profile.reps):
            progress(f"memory: round {rep + 1}/{profile.reps}")
            for label, argv in cases.items():
                got = await asyncio.to_thread(measure, argv)
                results.setdefault(label, []).append(got)

    def peak(label: str) -> float:
        return median([m.peak for m in results[label]])

    def wall(label: str) -> float:
        return median([m.wall for m in results[label]])

    for name, size in sizes.items():
        summary = json.loads(results[f"gistscan {name}"][-1].out)
        if summary.get("type") != "summary" or summary.get("bytes") != size:
            section.notes.append(f"gistscan {name}: unexpected summary {summary}")
        elif not summary.get("complete"):
            section.notes.append(f"gistscan {name}: incomplete scan {summary}")
    spread = ratio(peak("gistscan big"), peak("gistscan small"))
    section.add(**{"run": "interpreter + imports (floor)", "peak RSS MB": peak("floor") / MB})
    for name, size in sizes.items():
        label = f"gistscan {name}"
        row = section.add(
            **{
                "run": label,
                "file MB": size / MB,
                "peak RSS MB": peak(label) / MB,
                "wall s": wall(label),  # helper start-up included
            }
        )
        if name == "big":
            ok = spread is not None and abs(spread - 1) <= TARGET_SPREAD
            row["big÷small RSS"] = spread
            row["target"] = f"within {TARGET_SPREAD:.0%}; both < {TARGET_PEAK / MB:.0f} MB"
            row["met?"] = ", ".join(
                [
                    verdict(ok),
                    verdict(max(peak("gistscan big"), peak("gistscan small")) < TARGET_PEAK),
                ]
            )
    for name, size in sizes.items():
        label = f"naive {name}"
        section.add(
            **{
                "run": f"{label} (holds the file)",
                "file MB": size / MB,
                "peak RSS MB": peak(label) / MB,
                "wall s": wall(label),  # helper start-up included
                "big÷small RSS": ratio(peak(label), peak("naive small")) if name == "big" else None,
            }
        )

    def outcome(run: Measured) -> str:
        try:
            probe = json.loads(run.out)
        except ValueError:
            probe = {}
        if probe.get("complete"):
            return f"completes ({probe.get('matches')} matches, {run.wall:.1f} s)"
        return (
            f"ends incomplete after {probe.get('bytes', 0) / MB:.0f} MB with"
            f" {probe.get('errors')} error record(s)"
        )

    def completed(run: Measured) -> bool:
        try:
            return bool(json.loads(run.out).get("complete"))
        except ValueError:
            return False

    for label, run in (("no literal", default_budget), ("alternation of 5", alternation)):
        section.add(
            **{
                "run": f"gistscan big, {label}, default budget (--timeout 2)",
                "file MB": big / MB,
                "peak RSS MB": run.peak / MB,
                "wall s": run.wall,
                "target": "completes",
                "met?": verdict(completed(run)),
            }
        )
    section.notes += [
        f"pattern {PATTERN!r} over numbered text lines, --timeout {BUDGET} (the per-file regex"
        " budget armed but not binding); peak RSS = ru_maxrss of the child (os.wait4);"
        " MB = 10^6 bytes.",
        f"with the default budget (--timeout 2) the search of the {big / MB:.0f} MB file"
        f" {outcome(default_budget)}; {ALTERNATION!r} over it {outcome(alternation)}.",
        "floor = a Python process importing gistscan's CLI, aiohttp and regex, doing nothing.",
    ]
    return section
