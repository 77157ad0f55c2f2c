"""The one module that talks HTTP: GitHub's list pages and raw file bytes, with retries.

aiohttp's exceptions never leave this module: they become `ListingError` (a list page) or
`FetchError` (a file's bytes), each with the stable `code` of docs/records.md.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from gistscan.cache import MemoryCache
from gistscan.errors import FetchError, ListingError, UpstreamError

API_VERSION = "2022-11-28"
RAW_LIMIT = 10 * 1024 * 1024  # GitHub refuses raw files larger than this (403)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a user's gist list: its items as GitHub sent them, and the next page's URL."""

    url: str
    items: list[dict[str, Any]]
    next_url: str | None
    etag: str | None = None


class _Retry(Exception):
    """A transient failure: worth another try after a backoff."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


class GitHub:
    """GitHub's REST API and raw host, through one shared `aiohttp.ClientSession`.

    `retries` bounds the extra tries on connection errors and 5xx (with exponential backoff
    from `backoff` seconds, and jitter); rate limits are never retried. `request_timeout`
    bounds connecting and each read of one request. `token` is sent only to the API host.
    `bytes_received` counts raw bytes received, retries included.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        token: str | None = None,
        user_agent: str = "gistscan",
        retries: int = 3,
        backoff: float = 0.5,
        request_timeout: float | None = 30.0,
        cache: MemoryCache | None = None,
    ) -> None:
        self.session = session
        self.api_url = api_url.rstrip("/")
        self._api_origin = URL(self.api_url).origin()
        self.token = token
        self.user_agent = user_agent
        self.retries = retries
        self.backoff = backoff
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=request_timeout, sock_read=request_timeout
        )
        self.cache = cache
        self.bytes_received = 0

    def user_gists_url(self, username: str, per_page: int = 100, since: str | None = None) -> str:
        """Page one of the user's list; `since` (YYYY-MM-DDTHH:MM:SSZ): gists updated since."""
        url = f"{self.api_url}/users/{username}/gists?per_page={per_page}"
        return url if since is None else f"{url}&since={since}"

    def _api_headers(self, url: URL) -> dict[str, str]:
        headers = {
            "User-Agent": self.user_agent,
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        if self.token and url.origin() == self._api_origin:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def _back_off(self, attempt: int) -> None:
        """Wait before retry number `attempt` + 1: exponential, with jitter."""
        await asyncio.sleep(self.backoff * 2**attempt * random.uniform(0.5, 1.5))

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for n in range(self.retries + 1):
            try:
                return await attempt()
            except _Retry as retry:
                if n == self.retries:
                    raise retry.error from None
                await self._back_off(n)
        raise AssertionError("unreachable")

    async def get_page(self, url: str) -> Page:
        """One list page (fresh from the cache, revalidated with its ETag, or fetched).

        Raises `ListingError`: `not_found`, `rate_limited` (with `retry_after`),
        `upstream_error` (network, 5xx after retries, another 4xx), `invalid_response`.
        """
        cached = self.cache.page(url) if self.cache else None
        if cached is not None and cached.fresh:
            return cached.page
        etag = cached.page.etag if cached is not None else None
        page = await self._with_retries(lambda: self._get_page_once(url, etag))
        if page is None:  # 304: what we hold is still right
            assert cached is not None
            page = cached.page
        if self.cache:
            self.cache.put_page(url, page)
        return page

    async def _get_page_once(self, url: str, etag: str | None) -> Page | None:
        target = URL(url, encoded=True)  # GitHub's Link URLs are used exactly as given
        headers = self._api_headers(target)
        if etag:
            headers["If-None-Match"] = etag
        try:
            async with self.session.get(target, headers=headers, timeout=self.timeout) as resp:
                if resp.status == 304 and etag:
                    return None
                if resp.status != 200:
                    raise _status_error(ListingError, resp, await _text(resp), what="the gist list")
                body = await resp.read()
                next_url = _next_link(resp.headers.get("Link", ""))
                new_etag = resp.headers.get("ETag")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Retry(
                ListingError("upstream_error", f"could not read the gist list: {_describe(exc)}")
            ) from exc
        try:
            items = json.loads(body)
        except ValueError:
            raise ListingError(
                "invalid_response", "GitHub's gist list is not valid JSON", status=200
            ) from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ListingError(
                "invalid_response", "GitHub's gist list is not a JSON array of gists", status=200
            )
        return Page(url=url, items=items, next_url=next_url, etag=new_etag)

    async def iter_raw(
        self, url: str, *, chunk_size: int, size: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The bytes of a raw file, in chunks of exactly `chunk_size` (the last one shorter).

        A download that breaks off is retried from where it stopped (bytes already
        yielded are skipped, never yielded twice). Raises `FetchError`: `not_found`,
        `too_large` (a 403 for a file whose listed `size` is over 10 MB: GitHub's raw
        limit), `rate_limited`, `upstream_error` (a 403 on any other file among them).
        """
        if self.cache is not None:
            cached = self.cache.raw(url)
            if cached is not None:
                for i in range(0, len(cached), chunk_size):
                    yield cached[i : i + chunk_size]
                return
        keep = self.cache.raw_keeper(url) if self.cache is not None else None
        delivered = 0
        for n in range(self.retries + 1):
            try:
                # aclosing: a consumer that stops early releases the response at once.
                once = self._raw_once(url, chunk_size, skip=delivered, size=size)
                async with aclosing(once):
                    async for chunk in once:
                        delivered += len(chunk)
                        if keep is not None:
                            keep.add(chunk)
                        yield chunk
                if keep is not None:
                    keep.done()
                return
            except _Retry as retry:
                if n == self.retries:
                    raise retry.error from None
                await self._back_off(n)

    async def _raw_once(
        self, url: str, chunk_size: int, *, skip: int, size: int | None
    ) -> AsyncGenerator[bytes, None]:
        headers = {"User-Agent": self.user_agent}
        try:
            async with self.session.get(
                URL(url, encoded=True), headers=headers, timeout=self.timeout
            ) as resp:
                if resp.status != 200:
                    body = await _text(resp)
                    over = size is not None and size > RAW_LIMIT
                    raise _status_error(FetchError, resp, body, what="the raw file", too_large=over)
                content = resp.content
                while skip:  # a retry: drop what the scanner already has
                    got = await content.read(min(skip, 1 << 16))
                    if not got:
                        return
                    self.bytes_received += len(got)
                    skip -= len(got)
                # iter_chunked(n) yields *up to* n bytes: re-chunk to exact sizes.
                while True:
                    try:
                        chunk = await content.readexactly(chunk_size)
                    except asyncio.IncompleteReadError as short:
                        if short.partial:
                            self.bytes_received += len(short.partial)
                            yield short.partial
                        return
                    self.bytes_received += len(chunk)
                    yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Retry(
                FetchError("upstream_error", f"could not download the file: {_describe(exc)}")
            ) from exc


async def _text(resp: aiohttp.ClientResponse) -> str:
    try:
        return (await resp.read())[:2000].decode("utf-8", "replace")
    except (TimeoutError, aiohttp.ClientError):
        return ""


def _status_error(
    kind: type[UpstreamError],
    resp: aiohttp.ClientResponse,
    body: str,
    *,
    what: str,
    too_large: bool = False,
) -> Exception:
    """Map a non-200 answer to an error (wrapped in `_Retry` when worth retrying).

    A 403 without rate-limit headers is `too_large` only for a file known to be over the
    raw limit: on a smaller one it is some other refusal, and calling it too large would
    send the caller cloning for nothing.
    """
    status = resp.status
    message = _github_message(body)
    retry_after = _retry_after(resp.headers)
    if status in (403, 429) and retry_after is not None:
        when = f"; it resets in {int(retry_after)} s" if retry_after else ""
        return kind(
            "rate_limited",
            f"GitHub's rate limit is exhausted ({status}{': ' + message if message else ''}){when}",
            status=status,
            retry_after=retry_after,
        )
    if status == 404:
        return kind("not_found", f"{what} was not found (404)", status=status)
    if status == 403 and too_large:
        return kind(
            "too_large", f"GitHub refused {what} (403): over its 10 MB raw limit", status=status
        )
    if status >= 500:
        return _Retry(kind("upstream_error", f"GitHub answered {status} for {what}", status=status))
    detail = f": {message}" if message else ""
    return kind("upstream_error", f"GitHub answered {status} for {what}{detail}", status=status)


def _github_message(body: str) -> str:
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        return ""
    return message if isinstance(message, str) else ""


def _retry_after(headers: Any) -> float | None:
    """Seconds until a rate limit lifts, or None when the answer is no rate limit."""
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            return 60.0
    if headers.get("X-RateLimit-Remaining") == "0":
        try:
            return max(0.0, float(headers.get("X-RateLimit-Reset", "")) - time.time())
        except ValueError:
            return 60.0
    return None


def _next_link(header: str) -> str | None:
    """The `rel="next"` URL of a Link header, verbatim."""
    for part in header.split(","):
        url, _, params = part.partition(";")
        url = url.strip()
        if url.startswith("<") and url.endswith(">") and 'rel="next"' in params.replace(" ", ""):
            return url[1:-1]
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
