"""Item 1b: a minified one-line file costs the scanner what the same bytes in short lines cost."""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks.common import MB, KiB, Profile, Section, median, ratio, verdict
from gistscan.config import compile_pattern
from gistscan.scanner import FileScanner
from tests.fake_github import minified_bundle

SIZE = 3_000_000  # bytes of the one-line file
LINE = 200  # characters per line of the cut copy, newline included
PATTERNS = [r"\w+", r"apiKey\d+", r'"token":\s*"[^"]*"', r"SECRET_\d+"]
TARGET = 2.0  # one line ÷ short lines, at most
CHUNK = 64 * KiB
COLUMNS = ["pattern", "matches (one line)", "one line s", "200-char lines s", "one÷lines"]
COLUMNS += ["exact, no overflow", "target", "met?"]
BUDGET = 2.0  # the default per-file regex budget: it must not fire either


def scan(pattern: str, data: bytes) -> tuple[int, bool]:
    scanner = FileScanner(compile_pattern(pattern), timeout=BUDGET)
    found = 0
    for i in range(0, len(data), CHUNK):
        found += len(scanner.feed(data[i : i + CHUNK]))
    found += len(scanner.close())
    return found, scanner.overflowed


async def run(profile: Profile, progress: Callable[[str], None]) -> Section:
    one = minified_bundle(SIZE)[:-1].decode()
    cut = "\n".join(one[i : i + LINE - 1] for i in range(0, len(one), LINE - 1))
    files = {"one line": (one + "\n").encode(), "200-char lines": (cut + "\n").encode()}
    section = Section(
        "longline",
        f"1b. One {SIZE / MB:.0f} MB line against the same bytes in {LINE}-character lines,"
        f" scanner seconds (median of {profile.reps})",
        COLUMNS,
    )
    for pattern in PATTERNS:
        compiled = compile_pattern(pattern)
        times: dict[str, list[float]] = {name: [] for name in files}
        exact = True
        found = {}
        for rep in range(profile.reps):
            progress(f"longline: {pattern} round {rep + 1}/{profile.reps}")
            for name, data in files.items():
                started = time.perf_counter()
                count, overflowed = scan(pattern, data)
                times[name].append(time.perf_counter() - started)
                expected = sum(1 for m in compiled.finditer(data.decode()) if m.end() > m.start())
                exact = exact and count == expected and not overflowed
                found[name] = count
        r = ratio(median(times["one line"]), median(times["200-char lines"]))
        section.add(
            **{
                "pattern": pattern,
                "matches (one line)": found["one line"],
                "one line s": median(times["one line"]),
                "200-char lines s": median(times["200-char lines"]),
                "one÷lines": r,
                "exact, no overflow": "yes" if exact else "NO",
                "target": f"≤ {TARGET:g}",
                "met?": verdict(r is not None and r <= TARGET and exact),
            }
        )
    section.notes += [
        f"FileScanner fed {CHUNK // KiB} KiB chunks with the default regex budget ({BUDGET:g} s)"
        " and max_carry (1 MiB); exact = the same number of matches as finditer on the whole"
        " text, and no carry_overflow. The cut copy holds the same characters, a newline"
        f" every {LINE - 1}.",
    ]
    return section
