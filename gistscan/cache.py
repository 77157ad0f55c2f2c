"""What gistscan keeps between requests: list pages, unknown users, raw bytes, and the fetches
in flight (so identical requests at the same time share one).

The interface is async so that a second level shared between processes (Redis) can sit behind
the memory one; `SingleFlight` stays in the process by nature.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from gistscan.metrics import CACHE_LOOKUPS

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A list page as kept: its JSON body exactly as received (so what a page costs the cache
    is its size in bytes, and a shared level can store it as is), its next page's URL, its ETag.
    """

    body: bytes
    next_url: str | None
    etag: str | None


@dataclass(frozen=True, slots=True)
class CachedPage:
    page: StoredPage
    fresh: bool  # younger than the TTL: use it without asking GitHub


class MemoryCache:
    """A bounded in-memory cache, LRU in each of its parts.

    - List pages by URL, for `page_ttl` seconds (then revalidated with If-None-Match: a 304
      costs no rate limit); their bodies stay within `page_budget` bytes, and `max_pages`
      bounds the entries.
    - Unknown users: a page URL GitHub answered 404 is remembered for `page_ttl` seconds (at
      most `max_pages` of them), so probing a missing name again costs GitHub nothing.
    - Raw bytes by raw URL, which carries the file's revision, so they never go stale; within
      `raw_budget` bytes in all, and a file larger than `raw_max_file` is never kept.

    `flights` is the process's `SingleFlight` over the requests that fill this cache.
    Every lookup is counted in `gistscan_cache_lookups{kind, result}`.
    """

    def __init__(
        self,
        *,
        page_ttl: float = 60.0,
        max_pages: int = 1000,
        page_budget: int = 32 * 1024 * 1024,
        raw_budget: int = 64 * 1024 * 1024,
        raw_max_file: int = 4 * 1024 * 1024,
    ) -> None:
        self.page_ttl = page_ttl
        self.max_pages = max_pages
        self.page_budget = page_budget
        self.raw_budget = raw_budget
        self.raw_max_file = min(raw_max_file, raw_budget)
        self._pages: OrderedDict[str, tuple[float, StoredPage]] = OrderedDict()
        self.page_bytes = 0
        self._missing: OrderedDict[str, float] = OrderedDict()  # URL -> when it was a 404
        self._raw: OrderedDict[str, bytes] = OrderedDict()
        self.raw_bytes = 0
        self.flights = SingleFlight()

    # -- list pages ----------------------------------------------------------------------------

    async def page(self, url: str) -> CachedPage | None:
        """The page kept for `url` and whether it is still fresh; None when none is kept.

        Counted a hit only when fresh (answered without asking GitHub at all).
        """
        entry = self._pages.get(url)
        if entry is not None:
            self._pages.move_to_end(url)
            stored, page = entry
            cached = CachedPage(page, fresh=time.monotonic() - stored < self.page_ttl)
        else:
            cached = None
        _count("page", cached is not None and cached.fresh)
        return cached

    async def put_page(self, url: str, page: StoredPage) -> None:
        """Keep `page` for `url` (a page larger than the whole budget is not kept)."""
        self._forget_page(url)
        self._missing.pop(url, None)
        if len(page.body) > self.page_budget:
            return
        self._pages[url] = (time.monotonic(), page)
        self.page_bytes += len(page.body)
        while len(self._pages) > self.max_pages or self.page_bytes > self.page_budget:
            _, (_, old) = self._pages.popitem(last=False)
            self.page_bytes -= len(old.body)

    def _forget_page(self, url: str) -> None:
        entry = self._pages.pop(url, None)
        if entry is not None:
            self.page_bytes -= len(entry[1].body)

    # -- unknown users -------------------------------------------------------------------------

    async def not_found(self, url: str) -> bool:
        """Whether GitHub answered 404 for `url` less than `page_ttl` seconds ago."""
        since = self._missing.get(url)
        hit = since is not None and time.monotonic() - since < self.page_ttl
        if since is not None and not hit:
            del self._missing[url]
        _count("not_found", hit)
        return hit

    async def put_not_found(self, url: str) -> None:
        """Remember that GitHub answered 404 for `url`."""
        self._forget_page(url)
        self._missing[url] = time.monotonic()
        self._missing.move_to_end(url)
        while len(self._missing) > self.max_pages:
            self._missing.popitem(last=False)

    # -- raw bytes -----------------------------------------------------------------------------

    async def raw(self, url: str) -> bytes | None:
        """The bytes kept for raw URL `url`, or None."""
        data = self._raw.get(url)
        if data is not None:
            self._raw.move_to_end(url)
        _count("raw", data is not None)
        return data

    def raw_keeper(self, url: str) -> RawKeeper:
        """A collector for a download of `url` that is kept when it completes."""
        return RawKeeper(self, url)

    async def put_raw(self, url: str, data: bytes) -> None:
        """Keep the bytes of raw URL `url` (none larger than `raw_max_file`)."""
        if url in self._raw or len(data) > self.raw_max_file:
            return
        self._raw[url] = data
        self.raw_bytes += len(data)
        while self.raw_bytes > self.raw_budget:
            _, old = self._raw.popitem(last=False)
            self.raw_bytes -= len(old)


