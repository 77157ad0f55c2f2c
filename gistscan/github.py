"""The one module that talks HTTP: GitHub's list pages and raw file bytes, with retries.

aiohttp's exceptions never leave this module: they become `ListingError` (a list page) or
`FetchError` (a file's bytes), each with the stable record `code` of docs/records.md.

Every wait is bounded. A request (its tries and the waits between them) spends at most
`request_total_timeout` seconds on its upstream, each connect or read at most
`request_timeout`, and no wait goes past the search's `deadline`. One wait is at most
`backoff_max` seconds: an upstream that asks for a longer one (a rate limit's Retry-After, its
reset) gets its error reported instead. Before each request the `Budget` is consulted, so that
a host that asked the whole client to wait (a secondary rate limit, a 429 of the raw host) is
not asked again before its time. No body is read whole without a cap: a list page at most
`max_page_bytes`, an error body a few KB; raw files are streamed, and cut past their listed
size (or the raw limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import math
import random
import re
import time
import urllib.request
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from gistscan.budget import MAX_WAIT, Budget
from gistscan.cache import CachedPage, MemoryCache, RawCopy, StoredPage
from gistscan.errors import FetchError, ListingError, UpstreamError, shown_url
from gistscan.metrics import DOWNLOADED_BYTES, RATE_LIMIT_WAITS, UPSTREAM_REQUESTS, UPSTREAM_RETRIES

API_VERSION = "2022-11-28"
RAW_LIMIT = 10 * 1024 * 1024  # GitHub refuses raw files larger than this (403)
SECONDARY_WAIT = 60.0  # GitHub's advice when a rate limit names no time: wait at least a minute
ERROR_BODY_BYTES = 4096  # read of a refusal's body: enough for GitHub's message
MAX_REDIRECTS = 5
# The codings we ask for, and decode ourselves: aiohttp's decoder takes a gzip stream cut short
# for a whole one, and which others it knows depends on the packages installed. Anything else
# (`gzip,gzip`, `br`, `compress`, ...) is refused, never scanned still encoded.
ACCEPT_ENCODING = "gzip, deflate"
DECODE_STEP = 64 * 1024  # bytes decoded per step: a small body cannot expand into a big buffer

T = TypeVar("T")
Kind = type[UpstreamError]


def client_session(**options: Any) -> aiohttp.ClientSession:
    """The HTTP session gistscan talks to GitHub through.

    Not `trust_env`: besides the proxy variables, that would make aiohttp read ~/.netrc and
    send its credentials (a `default` entry's to every host, raw hosts included), and refuse
    every API request that also carries the token. The proxy variables are honoured per
    request instead (`env_proxies`). `options` go to `aiohttp.ClientSession` (the server
    adds a trace that counts each search's requests).
    """
    return aiohttp.ClientSession(**options)


def env_proxies() -> Callable[[URL], URL | None]:
    """The environment's proxy choice, read now: a function from a URL to the proxy that
    HTTPS_PROXY, HTTP_PROXY, ALL_PROXY (minus NO_PROXY, as curl and git read them) name for
    it, or None. The choice is made once per scheme and host (urllib decodes the whole
    environment on each call: on a busy server that was a tenth of the CPU)."""
    proxies = urllib.request.getproxies()

    @functools.lru_cache(maxsize=16)
    def choose(scheme: str, host: str | None) -> URL | None:
        if host is None or urllib.request.proxy_bypass(host):
            return None
        proxy = proxies.get(scheme) or proxies.get("all")
        return URL(proxy) if proxy else None

    return lambda url: choose(url.scheme, url.host)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a user's gist list: its items as GitHub sent them, and the next page's URL."""

    url: str
    items: list[dict[str, Any]]
    next_url: str | None
    etag: str | None = None


class _Retry(Exception):
    """A transient failure: worth another try, after `after` seconds when the upstream said."""

    def __init__(self, error: UpstreamError, after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.after = after


class GitHub:
    """GitHub's REST API and raw host, through one shared `aiohttp.ClientSession`.

    `retries` bounds the extra tries of one request on connection errors, timeouts, 5xx and
    rate limits short enough to wait for; waits grow exponentially from `backoff` seconds
    (with jitter) up to `backoff_max`, and a Retry-After is honoured (a longer one ends the
    tries). `request_timeout` bounds connecting and each read, `request_total_timeout` the
    upstream time of a whole request: its connects, reads and waits, not the time a consumer
    of its raw stream holds a chunk (a raw body is bounded in bytes instead: its listed size
    or the raw limit, whichever is larger); `deadline` (a `time.monotonic()` value, or None) is
    when the search must end: no wait goes past it, and a list page still unread then raises
    `deadline_exceeded`. `token` is sent only to the API host, whose origin is also the only
    one list pages are read from. `budget` is shared by the clients of one process, `cache`
    (with its single flight) by the server's searches. `bytes_received` counts raw bytes
    received, retries included.
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
        backoff_max: float = 10.0,
        request_timeout: float | None = 30.0,
        request_total_timeout: float | None = 120.0,
        max_page_bytes: int = 8 * 1024 * 1024,
        deadline: float | None = None,
        cache: MemoryCache | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.session = session
        self.api_url = api_url.rstrip("/")
        self._api_origin = URL(self.api_url).origin()
        self.token = token
        self.user_agent = user_agent
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self.request_total_timeout = request_total_timeout
        self.max_page_bytes = max_page_bytes
        self.deadline = deadline
        self.cache = cache
        self.budget = budget if budget is not None else Budget()
        self.bytes_received = 0
        self._proxy = env_proxies()

    def user_gists_url(self, username: str, per_page: int = 100, since: str | None = None) -> str:
        """Page one of the user's list; `since` (YYYY-MM-DDTHH:MM:SSZ): gists updated since."""
        url = f"{self.api_url}/users/{username}/gists?per_page={per_page}"
        return url if since is None else f"{url}&since={since}"

    # -- list pages ----------------------------------------------------------------------------

    async def get_page(self, url: str) -> Page:
        """One list page (fresh from the cache, revalidated with its ETag, or fetched).

        Identical requests in flight at once (other searches of the server) share one.
        Raises `ListingError`: `not_found` (also remembered for the cache's page TTL),
        `rate_limited` (with `retry_after`), `upstream_error` (network, 5xx after retries,
        another 4xx), `invalid_response` (not a JSON array of gists, over `max_page_bytes`, a
        URL or redirect away from the API host), `deadline_exceeded`.
        """
        try:
            async with asyncio.timeout_at(self.deadline) as scope:
                if self.cache is None:
                    return await self._page(url)
                return await self.cache.flights.share(url, lambda: self._page(url))
        except TimeoutError:
            if not scope.expired():
                raise
            raise ListingError(
                "deadline_exceeded", f"the search's deadline passed while reading {shown_url(url)}"
            ) from None

    async def _page(self, url: str) -> Page:
        if _origin(url) != self._api_origin:
            raise ListingError(
                "invalid_response",
                f"a list page link leaves the API host {self.api_url}: {shown_url(url)}",
            )
        if self.cache is None:
            return await self._fetch_page(url, None)
        kept = await self._kept_page(url)
        if isinstance(kept, Page):
            return kept
        async with self.cache.lead_page(url) as look_again:
            if look_again:  # another process may have fetched it since: its answer is kept
                kept = await self._kept_page(url)
                if isinstance(kept, Page):
                    return kept
            return await self._fetch_page(url, kept)

    async def _kept_page(self, url: str) -> Page | CachedPage | None:
        """The page kept fresh, else the stale copy to revalidate (or None); raises
        `not_found` for a 404 remembered."""
        assert self.cache is not None
        cached = await self.cache.page(url)
        if cached is not None and cached.fresh:
            return _parse_page(url, cached.page)
        if cached is None and await self.cache.not_found(url):
            raise ListingError("not_found", "the gist list was not found (404, remembered)")
        return cached

    async def _fetch_page(self, url: str, cached: CachedPage | None) -> Page:
        """Ask GitHub (with `cached`'s ETag, if any) and keep the answer."""
        etag = cached.page.etag if cached is not None else None
        try:
            stored = await self._with_retries(
                "api", ListingError, lambda left: self._page_once(url, etag, left)
            )
        except ListingError as exc:
            if exc.code == "not_found" and self.cache is not None:
                await self.cache.put_not_found(url)
            raise
        if stored is None:  # 304: what we hold is still right
            assert cached is not None
            stored = cached.page
        page = _parse_page(url, stored)
        if self.cache is not None:
            await self.cache.put_page(url, stored)
        return page

    async def _page_once(self, url: str, etag: str | None, left: _Allowance) -> StoredPage | None:
        headers = self._api_headers()
        if etag:
            headers["If-None-Match"] = etag
        async with self._get("api", ListingError, url, headers, left) as resp:
            if resp.status == 304 and etag:
                return None
            if resp.status != 200:
                raise await self._refusal(ListingError, "api", resp, left, what="the gist list")
            if resp.url.origin() != self._api_origin:
                raise ListingError(
                    "invalid_response",
                    "the gist list was redirected away from the API host, to"
                    f" {shown_url(str(resp.url))}",
                )
            async with left.spending():
                body = await _read_capped(resp, self.max_page_bytes)
            if body is None:
                raise ListingError(
                    "invalid_response",
                    f"a page of the gist list is over the limit of {self.max_page_bytes} bytes"
                    " (GitHub's are under 1 MB)",
                )
            return StoredPage(body, _next_url(resp), resp.headers.get("ETag"))

    def _api_headers(self) -> dict[str, str]:
        headers = {
            "User-Agent": self.user_agent,
            "Accept": "application/vnd.github+json",
            "Accept-Encoding": ACCEPT_ENCODING,
            "X-GitHub-Api-Version": API_VERSION,
        }
        if self.token:
            # Only list pages are fetched with these headers, and only from the API origin;
            # aiohttp drops the header on a redirect to another origin.
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    # -- raw files -----------------------------------------------------------------------------

    async def iter_raw(
        self, url: str, *, chunk_size: int, size: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The bytes of a raw file, in chunks of exactly `chunk_size` (the last one shorter).

        A download that breaks off is retried from where it stopped (bytes already
        yielded are skipped, never yielded twice). With a cache, a file another search is
        downloading now (in this process, or in another one sharing the cache) is waited for
        and then taken from the cache (or downloaded, when it was too big to keep); a shared
        copy that vanishes mid-read is finished from GitHub. Raises `FetchError`: `not_found`,
        `too_large` (a 403 for a file whose listed `size` is over 10 MB: GitHub's raw limit),
        `rate_limited`, `invalid_response` (a Content-Encoding that cannot be decoded, a body
        longer than the listed `size` and the raw limit, a bad URL), `upstream_error` (a 403
        on any other file among them).
        """
        cache = self.cache
        if cache is None:
            async with aclosing(self._download(url, chunk_size, size)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        copy = await self._kept_raw(url)
        if copy is None:
            with cache.flights.running(url):
                async with cache.lead_raw(url, size) as look_again:
                    # Another process may have downloaded it since: then it is kept.
                    copy = await cache.raw(url) if look_again else None
                    if copy is None:
                        keep = cache.raw_keeper(url, size)
                        async with aclosing(self._download(url, chunk_size, size)) as chunks:
                            async for chunk in chunks:
                                await keep.add(chunk)
                                yield chunk
                        await keep.done()
                        return
        sent = 0
        async with aclosing(copy.chunks(chunk_size)) as chunks:
            async for chunk in chunks:
                sent += len(chunk)
                yield chunk
        if sent < copy.size:
            # The shared copy vanished mid-read (evicted, flushed, its store gone): the rest
            # from GitHub. `sent` is a whole number of chunks, so the chunks stay exact.
            async with aclosing(self._download(url, chunk_size, size, skip=sent)) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def _kept_raw(self, url: str) -> RawCopy | None:
        """The copy kept of `url`, after waiting out this process's download of it if one
        runs; None when there is none (and none runs: the caller may start one at once)."""
        assert self.cache is not None
        while True:
            copy = await self.cache.raw(url)
            if copy is not None:
                return copy
            busy = self.cache.flights.busy(url)
            if busy is None:
                return None
            await busy.wait()  # bounded: that download's own request limits bound it

    async def _download(
        self, url: str, chunk_size: int, size: int | None, *, skip: int = 0
    ) -> AsyncGenerator[bytes, None]:
        """The file's bytes from GitHub, the first `skip` left out."""
        left = _Allowance(self.request_total_timeout)
        delivered = skip
        tries = 0
        while True:
            await self._turn("raw", FetchError, left)
            try:
                # aclosing: a consumer that stops early releases the response at once.
                once = self._raw_once(url, chunk_size, skip=delivered, size=size, left=left)
                async with aclosing(once):
                    async for chunk in once:
                        delivered += len(chunk)
                        yield chunk
                return
            except _Retry as retry:
                await self._pause("raw", retry, tries, left)
                tries += 1

    async def _raw_once(
        self, url: str, chunk_size: int, *, skip: int, size: int | None, left: _Allowance
    ) -> AsyncGenerator[bytes, None]:
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": ACCEPT_ENCODING}
        async with self._get("raw", FetchError, url, headers, left) as resp:
            if resp.status != 200:
                over = size is not None and size > RAW_LIMIT
                raise await self._refusal(
                    FetchError, "raw", resp, left, what="the raw file", too_large=over
                )
            # A raw URL names one revision, whose size the listing gives: a body past it (or
            # past the raw host's own limit, when the listing says less) never ends well.
            limit = max(size or 0, RAW_LIMIT)
            if (resp.content_length or 0) > limit:
                raise _too_long(limit, size, status=resp.status)
            # Re-chunked to exact sizes; only the reads are timed: the time the consumer holds
            # a chunk is not the upstream's.
            position = 0
            pending = bytearray()
            async with aclosing(_body(resp, FetchError, left)) as pieces:
                async for piece in pieces:
                    position += len(piece)
                    if position > limit:
                        raise _too_long(limit, size, status=resp.status)
                    self._received(len(piece))
                    # A retry: drop what the scanner already has.
                    pending += piece[max(0, skip - (position - len(piece))) :]
                    while len(pending) >= chunk_size:
                        yield bytes(pending[:chunk_size])
                        del pending[:chunk_size]
            if pending:
                yield bytes(pending)

    def _received(self, n: int) -> None:
        self.bytes_received += n
        DOWNLOADED_BYTES.labels("raw").inc(n)

    # -- one request, its tries and waits --------------------------------------------------------

    async def _with_retries(
        self, host: str, kind: Kind, attempt: Callable[[_Allowance], Awaitable[T]]
    ) -> T:
        left = _Allowance(self.request_total_timeout)
        tries = 0
        while True:
            await self._turn(host, kind, left)
            try:
                return await attempt(left)
            except _Retry as retry:
                await self._pause(host, retry, tries, left)
                tries += 1

    def _may_wait(self, seconds: float, left: _Allowance) -> bool:
        """Whether a wait of `seconds` fits the ceiling, the request's time and the deadline."""
        return (
            seconds <= self.backoff_max
            and (left.left is None or seconds < left.left)
            and (self.deadline is None or time.monotonic() + seconds < self.deadline)
        )

    async def _turn(self, host: str, kind: Kind, left: _Allowance) -> None:
        """Wait until `host` may be asked again; raise `rate_limited` when that is too long."""
        wait = await self.budget.wait(host)
        if wait <= 0:
            return
        if not self._may_wait(wait, left):
            why = "asked us to wait"
            if host == "api" and self.budget.reserve > 1:
                why += f" or has fewer than the {self.budget.reserve} requests kept in reserve"
            raise kind(
                "rate_limited",
                f"{_HOST_NAMES[host]} {why}; it resets in {math.ceil(wait)} s",
                retry_after=wait,
            )
        left.spend(wait)
        await self._sleep(wait)

    async def _pause(self, host: str, retry: _Retry, tries: int, left: _Allowance) -> None:
        """The wait before try number `tries` + 2, or `retry.error` when none may follow."""
        if tries >= self.retries:
            raise retry.error
        wait = min(self.backoff * 2 ** min(tries, 30) * random.uniform(0.5, 1.5), self.backoff_max)
        if retry.after is not None:
            wait = max(wait, retry.after)
        if not self._may_wait(wait, left):
            raise retry.error
        UPSTREAM_RETRIES.labels(host).inc()
        left.spend(wait)
        await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        """Every wait between requests goes through here (tests record them)."""
        await asyncio.sleep(seconds)

    @contextlib.asynccontextmanager
    async def _get(
        self, host: str, kind: Kind, url: str, headers: dict[str, str], left: _Allowance
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET `url` (exactly as given) within the request's allowance (its body is read by
        the caller, within it too); count it; note the API's rate limit; translate aiohttp's
        failures, transient ones wrapped in `_Retry`."""
        answered = False
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.request_timeout, sock_read=self.request_timeout
        )
        shown = shown_url(url)  # what messages may print of it
        try:
            target = URL(url, encoded=True)
            if target.raw_user is not None or target.raw_password is not None:
                # aiohttp would send them as Basic auth, and they would be printed.
                raise kind("invalid_response", f"refused {shown}: it holds a user name or password")
            async with left.spending():
                resp = await self.session.get(
                    target,
                    headers=headers,
                    proxy=self._proxy(target),
                    timeout=timeout,
                    max_redirects=MAX_REDIRECTS,
                    auto_decompress=False,  # `_body` decodes, and refuses what does not decode
                )
            async with resp:
                answered = True
                UPSTREAM_REQUESTS.labels(host, str(resp.status)).inc()
                if host == "api":
                    await self._observe(resp.headers)
                yield resp
        except (aiohttp.ClientConnectorDNSError, aiohttp.ClientSSLError) as exc:
            # Not transient: trying again would fail the same way, only later.
            UPSTREAM_REQUESTS.labels(host, "error").inc()
            raise kind(
                "upstream_error", f"could not connect to {shown}: {_describe(exc)}", url=shown
            ) from exc
        except (
            aiohttp.TooManyRedirects,
            aiohttp.InvalidURL,
            aiohttp.NonHttpUrlClientError,
            aiohttp.RedirectClientError,
        ) as exc:
            if not answered:
                UPSTREAM_REQUESTS.labels(host, "error").inc()
            # Not the exception's text: it may hold a redirect URL with a password in it.
            why = (
                f"more than {MAX_REDIRECTS} redirects"
                if isinstance(exc, aiohttp.TooManyRedirects)
                else "a redirect to a URL that is not http(s)"
                if isinstance(exc, aiohttp.NonHttpUrlClientError)
                else "an invalid URL"
            )
            raise kind("invalid_response", f"could not follow {shown}: {why}", url=shown) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            if not answered:
                UPSTREAM_REQUESTS.labels(host, "error").inc()
            reason = self._timed_out(left) if isinstance(exc, TimeoutError) else _describe(exc)
            raise _Retry(kind("upstream_error", f"{shown}: {reason}", url=shown)) from exc
        except ValueError as exc:
            if answered:  # raised by the code reading the answer: not ours to translate
                raise
            UPSTREAM_REQUESTS.labels(host, "error").inc()
            raise kind(
                "invalid_response", f"cannot request {shown!r}: {_describe(exc)}", url=shown
            ) from exc

    def _timed_out(self, left: _Allowance) -> str:
        if left.left is not None and left.left <= 0:
            return f"no complete answer within {self.request_total_timeout:g} s"
        return f"no answer within {self.request_timeout:g} s"

    async def _observe(self, headers: CIMultiDictProxy[str]) -> None:
        """Keep the API's rate-limit state from any answer's x-ratelimit-* headers."""
        try:
            remaining = int(headers["X-RateLimit-Remaining"])
            reset = float(headers["X-RateLimit-Reset"])
        except (KeyError, ValueError):
            return
        if remaining >= 0 and not math.isnan(reset):
            await self.budget.observe(remaining, min(reset, time.time() + MAX_WAIT))

    async def _refusal(
        self,
        kind: Kind,
        host: str,
        resp: aiohttp.ClientResponse,
        left: _Allowance,
        *,
        what: str,
        too_large: bool = False,
    ) -> Exception:
        """Map a non-200 answer to an error (wrapped in `_Retry` when worth retrying).

        A rate limit holds the host in the budget for the time it names. A 403 without
        rate-limit signs is `too_large` only for a file known to be over the raw limit: on a
        smaller one it is some other refusal, and calling it too large would send the caller
        cloning for nothing.
        """
        status = resp.status
        try:
            async with left.spending():
                body = await _read_upto(resp, kind, ERROR_BODY_BYTES)
        except TimeoutError:
            body = b""
        message = _github_message(body)
        detail = f": {message}" if message else ""
        wait = _rate_limit_wait(status, resp.headers, body)
        if wait is not None:
            RATE_LIMIT_WAITS.labels(host).inc()
            await self.budget.hold(host, wait)
            limited = kind(
                "rate_limited",
                f"{_HOST_NAMES[host]} refused {what} for a rate limit ({status}{detail});"
                f" it resets in {math.ceil(wait)} s",
                status=status,
                retry_after=wait,
            )
            return _Retry(limited, after=wait)
        if status == 404:
            return kind("not_found", f"{what} was not found (404)", status=status)
        if status == 403 and too_large:
            return kind(
                "too_large", f"GitHub refused {what} (403): over its 10 MB raw limit", status=status
            )
        error = kind(
            "upstream_error", f"GitHub answered {status} for {what}{detail}", status=status
        )
        if status >= 500:
            after = _seconds(resp.headers.get("Retry-After"))
            if after is not None:
                RATE_LIMIT_WAITS.labels(host).inc()
            return _Retry(error, after=after)
        return error


_HOST_NAMES = {"api": "GitHub's API", "raw": "GitHub's raw host"}


class _Allowance:
    """The upstream time one request may still take (`left` seconds; None: no limit): its
    connects, reads and the waits between its tries, but not the time the consumer of a raw
    stream holds a chunk (a slow reader is not a slow upstream)."""

    def __init__(self, seconds: float | None) -> None:
        self.left = seconds

    def spend(self, seconds: float) -> None:
        if self.left is not None:
            self.left -= seconds

    @contextlib.asynccontextmanager
    async def spending(self) -> AsyncIterator[None]:
        """Time the block against what is left; TimeoutError when it runs out."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.left):
                yield
        finally:
            self.spend(time.monotonic() - started)


def _too_long(limit: int, size: int | None, *, status: int) -> FetchError:
    return FetchError(
        "invalid_response",
        f"the raw file goes on past {limit} bytes (its listed size: {size}; GitHub's raw limit:"
        f" {RAW_LIMIT})",
        status=status,
    )


def _origin(url: str) -> URL | None:
    try:
        return URL(url, encoded=True).origin()
    except ValueError:
        return None


# RFC 8288: `<target>` then `; name=value` parameters (value a token or a quoted string).
_LINK_TARGET = re.compile(r"[\s,]*<([^>]*)>")
_LINK_PARAM = re.compile(r'\s*;\s*([^\s;,="]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;,"]*)))?')
_LINK_END = re.compile(r"[\s;]*(?:,|$)")


def _next_url(resp: aiohttp.ClientResponse) -> str | None:
    """The URL of the first link whose relations include `next`, from every Link header.

    Not `ClientResponse.links`: it matches the `rel` name and its value case-sensitively, takes
    `rel="next last"` for one relation named so, and re-quotes the URL (`%2C` becomes `,`).
    Here parameter names and relation types are case-insensitive, `rel` holds space-separated
    relations, and the URL is kept exactly as sent (a relative one is resolved against the
    page's). Raises `invalid_response` for a header that is not a list of links.
    """
    for header in resp.headers.getall("Link", ()):
        position = 0
        while position < len(header) and header[position:].strip(", \t"):
            target = _LINK_TARGET.match(header, position)
            if target is None or any(c.isspace() or ord(c) < 32 for c in target[1]):
                raise ListingError("invalid_response", "GitHub's Link header is malformed")
            position = target.end()
            rel = None
            while param := _LINK_PARAM.match(header, position):
                position = param.end()
                if rel is None and param[1].lower() == "rel":  # only its first `rel` counts
                    rel = param[2] if param[2] is not None else param[3] or ""
            end = _LINK_END.match(header, position)
            if end is None:
                raise ListingError("invalid_response", "GitHub's Link header is malformed")
            position = end.end()
            if rel is not None and "next" in rel.lower().split():
                try:
                    return str(resp.url.join(URL(target[1], encoded=True)).with_fragment(None))
                except ValueError:  # yarl: a bad port, a bad IPv6 address, ...
                    raise ListingError(
                        "invalid_response", "GitHub's Link header names an invalid URL"
                    ) from None
    return None


def _parse_page(url: str, stored: StoredPage) -> Page:
    """The page's items; `invalid_response` unless the body is a JSON array of objects."""
    try:
        # orjson refuses nesting past 1024 levels with a ValueError, never a RecursionError.
        items = orjson.loads(stored.body)
    except (ValueError, RecursionError):
        raise ListingError(
            "invalid_response", "GitHub's gist list is not valid JSON", status=200
        ) from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ListingError(
            "invalid_response", "GitHub's gist list is not a JSON array of gists", status=200
        )
    return Page(url=url, items=items, next_url=stored.next_url, etag=stored.etag)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The whole (decoded) body, or None as soon as it is known to be over `cap` bytes."""
    if resp.content_length is not None and resp.content_length > cap:
        return None
    body = await _read_upto(resp, ListingError, cap + 1, quiet=False)
    return body if len(body) <= cap else None


async def _read_upto(
    resp: aiohttp.ClientResponse, kind: Kind, n: int, *, quiet: bool = True
) -> bytes:
    """At most the first `n` bytes of the decoded body. `quiet`: a failing read gives what
    came; else it raises (see `_body`)."""
    got = bytearray()
    try:
        async with aclosing(_body(resp, kind)) as pieces:
            async for piece in pieces:
                got += piece
                if len(got) >= n:
                    break
    except (aiohttp.ClientError, UpstreamError):
        if not quiet:
            raise
    return bytes(got[:n])


async def _body(
    resp: aiohttp.ClientResponse, kind: Kind, left: _Allowance | None = None
) -> AsyncGenerator[bytes, None]:
    """The body, its Content-Encoding undone, in pieces of at most a read or `DECODE_STEP`
    bytes; each read timed against `left` when given.

    Raises `kind("invalid_response")` for a coding we did not ask for or a stream that does
    not decode to its end (corrupt, cut short, followed by garbage): deterministic, so never
    retried. A body that breaks off before its Content-Length raises aiohttp's
    `ClientPayloadError` (a transient failure).
    """
    # Two Content-Encoding headers are one list of codings (RFC 9110 5.3).
    coding = ", ".join(resp.headers.getall("Content-Encoding", ()))
    decoder = _Decoder(coding, kind, resp.status)
    while True:
        async with left.spending() if left is not None else contextlib.nullcontext():
            data = await resp.content.readany()
        if not data:
            break
        for piece in decoder.feed(data):
            yield piece
    decoder.finish()


class _Decoder:
    """Undoes `Content-Encoding` gzip (all its members) or deflate (zlib-wrapped or raw, as
    servers send it), `DECODE_STEP` bytes at a time; identity passes through."""

    def __init__(self, coding: str, kind: Kind, status: int) -> None:
        self.coding = coding.strip().lower()
        self.kind = kind
        self.status = status
        self.what = "the raw file" if kind is FetchError else "the gist list"
        if self.coding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise self._error(
                f"{self.what} came with Content-Encoding {self.coding[:60]!r},"
                " which cannot be decoded"
            )
        self.gzip = self.coding in ("gzip", "x-gzip")
        self.zlib: Any = None  # the decompressor of the gzip member (deflate stream) under way
        self.ended = False  # one member (the deflate stream) came whole

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.coding in ("", "identity"):
            yield data
            return
        while True:
            if self.zlib is None:
                if not data:
                    return
                if self.ended and not self.gzip:
                    raise self._error(f"{self.what} goes on past the end of its deflate stream")
                # Deflate comes with its zlib header (first byte 0x?8) or, from some servers,
                # without: aiohttp takes both, so do we.
                wbits = 31 if self.gzip else 15 if data[0] & 0x0F == 8 else -15
                self.zlib = zlib.decompressobj(wbits)
            try:
                out = self.zlib.decompress(data, DECODE_STEP)
            except zlib.error:
                raise self._error(f"{self.what}'s {self.coding} stream is corrupt") from None
            if out:
                yield out
            if self.zlib.eof:  # what follows a gzip member is the next member
                data, self.zlib, self.ended = self.zlib.unused_data, None, True
            else:
                data = self.zlib.unconsumed_tail
                if not data and len(out) < DECODE_STEP:
                    return  # all input taken, no output held back

    def finish(self) -> None:
        """Raise when the stream stopped before its end."""
        if self.zlib is not None:
            raise self._error(f"{self.what}'s {self.coding} stream is cut short")

    def _error(self, message: str) -> UpstreamError:
        return self.kind("invalid_response", message, status=self.status)


def _github_message(body: bytes) -> str:
    try:
        message = orjson.loads(body).get("message", "")
    except (ValueError, AttributeError):
        return ""
    return " ".join(message.split())[:300] if isinstance(message, str) else ""


def _seconds(value: str | None, *, epoch: bool = False) -> float | None:
    """Seconds from now that a `Retry-After` (seconds or an HTTP date) or, with `epoch`, an
    `x-ratelimit-reset` (Unix seconds) names, clamped to 0..MAX_WAIT (`1e999`: an hour; a
    time already past: 0); None when absent or not a time at all (`nan`, words, a negative
    number of seconds)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        if epoch:
            return None
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    else:
        if math.isnan(seconds) or (seconds < 0 and not epoch):
            return None
        if epoch:
            seconds -= time.time()
    return min(max(seconds, 0.0), MAX_WAIT)


def _rate_limit_wait(status: int, headers: CIMultiDictProxy[str], body: bytes) -> float | None:
    """Seconds a rate-limit answer asks us to wait; None when the answer is no rate limit.

    GitHub's rules: a 403 or 429 with `x-ratelimit-remaining: 0` waits for
    `x-ratelimit-reset`; one with `Retry-After` waits that long; a secondary limit may carry
    neither (a 403 or 429 whose message or documentation_url says so in any of GitHub's
    wordings, or a bare 429): wait at least a minute.
    A Retry-After that is not a time counts as absent.
    """
    if status not in (403, 429):
        return None
    waits = []
    if "Retry-After" in headers:
        asked = _seconds(headers["Retry-After"])
        waits.append(SECONDARY_WAIT if asked is None else asked)
    if headers.get("X-RateLimit-Remaining", "").strip() == "0":
        reset = _seconds(headers.get("X-RateLimit-Reset"), epoch=True)
        waits.append(SECONDARY_WAIT if reset is None else reset)
    if not waits and (status == 429 or _says_rate_limit(body)):
        waits.append(SECONDARY_WAIT)
    return max(waits) if waits else None


# How GitHub words a rate limit, old and new, in a message or its documentation_url: "API rate
# limit exceeded", "You have exceeded a secondary rate limit", "You have triggered an abuse
# detection mechanism", `...#secondary-rate-limits`, `...#abuse-rate-limits`.
_RATE_LIMIT_WORDS = re.compile(r"rate[\s_-]*limit|abuse[\s_-]*detection", re.IGNORECASE)


def _says_rate_limit(body: bytes) -> bool:
    """Whether a refusal's body (its JSON message and documentation_url, else its text)
    speaks of a rate limit."""
    try:
        fields = orjson.loads(body)
        text = " ".join(str(fields.get(k, "")) for k in ("message", "documentation_url"))
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace")
    return _RATE_LIMIT_WORDS.search(text) is not None


def _describe(exc: BaseException) -> str:
    """One clean line on what went wrong (aiohttp's texts may span lines)."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer broke off before its end"
    return " ".join(str(exc).split())[:300] or type(exc).__name__
