"""The HTTP face (docs/http-api.md): thin handlers that validate, admit, call the pipeline
and write.

The README's "Operating gistscan" describes the limits, logs, metrics and the drain on
SIGTERM that this module implements.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import importlib.util
import ipaddress
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from importlib import resources as package_files
from types import SimpleNamespace
from typing import Any, NoReturn

import aiohttp
import orjson
import prometheus_client
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDict
from yarl import URL

from gistscan import listing, logs, openapi
from gistscan.budget import Budget
from gistscan.cache import MemoryCache
from gistscan.config import (
    MAX_PATTERN_LENGTH,
    MAX_UNROLLED,
    SETTINGS_ENV,
    Query,
    Settings,
    blame_variable,
    check_username,
    compile_pattern,
    normalize_since,
    read_env,
)
from gistscan.errors import ListingError, UsageError
from gistscan.fair import FairPool
from gistscan.filters import MAX_FILTER_LENGTH, MAX_FILTERS
from gistscan.github import GitHub, client_session, env_proxies
from gistscan.metrics import (
    DRAINING,
    ERROR_RECORDS,
    FIRST_RECORD_SECONDS,
    HTTP_REQUESTS,
    SEARCH_SECONDS,
    SEARCHES,
    SEARCHES_RUNNING,
)
from gistscan.pipeline import Progress, first_page, make_github, search
from gistscan.records import Error, Match, Record, Summary, encode, to_dict

log = logging.getLogger(__name__)
access = logging.getLogger("gistscan.access")

NDJSON = "application/x-ndjson"
MAX_INT = 2**31 - 1  # the top of every integer parameter: page, per_page, max_matches
SEARCH_FIELDS = (
    "username",
    "pattern",
    "ignore_case",
    "fixed_strings",
    "max_matches",
    "glob",
    "language",
    "since",
)
REPEATABLE = ("glob", "language")  # query parameters that may be given more than once
GITHUB_MAX_PER_PAGE = 100
LOG_FORMATS = ("json", "text")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs, built once at the edge (`from_env`) and then frozen.

    `settings` is how each scan runs (GitHub API root, token, downloads in flight,
    timeouts...); its own `deadline` is replaced by `search_deadline`. The rest are the
    abuse limits (docs/http-api.md), the drain, the logs and the cache's bounds; `ENV` names
    the variable of each. The token lives in `settings`, which never shows it in a repr.
    """

    settings: Settings = field(default_factory=Settings)
    # A search or list beyond this many at once gets 503 with Retry-After: busy_retry_after.
    max_concurrent_searches: int = 8
    # ...and beyond this many at once from one client, 429 (same Retry-After).
    max_searches_per_client: int = 4
    busy_retry_after: int = 5
    # Addresses or networks of reverse proxies whose X-Forwarded-For names the client.
    trusted_proxies: tuple[str, ...] = ()
    # Wall seconds one search may run (streamed or buffered); None: no deadline.
    search_deadline: float | None = 60.0
    # Seconds one write of a stream may wait for a client that does not read; past it the
    # stream is cut and its slot freed. None: wait as long as the search deadline allows.
    stall_timeout: float | None = 10.0
    # Seconds from SIGTERM to exit: running searches end with their summary within it.
    # None: the search deadline plus 5 s (65 s by default), so no search is cut short.
    shutdown_timeout: float | None = None
    # Characters of a pattern; the engine's own limit (1000) is the highest allowed.
    max_pattern_length: int = MAX_PATTERN_LENGTH
    # `regex` copies an item m times for `{m}`/`{m,}`/`{m,n}` when compiling, so a short
    # pattern like `a{100000000}` costs gigabytes and seconds: this bounds the unrolled
    # size (about 250 bytes an item, and `regex` keeps its last 500 patterns).
    max_pattern_unrolled: int = MAX_UNROLLED
    # Match records kept for one buffered (POST JSON) answer; the scan stops there.
    max_buffered_matches: int = 1000
    max_body_bytes: int = 64 * 1024
    # GET /{username} without page/per_page holds the whole list: at most this many pages.
    max_list_pages: int = 30
    # Threads one search may match with when it runs alone (None: one per core); several
    # searches share them fairly (gistscan.fair).
    matching_threads: int | None = None
    cache_page_ttl: float = 60.0
    cache_max_pages: int = 1000
    cache_raw_budget: int = 64 * 1024 * 1024
    cache_raw_max_file: int = 4 * 1024 * 1024
    # Log lines on stderr: "json" (one object per line) or "text".
    log_format: str = "json"
    # The level replicas share (gistscan.shared; README: "Running several replicas"). None:
    # no Redis, and redis-py is never imported. Never in repr: the URL may hold a password.
    redis_url: str | None = field(default=None, repr=False)
    redis_key_prefix: str = "gistscan:"
    # Seconds to connect to Redis and for each command; past it Redis counts as down.
    redis_timeout: float = 0.25
    # Seconds Redis keeps list pages (to revalidate) and raw files.
    redis_ttl: float = 86400.0
    redis_raw_max_file: int = 10 * 1024 * 1024
    # Seconds a replica may hold a fetch (and another wait for it) before the lock expires.
    redis_lock_timeout: float = 10.0
    # GitHub API requests kept back: with fewer remaining (as the fleet last heard), searches
    # that need the API get 429 until the reset. 0: only an exhausted limit holds.
    ratelimit_reserve: int = 0

    def __post_init__(self) -> None:
        for name in (
            "max_concurrent_searches",
            "max_searches_per_client",
            "busy_retry_after",
            "max_pattern_length",
            "max_pattern_unrolled",
            "max_buffered_matches",
            "max_body_bytes",
            "max_list_pages",
            "cache_max_pages",
        ):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be a positive integer", field=name)
        # The pipeline checks patterns against the engine's limits again: a server limit
        # above them would let a pattern through here and fail it after the stream started.
        for name, limit in (
            ("max_pattern_length", MAX_PATTERN_LENGTH),
            ("max_pattern_unrolled", MAX_UNROLLED),
        ):
            if getattr(self, name) > limit:
                raise UsageError(f"{name} is at most {limit} (the engine's limit)", field=name)
        if self.matching_threads is not None and self.matching_threads < 1:
            raise UsageError(
                "matching_threads must be a positive integer", field="matching_threads"
            )
        for name in ("search_deadline", "stall_timeout", "shutdown_timeout"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:
                raise UsageError(f"{name} must be a positive number of seconds", field=name)
        for name in (
            "cache_page_ttl",
            "cache_raw_budget",
            "cache_raw_max_file",
            "redis_raw_max_file",
            "ratelimit_reserve",
        ):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must not be negative", field=name)
        if self.log_format not in LOG_FORMATS:
            raise UsageError(
                f"log_format must be json or text, not {self.log_format!r}", field="log_format"
            )
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise UsageError(
                    f"trusted_proxies: {proxy!r} is not an IP address or network",
                    field="trusted_proxies",
                ) from None
        for name in ("redis_timeout", "redis_ttl", "redis_lock_timeout"):
            if not 0 < getattr(self, name) < math.inf:
                raise UsageError(f"{name} must be a positive number of seconds", field=name)
        if self.redis_url is not None:
            # The URL itself is never repeated: it may hold a password.
            if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
                raise UsageError(
                    "redis_url must start with redis://, rediss:// or unix://", field="redis_url"
                )
            if importlib.util.find_spec("redis") is None:
                raise UsageError(
                    "redis_url is set but redis-py is not installed: pip install 'gistscan[redis]'",
                    field="redis_url",
                )
            from gistscan.shared import check_url  # imports redis-py: only when it is used

            try:
                check_url(self.redis_url)
            except ValueError:
                raise UsageError(
                    "redis_url is not a Redis URL (check its host, port, database and options)",
                    field="redis_url",
                ) from None

    @property
    def scan_settings(self) -> Settings:
        """The settings each search runs with: `settings` under the server's deadline."""
        return dataclasses.replace(self.settings, deadline=self.search_deadline)

    @property
    def drain_seconds(self) -> float:
        """Seconds from SIGTERM to exit: `shutdown_timeout`, or the search deadline + 5."""
        if self.shutdown_timeout is not None:
            return self.shutdown_timeout
        return (self.search_deadline or 60.0) + 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Build the configuration from environment variables (`ENV`: the scan settings of
        `config.SETTINGS_ENV` and the server's own `SERVER_ENV`); unset ones keep their
        defaults. Raises `UsageError` naming the variable whose value is wrong."""
        env = os.environ if environ is None else environ
        settings = Settings.from_env(env)
        server = read_env(SERVER_ENV, env)
        if "trusted_proxies" in server:
            server["trusted_proxies"] = tuple(
                p.strip() for p in server["trusted_proxies"].split(",") if p.strip()
            )
        try:
            return cls(settings=settings, **server)
        except UsageError as exc:
            raise blame_variable(exc, SERVER_ENV) from exc


# Environment variable -> (ServerConfig field, value kind). README lists them with defaults.
SERVER_ENV: dict[str, tuple[str, str]] = {
    "GISTSCAN_MAX_CONCURRENT_SEARCHES": ("max_concurrent_searches", "int"),
    "GISTSCAN_MAX_SEARCHES_PER_CLIENT": ("max_searches_per_client", "int"),
    "GISTSCAN_BUSY_RETRY_AFTER": ("busy_retry_after", "int"),
    "GISTSCAN_TRUSTED_PROXIES": ("trusted_proxies", "str"),
    "GISTSCAN_SEARCH_DEADLINE": ("search_deadline", "optional_float"),
    "GISTSCAN_STALL_TIMEOUT": ("stall_timeout", "optional_float"),
    "GISTSCAN_SHUTDOWN_TIMEOUT": ("shutdown_timeout", "optional_float"),
    "GISTSCAN_MAX_PATTERN_LENGTH": ("max_pattern_length", "int"),
    "GISTSCAN_MAX_PATTERN_UNROLLED": ("max_pattern_unrolled", "int"),
    "GISTSCAN_MAX_BUFFERED_MATCHES": ("max_buffered_matches", "int"),
    "GISTSCAN_MAX_BODY_BYTES": ("max_body_bytes", "int"),
    "GISTSCAN_MAX_LIST_PAGES": ("max_list_pages", "int"),
    "GISTSCAN_MATCHING_THREADS": ("matching_threads", "optional_int"),
    "GISTSCAN_CACHE_PAGE_TTL": ("cache_page_ttl", "float"),
    "GISTSCAN_CACHE_MAX_PAGES": ("cache_max_pages", "int"),
    "GISTSCAN_CACHE_RAW_BUDGET": ("cache_raw_budget", "int"),
    "GISTSCAN_CACHE_RAW_MAX_FILE": ("cache_raw_max_file", "int"),
    "GISTSCAN_LOG_FORMAT": ("log_format", "str"),
    "GISTSCAN_REDIS_URL": ("redis_url", "secret"),
    "GISTSCAN_REDIS_KEY_PREFIX": ("redis_key_prefix", "str"),
    "GISTSCAN_REDIS_TIMEOUT": ("redis_timeout", "float"),
    "GISTSCAN_REDIS_TTL": ("redis_ttl", "float"),
    "GISTSCAN_REDIS_RAW_MAX_FILE": ("redis_raw_max_file", "int"),
    "GISTSCAN_REDIS_LOCK_TIMEOUT": ("redis_lock_timeout", "float"),
    "GISTSCAN_RATELIMIT_RESERVE": ("ratelimit_reserve", "int"),
}
# Every variable the server reads.
ENV: dict[str, tuple[str, str]] = SETTINGS_ENV | SERVER_ENV


# -- admission: who may start a search now ----------------------------------------------------


class Admission:
    """Counts the searches (and user lists) running, in all and per client; refuses one
    past a limit at once (never queues it): 503 while draining or over `limit` in all, 429
    over `per_client` from one client. Also holds the drain's cut of running searches.

    A client is its peer address, or, when the peer is one of `trusted` proxies, the
    address that proxy (and any trusted proxy before it) put in X-Forwarded-For.
    """

    def __init__(
        self,
        *,
        limit: int,
        per_client: int,
        retry_after: int,
        trusted: tuple[str, ...] = (),
    ) -> None:
        self.limit = limit
        self.per_client = per_client
        self.retry_after = retry_after
        self.trusted = tuple(ipaddress.ip_network(t, strict=False) for t in trusted)
        self.active = 0
        self.by_client: Counter[str] = Counter()
        self.draining = False
        # Loop time at which running searches are cut (None: not draining); each running
        # search's timeout is in `cuts`, so a drain that starts later reaches it too.
        self.cut_at: float | None = None
        self.cuts: set[asyncio.Timeout] = set()

    def client(self, request: web.Request) -> str:
        """Who sent `request`: the peer, or the client a trusted proxy forwarded for."""
        peer = request.remote or "unknown"
        if not self.trusted or not self._trusted(peer):
            return peer
        hops = [
            h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")
        ]
        # Right to left: each trusted proxy appended the address it saw. The first entry
        # not of a trusted proxy is the client; what lies left of it the client wrote.
        nearest = peer
        for hop in reversed(hops):
            if not self._valid(hop) or not self._trusted(hop):
                return hop if self._valid(hop) else nearest
            nearest = hop
        return nearest

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    @staticmethod
    def _valid(address: str) -> bool:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return False
        return True

    def check(self, client: str) -> None:
        """Raise `Refused` if `client` may not start a search now."""
        retry = {"Retry-After": str(self.retry_after)}
        if self.draining:
            raise self.refusal()
        if self.by_client[client] >= self.per_client:
            raise Refused(
                429,
                _problem(
                    "too_many_searches_from_client",
                    f"{self.per_client} searches of yours are running; try again when one ends",
                ),
                headers=retry,
            )
        if self.active >= self.limit:
            raise Refused(
                503,
                _problem("too_many_searches", f"{self.limit} searches are running; try again"),
                headers=retry,
            )

    def refusal(self) -> Refused:
        """The answer to a search that comes (or would start) while the server drains."""
        return Refused(
            503,
            _problem("shutting_down", "the server is shutting down"),
            headers={"Retry-After": str(self.retry_after)},
        )

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """Count one search of `client` while the block runs; raises `Refused` (`check`)."""
        self.check(client)
        self.active += 1
        self.by_client[client] += 1
        try:
            yield
        finally:
            self.active -= 1
            self.by_client[client] -= 1
            if not self.by_client[client]:
                del self.by_client[client]

    def drain(self, cut_at: float) -> None:
        """Refuse new searches from now on; cut running ones at loop time `cut_at`."""
        self.draining = True
        DRAINING.set(1)
        self.cut_at = cut_at if self.cut_at is None else min(self.cut_at, cut_at)
        for cut in self.cuts:
            when = cut.when()
            if when is None or when > self.cut_at:
                cut.reschedule(self.cut_at)


CONFIG = web.AppKey("config", ServerConfig)
SESSION = web.AppKey("session", aiohttp.ClientSession)
CACHE = web.AppKey("cache", MemoryCache)
BUDGET = web.AppKey("budget", Budget)
MATCHING = web.AppKey("matching", FairPool)
ADMISSION = web.AppKey("admission", Admission)
DOCS_PAGE = web.AppKey("docs_page", bytes)
# Per request: its id, and when it arrived (time.monotonic()).
REQUEST_ID = web.RequestKey("request_id", str)
STARTED = web.RequestKey("started", float)


def make_app(config: ServerConfig | None = None) -> web.Application:
    """The application: routes (named ones before `/{username}`, so they win) and resources.

    Every single-segment name is a possible GitHub login: the reserved ones (`/ping`,
    `/healthz`, `/readyz`, `/metrics`, `/docs`, `/openapi.json`) never ask GitHub anything,
    and `/api/v1/users/{username}/gists` lists a user whatever the name.
    """
    config = config or ServerConfig()
    app = web.Application(
        middlewares=[access_log, json_errors], client_max_size=config.max_body_bytes
    )
    app[CONFIG] = config
    app[ADMISSION] = Admission(
        limit=config.max_concurrent_searches,
        per_client=config.max_searches_per_client,
        retry_after=config.busy_retry_after,
        trusted=config.trusted_proxies,
    )
    app[DOCS_PAGE] = package_files.files("gistscan").joinpath("docs.html").read_bytes()
    app.cleanup_ctx.append(resources)
    app.on_response_prepare.append(_echo_request_id)
    # HEAD is left out: a HEAD of a search would run the search for nothing.
    app.router.add_get("/ping", ping, allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/docs", docs, allow_head=False)
    app.router.add_get("/openapi.json", openapi_json, allow_head=False)
    app.router.add_get("/api/v1/users/{username}/search", search_get, allow_head=False)
    app.router.add_get("/api/v1/users/{username}/gists", user_gists, allow_head=False)
    app.router.add_post("/api/v1/search", search_post)
    app.router.add_get("/{username}", user_gists, allow_head=False)
    return app


@contextlib.asynccontextmanager
async def cache_and_budget(config: ServerConfig) -> AsyncIterator[tuple[MemoryCache, Budget]]:
    """The server's cache and GitHub budget: in memory, or with Redis behind them (shared
    with the other replicas) when `redis_url` is set. Redis not answering at start is logged
    and the server starts anyway (it uses Redis once it answers)."""
    memory: dict[str, Any] = {
        "page_ttl": config.cache_page_ttl,
        "max_pages": config.cache_max_pages,
        "raw_budget": config.cache_raw_budget,
        "raw_max_file": config.cache_raw_max_file,
    }
    if config.redis_url is None:
        yield MemoryCache(**memory), Budget(reserve=config.ratelimit_reserve)
        return
    from gistscan import shared  # only with Redis configured: redis-py is an optional extra

    store = shared.SharedStore(
        config.redis_url, key_prefix=config.redis_key_prefix, timeout=config.redis_timeout
    )
    token = config.settings.token
    try:
        if await store.ping():
            log.info("sharing the cache and GitHub's budget through redis at %s", store.where)
        yield (
            shared.SharedCache(
                store,
                token=token,
                ttl=config.redis_ttl,
                raw_max_shared=config.redis_raw_max_file,
                lock_timeout=config.redis_lock_timeout,
                **memory,
            ),
            shared.SharedBudget(store, token=token, reserve=config.ratelimit_reserve),
        )
    finally:
        await store.close()


async def resources(app: web.Application) -> AsyncIterator[None]:
    """One client session (pooled connections to GitHub), one cache and budget (shared with
    other replicas through Redis when configured), one matching pool."""
    config = app[CONFIG]
    cores = config.matching_threads or os.cpu_count() or 2
    # Enough threads that a search arriving beside slow ones finds one idle (gistscan.fair).
    app[MATCHING] = FairPool(cores=cores, threads=cores + config.max_concurrent_searches)
    async with (
        client_session(trace_configs=[_cost_trace(config.settings)]) as session,
        cache_and_budget(config) as (cache, budget),
    ):
        app[SESSION] = session
        app[CACHE], app[BUDGET] = cache, budget
        yield
    # A thread cannot be stopped: wait for the chunks still being matched (each bounded by
    # the per-file regex budget) off the loop, so shutdown leaves no thread burning.
    await asyncio.get_running_loop().run_in_executor(None, app[MATCHING].shutdown)


# -- upstream cost of one search --------------------------------------------------------------

# The requests the current search sent upstream, by host kind ("api", "raw"). A search's
# tasks inherit it, so every request made on its behalf is counted, retries included.
_COST: ContextVar[Counter[str] | None] = ContextVar("gistscan_upstream_cost", default=None)


def _cost_trace(settings: Settings) -> aiohttp.TraceConfig:
    api_host = URL(settings.api_url).host

    async def sent(session: aiohttp.ClientSession, context: SimpleNamespace, params: Any) -> None:
        cost = _COST.get()
        if cost is not None:
            # Raw file URLs have /raw/ in their path on every host (GitHub's and the fake's).
            api = params.url.host == api_host and "/raw/" not in params.url.path
            cost["api" if api else "raw"] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(sent)
    return trace


# -- serving ----------------------------------------------------------------------------------


def listen_address(
    host: str | None, port: int | None, environ: Mapping[str, str]
) -> tuple[str, int]:
    """Where `serve` listens: the flags, else $HOST and $PORT, else 127.0.0.1:8080.
    Raises `UsageError` for a $PORT that is no port number."""
    if port is None:
        raw = environ.get("PORT", "").strip()
        if raw:
            if not raw.isdecimal() or int(raw) > 65535:
                raise UsageError(f"PORT={raw!r}: expected a port number from 0 to 65535")
            port = int(raw)
    return host or environ.get("HOST", "").strip() or "127.0.0.1", 8080 if port is None else port


def handler_options(config: ServerConfig) -> dict[str, Any]:
    """How aiohttp serves the app (`web.AppRunner` keywords)."""
    return {
        # A client that hangs up cancels its handler, hence its scan.
        "handler_cancellation": True,
        "access_log": None,  # ours is `access_log`: aiohttp's would log query strings
        "shutdown_timeout": 1.0,  # `serve` has drained the searches by then
        # The request line must hold the longest search the document allows, percent-encoded
        # (up to 12 bytes a character: 4 UTF-8 bytes, 3 characters each): the pattern, and
        # as many globs and languages as a search takes (about 500 KB in all).
        "max_line_size": 12 * (config.max_pattern_length + 2 * MAX_FILTERS * MAX_FILTER_LENGTH)
        + 2 * MAX_FILTERS * len("&language=")
        + 8192,
    }


def run(host: str = "127.0.0.1", port: int = 8080, config: ServerConfig | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then drain (see `serve`); returns the exit status:
    0, or 2 when the address cannot be listened on (one line on stderr)."""
    config = config or ServerConfig()
    logs.setup("json" if config.log_format == "json" else "text")
    return asyncio.run(serve(host, port, config))


async def serve(host: str, port: int, config: ServerConfig) -> int:
    """Listen on host:port (0: any free port; the address is logged) until a signal.

    SIGTERM or SIGINT starts the drain: /readyz answers 503 at once, new searches 503 with
    Retry-After; running searches finish, or are cut with a `deadline_exceeded` record and
    their summary so that all is done within `config.drain_seconds`; then the process
    exits 0. A second signal cuts the running searches at once.
    """
    app = make_app(config)
    # A client that hangs up cancels its handler, hence its scan (handler_cancellation).
    runner = web.AppRunner(app, **handler_options(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(f"gistscan: cannot serve on {host}:{port}: {reason or exc}", file=sys.stderr)
        return 2
    shown = f"[{host}]" if ":" in host else host
    log.info("listening", extra={"fields": {"url": f"http://{shown}:{runner.addresses[0][1]}"}})
    probe = asyncio.create_task(_probe_github(app[SESSION], config.settings))
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signalled.set)
    await signalled.wait()
    signalled.clear()

    admission = app[ADMISSION]
    seconds = config.drain_seconds
    end = loop.time() + seconds
    # The cut leaves time to write the last records and close before the end.
    admission.drain(end - min(1.0, seconds / 4))
    log.info("draining", extra={"fields": {"running": admission.active, "timeout_s": seconds}})
    waiter = asyncio.create_task(signalled.wait())
    while admission.active and loop.time() < end:
        if waiter.done():  # a second signal: cut now
            admission.drain(loop.time())
        await asyncio.wait([waiter], timeout=0.05)
    waiter.cancel()
    probe.cancel()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)
    unfinished = admission.active  # cancelled by the cleanup: past even the cut
    await runner.cleanup()
    log.info("stopped", extra={"fields": {"unfinished": unfinished}})
    return 0


async def _probe_github(session: aiohttp.ClientSession, settings: Settings) -> None:
    """Once at start: log a hint when GitHub cannot be reached at all (no network, DNS,
    proxy). GET /rate_limit is free: GitHub does not count it against the rate limit."""
    url = f"{settings.api_url.rstrip('/')}/rate_limit"
    try:
        async with session.get(
            url,
            headers={"User-Agent": settings.user_agent},
            timeout=aiohttp.ClientTimeout(total=settings.request_timeout or 30.0),
            proxy=env_proxies()(URL(url)),  # as every request to GitHub goes
        ) as resp:
            await resp.read()
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        log.warning(
            "GitHub cannot be reached at %s (%s): searches will fail until it can. Check the"
            " network, DNS and proxy, or set GISTSCAN_API_URL to the API root to use.",
            url,
            reason,
            extra={"fields": {"api_url": settings.api_url}},
        )


# -- middlewares: the access log, and JSON errors -----------------------------------------------

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@web.middleware
async def access_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One log line and one metric per request: method, route template (never the raw path
    or its query string), status (499: the client left first), duration, request id."""
    rid = logs.request_id(request.headers.get("X-Request-Id"))
    request[REQUEST_ID] = rid
    request[STARTED] = started = time.monotonic()
    token = logs.REQUEST_ID.set(rid)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "none"
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(route, method, str(status)).inc()
        access.info(
            "request",
            extra={
                "fields": {
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                }
            },
        )
        logs.REQUEST_ID.reset(token)


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers["X-Request-Id"] = rid


class Refused(Exception):
    """An answer other than success, ready to send: raised by handlers, sent by `json_errors`."""

    def __init__(
        self,
        status: int,
        body: dict[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(body.get("message") or body.get("error"))
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.close = close  # the connection cannot be reused (its request body is broken)

    def response(self) -> web.Response:
        resp = _json(self.body, status=self.status, headers=self.headers)
        if self.close:
            resp.force_close()
        return resp


def _json(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer, newline-terminated as every body of ours is."""
    try:
        body = orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # a lone surrogate or a huge integer from GitHub's JSON
        body = json.dumps(data).encode() + b"\n"
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def _problem(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The error body of the search routes and of the server itself."""
    body: dict[str, Any] = {"status": "error", "error": code, "message": message}
    if field is not None:
        body["field"] = field
    return body


_HTTP_CODES = {
    404: "route_not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every answer is JSON, whatever goes wrong: refusals, aiohttp's own HTTP errors, and
    (logged, with no traceback sent) any exception nobody expected."""
    try:
        return await handler(request)
    except Refused as refused:
        return refused.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        if exc.status == 404:
            message = f"no route {request.method} {request.path}"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            limit = request.app[CONFIG].max_body_bytes
            message = f"the request body is larger than the limit of {limit} bytes"
        else:
            message = exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return _json(_problem(code, message), status=exc.status, headers=headers)
    except Exception:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "none"
        log.exception("unexpected error on %s %s", request.method, route)
        return _json(
            _problem("internal_error", "the server failed on this request; the fault is logged"),
            status=500,
        )


def _listing_refusal(exc: ListingError, body: dict[str, Any]) -> Refused:
    """GitHub's listing failed before any answer started: say so with a real status."""
    status = {"not_found": 404, "rate_limited": 429, "deadline_exceeded": 504}.get(exc.code, 502)
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return Refused(status, body, headers=headers)


# -- routes that never touch GitHub ------------------------------------------------------------


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong\n")


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers (liveness). /readyz says whether to send it searches."""
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for searches (200), or draining before it stops (503)."""
    if request.app[ADMISSION].draining:
        return _json(
            _problem("shutting_down", "the server is draining before it stops"), status=503
        )
    return _json({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """The process's Prometheus metrics (gistscan.metrics), in the text format."""
    body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


# The page is one self-contained file: it loads nothing from another origin (and may not).
_DOCS_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline';"
    " style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'",
}


async def docs(request: web.Request) -> web.Response:
    """A human page for the OpenAPI document: it renders /openapi.json in the browser."""
    return web.Response(body=request.app[DOCS_PAGE], headers=_DOCS_HEADERS)


async def openapi_json(request: web.Request) -> web.Response:
    return _json(openapi.document(request.app[CONFIG]))


# -- search ----------------------------------------------------------------------------------


async def search_get(request: web.Request) -> web.StreamResponse:
    """`GET /api/v1/users/{username}/search?pattern=...`: the NDJSON stream of a search."""
    with _refusals_counted():
        config = request.app[CONFIG]
        try:
            query = query_from_params(request.match_info["username"], request.query, config)
        except UsageError as exc:
            raise _bad_request(exc) from None
        return await _search(request, query, stream=True)


_JSON_TYPE = re.compile(r"application/(?:[a-z0-9.+-]+\+)?json")


async def search_post(request: web.Request) -> web.StreamResponse:
    """`POST /api/v1/search`: a buffered JSON answer, or NDJSON when the client accepts it."""
    with _refusals_counted():
        # JSON only: a text/plain or form POST is what a foreign web page can send without
        # a CORS preflight, so such a body is refused before it is read.
        if not _JSON_TYPE.fullmatch(request.content_type):
            given = request.headers.get("Content-Type")
            raise Refused(
                415,
                _problem(
                    "unsupported_media_type",
                    "the body must be sent as Content-Type: application/json, not"
                    + (f" {request.content_type}" if given else " without a Content-Type"),
                ),
                headers={"Accept-Post": "application/json"},
            )
        config = request.app[CONFIG]
        body = await _json_body(request)
        try:
            query = query_from_body(body, config)
        except UsageError as exc:
            raise _bad_request(exc) from None
        stream = _accepts_ndjson(request.headers.get("Accept", ""))
        if not stream:
            # The whole answer is held in memory: never more than max_buffered_matches.
            cap = min(query.max_matches or config.max_buffered_matches, config.max_buffered_matches)
            query = dataclasses.replace(query, max_matches=cap)
        return await _search(request, query, stream=stream)


@contextmanager
def _refusals_counted() -> Iterator[None]:
    """Count a search answered with an error status before any record, by that status."""
    try:
        yield
    except Refused as refused:
        SEARCHES.labels("refused", str(refused.status)).inc()
        raise
    except web.HTTPException as exc:  # 413 from reading the body
        SEARCHES.labels("refused", str(exc.status)).inc()
        raise


@dataclass(slots=True)
class _Run:
    """One search while it runs: its counts, its outcome so far, its upstream cost."""

    query: Query
    started: float  # time.monotonic() of the request
    stream: bool
    progress: Progress = field(default_factory=Progress)
    cost: Counter[str] = field(default_factory=Counter)
    first_at: float | None = None
    # complete | partial (summary sent) | disconnected | stalled | failed (the default:
    # nothing better was learnt, e.g. an exception).
    outcome: str = "failed"

    def see(self, record: Record) -> None:
        """Note a record about to be sent."""
        if self.first_at is None:
            self.first_at = time.monotonic()
            FIRST_RECORD_SECONDS.observe(self.first_at - self.started)
        if isinstance(record, Error):
            ERROR_RECORDS.labels(record.code).inc()
        elif isinstance(record, Summary):
            self.outcome = "complete" if record.complete else "partial"

    def cut_summary(self) -> Summary:
        """The summary of a search the drain cut (its pipeline never reached its own)."""
        return self.progress.summary(self.query, complete=False, started=self.started)

    def finish(self) -> None:
        """The search's metrics, and its one log line (the pattern only as a hash)."""
        elapsed = time.monotonic() - self.started
        SEARCHES.labels(self.outcome, "200").inc()
        SEARCH_SECONDS.observe(elapsed)
        p = self.progress
        log.info(
            "search finished",
            extra={
                "fields": {
                    "outcome": self.outcome,
                    "stream": self.stream,
                    "username": self.query.username,
                    "pattern_hash": logs.pattern_hash(self.query.pattern),
                    "gists": p.gists,
                    "files": p.files,
                    "skipped": p.skipped,
                    "matches": p.matches,
                    "errors": p.errors,
                    "bytes": p.bytes,
                    "upstream_api_requests": self.cost["api"],
                    "upstream_raw_requests": self.cost["raw"],
                    "first_record_ms": None
                    if self.first_at is None
                    else round((self.first_at - self.started) * 1000),
                    "duration_ms": round(elapsed * 1000),
                }
            },
        )


class _Gone(Exception):
    """The client cannot be written to any more: `disconnected` or `stalled`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _search(request: web.Request, query: Query, *, stream: bool) -> web.StreamResponse:
    """Compile off the loop, take a slot, fetch page one (so a failure is a status), run."""
    app = request.app
    config = app[CONFIG]
    try:
        query.check()  # every field before the status goes out: later, only a record could say
        await _compile_off_loop(query, config)
    except UsageError as exc:
        raise _bad_request(exc) from None
    settings = config.scan_settings
    admission = app[ADMISSION]
    with admission.hold(admission.client(request)):
        run = _Run(query, started=request.get(STARTED, time.monotonic()), stream=stream)
        # In this handler's context (which the search's tasks inherit), every request sent
        # upstream is counted as this search's.
        cost = _COST.set(run.cost)
        try:
            github = make_github(app[SESSION], settings, app[CACHE], app[BUDGET])
            cut = asyncio.timeout(admission.cut_at)  # a drain may cut the wait for page one
            try:
                async with cut:
                    admission.cuts.add(cut)
                    first = await first_page(github, query, settings)
            except ListingError as exc:
                raise _listing_refusal(exc, _problem(exc.code, exc.message)) from None
            except TimeoutError:
                if not cut.expired():
                    raise
                raise admission.refusal() from None
            finally:
                admission.cuts.discard(cut)
            share = app[MATCHING].share()
            records = search(
                query, settings, github=github, first=first, executor=share, progress=run.progress
            )
            SEARCHES_RUNNING.inc()
            try:
                if stream:
                    return await _stream(request, run, records)
                return await _buffered(request, run, records)
            except asyncio.CancelledError:
                run.outcome = "disconnected"
                raise
            finally:
                share.shutdown()
                SEARCHES_RUNNING.dec()
                run.finish()
        finally:
            _COST.reset(cost)


async def _drive(
    request: web.Request,
    run: _Run,
    records: AsyncGenerator[Record, None],
    emit: Callable[[Record], Awaitable[None]],
) -> None:
    """Hand each record to `emit` (which may raise `_Gone`), the summary last.

    A drain cuts the search at `Admission.cut_at`: the search is closed (every download
    cancelled), then a `deadline_exceeded` record and the summary so far are emitted.
    """
    admission = request.app[ADMISSION]
    cut = asyncio.timeout(admission.cut_at)
    try:
        async with cut, aclosing(records):
            admission.cuts.add(cut)
            async for record in records:
                run.see(record)
                await emit(record)
        return
    except TimeoutError:
        if not cut.expired():
            raise
    finally:
        admission.cuts.discard(cut)
    run.progress.errors += 1
    for record in (
        Error(None, None, "deadline_exceeded", "the server is shutting down: the search was cut"),
        run.cut_summary(),
    ):
        run.see(record)
        await emit(record)


async def _stream(
    request: web.Request, run: _Run, records: AsyncGenerator[Record, None]
) -> web.StreamResponse:
    """prepare -> write each record the moment it is found -> write_eof.

    A client that hangs up either cancels this task (handler_cancellation) or makes a write
    fail; a client that stops reading makes a write wait past `stall_timeout`. All leave
    through `aclosing`, which closes the search and so cancels every download behind it.
    """
    stall = request.app[CONFIG].stall_timeout
    resp = web.StreamResponse(
        headers={"Content-Type": NDJSON, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)

    async def write(data: bytes | None) -> None:
        try:
            async with asyncio.timeout(stall):
                if data is None:
                    await resp.write_eof()
                else:
                    await resp.write(data)
        except TimeoutError:  # (an OSError too: first)
            raise _Gone("stalled") from None
        except (ConnectionError, OSError):  # a reset, or "Connection lost" while draining
            raise _Gone("disconnected") from None

    async def emit(record: Record) -> None:
        await write(encode(record))

    try:
        await _drive(request, run, records, emit)
        await write(None)
    except _Gone as gone:
        run.outcome = gone.reason
        log.info("the client %s before the end of its stream", gone.reason)
        if request.transport is not None:
            request.transport.abort()  # a stalled client's buffers are dropped too
    except Exception:
        # The status line is gone: the only honest signal left is a cut body (no final
        # chunk), which an HTTP client reports as a broken payload.
        run.outcome = "failed"
        log.exception("unexpected error while streaming")
        if request.transport is not None:
            request.transport.abort()
    return resp


async def _buffered(
    request: web.Request, run: _Run, records: AsyncGenerator[Record, None]
) -> web.Response:
    """The original challenge's answer: matching gist URLs (each once, in order of first
    match), plus the match records, any error records and the summary."""
    query = run.query
    gists: dict[str, None] = {}  # an ordered set
    details: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}

    async def emit(record: Record) -> None:
        nonlocal summary
        if isinstance(record, Match):
            gists.setdefault(f"https://gist.github.com/{query.username}/{record.gist_id}")
            details.append(to_dict(record, with_type=False))
        elif isinstance(record, Error):
            errors.append(to_dict(record, with_type=False))
        elif isinstance(record, Summary):
            summary = to_dict(record, with_type=False)

    await _drive(request, run, records, emit)
    return _json(
        {
            "status": "success",
            "username": query.username,
            "pattern": query.pattern,
            "matches": list(gists),
            "details": details,
            "errors": errors,
            "summary": summary,
        }
    )


# -- the user's gist list --------------------------------------------------------------------


async def user_gists(request: web.Request) -> web.Response:
    """`GET /{username}[?page=P&per_page=N]` and `GET /api/v1/users/{username}/gists`:
    GitHub's gist objects, the whole list or a page. Counts against the search limits."""
    app = request.app
    config = app[CONFIG]
    name = request.match_info["username"]
    resource = request.match_info.route.resource
    if "." in name and resource is not None and resource.canonical == "/{username}":
        # /favicon.ico, /robots.txt...: a GitHub login has no dot, so a single-segment path
        # with one names a file nobody serves here, not a user to refuse.
        raise Refused(404, {"error": "not_found", "message": f"nothing at {request.path}"})
    try:
        username = check_username(name)
        page, per_page = page_from_params(request.query)
    except UsageError as exc:
        raise Refused(400, {"error": "invalid_request", "message": exc.message}) from None
    admission = app[ADMISSION]
    client = admission.client(request)
    try:
        admission.check(client)
    except Refused as refused:  # in the list's own error shape
        body = {"error": refused.body["error"], "message": refused.body["message"]}
        raise Refused(refused.status, body, headers=refused.headers) from None
    with admission.hold(client):
        # Under the search deadline too: a hostile upstream cannot hold this request open.
        github = make_github(app[SESSION], config.scan_settings, app[CACHE], app[BUDGET])
        try:
            if page is None and per_page is None:
                items = await _whole_list(github, username, config)
            else:
                listed = await github.get_page(_page_url(github, username, page, per_page))
                items = listing.first_listings(listed.items, set())
        except ListingError as exc:
            raise _listing_refusal(exc, {"error": exc.code, "message": exc.message}) from None
    return _json(items)


async def _whole_list(github: GitHub, username: str, config: ServerConfig) -> list[dict[str, Any]]:
    """Every page, followed by GitHub's Link URLs; refused past `max_list_pages` pages."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()  # a gist met on two pages (they shifted) is listed once
    pages = listing.pages(github, username, per_page=config.settings.per_page)
    async with aclosing(pages):
        count = 0
        async for page in pages:
            items.extend(listing.first_listings(page.items, seen))
            count += 1
            if count == config.max_list_pages and page.next_url is not None:
                raise Refused(
                    502,
                    {
                        "error": "too_large",
                        "message": f"{username} has more than {config.max_list_pages} pages"
                        " of gists; ask for one page at a time with ?page=P&per_page=N",
                    },
                )
    return items


def _page_url(github: GitHub, username: str, page: int | None, per_page: int | None) -> str:
    # Only what the client gave is passed on, so GitHub applies its own defaults to the rest.
    given = (("per_page", per_page), ("page", page))
    query = "&".join(f"{name}={value}" for name, value in given if value is not None)
    return f"{github.api_url}/users/{username}/gists?{query}"


# -- validation: every input checked before any upstream call ---------------------------------


def _bad_request(exc: UsageError) -> Refused:
    code = {"username": "invalid_username", "pattern": "invalid_pattern"}.get(
        exc.field or "", "invalid_request"
    )
    return Refused(400, _problem(code, exc.message, exc.field))


def _single(params: Mapping[str, str], allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters as a plain dict: unknown or repeated ones are refused."""
    values: dict[str, str] = {}
    for name, value in params.items():
        if name not in allowed:
            raise UsageError(
                f"unknown parameter {name!r}; expected one of: {', '.join(allowed)}", field=name
            )
        if name in values:
            raise UsageError(f"parameter {name!r} is given more than once", field=name)
        values[name] = value
    return values


def _query_bool(name: str, raw: str) -> bool:
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise UsageError(f"{name} must be true, false, 1 or 0, not {raw!r}", field=name)


def _query_int(name: str, raw: str, *, low: int, high: int) -> int:
    # ASCII digits only: int() would also take " 5", "+5", "5_0" and fullwidth digits.
    if not re.fullmatch(r"[0-9]{1,10}", raw):
        raise UsageError(f"{name} must be an integer from {low} to {high}, not {raw!r}", field=name)
    return _in_range(name, int(raw), low=low, high=high)


def _in_range(name: str, value: int, *, low: int, high: int) -> int:
    if not low <= value <= high:
        raise UsageError(f"{name} must be from {low} to {high}, not {value}", field=name)
    return value


def query_from_params(username: str, params: Mapping[str, str], config: ServerConfig) -> Query:
    """A search from the GET route's path and query string; raises `UsageError`.

    `glob` and `language` may be repeated (`?glob=*.py&glob=!test_*`); every other
    parameter is given at most once.
    """
    pairs = list(params.items())
    values = _single(MultiDict((k, v) for k, v in pairs if k not in REPEATABLE), SEARCH_FIELDS[1:])
    since = values.get("since")
    if "pattern" not in values:
        raise UsageError("missing required parameter 'pattern'", field="pattern")
    max_matches = values.get("max_matches")
    query = Query(
        username=check_username(username),
        pattern=values["pattern"],
        ignore_case=_query_bool("ignore_case", values.get("ignore_case", "false")),
        fixed_strings=_query_bool("fixed_strings", values.get("fixed_strings", "false")),
        max_matches=None
        if max_matches is None
        else _query_int("max_matches", max_matches, low=1, high=MAX_INT),
        globs=tuple(v for k, v in pairs if k == "glob"),
        languages=tuple(v for k, v in pairs if k == "language"),
        since=None if since is None else normalize_since(since),
    )
    query.file_filter()  # checked here: after the stream starts it could only be a record
    return query


_JSON_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _typed(body: Mapping[str, Any], name: str, kind: type) -> Any:
    value = body[name]
    # JSON Schema's integer is any number with no fraction: 5.0 and 5e0 are 5.
    if kind is int and type(value) is float and value.is_integer():
        value = int(value)
    # bool is an int in Python; a JSON `true` is not a number, nor `1` a boolean.
    if type(value) is not kind:
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        raise UsageError(f"field {name!r} must be {_JSON_TYPES[kind]}, not {got}", field=name)
    return value


def query_from_body(body: Any, config: ServerConfig) -> Query:
    """A search from the POST body (a decoded JSON value); raises `UsageError`."""
    if not isinstance(body, dict):
        got = _JSON_TYPES.get(type(body), "that")
        raise UsageError(f"the body must be a JSON object, not {got}", field="body")
    unknown = sorted(set(body) - set(SEARCH_FIELDS))
    if unknown:
        raise UsageError(
            f"unknown field {unknown[0]!r}; expected: {', '.join(SEARCH_FIELDS)}", field=unknown[0]
        )
    for name in ("username", "pattern"):
        if name not in body:
            raise UsageError(f"missing required field {name!r}", field=name)
    max_matches = body.get("max_matches")
    query = Query(
        username=check_username(_typed(body, "username", str)),
        pattern=_typed(body, "pattern", str),
        ignore_case="ignore_case" in body and _typed(body, "ignore_case", bool),
        fixed_strings="fixed_strings" in body and _typed(body, "fixed_strings", bool),
        max_matches=None
        if max_matches is None
        else _in_range("max_matches", _typed(body, "max_matches", int), low=1, high=MAX_INT),
        globs=_strings(body, "glob"),
        languages=_strings(body, "language"),
        since=normalize_since(_typed(body, "since", str)) if "since" in body else None,
    )
    query.file_filter()  # checked here: after the stream starts it could only be a record
    return query


def _strings(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """An optional array of strings in the body (absent: empty)."""
    if name not in body:
        return ()
    values = _typed(body, name, list)
    if not all(isinstance(v, str) for v in values):
        raise UsageError(f"field {name!r} must be an array of strings", field=name)
    return tuple(values)


def page_from_params(params: Mapping[str, str]) -> tuple[int | None, int | None]:
    """`page` and `per_page` of GET /{username} (None when not given); raises `UsageError`."""
    values = _single(params, ("page", "per_page"))
    page = values.get("page")
    per_page = values.get("per_page")
    return (
        None if page is None else _query_int("page", page, low=1, high=MAX_INT),
        None
        if per_page is None
        else _query_int("per_page", per_page, low=1, high=GITHUB_MAX_PER_PAGE),
    )


async def _compile_off_loop(query: Query, config: ServerConfig) -> None:
    """Check and compile in a worker thread (even a bounded pattern may take milliseconds);
    `regex` caches the result, so the pipeline's own compile is then free."""
    compile_ = partial(
        compile_pattern,
        query.pattern,
        ignore_case=query.ignore_case,
        fixed_strings=query.fixed_strings,
        max_length=config.max_pattern_length,
        max_unrolled=config.max_pattern_unrolled,
    )
    await asyncio.get_running_loop().run_in_executor(None, compile_)


class _DuplicateField(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateField(key)
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


async def _json_body(request: web.Request) -> Any:
    """The POST body, decoded strictly: UTF-8, plain JSON (no NaN), no repeated keys."""
    try:
        raw = await request.read()  # over client_max_size: aiohttp raises 413, made JSON
    except (web.RequestPayloadError, HttpProcessingError):  # e.g. a body that is not gzip
        encoding = request.headers.get("Content-Encoding", "none")
        message = f"the body could not be decoded (Content-Encoding: {encoding})"
        raise Refused(400, _problem("invalid_json", message), close=True) from None
    if not raw.strip():
        raise Refused(400, _problem("invalid_json", "the body is empty; expected a JSON object"))
    try:
        return json.loads(
            raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant
        )
    except _DuplicateField as exc:
        raise Refused(
            400, _problem("invalid_request", f"field {exc.args[0]!r} is given more than once")
        ) from None
    except UnicodeDecodeError as exc:
        raise Refused(
            400, _problem("invalid_json", f"the body is not UTF-8 (byte {exc.start})")
        ) from None
    except RecursionError:
        raise Refused(
            400, _problem("invalid_json", "the body's JSON is nested too deeply")
        ) from None
    except ValueError as exc:
        raise Refused(400, _problem("invalid_json", f"the body is not valid JSON: {exc}")) from None


def _accepts_ndjson(accept: str) -> bool:
    """Whether an Accept header lists application/x-ndjson (with a q above 0)."""
    for part in accept.split(","):
        media, _, params = part.partition(";")
        if media.strip().lower() == NDJSON:
            q = re.search(r"\bq\s*=\s*([0-9.]+)", params)
            try:
                return q is None or float(q.group(1)) > 0
            except ValueError:
                return True
    return False