class RawKeeper:
    """Collects a download's chunks for the cache; gives up past the per-file limit."""

    def __init__(self, cache: MemoryCache, url: str) -> None:
        self.cache = cache
        self.url = url
        self.parts: list[bytes] | None = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if self.parts is None:
            return
        self.size += len(chunk)
        if self.size > self.cache.raw_max_file:
            self.parts = None  # too big to keep: memory stays bounded by configuration
        else:
            self.parts.append(chunk)

    async def done(self) -> None:
        """The download is complete: keep it (if it was small enough)."""
        if self.parts is not None:
            await self.cache.put_raw(self.url, b"".join(self.parts))


def _count(kind: str, hit: bool) -> None:
    CACHE_LOOKUPS.labels(kind, "hit" if hit else "miss").inc()


@dataclass(slots=True)
class _Call:
    task: asyncio.Task[Any]
    callers: int = 0


class SingleFlight:
    """Identical requests in flight at the same time, by key (a URL), share one.

    `share(key, work)` runs `work()` once for every caller that asks while it runs; the run
    is cancelled when the last of them is cancelled, so nobody's request outlives its
    askers. `running(key)` marks a streamed download (which cannot be shared chunk by chunk)
    so that others can `busy(key)` wait for it and then take its bytes from the cache.
    """

    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}
        self._downloads: dict[str, asyncio.Event] = {}

    async def share(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """`await work()`, or the result (or exception) of the run already going for `key`."""
        call = self._calls.get(key)
        if call is None:
            call = _Call(asyncio.ensure_future(work()))
            self._calls[key] = call
            call.task.add_done_callback(lambda _: self._forget(key, call))
        call.callers += 1
        try:
            result: T = await asyncio.shield(call.task)
            return result
        finally:
            call.callers -= 1
            if call.callers == 0 and not call.task.done():
                # Nobody wants it any more. Forget it now, so a newcomer starts afresh
                # rather than joining a run that is being cancelled.
                self._forget(key, call)
                call.task.cancel()

    def _forget(self, key: str, call: _Call) -> None:
        if self._calls.get(key) is call:
            del self._calls[key]

    def busy(self, key: str) -> asyncio.Event | None:
        """The event set when the download of `key` now running ends; None when none runs."""
        return self._downloads.get(key)

    @contextlib.contextmanager
    def running(self, key: str) -> Iterator[None]:
        """Mark the download of `key` as running for the duration of the block."""
        done = self._downloads[key] = asyncio.Event()
        try:
            yield
        finally:
            if self._downloads.get(key) is done:
                del self._downloads[key]
            done.set()
