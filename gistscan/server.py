"""The HTTP face (docs/http-api.md): thin handlers that validate, call the pipeline and write."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDict

from gistscan import listing, openapi
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
from gistscan.github import GitHub, client_session
from gistscan.pipeline import first_page, make_github, search
from gistscan.records import Error, Match, Record, Summary, encode, to_dict

log = logging.getLogger(__name__)

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


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs, built once at the edge (`from_env`) and then frozen.

    `settings` is how each scan runs (GitHub API root, token, downloads in flight,
    timeouts...); its own `deadline` is replaced by `search_deadline`. The rest are the
    abuse limits (docs/http-api.md) and the cache's bounds; `ENV` names the variable of each.
    """

    settings: Settings = field(default_factory=Settings)
    # A search beyond this many at once gets 503 with Retry-After: busy_retry_after.
    max_concurrent_searches: int = 8
    busy_retry_after: int = 5
    # Wall seconds one search may run (streamed or buffered); None: no deadline.
    search_deadline: float | None = 60.0
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
    # Threads that run matching (None: one per core): a catastrophic pattern burns these,
    # never the event loop.
    matching_threads: int | None = None
    cache_page_ttl: float = 60.0
    cache_max_pages: int = 1000
    cache_raw_budget: int = 64 * 1024 * 1024
    cache_raw_max_file: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in (
            "max_concurrent_searches",
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
        if self.search_deadline is not None and not self.search_deadline > 0:
            raise UsageError(
                "search_deadline must be a positive number of seconds", field="search_deadline"
            )
        for name in ("cache_page_ttl", "cache_raw_budget", "cache_raw_max_file"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must not be negative", field=name)

    @property
    def scan_settings(self) -> Settings:
        """The settings each search runs with: `settings` under the server's deadline."""
        return dataclasses.replace(self.settings, deadline=self.search_deadline)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Build the configuration from environment variables (`ENV`: the scan settings of
        `config.SETTINGS_ENV` and the server's own `SERVER_ENV`); unset ones keep their
        defaults. Raises `UsageError` naming the variable whose value is wrong."""
        env = os.environ if environ is None else environ
        settings = Settings.from_env(env)
        server = read_env(SERVER_ENV, env)
        try:
            return cls(settings=settings, **server)
        except UsageError as exc:
            raise blame_variable(exc, SERVER_ENV) from exc


# Environment variable -> (ServerConfig field, value kind). README lists them with defaults.
SERVER_ENV: dict[str, tuple[str, str]] = {
    "GISTSCAN_MAX_CONCURRENT_SEARCHES": ("max_concurrent_searches", "int"),
    "GISTSCAN_BUSY_RETRY_AFTER": ("busy_retry_after", "int"),
    "GISTSCAN_SEARCH_DEADLINE": ("search_deadline", "optional_float"),
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
}
# Every variable the server reads.
ENV: dict[str, tuple[str, str]] = SETTINGS_ENV | SERVER_ENV


class SearchSlots:
    """Counts the searches running; one past `limit` is refused (503), never queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @contextmanager
    def hold(self, retry_after: int) -> Iterator[None]:
        if self.active >= self.limit:
            raise Refused(
                503,
                _problem("too_many_searches", f"{self.limit} searches are running; try again"),
                headers={"Retry-After": str(retry_after)},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


CONFIG = web.AppKey("config", ServerConfig)
SESSION = web.AppKey("session", aiohttp.ClientSession)
CACHE = web.AppKey("cache", MemoryCache)
BUDGET = web.AppKey("budget", Budget)
MATCHING = web.AppKey("matching", ThreadPoolExecutor)
SLOTS = web.AppKey("search_slots", SearchSlots)


def make_app(config: ServerConfig | None = None) -> web.Application:
    """The application: routes (named ones before `/{username}`, so they win) and resources."""
    config = config or ServerConfig()
    app = web.Application(middlewares=[json_errors], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app.cleanup_ctx.append(resources)
    # HEAD is left out: a HEAD of a search would run the search for nothing.
    app.router.add_get("/ping", ping, allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/openapi.json", openapi_json, allow_head=False)
    app.router.add_get("/api/v1/users/{username}/search", search_get, allow_head=False)
    app.router.add_post("/api/v1/search", search_post)
    app.router.add_get("/{username}", user_gists, allow_head=False)
    return app


async def resources(app: web.Application) -> AsyncIterator[None]:
    """One client session (pooled connections to GitHub), one cache, one matching pool."""
    config = app[CONFIG]
    app[CACHE] = MemoryCache(
        page_ttl=config.cache_page_ttl,
        max_pages=config.cache_max_pages,
        raw_budget=config.cache_raw_budget,
        raw_max_file=config.cache_raw_max_file,
    )
    app[SLOTS] = SearchSlots(config.max_concurrent_searches)
    app[MATCHING] = ThreadPoolExecutor(
        max_workers=config.matching_threads or os.cpu_count() or 2,
        thread_name_prefix="gistscan-match",
    )
    app[BUDGET] = Budget()
    async with client_session() as session:
        app[SESSION] = session
        yield
    # A thread cannot be stopped: wait for the chunks still being matched (each bounded by
    # the per-file regex budget) off the loop, so shutdown leaves no thread burning.
    await asyncio.get_running_loop().run_in_executor(
        None, partial(app[MATCHING].shutdown, wait=True, cancel_futures=True)
    )


def run(host: str = "127.0.0.1", port: int = 8080, config: ServerConfig | None = None) -> None:
    """Serve until interrupted. A client that hangs up cancels its handler, hence its scan."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    web.run_app(
        make_app(config),
        host=host,
        port=port,
        handler_cancellation=True,
        shutdown_timeout=10.0,
    )


# -- errors ----------------------------------------------------------------------------------


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
        resp = web.json_response(self.body, status=self.status, headers=self.headers)
        if self.close:
            resp.force_close()
        return resp


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
        return web.json_response(_problem(code, message), status=exc.status, headers=headers)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return web.json_response(
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


# -- small routes ----------------------------------------------------------------------------


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document(request.app[CONFIG]))


# -- search ----------------------------------------------------------------------------------


async def search_get(request: web.Request) -> web.StreamResponse:
    """`GET /api/v1/users/{username}/search?pattern=...`: the NDJSON stream of a search."""
    config = request.app[CONFIG]
    try:
        query = query_from_params(request.match_info["username"], request.query, config)
    except UsageError as exc:
        raise _bad_request(exc) from None
    return await _search(request, query, stream=True)


async def search_post(request: web.Request) -> web.StreamResponse:
    """`POST /api/v1/search`: a buffered JSON answer, or NDJSON when the client accepts it."""
    config = request.app[CONFIG]
    body = await _json_body(request)
    try:
        query = query_from_body(body, config)
    except UsageError as exc:
        raise _bad_request(exc) from None
    stream = _accepts_ndjson(request.headers.get("Accept", ""))
    if not stream:
        # The whole answer is held in memory: never more than max_buffered_matches matches.
        cap = min(query.max_matches or config.max_buffered_matches, config.max_buffered_matches)
        query = dataclasses.replace(query, max_matches=cap)
    return await _search(request, query, stream=stream)


async def _search(request: web.Request, query: Query, *, stream: bool) -> web.StreamResponse:
    """Compile off the loop, take a slot, fetch page one (so a failure is a status), run."""
    app = request.app
    config = app[CONFIG]
    try:
        await _compile_off_loop(query, config)
    except UsageError as exc:
        raise _bad_request(exc) from None
    settings = config.scan_settings
    with app[SLOTS].hold(config.busy_retry_after):
        github = make_github(app[SESSION], settings, app[CACHE], app[BUDGET])
        try:
            first = await first_page(github, query, settings)
        except ListingError as exc:
            raise _listing_refusal(exc, _problem(exc.code, exc.message)) from None
        records = search(query, settings, github=github, first=first, executor=app[MATCHING])
        if stream:
            return await _stream(request, records)
        return await _buffered(query, records)


async def _stream(
    request: web.Request, records: AsyncGenerator[Record, None]
) -> web.StreamResponse:
    """prepare -> write each record the moment it is found -> write_eof.

    A client that hangs up either cancels this task (handler_cancellation) or makes a write
    fail; both leave through `aclosing`, which closes the search and so cancels every
    download behind it.
    """
    resp = web.StreamResponse(headers={"Content-Type": NDJSON})
    await resp.prepare(request)
    try:
        async with aclosing(records):
            async for record in records:
                if not await _sent(resp, encode(record)):
                    log.info("client left %s before the end of its stream", request.path)
                    return resp
        await _sent(resp, None)
    except Exception:
        # The status line is gone: the only honest signal left is a cut body (no final
        # chunk), which an HTTP client reports as a broken payload.
        log.exception("unexpected error while streaming %s", request.path)
        if request.transport is not None:
            request.transport.abort()
    return resp


async def _sent(resp: web.StreamResponse, data: bytes | None) -> bool:
    """Write `data` (None: end the body); False when the client has gone away."""
    try:
        if data is None:
            await resp.write_eof()
        else:
            await resp.write(data)
    except (ConnectionError, OSError):  # a reset, or "Connection lost" while draining
        return False
    return True


async def _buffered(query: Query, records: AsyncGenerator[Record, None]) -> web.Response:
    """The original challenge's answer: matching gist URLs (each once, in order of first
    match), plus the match records, any error records and the summary."""
    gists: dict[str, None] = {}  # an ordered set
    details: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    async with aclosing(records):
        async for record in records:
            if isinstance(record, Match):
                gists.setdefault(f"https://gist.github.com/{query.username}/{record.gist_id}")
                details.append(to_dict(record, with_type=False))
            elif isinstance(record, Error):
                errors.append(to_dict(record, with_type=False))
            elif isinstance(record, Summary):
                summary = to_dict(record, with_type=False)
    return web.json_response(
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
    """`GET /{username}[?page=P&per_page=N]`: GitHub's gist objects, the whole list or a page."""
    app = request.app
    config = app[CONFIG]
    try:
        username = check_username(request.match_info["username"])
        page, per_page = page_from_params(request.query)
    except UsageError as exc:
        raise Refused(400, {"error": "invalid_request", "message": exc.message}) from None
    # Under the search deadline too: a hostile upstream cannot hold this request open.
    github = make_github(app[SESSION], config.scan_settings, app[CACHE], app[BUDGET])
    try:
        if page is None and per_page is None:
            items = await _whole_list(github, username, config)
        else:
            items = (await github.get_page(_page_url(github, username, page, per_page))).items
    except ListingError as exc:
        raise _listing_refusal(exc, {"error": exc.code}) from None
    return web.json_response(items)


async def _whole_list(github: GitHub, username: str, config: ServerConfig) -> list[dict[str, Any]]:
    """Every page, followed by GitHub's Link URLs; refused past `max_list_pages` pages."""
    items: list[dict[str, Any]] = []
    pages = listing.pages(github, username, per_page=config.settings.per_page)
    async with aclosing(pages):
        count = 0
        async for page in pages:
            items.extend(page.items)
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
