"""A fake GitHub (REST API and raw host) served by aiohttp on loopback, after docs/github.md."""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import functools
import hashlib
import json
import math
import mimetypes
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

# Limits documented by GitHub (docs/github.md §2 and §4).
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
MAX_FILES = 300  # a gist's `files` map is cut to this many, with top-level truncated: true
MAX_CONTENT_BYTES = 1024 * 1024  # the API's per-file `content` is cut here
MAX_RAW_BYTES = 10 * 1024 * 1024  # the raw host answers 403 for bigger files
SLOW_PIECE_DELAY = 0.2
API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
LIST_FAULTS = frozenset({
    "rate_limited", "rate_limited_429", "500", "502", "503", "truncated_json", "not_array", "reset",
})  # fmt: skip
FILE_FAULTS = frozenset({"reset", "500", "404", "slow"})

JSON_TYPE = "application/json; charset=utf-8"
CACHE_CONTROL = "private, max-age=60, s-maxage=60"
TIMESTAMP = "2020-01-01T00:00:00Z"
NO_USER_AGENT = (
    b"Request forbidden by administrative rules.\n"
    b"Please make sure your request has a User-Agent header.\n"
    b"Check  for other possible causes."
)
PRIMARY_LIMIT_BODY = {
    "message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated "
    "requests get a higher rate limit. Check out the documentation for more details.)",
    "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api"
    "#rate-limiting",
}
SECONDARY_LIMIT_BODY = {
    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you "
    "try again.",
    "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api"
    "#secondary-rate-limits",
}
LANGUAGES = {".py": "Python", ".md": "Markdown", ".txt": "Text", ".rb": "Ruby", ".js": "JavaScript"}


@dataclass
class FakeFile:
    """One file of a gist; `fault` is injected on its raw URL for `fault_times` requests."""

    name: str
    content: bytes
    fault: str | None = None  # None | "reset" | "500" | "404" | "slow"
    fault_times: int | None = None  # None: every request


@dataclass
class FakeGist:
    """A gist as the fake stores it; list order is the order given to add_user.

    `git_pull_url`, when given, is listed as is (e.g. a server that never answers); else a
    huge gist gets a file:// URL of a bare repository holding its files, and others the
    usual https URL, which is only data.
    """

    id: str
    files: list[FakeFile]
    description: str | None = None
    public: bool = True
    git_pull_url: str | None = None
    updated_at: str = TIMESTAMP  # what `since` is compared with


@dataclass
class _User:
    login: str
    id: int
    gists: list[FakeGist]


@dataclass
class _Fault:
    kind: str
    times: int | None  # injections left; None: forever

    def take(self) -> str | None:
        if self.times is not None:
            if self.times <= 0:
                return None
            self.times -= 1
        return self.kind


