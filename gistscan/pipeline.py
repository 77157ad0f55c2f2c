"""The whole scan, composed: pages -> gists -> files -> chunks -> scanner -> records -> summary."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass

import aiohttp

from gistscan import huge, listing
from gistscan.cache import MemoryCache
from gistscan.config import DEFAULT_API_URL, Query, Settings
from gistscan.errors import ListingError
from gistscan.files import FileDone, FileEvent, scan_file, scan_files
from gistscan.github import GitHub, Page
from gistscan.listing import Gist, GistFile
from gistscan.metrics import SCANNED_BYTES
from gistscan.records import Error, Match, Record, Summary

_executor: ThreadPoolExecutor | None = None


def matching_executor() -> Executor:
    """The process-wide pool where matching runs (one worker per core: regex frees the GIL)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 2, thread_name_prefix="gistscan-match"
        )
    return _executor


@dataclass(slots=True)
class Progress:
    """Counts of a search so far (SPEC §3 summary fields); updated as the search runs."""

    gists: int = 0
    files: int = 0
    skipped: int = 0
    bytes: int = 0
    matches: int = 0
    errors: int = 0


def make_github(
    session: aiohttp.ClientSession, settings: Settings, cache: MemoryCache | None = None
) -> GitHub:
    """The GitHub client a scan uses, from the scan's settings."""
    return GitHub(
        session,
        api_url=settings.api_url,
        token=settings.token,
        user_agent=settings.user_agent,
        retries=settings.retries,
        backoff=settings.backoff,
        request_timeout=settings.request_timeout,
        cache=cache,
    )


async def first_page(github: GitHub, query: Query, settings: Settings) -> Page:
    """Fetch page one of the user's list; raises `ListingError` (used to answer with a status)."""
    return await listing.first_page(github, query.username, per_page=settings.per_page)


async def search(
    query: Query,
    settings: Settings | None = None,
    *,
    github: GitHub | None = None,
    first: Page | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> AsyncGenerator[Record, None]:
    """Yield the records of SPEC §3 for one search: matches and errors as found, then the summary.

    Raises `UsageError` (before any request) for a bad query. Every other failure is a
    record: a failing listing gives an `error` record with null ids; the summary is always
    last. Without `github` a session is opened for this search alone. Closing the generator
    early cancels every download in flight. `progress`, when given, is kept up to date
    (for a live progress line).
    """
    pattern = query.validate()
    settings = settings or Settings()
    started = time.monotonic()
    counts = progress if progress is not None else Progress()
    complete = True
    async with AsyncExitStack() as stack:
        if github is None:
            session = await stack.enter_async_context(aiohttp.ClientSession())
            github = make_github(session, settings)
        bytes_before = github.bytes_received
        gh = github
        pool = executor or matching_executor()

        async def gist_files(
            gists: AsyncGenerator[Gist, None],
        ) -> AsyncGenerator[GistFile | Gist, None]:
            """Each file raw serves; then a huge gist itself, for the rest (huge.huge_files)."""
            async with aclosing(gists):
                async for gist in gists:
                    counts.gists += 1
                    for file in gist.files:
                        if not huge.over_raw_limit(file):
                            yield file
                    if huge.needs_git(gist):
                        yield gist

        def raw(file: GistFile) -> AsyncGenerator[bytes, None]:
            return gh.iter_raw(file.raw_url, chunk_size=settings.chunk_size, size=file.size)

        def scan_chunks(
            chunks: AsyncGenerator[bytes, None], file: GistFile
        ) -> AsyncGenerator[FileEvent, None]:
            return scan_file(
                _counted(chunks),
                file,
                pattern,
                max_carry=settings.max_carry,
                regex_timeout=settings.regex_timeout,
                executor=pool,
            )

        # GitHub's gists clone over https; another API root (a fake, an Enterprise server)
        # may hand out http:// or file:// URLs too. Never ssh or ext: no keys, no commands.
        github_com = settings.api_url.rstrip("/") == DEFAULT_API_URL
        git_protocols = "https" if github_com else "https:http:file"

        def scan(item: GistFile | Gist) -> AsyncGenerator[FileEvent, None]:
            if isinstance(item, GistFile):
                return scan_chunks(raw(item), item)
            return huge.huge_files(
                item,
                raw=raw,
                scan=scan_chunks,
                chunk_size=settings.chunk_size,
                clone_timeout=huge.CLONE_TIMEOUT,
                protocols=git_protocols,
            )

        pages = listing.pages(gh, query.username, per_page=settings.per_page, first=first)
        gists = listing.gists(pages)
        files = gist_files(gists)
        events = scan_files(files, scan, concurrency=settings.concurrency)
        deadline = None if settings.deadline is None else started + settings.deadline
        async with aclosing(events):
            while True:
                try:
                    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                    event = await asyncio.wait_for(anext(events), timeout)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    counts.errors += 1
                    complete = False
                    yield Error(
                        None,
                        None,
                        "deadline_exceeded",
                        f"the search ran out of its {settings.deadline:g} s deadline",
                    )
                    break
                except ListingError as exc:
                    counts.errors += 1
                    complete = False
                    yield Error(None, None, exc.code, exc.message)
                    break
                counts.bytes = gh.bytes_received - bytes_before
                if isinstance(event, FileDone):
                    if event.outcome == "scanned":
                        counts.files += 1
                    elif event.outcome == "skipped":
                        counts.skipped += 1
                    continue
                if isinstance(event, Error):
                    counts.errors += 1
                    complete = False
                elif isinstance(event, Match):
                    counts.matches += 1
                yield event
                if (
                    isinstance(event, Match)
                    and query.max_matches is not None
                    and counts.matches >= query.max_matches
                ):
                    complete = False
                    break
        counts.bytes = gh.bytes_received - bytes_before
        yield Summary(
            username=query.username,
            pattern=query.pattern,
            gists=counts.gists,
            files=counts.files,
            skipped=counts.skipped,
            bytes=counts.bytes,
            matches=counts.matches,
            errors=counts.errors,
            complete=complete,
            elapsed_ms=round((time.monotonic() - started) * 1000),
        )


async def _counted(chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """`chunks` unchanged, their bytes added to the process's scanned-bytes metric."""
    async with aclosing(chunks):
        async for chunk in chunks:
            SCANNED_BYTES.inc(len(chunk))
            yield chunk
