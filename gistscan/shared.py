"""The level replicas share through Redis: list pages, unknown users, raw bytes, GitHub's budget,
and the fetches in flight.

Only imported when `GISTSCAN_REDIS_URL` is set (redis-py is the optional extra
`gistscan[redis]`). Redis helps and is never needed: every command is bounded by a timeout,
and a failure (down, too slow, refusing) is logged once per outage, counted in
`gistscan_redis_*`, and answered as a miss, so the replica goes on from its memory cache and
GitHub. After a failure Redis is left alone for `retry_interval` seconds (so a dead one costs
a request nothing), then tried again; the first answer ends the outage.

Keys, all under the key prefix; no key holds a URL or a token, only their SHA-256:

    page:{who}:{url}      hash: body, next, etag; expires `ttl` s after GitHub's answer, and its
                          age (ttl - PTTL, Redis's own clock) says whether it is fresh
    missing:{who}:{url}   a 404 of a list page; expires after the page TTL
    raw:{url}             a raw file's bytes (immutable: the raw URL names the revision);
                          written in chunks to raw-part:{url}:{random}, renamed when complete
    lock:{who}:{url}      a fetch in flight (redis-py's Lock), lock:raw:{url} for a download
    ratelimit:{who}       hash: the fleet's lowest x-ratelimit-remaining of the newest window,
                          and its reset; expires at the reset
    hold:{who}:{host}     a host not to be asked (api, raw) until the key expires

`who` is the identity of the token (a SHA-256 prefix; "anonymous" without one): GitHub's list
answers and rate limits vary by Authorization, so replicas with different tokens never share
them. The README's "Running several replicas" says what may be stale and for how long.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gistscan.budget import MAX_WAIT, Budget
from gistscan.cache import CachedPage, MemoryCache, RawCopy, RawKeeper, StoredPage
from gistscan.metrics import REDIS_ERRORS, REDIS_LOOKUPS, REDIS_OUTAGES, REDIS_UP

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_INTERVAL = 1.0  # seconds Redis is left alone after a failure
LOCK_POLL = 0.05  # seconds between tries of a lock another replica holds
# Longest wait for another replica's download of a file: a download goes at the pace of its
# reader (a slow client, a costly pattern), so past this a replica downloads the file itself,
# as it would without Redis. A list page is fetched whole, and waited for up to the lock's TTL.
RAW_WAIT = 1.0
PART_TTL = 120.0  # seconds an abandoned partial raw copy lingers (renewed by each chunk)

# Merge one answer's rate limit into the fleet's view: a later window (reset) replaces the
# view; in the same window the lowest remaining wins (it only goes down within a window, and
# answers of several replicas arrive in any order). Returns the view: {remaining, reset}.
MERGE_RATELIMIT = """
local remaining, reset = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'remaining', 'reset')
local r0, t0 = tonumber(held[1]), tonumber(held[2])
if r0 == nil or t0 == nil or reset > t0 or (reset == t0 and remaining < r0) then
  redis.call('HSET', KEYS[1], 'remaining', ARGV[1], 'reset', ARGV[2])
  redis.call('EXPIREAT', KEYS[1], math.ceil(reset) + 1)
end
return redis.call('HMGET', KEYS[1], 'remaining', 'reset')
"""

# Publish a complete download: the partial copy becomes the file's key only if it holds
# exactly the bytes written (an evicted partial key would have been recreated by APPEND with
# its head missing).
PUBLISH_RAW = """
if redis.call('STRLEN', KEYS[1]) ~= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""


def identity(token: str | None) -> str:
    """Who a token is, for keys: a SHA-256 prefix (the token itself is never stored)."""
    if not token:
        return "anonymous"
    return hashlib.sha256(b"gistscan token\0" + token.encode()).hexdigest()[:16]


def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def check_url(url: str) -> None:
    """Raise ValueError unless redis-py takes `url` (host, port, database, options); nothing
    connects. The URL is not repeated: it may hold a password."""
    try:
        aioredis.Redis.from_url(url).connection_pool.make_connection()  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        raise ValueError("not a Redis URL redis-py accepts") from None