class Headers(dict[str, str]):
    """Request headers keyed lower-case; lookups ignore case, as HTTP does."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__((k.lower(), v) for k, v in headers.items())

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def blob_sha(content: bytes) -> str:
    """The git blob sha of `content`: what real raw URLs carry (docs/github.md §3)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest() + '"'


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    # Compared opaquely; a weak validator (W/"...") matches its strong twin, as in a GET.
    if if_none_match is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _int_param(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _not_found(anchor: str) -> bytes:
    return _json_bytes({"message": "Not Found", "documentation_url": anchor, "status": "404"})


class FakeGitHub:
    """GitHub's gist API (`/users/{login}/gists`, `/user/{id}/gists`, `/gists/{id}`) and raw host.

    Tests read the counters to assert client behaviour. `requests` counts each request once,
    under one kind: "list", "list_304", "gist", "gist_304", "raw", "raw_403", "rate_limit"
    (GET /rate_limit, which the server asks once at start; GitHub does not count it) or "other".
    `list_served` records list pages answered 200 or 304 (not faults, refusals or 404s).
    The gauges (`in_flight`, `raw_in_flight`) include the latency sleep, so overlapping
    requests show up in `peak_raw_in_flight` even when the bodies are tiny.

    A huge gist (a file over `raw_limit`, or more than 300 files: what GitHub will only give
    through git) is listed with a `git_pull_url` that `git clone` can fetch: a file:// URL of
    a bare repository with one commit holding every file of the gist, built by add_user in a
    temporary directory the fake removes on close(). `repos_built` counts them. Without git
    installed, such gists keep the plain https URL.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        raw_latency: float | None = None,
        piece_size: int = 1000,
        rate_limit: int = 5000,
        user_id_base: int = 1000,
        raw_limit: int = MAX_RAW_BYTES,
    ) -> None:
        self.latency = latency
        self.raw_limit = raw_limit  # GitHub's is 10 MB; benchmarks lift it for huge files
        self.raw_latency = latency if raw_latency is None else raw_latency
        self.piece_size = piece_size
        self.rate_limit = rate_limit
        self.remaining = rate_limit
        self.rate_reset = int(time.time()) + 3600  # end of the current hour-long window
        self.user_id_base = user_id_base
        self.base_url = ""
        self.api_url = ""
        self._users: dict[str, _User] = {}  # by lower-cased login: GitHub logins ignore case
        self._users_by_id: dict[int, _User] = {}
        self._gists: dict[str, tuple[_User, FakeGist]] = {}
        self._shas: dict[tuple[str, str], str] = {}  # (gist id, filename) -> blob sha
        self._raw: dict[tuple[str, str, str, str], FakeFile] = {}  # raw URL parts -> file
        self._list_faults: dict[tuple[str, int | None], _Fault] = {}  # page None: every page
        self._file_faults: dict[tuple[str, str], _Fault] = {}  # (gist id, filename) -> fault
        self._runner: web.AppRunner | None = None
        self._git_root: tempfile.TemporaryDirectory[str] | None = None  # made on first need
        self._git_urls: dict[str, str] = {}  # gist id -> file:// URL of its bare repository
        self.repos_built = 0
        self.in_flight = 0
        self.raw_in_flight = 0
        self.reset_counters()

        self.app = web.Application(middlewares=[self._track])
        self.app[FAKE_KEY] = self
        self.app.router.add_get("/users/{login}/gists", self._list)
        self.app.router.add_get("/user/{user_id:[0-9]+}/gists", self._list)
        self.app.router.add_get("/gists/{gist_id}", self._gist)
        self.app.router.add_get("/raw/{login}/{gist_id}/raw/{sha}/{filename}", self._raw_file)
        self.app.router.add_get("/rate_limit", self._rate_limit)
        self.app.router.add_route("*", "/{tail:.*}", self._other)

    # -- setup ---------------------------------------------------------------------------

    def add_user(self, login: str, gists: list[FakeGist]) -> None:
        """Add (or replace) a user; file shas (hence raw URLs) and file faults are read now."""
        old = self._users.get(login.lower())
        user_id = old.id if old else self.user_id_base + len(self._users_by_id)
        for gist in gists:
            owner = self._gists.get(gist.id)
            if owner is not None and owner[0].id != user_id:
                raise ValueError(f"gist id {gist.id} already belongs to {owner[0].login}")
        user = _User(login, user_id, list(gists))
        self._users[login.lower()] = self._users_by_id[user_id] = user
        for gist in gists:
            self._gists[gist.id] = (user, gist)
            for file in gist.files:
                if file.fault is not None and file.fault not in FILE_FAULTS:
                    raise ValueError(f"unknown file fault {file.fault!r} on {file.name}")
                if file.fault is not None:
                    self._file_faults[gist.id, file.name] = _Fault(file.fault, file.fault_times)
                sha = blob_sha(file.content)
                self._shas[gist.id, file.name] = sha
                self._raw[login.lower(), gist.id, sha, file.name] = file
            self._git_urls.pop(gist.id, None)
            if gist.git_pull_url is None and self.is_huge(gist) and shutil.which("git"):
                self._git_urls[gist.id] = self._build_repo(gist)

    def is_huge(self, gist: FakeGist) -> bool:
        """Whether GitHub would give part of `gist` only through git (docs/github.md §2)."""
        return len(gist.files) > MAX_FILES or any(
            len(f.content) > self.raw_limit for f in gist.files
        )

    def _build_repo(self, gist: FakeGist) -> str:
        """A bare repository with one commit of the gist's files; returns its file:// URL."""
        if self._git_root is None:
            self._git_root = tempfile.TemporaryDirectory(prefix="fake-github-git-")
        # A fresh path per build: a gist given again with other files gets a new repository.
        path = Path(self._git_root.name) / f"{gist.id}-{self.repos_built}.git"
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        git = ["git", "--git-dir", str(path)]
        subprocess.run(["git", "init", "--bare", "--quiet", str(path)], check=True, env=env)
        subprocess.run([*git, "symbolic-ref", "HEAD", "refs/heads/main"], check=True, env=env)
        # fast-import takes the blobs as a stream: no work tree, no file held twice.
        importer = subprocess.Popen(
            [*git, "fast-import", "--quiet"], stdin=subprocess.PIPE, env=env
        )
        assert importer.stdin is not None
        with importer.stdin as stream:
            for mark, file in enumerate(gist.files, 1):
                stream.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(file.content)))
                stream.write(file.content)
                stream.write(b"\n")
            message = f"gist {gist.id}".encode()
            stream.write(b"commit refs/heads/main\n")
            for who in (b"author", b"committer"):
                stream.write(who + b" Fake GitHub <fake@example.com> 1577836800 +0000\n")
            stream.write(b"data %d\n%s\n" % (len(message), message))
            for mark, file in enumerate(gist.files, 1):
                stream.write(b"M 100644 :%d %s\n" % (mark, _quote_path(file.name)))
        if importer.wait() != 0:
            raise RuntimeError(f"git fast-import failed for gist {gist.id}")
        self.repos_built += 1
        return path.as_uri()

    def set_list_fault(self, login: str, fault: str | None, *, times: int | None = None) -> None:
        """Inject `fault` on every list page of `login` (the next `times` requests only).

        aiohttp's client silently retries an idempotent request once when a *reused* keep-alive
        connection drops before the response ("reset"), so such a retry uses up a `times` too.
        """
        self._set_fault(login, None, fault, times)

    def set_page_fault(
        self, login: str, page: int, fault: str | None, *, times: int | None = None
    ) -> None:
        """Inject `fault` on list page `page` of `login` only."""
        self._set_fault(login, page, fault, times)

    def _set_fault(
        self, login: str, page: int | None, fault: str | None, times: int | None
    ) -> None:
        key = (login.lower(), page)
        if fault is None:
            self._list_faults.pop(key, None)
        elif fault not in LIST_FAULTS:
            raise ValueError(f"unknown list fault {fault!r}; expected one of {sorted(LIST_FAULTS)}")
        else:
            self._list_faults[key] = _Fault(fault, times)

    def reset_counters(self) -> None:
        """Forget what was counted so far (not the rate limit, nor requests still in flight)."""
        self.requests: collections.Counter[str] = collections.Counter()
        self.peak_raw_in_flight = self.raw_in_flight
        self.peak_in_flight = self.in_flight
        self.raw_started: list[tuple[float, str]] = []
        self.list_served: list[tuple[float, int]] = []
        self.seen_headers: list[dict[str, str]] = []
        self.raw_seen_headers: list[dict[str, str]] = []

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port) in the running loop; return the base URL."""
        # handler_cancellation: a client that hangs up cancels its handler, as in production.
        self._runner = web.AppRunner(self.app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = self.api_url = f"http://{host}:{bound_port}"
        return self.base_url

    async def close(self) -> None:
        """Stop serving; handlers still running are cancelled after a short grace period."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._git_root is not None:
            self._git_root.cleanup()
            self._git_root = None
            self._git_urls.clear()

    # -- plumbing shared by all handlers -----------------------------------------------------

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        raw = request.path.startswith("/raw/")
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if raw:
            self.raw_in_flight += 1
            self.peak_raw_in_flight = max(self.peak_raw_in_flight, self.raw_in_flight)
            self.raw_started.append((time.monotonic(), request.path))
            self.raw_seen_headers.append(Headers(request.headers))
        else:
            self.seen_headers.append(Headers(request.headers))
        try:
            delay = self.raw_latency if raw else self.latency
            if delay > 0:
                await asyncio.sleep(delay)
            return await handler(request)
        finally:
            # Runs on cancellation too (client hung up), so the gauges always drop back.
            self.in_flight -= 1
            if raw:
                self.raw_in_flight -= 1

    def _base(self, request: web.Request) -> str:
        # Before start() (e.g. the app under pytest-aiohttp's aiohttp_client) use the Host seen.
        return self.base_url or str(request.url.origin())

    def _rate_headers(
        self, *, remaining: int | None = None, reset: int | None = None
    ) -> dict[str, str]:
        left = self.remaining if remaining is None else remaining
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(left),
            "x-ratelimit-used": str(self.rate_limit - left),
            "x-ratelimit-reset": str(self.rate_reset if reset is None else reset),
            "x-ratelimit-resource": "core",
        }

    def _json(
        self, body: bytes, status: int = 200, headers: Mapping[str, str] = {}
    ) -> web.Response:
        head = {"Content-Type": JSON_TYPE, **self._rate_headers(), **headers}
        if status == 200:
            head |= {"ETag": _etag(body), "Cache-Control": CACHE_CONTROL}
        return web.Response(status=status, body=body, headers=head)

    def _ok(
        self, request: web.Request, body: bytes, kind: str, headers: Mapping[str, str] = {}
    ) -> web.Response:
        """A 200, or an empty 304 if the client holds this ETag: free (docs/github.md §6)."""
        etag = _etag(body)
        if _etag_matches(request.headers.get("If-None-Match"), etag):
            self.requests[f"{kind}_304"] += 1
            cache = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
            return web.Response(status=304, headers={**self._rate_headers(), **cache, **headers})
        self._spend()
        self.requests[kind] += 1
        return self._json(body, headers=headers)

    def _primary_limited(self, reset: int) -> web.Response:
        return web.Response(
            status=403,
            body=_json_bytes(PRIMARY_LIMIT_BODY),
            headers={"Content-Type": JSON_TYPE, **self._rate_headers(remaining=0, reset=reset)},
        )

    def _gate(self, request: web.Request) -> web.Response | None:
        """The refusals every API request can meet before it reaches its endpoint."""
        if "User-Agent" not in request.headers:
            # GitHub's front end answers this one, in HTML and without rate-limit headers.
            return web.Response(
                status=403, body=NO_USER_AGENT, headers={"Content-Type": "text/html"}
            )
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in API_VERSIONS:
            message = f"Invalid API version: {version}"  # docs/github.md §7; wording guessed
            return self._json(_json_bytes({"message": message, "status": "400"}), 400)
        if self.remaining <= 0:
            return self._primary_limited(self.rate_reset)
        return None

    def _spend(self) -> None:
        self.remaining = max(0, self.remaining - 1)

    # -- API -----------------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.StreamResponse:
        refusal = self._gate(request)
        if refusal is not None:
            self.requests["list"] += 1
            return refusal
        if "user_id" in request.match_info:
            user = self._users_by_id.get(int(request.match_info["user_id"]))
            login = user.login if user else ""
        else:
            login = request.match_info["login"]
            user = self._users.get(login.lower())
        # per_page above 100 is clamped silently, not refused (docs/github.md §4).
        per_page = min(
            max(_int_param(request.query.get("per_page"), DEFAULT_PER_PAGE), 1), MAX_PER_PAGE
        )
        page = max(_int_param(request.query.get("page"), 1), 1)
        base = self._base(request)
        # `since`: gists updated at or after it (docs/github.md §1); timestamps in one format
        # (YYYY-MM-DDTHH:MM:SSZ) compare as strings.
        since = request.query.get("since")
        public = [
            g
            for g in (user.gists if user else [])
            if g.public and (not since or g.updated_at >= since)
        ]
        items = public[(page - 1) * per_page : page * per_page]
        body = _json_bytes(
            [self._gist_json(base, user, g, full=False) for g in items] if user else []
        )

        fault = self._take_list_fault(login, page)
        if fault is not None:
            self.requests["list"] += 1
            return self._list_fault(request, fault, body)
        if user is None:
            self._spend()
            self.requests["list"] += 1
            anchor = "https://docs.github.com/rest/gists/gists#list-gists-for-a-user"
            return self._json(_not_found(anchor), 404)

        link = _link_header(base, user.id, page, per_page, len(public), since)
        self.list_served.append((time.monotonic(), page))
        return self._ok(request, body, "list", {"Link": link} if link else {})

    def _take_list_fault(self, login: str, page: int) -> str | None:
        for key in ((login.lower(), page), (login.lower(), None)):
            fault = self._list_faults.get(key)
            kind = fault.take() if fault else None
            if kind is not None:
                return kind
        return None

    def _list_fault(self, request: web.Request, fault: str, body: bytes) -> web.Response:
        if fault == "rate_limited":
            return self._primary_limited(int(time.time()) + 60)
        if fault == "rate_limited_429":
            return self._json(_json_bytes(SECONDARY_LIMIT_BODY), 429, {"retry-after": "30"})
        if fault in ("500", "502", "503"):
            return self._json(_json_bytes({"message": "Server Error"}), int(fault))
        if fault == "truncated_json":
            return self._json(body[: len(body) // 2])
        if fault == "not_array":
            return self._json(_json_bytes({"message": "surprise"}))
        # "reset": drop the connection before any byte of the response is sent.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never reaches the client

    async def _gist(self, request: web.Request) -> web.StreamResponse:
        refusal = self._gate(request)
        found = self._gists.get(request.match_info["gist_id"])
        if refusal is not None or found is None:
            self.requests["gist"] += 1
            if refusal is not None:
                return refusal
            self._spend()
            return self._json(
                _not_found("https://docs.github.com/rest/gists/gists#get-a-gist"), 404
            )
        body = _json_bytes(self._gist_json(self._base(request), *found, full=True))
        return self._ok(request, body, "gist")

    async def _rate_limit(self, request: web.Request) -> web.StreamResponse:
        """GitHub's GET /rate_limit: the core limit as the headers say it, never spent."""
        self.requests["rate_limit"] += 1
        headers = self._rate_headers()
        core = {
            "limit": self.rate_limit,
            "remaining": self.remaining,
            "used": self.rate_limit - self.remaining,
            "reset": int(headers["x-ratelimit-reset"]),
        }
        body = {"resources": {"core": core}, "rate": core}
        return web.json_response(body, headers=headers)

    async def _other(self, request: web.Request) -> web.StreamResponse:
        self.requests["other"] += 1
        return self._json(_not_found("https://docs.github.com/rest"), 404)

    def _gist_json(self, base: str, user: _User, gist: FakeGist, *, full: bool) -> dict[str, Any]:
        """A `base-gist` list item, or with `full` the `gist-simple` of GET /gists/{id}."""
        files: dict[str, Any] = {}
        for file in gist.files[:MAX_FILES]:
            sha = self._shas[gist.id, file.name]
            suffix = "." + file.name.rpartition(".")[2] if "." in file.name else ""
            entry: dict[str, Any] = {
                "filename": file.name,
                "type": mimetypes.guess_type(file.name)[0] or "text/plain",
                "language": LANGUAGES.get(suffix),
                "raw_url": f"{base}/raw/{quote(user.login, safe='')}/{gist.id}/raw/{sha}/"
                f"{quote(file.name, safe='')}",
                "size": len(file.content),
            }
            if full:
                entry["truncated"] = len(file.content) > MAX_CONTENT_BYTES
                entry["content"] = file.content[:MAX_CONTENT_BYTES].decode("utf-8", "replace")
                entry["encoding"] = "utf-8"
            files[file.name] = entry
        api = f"{base}/gists/{gist.id}"
        item: dict[str, Any] = {
            "url": api,
            "forks_url": f"{api}/forks",
            "commits_url": f"{api}/commits",
            "id": gist.id,
            "node_id": base64.b64encode(f"04:Gist{gist.id}".encode()).decode(),
            "git_pull_url": gist.git_pull_url
            or self._git_urls.get(gist.id, f"https://gist.github.com/{gist.id}.git"),
            "git_push_url": f"https://gist.github.com/{gist.id}.git",
            "html_url": f"https://gist.github.com/{gist.id}",
            "files": files,
            "public": gist.public,
            "created_at": TIMESTAMP,
            "updated_at": gist.updated_at,
            "description": gist.description,
            "comments": 0,
            "user": None,
            "comments_url": f"{api}/comments",
            "owner": _owner_json(base, user),
            "truncated": len(gist.files) > MAX_FILES,
        }
        if full:
            item |= {"comments_enabled": True, "forks": [], "history": []}
        return item

    # -- raw host --------------------------------------------------------------------------------

    async def _raw_file(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        file = self._raw.get((m["login"].lower(), m["gist_id"], m["sha"], m["filename"]))
        if file is not None and len(file.content) > self.raw_limit:
            self.requests["raw_403"] += 1
            return web.Response(status=403, text="403: Forbidden")
        self.requests["raw"] += 1
        if file is None:
            return web.Response(status=404, text="404: Not Found")
        fault = self._take_file_fault(m["gist_id"], file)
        if fault == "500":
            return web.Response(status=500, text="500: Internal Server Error")
        if fault == "404":
            return web.Response(status=404, text="404: Not Found")

        content = memoryview(file.content)
        # "reset" promises the whole length, sends half, then drops the connection, so the
        # client must notice a short body rather than take it for the whole file.
        end = len(content) // 2 if fault == "reset" else len(content)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        resp.content_length = len(content)
        try:
            await resp.prepare(request)
            for start in range(0, end, self.piece_size):
                await resp.write(content[start : min(start + self.piece_size, end)])
                # Yield between pieces so the client sees short reads, as over a network.
                await asyncio.sleep(SLOW_PIECE_DELAY if fault == "slow" else 0)
            if fault == "reset":
                if request.transport is not None:
                    request.transport.abort()
                return resp
            await resp.write_eof()
        except (ConnectionError, OSError):
            pass  # the client went away mid-body; the middleware's finally still runs
        return resp

    def _take_file_fault(self, gist_id: str, file: FakeFile) -> str | None:
        fault = self._file_faults.get((gist_id, file.name))
        return fault.take() if fault else None


FAKE_KEY = web.AppKey("fake_github", FakeGitHub)


def _link_header(
    base: str, user_id: int, page: int, per_page: int, total: int, since: str | None = None
) -> str | None:
    """GitHub's Link: absolute, at /user/{id}/gists, rels in the order prev, next, last, first;
    `since` is carried along, as GitHub carries the query's parameters."""
    last = max(1, math.ceil(total / per_page))
    if last == 1:
        return None  # everything fits on one page: no Link at all
    extra = f"&since={quote(since, safe='')}" if since else ""

    def rel(name: str, target: int) -> str:
        return (
            f'<{base}/user/{user_id}/gists?per_page={per_page}{extra}&page={target}>; rel="{name}"'
        )

    rels = []
    if page > 1:
        rels.append(rel("prev", page - 1))
    if page < last:
        rels += [rel("next", page + 1), rel("last", last)]
    if page > 1:
        rels.append(rel("first", 1))
    return ", ".join(rels)


def _quote_path(name: str) -> bytes:
    """A path for fast-import's `M` command, C-quoted so any character may occur in it."""
    escaped = name.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
    return b'"' + escaped + b'"'


def _owner_json(base: str, user: _User) -> dict[str, Any]:
    url = f"{base}/users/{user.login}"
    return {
        "login": user.login,
        "id": user.id,
        "node_id": base64.b64encode(f"04:User{user.id}".encode()).decode(),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
        "gravatar_id": "",
        "url": url,
        "html_url": f"https://github.com/{user.login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": "User",
        "site_admin": False,
    }


def gist_id(login: str, index: int) -> str:
    """A deterministic 20-hex gist id, unique across logins: crc32(login) then the index."""
    return f"{zlib.crc32(login.encode()):08x}{index:012x}"


def _default_content(login: str, i: int, j: int) -> bytes:
    return (
        f"gist {i} file {j} of {login}\n"
        "the quick brown fox\n"
        "jumps over the lazy dog\n"
        f"end of gist {i} file {j}\n"
    ).encode()


def make_gists(
    login: str,
    n_gists: int,
    files_per_gist: int = 1,
    *,
    content: Callable[[int, int], bytes] | None = None,
) -> list[FakeGist]:
    """`n_gists` gists of `files_per_gist` files each; `content(i, j)` gives file j of gist i."""
    make = content or functools.partial(_default_content, login)
    return [
        FakeGist(
            id=gist_id(login, i),
            files=[FakeFile(f"gist{i}_file{j}.txt", make(i, j)) for j in range(files_per_gist)],
            description=f"gist {i} of {login}",
        )
        for i in range(n_gists)
    ]


def big_text(n_bytes: int) -> bytes:
    """`n_bytes` of numbered text lines (the last one cut)."""
    line_len = len(b"00000000 the quick brown fox jumps over the lazy dog\n")
    lines = (
        f"{k:08d} the quick brown fox jumps over the lazy dog\n"
        for k in range(n_bytes // line_len + 1)
    )
    return "".join(lines).encode()[:n_bytes]


def minified_bundle(size: int, *, seed: int = 8) -> bytes:
    """About `size` bytes of a minified bundle on one line, then one newline: `;`-separated
    words and numbers, `apiKey<N>`, `"token": "<N>"` literals and `SECRET_<N>` among them."""
    rng = random.Random(seed)
    words = ["this", "z", "token", "y", "if", "apiKey", "return", "else", "for", "null", "var"]
    out = []
    total = 0
    while total < size:
        word = rng.choice(words)
        if rng.random() < 0.01:
            word = f'"token": "{rng.randrange(10**6)}"'
        elif rng.random() < 0.005:
            word = "SECRET_"
        piece = f"{word}{rng.randrange(100)};"
        out.append(piece)
        total += len(piece)
    return ("".join(out)[:size] + "\n").encode()


def _parse_users(spec: str) -> list[tuple[str, int, int]]:
    users = []
    for part in filter(None, spec.split(",")):
        login, _, shape = part.partition(":")
        n_gists, _, n_files = shape.partition("x")
        users.append((login, int(n_gists), int(n_files or 1)))
    return users


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeGitHub(
        latency=args.latency,
        raw_latency=args.raw_latency,
        piece_size=args.piece_size,
        rate_limit=args.rate_limit,
    )
    for login, n_gists, n_files in _parse_users(args.users):
        gists = make_gists(login, n_gists, n_files)
        if args.big_file_mb:
            big = FakeFile("big.txt", big_text(int(args.big_file_mb * 1024 * 1024)))
            gists.append(FakeGist(gist_id(login, n_gists), [big], "a big file"))
        fake.add_user(login, gists)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(await fake.start(args.host, args.port), flush=True)
    try:
        await stop.wait()
    finally:
        await fake.close()


def main(argv: list[str] | None = None) -> int:
    """Serve a fake GitHub until killed; print its base URL on one line first."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_github", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--users", default="", help="login:GISTSxFILES,... e.g. alice:30x2,bob:5x1")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--raw-latency", type=float, default=None, help="default: --latency")
    parser.add_argument("--piece-size", type=int, default=1000, help="raw body write size")
    parser.add_argument("--rate-limit", type=int, default=5000)
    parser.add_argument(
        "--big-file-mb",
        type=float,
        default=0,
        help="append to each user a gist with one file this big (>10 MiB: raw 403, and a"
        " file:// git_pull_url to clone)",
    )
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
