"""A bounded in-memory cache: list pages (revalidated by ETag) and raw file bytes (immutable)."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gistscan.github import Page


@dataclass(frozen=True, slots=True)
class CachedPage:
    page: Page
    fresh: bool  # younger than the TTL: use it without asking GitHub


class MemoryCache:
    """List pages for `page_ttl` seconds (then revalidated with If-None-Match: a 304 costs no
    rate limit), and raw bytes keyed by raw URL, which carries the file's revision, so they
    never go stale. Both are LRU; raw bytes stay within `raw_budget` bytes in all, and a file
    larger than `raw_max_file` is never kept. `max_pages` bounds the page entries.
    """

    def __init__(
        self,
        *,
        page_ttl: float = 60.0,
        max_pages: int = 1000,
        raw_budget: int = 64 * 1024 * 1024,
        raw_max_file: int = 4 * 1024 * 1024,
    ) -> None:
        self.page_ttl = page_ttl
        self.max_pages = max_pages
        self.raw_budget = raw_budget
        self.raw_max_file = min(raw_max_file, raw_budget)
        self._pages: OrderedDict[str, tuple[float, Page]] = OrderedDict()
        self._raw: OrderedDict[str, bytes] = OrderedDict()
        self.raw_bytes = 0

    def page(self, url: str) -> CachedPage | None:
        entry = self._pages.get(url)
        if entry is None:
            return None
        self._pages.move_to_end(url)
        stored, page = entry
        return CachedPage(page, fresh=time.monotonic() - stored < self.page_ttl)

    def put_page(self, url: str, page: Page) -> None:
        self._pages[url] = (time.monotonic(), page)
        self._pages.move_to_end(url)
        while len(self._pages) > self.max_pages:
            self._pages.popitem(last=False)

    def raw(self, url: str) -> bytes | None:
        data = self._raw.get(url)
        if data is not None:
            self._raw.move_to_end(url)
        return data

    def raw_keeper(self, url: str) -> RawKeeper:
        return RawKeeper(self, url)

    def _put_raw(self, url: str, data: bytes) -> None:
        if url in self._raw:
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

    def done(self) -> None:
        if self.parts is not None:
            self.cache._put_raw(self.url, b"".join(self.parts))
