"""Stages three and four: each file's bytes in chunks, through the scanner, at most N at once."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Executor
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal, TypeVar

import regex

from gistscan.errors import FetchError
from gistscan.lines import FileLines, LineDone, LineOptions
from gistscan.listing import GistFile
from gistscan.records import Context, Error, Match
from gistscan.scanner import FileScanner, Hit, ScanTimeout


@dataclass(frozen=True, slots=True)
class FileDone:
    """A file's last event: `scanned` (to its end, or to its per-file stop), `skipped` as
    binary, `filtered` out by the glob and language filters (never read), or `failed`."""

    file: GistFile
    outcome: Literal["scanned", "skipped", "filtered", "failed"]


FileEvent = Match | Context | LineDone | Error | FileDone
Item = TypeVar("Item")


class _EngineFailure(Exception):
    """Matching raised something other than ScanTimeout; the message names the exception."""


async def scan_file(
    chunks: AsyncGenerator[bytes, None],
    file: GistFile,
    pattern: regex.Pattern[str],
    *,
    max_carry: int,
    regex_timeout: float | None,
    executor: Executor | None,
    options: LineOptions | None = None,
) -> AsyncGenerator[FileEvent, None]:
    """Scan one file's chunks; yield its records in file order (lines.FileLines: matches,
    a `LineDone` after each matching line, context lines), then one `FileDone`.

    Matching runs in `executor` (a worker thread: `regex` releases the GIL on str), so a
    catastrophic pattern never stalls the event loop; the file's regex budget bounds it.
    The per-file stops of `options` (-m, -l) close the download as soon as nothing more of
    the file is wanted. A download failure, a spent budget (`regex_timeout`) or a failure of
    the engine itself (`regex_error`: a MemoryError, say) yields an `error` record: matches
    already yielded stand, and the scan goes on with the other files. Cancellation closes the
    download (a block being matched finishes in its thread, bounded by the block size and the
    budget).
    """
    loop = asyncio.get_running_loop()
    scanner = FileScanner(pattern, max_carry=max_carry, timeout=regex_timeout)
    lines = FileLines(file, options or LineOptions())

    async def run(step: Callable[[], list[Hit]]) -> list[Hit]:
        try:
            return await loop.run_in_executor(executor, step)
        except ScanTimeout:
            raise
        except Exception as exc:  # MemoryError, RecursionError...: this file's failure only
            raise _EngineFailure(type(exc).__name__) from exc

    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                lines.feed(chunk)
                # Gathering is cheap and done here; only matching goes to a thread (for a
                # small file that leaves one hop: its close).
                parts = scanner.gather(chunk) if lines.scanning else None
                hits = [] if parts is None else await run(functools.partial(scanner.scan, parts))
                for event in lines.add(hits, scanner.settled_lines):
                    yield event
                if lines.done:
                    break  # closing the download: nothing more of this file is wanted
            else:
                for event in lines.close(await run(scanner.close) if lines.scanning else []):
                    yield event
    except FetchError as exc:
        yield Error(file.gist_id, file.filename, exc.code, exc.message)
        yield FileDone(file, "failed")
        return
    except ScanTimeout as exc:
        yield Error(file.gist_id, file.filename, "regex_timeout", str(exc))
        yield FileDone(file, "failed")
        return
    except _EngineFailure as exc:
        yield Error(file.gist_id, file.filename, "regex_error", f"the regex engine failed: {exc}")
        yield FileDone(file, "failed")
        return
    if scanner.binary:
        yield FileDone(file, "skipped")
        return
    if scanner.overflowed:
        yield Error(
            file.gist_id,
            file.filename,
            "carry_overflow",
            f"the pattern needed more than max_carry={max_carry} characters of context;"
            " matches in this file may be incomplete",
        )
    yield FileDone(file, "scanned")


async def scan_files(
    files: AsyncGenerator[Item, None],
    scan: Callable[[Item], AsyncGenerator[FileEvent, None]],
    *,
    concurrency: int,
) -> AsyncGenerator[FileEvent, None]:
    """Run `scan` on each item, at most `concurrency` at once; yield events as they come.

    An item is a file, or a unit of work that scans several in turn (a huge gist's git
    part, which holds one slot: its clone counts against `concurrency` too). Items are taken
    from upstream only when a slot is free, so listing overlaps downloads without racing
    ahead. An exception from `files` (a failing listing) is raised here after the items
    already started have finished. Closing this generator cancels every scan in flight and
    closes upstream.
    """
    events: asyncio.Queue[FileEvent | _Stop] = asyncio.Queue(maxsize=4 * concurrency)
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    async def run_one(item: Item) -> None:
        try:
            async with aclosing(scan(item)) as stream:
                async for event in stream:
                    await events.put(event)
        finally:
            slots.release()

    async def feed() -> None:
        failure: BaseException | None = None
        try:
            async with aclosing(files):
                async for item in files:
                    await slots.acquire()
                    task = asyncio.create_task(run_one(item))
                    running.add(task)
                    task.add_done_callback(running.discard)
        except Exception as exc:
            failure = exc
        # A scan that crashed must end the stream too, or the consumer would wait forever.
        for result in await asyncio.gather(*running, return_exceptions=True):
            if isinstance(result, Exception) and failure is None:
                failure = result
        await events.put(_Stop(failure))

    feeder = asyncio.create_task(feed())
    try:
        while True:
            event = await events.get()
            if isinstance(event, _Stop):
                if event.failure is not None:
                    raise event.failure
                return
            yield event
    finally:
        for task in (feeder, *running):
            task.cancel()
        await asyncio.gather(feeder, *running, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _Stop:
    failure: BaseException | None