def where(url: str) -> str:
    """host:port/db of a Redis URL, for logs: never its user or password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path or "unix socket"
        return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
    except ValueError:
        return "redis"


class SharedStore:
    """One Redis for the replicas, through redis-py's asyncio client; failures never escape.

    `timeout` bounds connecting and each command (seconds); a pooled connection that broke
    (Redis restarted) is retried once on a fresh one. `key(...)` builds a key under
    `key_prefix`. `run(op, default)` is how every command is sent.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "gistscan:",
        timeout: float = 0.25,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self.prefix = key_prefix
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.where = where(url)
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, (RedisConnectionError,)),
            client_name="gistscan",
        )
        self._down_since: float | None = None  # monotonic time the outage began
        self._retry_at = 0.0  # during an outage: no command before this monotonic time

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def run(
        self, op: Callable[[aioredis.Redis], Awaitable[T]], default: T, *, wait: float = 0.0
    ) -> T:
        """`await op(client)`; `default` when Redis is down or fails (counted, logged once per
        outage). `wait`: seconds `op` may spend waiting on purpose (a lock), beyond the
        commands' own timeouts."""
        if self._down_since is not None and time.monotonic() < self._retry_at:
            return default
        try:
            # redis-py's socket timeouts fire first; this also bounds a command and its one
            # retry on a fresh connection, whatever they do.
            async with asyncio.timeout(wait + 3 * self.timeout):
                result = await op(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return default
        if self._down_since is not None:
            log.info(
                "redis at %s answers again after %.1f s: the shared cache and budget are back"
                " in use",
                self.where,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        REDIS_UP.set(1)
        return result

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError | RedisTimeoutError):
            kind = "timeout"
        elif isinstance(exc, RedisConnectionError | OSError):
            kind = "connection"
        else:
            kind = "response"
        REDIS_ERRORS.labels(kind).inc()
        now = time.monotonic()
        self._retry_at = now + self.retry_interval
        if self._down_since is None:
            self._down_since = now
            REDIS_UP.set(0)
            REDIS_OUTAGES.inc()
            # The message of a redis-py error names the host and the failure, never a key.
            log.warning(
                "redis at %s failed (%s: %s): serving from memory and GitHub until it answers"
                " again (tried again every %g s)",
                self.where,
                kind,
                str(exc)[:200] or type(exc).__name__,
                self.retry_interval,
            )

    async def ping(self) -> bool:
        """Whether Redis answers now (an outage is logged as any other)."""
        return await self.run(lambda r: r.ping(), False) is True

    @contextlib.asynccontextmanager
    async def lead(self, name: str, ttl: float, wait: float) -> AsyncIterator[bool]:
        """Hold lock `name` for the block (it expires by itself after `ttl` s), after waiting
        (at most `wait` s) for the replica holding it, if one does. Yields whether to look in
        the cache again before fetching: True when Redis answered, for another replica may
        have fetched it since the caller looked (or was just waited for); False without
        Redis: fetch at once."""
        lock = self.client.lock(name, timeout=ttl, sleep=LOCK_POLL, thread_local=False)
        held = await self.run(lambda _: lock.acquire(blocking=False), None)
        if held is False:
            held = await self.run(
                lambda _: lock.acquire(blocking=True, blocking_timeout=wait), None, wait=wait
            )
        try:
            yield held is not None
        finally:
            if held:
                await self.run(lambda _: _release(lock), None)

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()


async def _release(lock: Any) -> None:
    with contextlib.suppress(LockError):  # it expired (and maybe another took it): fine
        await lock.release()


class SharedCache(MemoryCache):
    """The memory cache (its arguments in `memory`) with Redis as a second level behind it.

    Lookups try memory, then Redis (a hit is copied into memory, as old as it is); what
    GitHub answers is kept in both. Pages are kept in Redis for `ttl` seconds (fresh for the
    page TTL, then revalidated with their ETag), 404s for the page TTL, raw files up to
    `raw_max_shared` bytes for `ttl` seconds; they are read back in chunks (GETRANGE), so a
    file is never held whole because of Redis. `lead_page` / `lead_raw` hold a lock per URL
    for at most `lock_timeout` seconds while this replica fetches, so that another replica
    asking at the same moment waits (for a page up to `lock_timeout`, for a file `RAW_WAIT`)
    and then reads the answer here instead of asking GitHub.
    """

    def __init__(
        self,
        store: SharedStore,
        *,
        token: str | None = None,
        ttl: float = 86400.0,
        raw_max_shared: int = 10 * 1024 * 1024,
        lock_timeout: float = 10.0,
        **memory: Any,
    ) -> None:
        super().__init__(**memory)
        self.store = store
        self.ttl = max(ttl, self.page_ttl)  # a page must outlive its freshness
        self.raw_max_shared = raw_max_shared
        self.lock_timeout = lock_timeout
        self.who = identity(token)
        self.publish = store.client.register_script(PUBLISH_RAW)

    # -- list pages ----------------------------------------------------------------------------

    async def page(self, url: str) -> CachedPage | None:
        mine = await super().page(url)
        if mine is not None and mine.fresh:
            return mine
        key = self.store.key("page", self.who, _digest(url))

        async def read(r: aioredis.Redis) -> tuple[dict[bytes, bytes], int]:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hgetall(key)
                pipe.pttl(key)
                fields, pttl = await pipe.execute()
            return fields, pttl

        found = await self.store.run(read, None)
        if found is None:  # Redis down
            return mine
        fields, pttl = found
        stored = _page_of(fields)
        if stored is None or pttl <= 0:
            REDIS_LOOKUPS.labels("page", "miss").inc()
            return mine
        age = self.ttl - pttl / 1000
        fresh = age < self.page_ttl
        REDIS_LOOKUPS.labels("page", "hit" if fresh else "miss").inc()
        # Redis holds the latest answer any replica had: the one to use, or to revalidate.
        await super().put_page(url, stored, age=age)
        return CachedPage(stored, fresh)

    async def put_page(self, url: str, page: StoredPage, *, age: float = 0.0) -> None:
        await super().put_page(url, page, age=age)
        key = self.store.key("page", self.who, _digest(url))
        missing = self.store.key("missing", self.who, _digest(url))
        fields = {b"body": page.body}
        if page.next_url is not None:
            fields[b"next"] = page.next_url.encode()
        if page.etag is not None:
            fields[b"etag"] = page.etag.encode()
        ttl_ms = max(1, round((self.ttl - age) * 1000))

        async def write(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(key, missing)
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # bytes keys are fine
                pipe.pexpire(key, ttl_ms)
                await pipe.execute()

        await self.store.run(write, None)

    # -- unknown users -------------------------------------------------------------------------

    async def not_found(self, url: str) -> bool:
        if await super().not_found(url):
            return True
        key = self.store.key("missing", self.who, _digest(url))
        pttl = await self.store.run(lambda r: r.pttl(key), None)
        if pttl is None:
            return False
        REDIS_LOOKUPS.labels("not_found", "hit" if pttl > 0 else "miss").inc()
        if pttl <= 0:
            return False
        await super().put_not_found(url, age=self.page_ttl - pttl / 1000)
        return True

    async def put_not_found(self, url: str, *, age: float = 0.0) -> None:
        await super().put_not_found(url, age=age)
        key = self.store.key("missing", self.who, _digest(url))
        page = self.store.key("page", self.who, _digest(url))
        ttl_ms = round(self.page_ttl * 1000)
        if ttl_ms <= 0:
            return

        async def write(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(key, b"1", px=ttl_ms)
                pipe.delete(page)
                await pipe.execute()

        await self.store.run(write, None)

    # -- raw bytes -----------------------------------------------------------------------------

    async def raw(self, url: str) -> RawCopy | None:
        mine = await super().raw(url)
        if mine is not None:
            return mine
        key = self.store.key("raw", _digest(url))
        size = await self.store.run(lambda r: r.strlen(key), None)
        if size is None:
            return None
        REDIS_LOOKUPS.labels("raw", "hit" if size else "miss").inc()
        if not size:
            return None
        return RawCopy(size, lambda n: self._chunks(url, key, size, n))

    async def _chunks(self, url: str, key: str, size: int, n: int) -> AsyncGenerator[bytes, None]:
        """The copy in Redis in chunks of `n`, one GETRANGE each; ends early if it vanishes. A
        file small enough for memory is kept there once read whole."""
        parts: list[bytes] | None = [] if size <= self.raw_max_file else None
        at = 0
        while at < size:

            async def read(r: aioredis.Redis, start: int = at) -> bytes:
                return cast(bytes, await r.getrange(key, start, start + n - 1))

            chunk = await self.store.run(read, b"")
            if len(chunk) != min(n, size - at):
                return  # gone (evicted, flushed, Redis down): the reader finishes from GitHub
            at += len(chunk)
            if parts is not None:
                parts.append(chunk)
            yield chunk
        if parts is not None:
            await MemoryCache.put_raw(self, url, b"".join(parts))

    def raw_keeper(self, url: str, size: int | None = None) -> RawKeeper:
        return SharedRawKeeper(self, url, size)

    # -- fetches of other replicas -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lead_page(self, url: str) -> AsyncIterator[bool]:
        name = self.store.key("lock", self.who, _digest(url))
        async with self.store.lead(name, self.lock_timeout, self.lock_timeout) as look_again:
            yield look_again

    @contextlib.asynccontextmanager
    async def lead_raw(self, url: str, size: int | None) -> AsyncIterator[bool]:
        if size is not None and size > self.raw_max_shared:
            yield False  # never kept in Redis: a waiting replica would find nothing
            return
        name = self.store.key("lock", "raw", _digest(url))
        wait = min(RAW_WAIT, self.lock_timeout)
        async with self.store.lead(name, self.lock_timeout, wait) as look_again:
            yield look_again


class SharedRawKeeper(RawKeeper):
    """Keeps a download in memory (as `RawKeeper`) and in Redis: each chunk is appended to a
    partial key as it arrives (so nothing is held for Redis), which is renamed to the file's
    key when the download completes. A file over `raw_max_shared`, or a write that fails,
    stops the Redis copy (the partial key expires by itself)."""

    def __init__(self, cache: SharedCache, url: str, size: int | None) -> None:
        super().__init__(cache, url)
        self.shared = cache
        over = size is not None and size > cache.raw_max_shared
        store = cache.store
        part = store.key("raw-part", _digest(url), uuid.uuid4().hex)
        self.part: str | None = None if over else part
        self.written = 0

    async def add(self, chunk: bytes) -> None:
        await super().add(chunk)
        part = self.part
        if part is None or not chunk:
            return
        self.written += len(chunk)
        if self.written > self.shared.raw_max_shared:
            self.part = None
            return
        ttl_ms = round(PART_TTL * 1000)

        async def append(r: aioredis.Redis) -> int:
            async with r.pipeline(transaction=False) as pipe:
                pipe.append(part, chunk)
                pipe.pexpire(part, ttl_ms)
                length, _ = await pipe.execute()
            return int(length)

        # Another length than written: a write failed, or the partial key was evicted and
        # APPEND began it again. Either way the copy has a gap: stop writing it.
        length = await self.shared.store.run(append, -1)
        if length != self.written:
            self.part = None
            if length >= 0:  # Redis answered: drop what APPEND began again
                await self.shared.store.run(lambda r: r.delete(part), 0)

    async def done(self) -> None:
        await super().done()
        part = self.part
        if part is None or not self.written:
            return
        key = self.shared.store.key("raw", _digest(self.url))
        args = [self.written, round(self.shared.ttl * 1000)]
        await self.shared.store.run(lambda _: self.shared.publish(keys=[part, key], args=args), 0)


class SharedBudget(Budget):
    """The budget of `Budget`, shared through Redis by the replicas using one token.

    Holds (a rate limit's wait, the reserve's hold until the reset) are set in Redis as keys
    that expire when the hold ends, so a wait one replica learns binds all; every API
    answer's x-ratelimit-remaining and -reset are merged into the fleet's view, whose
    remaining is what the reserve is checked against. This replica's own view stands in
    while Redis is down.
    """

    def __init__(self, store: SharedStore, *, token: str | None = None, reserve: int = 0) -> None:
        super().__init__(reserve=reserve)
        self.store = store
        self.who = identity(token)
        self._merge = store.client.register_script(MERGE_RATELIMIT)

    def _hold_key(self, host: str) -> str:
        return self.store.key("hold", self.who, host)

    async def wait(self, host: str) -> float:
        mine = await super().wait(host)
        key = self._hold_key(host)
        pttl = await self.store.run(lambda r: r.pttl(key), -2)
        return max(mine, pttl / 1000 if pttl > 0 else 0.0)

    async def hold(self, host: str, seconds: float) -> None:
        await super().hold(host, seconds)
        ms = math.ceil(min(max(seconds, 0.0), MAX_WAIT) * 1000)
        if ms <= 0:
            return
        key = self._hold_key(host)

        async def write(r: aioredis.Redis) -> None:
            # Set it if absent; lengthen it if present (GT): a longer hold already set stands.
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(key, b"1", px=ms, nx=True)
                pipe.pexpire(key, ms, gt=True)
                await pipe.execute()

        await self.store.run(write, None)

    async def observe(self, remaining: int, reset: float) -> None:
        key = self.store.key("ratelimit", self.who)

        async def merge(r: aioredis.Redis) -> Any:
            return await self._merge(keys=[key], args=[remaining, repr(float(reset))])

        view = await self.store.run(merge, None)
        # Redis down, or the view expired as it was read: this answer's own values stand.
        with contextlib.suppress(TypeError, ValueError, IndexError):
            remaining, reset = int(view[0]), float(view[1])
        await super().observe(remaining, reset)


def _page_of(fields: dict[bytes, bytes]) -> StoredPage | None:
    """A page from its Redis hash; None when it is not one (a half-written or foreign key)."""
    body = fields.get(b"body")
    if body is None:
        return None
    try:
        next_url = fields[b"next"].decode() if b"next" in fields else None
        etag = fields[b"etag"].decode() if b"etag" in fields else None
    except UnicodeDecodeError:
        return None
    return StoredPage(body, next_url, etag)
