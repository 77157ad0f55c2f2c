"""`python -m benchmarks [--quick] [--only NAMES]`: run the suite, print one table, save JSON.

Every section measures side by side in one run and reports medians and ratios; see each
module for what it measures. The table is also written to benchmarks/results/latest.json
(with the machine, versions and load average) so runs can be compared. That file is not
tracked: a run worth keeping is committed as benchmarks/results/<commit>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from benchmarks.common import RESULTS, Profile, Section, render, to_json

SECTIONS = {  # name -> module, in table order
    "scanner": "benchmarks.scanner_bench",
    "longline": "benchmarks.longline_bench",
    "e2e": "benchmarks.e2e_bench",
    "memory": "benchmarks.memory_bench",
    "server": "benchmarks.server_bench",
    "economy": "benchmarks.economy_bench",
}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _meta(profile: Profile, elapsed: float, load: tuple[float, ...]) -> dict[str, object]:
    rg = shutil.which("rg")
    rg_version = None
    if rg:
        first = subprocess.run([rg, "--version"], capture_output=True, text=True, check=False)
        rg_version = (first.stdout.splitlines() or [""])[0]
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks" + (" --quick" if profile.quick else ""),
        "quick": profile.quick,
        "reps": profile.reps,
        "elapsed_s": round(elapsed, 1),
        "commit": git.stdout.strip() or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_before_after": [round(x, 2) for x in load],
        "versions": {
            "regex": _version("regex"),
            "aiohttp": _version("aiohttp"),
            "google-re2": _version("google-re2"),
            "ripgrep": rg_version,
        },
    }


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def _run(names: list[str], profile: Profile) -> list[Section]:
    sections = []
    for name in names:
        started = time.monotonic()
        _progress(f"{name} ...")
        module = importlib.import_module(SECTIONS[name])
        try:
            section: Section = await module.run(profile, _progress)
        except Exception as exc:  # one broken section must not hide the others
            traceback.print_exc()
            section = Section(name, f"{name}: failed", ["-"], status=f"failed: {exc!r}")
        _progress(f"{name} done in {time.monotonic() - started:.0f} s")
        sections.append(section)
    return sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions, smaller inputs (< 2 min)"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "latest.json",
        help="where to write the JSON (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    profile = Profile.make(args.quick)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    sections = asyncio.run(_run(names, profile))
    elapsed = time.monotonic() - started
    meta = _meta(profile, elapsed, (load_before, os.getloadavg()[0]))
    header = (
        f"gistscan benchmarks — {meta['command']} — {meta['date']} — commit {meta['commit']}"
        f" — {meta['cpus']} CPUs, load {meta['load_average_before_after']} — {elapsed:.0f} s"
    )
    print(render(sections, header))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_json(sections, meta))
    failed = [s.key for s in sections if s.status.startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
