"""The whole scan, composed: pages -> gists -> filters -> files -> chunks -> scanner -> lines ->
records -> summary."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncGenerator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass

import aiohttp

from gistscan import huge, listing
from gistscan.budget import Budget
from gistscan.cache import MemoryCache
from gistscan.config import Query, Settings
from gistscan.errors import ListingError
from gistscan.files import FileDone, FileEvent, scan_file, scan_files
from gistscan.github import GitHub, Page, client_session
from gistscan.lines import LineDone, LineOptions
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
    """Counts of a search so far (the summary's fields); updated as the search runs."""

    gists: int = 0
    files: int = 0
    skipped: int = 0
    filtered: int = 0
    bytes: int = 0
    matches: int = 0
    errors: int = 0

    def summary(self, query: Query, *, complete: bool, started: float) -> Summary:
        """The summary record of these counts; `started` is the search's `time.monotonic()`."""
        return Summary(
            username=query.username,
            pattern=query.pattern,
            gists=self.gists,
            files=self.files,
            skipped=self.skipped,
            filtered=self.filtered,
            bytes=self.bytes,
            matches=self.matches,
            errors=self.errors,
            complete=complete,
            elapsed_ms=round((time.monotonic() - started) * 1000),
        )


def make_github(
    session: aiohttp.ClientSession,
    settings: Settings,
    cache: MemoryCache | None = None,
    budget: Budget | None = None,
) -> GitHub:
    """The GitHub client of one search, from its settings; its deadline starts now.

    The server shares one `cache` and one `budget` between its searches.
    """
    return GitHub(
        session,
        api_url=settings.api_url,
        token=settings.token,
        user_agent=settings.user_agent,
        retries=settings.retries,
        backoff=settings.backoff,
        backoff_max=settings.backoff_max,
        request_timeout=settings.request_timeout,
        request_total_timeout=settings.request_total_timeout,
        max_page_bytes=settings.max_page_bytes,
        deadline=None if settings.deadline is None else time.monotonic() + settings.deadline,
        cache=cache,
        budget=budget,
    )


async def first_page(github: GitHub, query: Query, settings: Settings) -> Page:
    """Fetch page one of the user's list; raises `ListingError` (used to answer with a status)."""
    return await listing.first_page(
        github, query.username, per_page=settings.per_page, since=query.since
    )


async def search(
    query: Query,
    settings: Settings | None = None,
    *,
    github: GitHub | None = None,
    first: Page | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> AsyncGenerator[Record, None]:
    """Yield the records of one search (docs/records.md): matches, context lines and errors
    as found, then the summary.

    Raises `UsageError` (before any request) for a bad query. Every other failure is a
    record: a failing listing gives an `error` record with null ids; the summary is always
    last. Without `github` a session is opened for this search alone. The search ends at
    `settings.deadline` seconds from now, or at `github`'s deadline when that is sooner (the
    server's covers page one, fetched before). Closing the generator early cancels every
    download in flight. `progress`, when given, is kept up to date (for a live progress line).
    """
    events = search_events(
        query, settings, github=github, first=first, executor=executor, progress=progress
    )
    async with aclosing(events):
        async for event in events:
            if not isinstance(event, LineDone | FileDone):
                yield event


SearchEvent = Record | LineDone | FileDone


async def search_events(
    query: Query,
    settings: Settings | None = None,
    *,
    github: GitHub | None = None,
    first: Page | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> AsyncGenerator[SearchEvent, None]:
    """`search`, with the markers a printer of lines needs: a `LineDone` after the last
    match of each matching line, a `FileDone` when a file is finished (-c prints then)."""
    pattern = query.validate()
    keep = query.file_filter()
    options = LineOptions(
        max_count=query.max_count,
        first_match_only=query.files_with_matches,
        before=query.before_context,
        after=query.after_context,
    )
    settings = settings or Settings()
    started = time.monotonic()
    counts = progress if progress is not None else Progress()
    complete = True
    async with AsyncExitStack() as stack:
        if github is None:
            session = await stack.enter_async_context(client_session())
            github = make_github(session, settings)
        gh = github
        bytes_before = gh.bytes_received
        git_bytes = 0

        def received_from_git(n: int) -> None:
            nonlocal git_bytes
            git_bytes += n

        pool = executor or matching_executor()

        async def gist_files(
            gists: AsyncGenerator[Gist, None],
        ) -> AsyncGenerator[GistFile | Gist, None]:
            """Each file raw serves; then a huge gist itself, for the rest (huge.huge_files)."""
            async with aclosing(gists):
                async for gist in gists:
                    counts.gists += 1
                    for file in gist.files:
                        if huge.over_raw_limit(file):
                            continue  # the huge part: filtered in scan_chunks
                        if keep.keeps(file.filename, file.language):
                            yield file
                        else:
                            counts.filtered += 1  # never requested
                    if query.languages and gist.truncated:
                        # Unlisted files have no language in the listing: a --language
                        # filter leaves them all out, so no clone is made for them.
                        gist = dataclasses.replace(gist, truncated=False)
                    if huge.needs_git(gist):
                        yield gist

        def raw(file: GistFile) -> AsyncGenerator[bytes, None]:
            return gh.iter_raw(file.raw_url, chunk_size=settings.chunk_size, size=file.size)

        def scan_chunks(
            chunks: AsyncGenerator[bytes, None], file: GistFile
        ) -> AsyncGenerator[FileEvent, None]:
            if not keep.keeps(file.filename, file.language):
                return filtered(chunks, file)
            return scan_file(
                _counted(chunks),
                file,
                pattern,
                max_carry=settings.max_carry,
                regex_timeout=settings.regex_timeout,
                executor=pool,
                options=options,
            )

        def scan(item: GistFile | Gist) -> AsyncGenerator[FileEvent, None]:
            if isinstance(item, GistFile):
                return scan_chunks(raw(item), item)
            return huge.huge_files(
                item,
                raw=raw,
                scan=scan_chunks,
                chunk_size=settings.chunk_size,
                clone_timeout=huge.CLONE_TIMEOUT,
                protocols=settings.git_protocols,
                received=received_from_git,
            )

        pages = listing.pages(
            gh,
            query.username,
            per_page=settings.per_page,
            max_pages=settings.max_pages,
            since=query.since,
            first=first,
        )
        gists = listing.gists(pages)
        files = gist_files(gists)
        events = scan_files(files, scan, concurrency=settings.concurrency)
        deadline = gh.deadline
        if settings.deadline is not None:
            ours = started + settings.deadline
            deadline = ours if deadline is None else min(deadline, ours)
        loop = asyncio.get_running_loop()
        # The deadline on the loop's clock. asyncio.timeout, not wait_for: no task per record,
        # and on 3.11 wait_for can swallow a cancellation (a client gone) that comes at once.
        when = None if deadline is None else loop.time() + (deadline - time.monotonic())
        async with aclosing(events):
            while True:
                try:
                    async with asyncio.timeout_at(when):
                        event = await anext(events)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    counts.errors += 1
                    complete = False
                    yield Error(
                        None,
                        None,
                        "deadline_exceeded",
                        "the search ran out of its deadline"
                        + (f" ({settings.deadline:g} s)" if settings.deadline else ""),
                    )
                    break
                except ListingError as exc:
                    counts.errors += 1
                    complete = False
                    yield Error(None, None, exc.code, exc.message, primary_limit=exc.primary_limit)
                    break
                counts.bytes = gh.bytes_received - bytes_before + git_bytes
                if isinstance(event, FileDone):
                    if event.outcome == "scanned":
                        counts.files += 1
                    elif event.outcome == "skipped":
                        counts.skipped += 1
                    elif event.outcome == "filtered":
                        counts.filtered += 1
                elif isinstance(event, Error):
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
        counts.bytes = gh.bytes_received - bytes_before + git_bytes
        yield counts.summary(query, complete=complete, started=started)


async def filtered(
    chunks: AsyncGenerator[bytes, None], file: GistFile
) -> AsyncGenerator[FileEvent, None]:
    """A file the filters leave out: its chunks are closed unread (never requested)."""
    await chunks.aclose()
    yield FileDone(file, "filtered")


async def _counted(chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """`chunks` unchanged, their bytes added to the process's scanned-bytes metric."""
    async with aclosing(chunks):
        async for chunk in chunks:
            SCANNED_BYTES.inc(len(chunk))
            yield chunk
