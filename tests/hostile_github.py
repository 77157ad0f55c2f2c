"""A hostile fake GitHub on loopback: GitHub's documented quirks and an upstream that lies,
stalls, floods or loops. Plain aiohttp handlers; the behaviour is picked by the user name.

Every answer is small or bounded by `stream_cap` bytes and `stream_seconds`, so that a client
that never stops reading still ends; `written` counts the bytes the endless bodies managed to
send (a client that reads a body whole would let it reach the cap). `log` records every request
(path, Host, whether it carried Authorization), `raw_peak` the most raw requests at once.

Users (`/users/{user}/gists`):
  normal                      one gist, one file holding `needle`
  secondary403, secondary429  GitHub's secondary rate limit: a 403 with remaining > 0, or a
                              bare 429; no Retry-After, the message says so
  abuse403, abusedoc403, shouting403
                              the same 403 in GitHub's other wordings (SECONDARY_BODIES): the
                              older "abuse detection mechanism", a documentation_url only, capitals
  forbidden403                a 403 with remaining > 0 that is no rate limit
  retry-{name}                429 with the Retry-After of RETRY_AFTER[name] (1e999, nan, ...)
  resetinf                    primary limit: 403, remaining 0, reset 1e999
  flaky5xx                    503 with Retry-After `retry_after_5xx`, `flaky_times` times
  rawlimit                    `n_files` gists whose raw files answer 429 with Retry-After
                              `raw_retry_after` (`raw_ok` of them are served)
  linkcomma, linktwo, linkrel a second page behind a Link with a comma in its URL, in a
                              second Link header, or relative
  any user in LINKS           a second page behind that Link header (relation and parameter
                              names in other cases, several relations, percent-escapes, ...)
  linkcreds, rawcreds, redircreds
                              a Link, a raw_url, a redirect whose URL holds user:sekrit@
  shifty                      offset paging: gist 1 is on both pages
  linkvary, linkloop          a list that never ends / loops back to page one
  linkother, redirother       the next page, or page one's redirect, on another origin
  redirsame                   page one redirects to `normal`'s, on the same origin
  biglist, biglistcl          an endless list page (chunked / claiming a huge Content-Length)
  bigerror                    a 500 with an endless body
  raw403big                   a raw 403 with an endless body
  deepjson, deepjson2         nesting 100,000 deep (the page itself / inside a gist)
  any kind in ENCODED         a raw file with that Content-Encoding and body (gzip cut short,
                              corrupt, br, ...); gzip2, xenc, gzip1: `gzip,gzip`, `x-foo`, gzip
  shortraw                    a raw body that breaks off before its Content-Length
  gziplist, gzipcutlist       `normal`'s page gzipped, whole / cut short
  trickle, trickleraw         one byte every `trickle_delay` s (list page / raw file)
  hanglist, hangraw           a few bytes, then silence
  endlessraw, cl10g           a raw body that never ends / claims 10 GB
  weirdtypes, filesnotdict, ansi  odd field types, `files` a list, terminal escapes
  git-{kind}                  a truncated gist whose git_pull_url is GIT_URLS[kind]
  big403-ext                  a file listed over 10 MB that raw refuses, git_pull_url ext::
  any login in `legacy`       one gist holding `hello legacy world`
Anything else: 404.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import orjson
from aiohttp import web

SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
# GitHub's secondary-limit bodies, old and new (each a 403 with remaining > 0, no Retry-After).
SECONDARY_BODIES: dict[str, dict[str, str]] = {
    "secondary403": {"message": SECONDARY_MESSAGE},
    "abuse403": {
        "message": "You have triggered an abuse detection mechanism. Please wait a few minutes"
        " before you try again.",
        "documentation_url": "https://developer.github.com/v3/#abuse-rate-limits",
    },
    "abusedoc403": {
        "message": "Forbidden",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
        "#about-secondary-rate-limits",
    },
    "shouting403": {"message": "YOU HAVE EXCEEDED A SECONDARY RATE-LIMIT"},
    "forbidden403": {
        "message": "Resource not accessible\nby integration",  # a message is printed on one line
        "documentation_url": "https://docs.github.com/rest/gists/gists#list-gists-for-a-user",
    },
}
# Page one's Link header to page two (`{api}`: this server; `{user}`: the user), and the
# path and query page two must be requested at, exactly.
LINKS: dict[str, tuple[str, str]] = {
    "linkcapnext": ('<{api}/p/{user}/gists?page=2>; rel="Next"', "/p/{user}/gists?page=2"),
    "linkcaprel": ('<{api}/p/{user}/gists?page=2>; Rel="next"', "/p/{user}/gists?page=2"),
    "linkupper": ("<{api}/p/{user}/gists?page=2>; REL=NEXT", "/p/{user}/gists?page=2"),
    "linkmulti": ('<{api}/p/{user}/gists?page=2>; rel="next last"', "/p/{user}/gists?page=2"),
    "linkbare": ("<{api}/p/{user}/gists?page=2>;rel=next", "/p/{user}/gists?page=2"),
    "linkspaces": (
        '<{api}/p/{user}/gists?page=2> ; rel = "last  next" ;',
        "/p/{user}/gists?page=2",
    ),
    "linkorder": (
        '<{api}/p/{user}/gists?page=9>; rel="last", <{api}/p/{user}/gists?page=2>;'
        ' title="a, <b>; c"; rel="next"; rel="prev"',
        "/p/{user}/gists?page=2",
    ),
    "linkescaped": (
        '<{api}/p/{user}/a%2Fb/gists?page=2&sort=updated%2Cdesc&q=%7E%20x>; rel="next"',
        "/p/{user}/a%2Fb/gists?page=2&sort=updated%2Cdesc&q=%7E%20x",
    ),
    "linkrelescaped": (  # relative to page one, /users/{user}/gists
        '<../../p/{user}/p2%2Cx?sort=updated%2Cdesc>; rel="next"',
        "/p/{user}/p2%2Cx?sort=updated%2Cdesc",
    ),
}
RETRY_AFTER = {
    "inf": "1e999",
    "nan": "nan",
    "neg": "-5",
    "huge": "99999999999999999999",
    "frac": "1.5",
    "word": "soon",
    "date": "",  # an HTTP date two minutes ahead, made when asked
}
JSON = {"Content-Type": "application/json; charset=utf-8"}
TEXT = {"Content-Type": "text/plain; charset=utf-8"}


@dataclass
class Seen:
    path: str
    host: str
    auth: bool


class HostileGitHub:
    """The hostile fake; `start()` serves it on 127.0.0.1, `alt_url` is the same server under
    another origin (`localhost`), `evil_dir` is where the git URLs point."""

    def __init__(self, evil_dir: str = "/nonexistent-evil-dir") -> None:
        self.evil_dir = evil_dir
        self.stream_cap = 256 * 1024 * 1024  # bytes of any endless body
        self.stream_seconds = 30.0
        self.trickle_delay = 0.2
        self.retry_after_5xx = "1"
        self.flaky_times = 1
        self.n_files = 40
        self.raw_ok = 0
        self.raw_retry_after = "60"
        self.raw_latency = 0.05  # so requests overlap, as over a network
        self.legacy: set[str] = set()
        self.log: list[Seen] = []
        self.written = 0
        self.raw_in_flight = 0
        self.raw_peak = 0
        self._flaky = 0
        self.api_url = self.alt_url = ""
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._track])
        self.app.router.add_get("/users/{user}/gists", self._list)
        self.app.router.add_get("/p/{user}/{tail:.*}", self._later_page)
        self.app.router.add_get("/raw/{kind}/{name}", self._raw)

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.api_url = f"http://127.0.0.1:{port}"
        self.alt_url = f"http://localhost:{port}"
        return self.api_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def requests(self, prefix: str = "/") -> list[Seen]:
        return [seen for seen in self.log if seen.path.startswith(prefix)]

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # The path and query exactly as sent (`path_qs` would decode %2C to a comma).
        self.log.append(Seen(request.raw_path, request.host, "Authorization" in request.headers))
        raw = request.path.startswith("/raw/")
        if raw:
            self.raw_in_flight += 1
            self.raw_peak = max(self.raw_peak, self.raw_in_flight)
        try:
            if raw and self.raw_latency:
                await asyncio.sleep(self.raw_latency)
            return await handler(request)
        finally:
            if raw:
                self.raw_in_flight -= 1

    # -- building blocks -------------------------------------------------------------------------

    def raw_url(self, kind: str, name: str = "f.txt") -> str:
        return f"{self.api_url}/raw/{kind}/{name}"

    def gist(
        self, gid: str, files: list[tuple[str, str]], *, truncated: bool = False, pull: Any = None
    ) -> dict[str, Any]:
        """A list item; `files` are (name, raw kind) pairs, each listed 20 bytes long."""
        return {
            "id": gid,
            "html_url": f"https://gist.github.com/{gid}",
            "git_pull_url": pull if pull is not None else f"https://gist.github.com/{gid}.git",
            "truncated": truncated,
            "public": True,
            "files": {
                name: {
                    "filename": name,
                    "type": "text/plain",
                    "raw_url": self.raw_url(kind, name),
                    "size": 20,
                }
                for name, kind in files
            },
        }

    def page(self, gists: list[dict[str, Any]], link: str | None = None) -> web.Response:
        headers = {"Link": link} if link else {}
        return web.json_response(gists, headers=headers)

    async def endless(
        self,
        request: web.Request,
        piece: bytes,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        length: int | None = None,
        delay: float = 0.0,
        first: bytes = b"",
    ) -> web.StreamResponse:
        """A body of `first` then `piece` again and again, until the cap or the client leaves."""
        resp = web.StreamResponse(status=status, headers=headers or TEXT)
        if length is not None:
            resp.content_length = length
        await resp.prepare(request)
        started = time.monotonic()
        try:
            await resp.write(first)
            self.written += len(first)
            while self.written < self.stream_cap:
                if time.monotonic() - started > self.stream_seconds:
                    break
                await resp.write(piece)
                self.written += len(piece)
                await asyncio.sleep(delay)
        except (ConnectionError, OSError):
            pass  # the client hung up: what we are here to see
        return resp

    def git_url(self, kind: str) -> str | None:
        url = GIT_URLS[kind]
        return None if url is None else url.format(evil=self.evil_dir, alt=self.alt_url)

    # -- the API ---------------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.StreamResponse:
        user = request.match_info["user"]
        api = self.api_url
        one = [self.gist("g1", [("a.txt", "needle")])]
        if user == "normal" or user in self.legacy:
            return self.page(one)
        if user == "secondary429":
            return web.json_response({"message": SECONDARY_MESSAGE}, status=429)
        if user in SECONDARY_BODIES:
            head = {"X-RateLimit-Remaining": "4987", "X-RateLimit-Reset": "1999999999"}
            return web.json_response(SECONDARY_BODIES[user], status=403, headers=head)
        if user.startswith("retry-"):
            value = RETRY_AFTER[user.removeprefix("retry-")]
            value = value or formatdate(time.time() + 120, usegmt=True)
            return web.json_response({"message": "x"}, status=429, headers={"Retry-After": value})
        if user == "resetinf":
            head = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1e999"}
            return web.json_response(
                {"message": "API rate limit exceeded"}, status=403, headers=head
            )
        if user == "flaky5xx":
            self._flaky += 1
            if self._flaky <= self.flaky_times:
                head = {"Retry-After": self.retry_after_5xx}
                return web.json_response({"message": "busy"}, status=503, headers=head)
            return self.page(one)
        if user == "rawlimit":
            kinds = ["needle"] * self.raw_ok + ["limited"] * (self.n_files - self.raw_ok)
            return self.page([self.gist(f"g{i}", [(f"f{i}.txt", k)]) for i, k in enumerate(kinds)])
        if user in ("linkcomma", "linktwo", "linkrel"):
            nxt = {
                "linkcomma": f'<{api}/p/{user}/gists?page=2&sort=updated,desc>; rel="next"',
                "linktwo": f'<{api}/p/{user}/gists?page=2>; rel="next"',
                "linkrel": f'</p/{user}/gists?page=2>; rel="next"',
            }[user]
            resp = self.page([self.gist("g1", [("a.txt", "needle")])])
            if user == "linktwo":
                resp.headers.add("Link", f'<{api}/users/{user}/gists?page=1>; rel="first"')
            resp.headers.add("Link", nxt)
            return resp
        if user in LINKS:
            link = LINKS[user][0].format(api=api, user=user)
            return self.page([self.gist("g1", [("a.txt", "needle")])], link)
        if user == "linkcreds":
            link = f'<{api.replace("//", "//u:sekrit@")}/p/linkcreds/gists?page=2>; rel="next"'
            return self.page(one, link)
        if user == "rawcreds":
            item = self.gist("g1", [("a.txt", "needle")])
            item["files"]["a.txt"]["raw_url"] = self.raw_url("needle").replace("//", "//u:sekrit@")
            return self.page([item])
        if user == "redircreds":
            raise web.HTTPFound(f"{api.replace('//', '//u:sekrit@')}/users/normal/gists")
        if user in ("gziplist", "gzipcutlist"):
            packed = gzip.compress(orjson.dumps(one))
            packed = packed if user == "gziplist" else packed[: len(packed) // 2]
            return web.Response(body=packed, headers={**JSON, "Content-Encoding": "gzip"})
        if user == "shifty":
            first = [self.gist("g0", [("f0.txt", "needle")]), self.gist("g1", [("f1", "needle")])]
            return self.page(first, f'<{api}/p/shifty/gists?page=2>; rel="next"')
        if user in ("linkvary", "linkloop"):
            return await self._later_page(request)
        if user == "linkother":
            link = f'<{self.alt_url}/p/linkother/gists?page=2>; rel="next"'
            return self.page(one, link)
        if user == "redirother":
            raise web.HTTPFound(f"{self.alt_url}/users/normal/gists")
        if user == "redirsame":
            raise web.HTTPFound(f"{api}/users/normal/gists")
        if user == "biglist":
            return await self.endless(request, b" " * 65536, headers=JSON, first=b"[")
        if user == "biglistcl":
            return await self.endless(request, b" " * 65536, headers=JSON, length=1 << 40)
        if user == "bigerror":
            return await self.endless(request, b"x" * 65536, status=500)
        if user == "deepjson":
            return web.Response(body=b"[" * 100_000 + b"]" * 100_000, headers=JSON)
        if user == "deepjson2":
            body = b'[{"id":"x","files":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}]"
            return web.Response(body=body, headers=JSON)
        if user in ENCODED or user in ("trickleraw", "hangraw", "endlessraw", "cl10g", "shortraw"):
            return self.page([self.gist("g1", [("a.txt", user)])])
        if user == "raw403big":
            return self.page([self.gist("g1", [("a.txt", "403big")])])
        if user == "trickle":
            return await self.endless(request, b" ", headers=JSON, delay=self.trickle_delay)
        if user == "hanglist":
            resp = web.StreamResponse(headers=JSON)
            resp.content_length = 100_000
            await resp.prepare(request)
            await resp.write(b'[{"id": "g1", "files": {')
            await asyncio.sleep(self.stream_seconds)
            return resp
        if user == "weirdtypes":
            item = self.gist("g1", [("a.txt", "needle")])
            item["files"]["a.txt"]["size"] = "1e9"
            item["files"]["b.txt"] = {"raw_url": self.raw_url("needle", "b"), "size": 10**30}
            item["files"]["c.txt"] = {"raw_url": self.raw_url("needle", "c"), "filename": 123}
            item["files"]["d.txt"] = {"raw_url": self.raw_url("needle", "d"), "size": True}
            item["html_url"], item["truncated"] = None, "yes"
            return self.page([item])
        if user == "filesnotdict":
            return self.page([{"id": "g1", "files": ["a"]}])
        if user == "ansi":
            evil = self.gist("g\x1b[31mRED", [("evil\x1b]0;pwned\x07\n.txt", "ansi")])
            [entry] = evil["files"].values()
            entry["raw_url"] = self.raw_url("ansi", "ansi.txt")
            return self.page([evil])
        if user.startswith("git-"):
            item = self.gist("g1", [("a.txt", "needle")], truncated=True)
            item["git_pull_url"] = self.git_url(user.removeprefix("git-"))
            return self.page([item])
        if user == "big403-ext":
            item = self.gist("g1", [("big.log", "forbidden")], pull=self.git_url("ext"))
            item["files"]["big.log"]["size"] = 11_000_000
            return self.page([item])
        return web.json_response({"message": "Not Found"}, status=404)

    async def _later_page(self, request: web.Request) -> web.StreamResponse:
        user = request.match_info["user"]
        n = int(request.query.get("page", "1"))
        api = self.api_url
        if user == "shifty":
            second = [self.gist("g1", [("f1", "needle")]), self.gist("g2", [("f2.txt", "needle")])]
            return self.page(second)
        if user == "linkvary":  # a new URL every time, the same gist forever
            link = f'<{api}/p/linkvary/gists?page={n + 1}>; rel="next"'
            return self.page([self.gist("g1", [("a.txt", "needle")])], link)
        if user == "linkloop":
            link = f'<{api}/p/linkloop/gists?page={2 if n == 1 else 1}>; rel="next"'
            return self.page([self.gist(f"g{n}", [(f"{n}.txt", "needle")])], link)
        if user == "linkother":
            return self.page([])
        return self.page([self.gist("g2", [("b.txt", "needle")])])

    # -- the raw host ----------------------------------------------------------------------------

    async def _raw(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind == "needle":
            return web.Response(body=b"hello world\nneedle here\n", headers=TEXT)
        if kind == "ansi":
            return web.Response(body=b"needle \x1b[2J\x1b]0;owned\x07 title\n", headers=TEXT)
        if kind == "limited":
            head = {"Retry-After": self.raw_retry_after} if self.raw_retry_after else {}
            return web.Response(status=429, text="429: Too Many Requests", headers=head)
        if kind == "forbidden":
            return web.Response(status=403, text="403: Forbidden")
        if kind in ENCODED:
            codings, data = ENCODED[kind]
            resp = web.Response(body=data, headers=TEXT)
            for coding in codings.split("|"):  # `|`: one Content-Encoding header each
                resp.headers.add("Content-Encoding", coding)
            return resp
        if kind == "shortraw":  # Content-Length 1000, then 20 bytes and the connection closes
            resp = web.StreamResponse(headers=TEXT)
            resp.content_length = 1000
            await resp.prepare(request)
            await resp.write(b"needle " * 3)
            assert request.transport is not None
            request.transport.close()
            return resp
        if kind == "trickleraw":
            return await self.endless(request, b"z", delay=self.trickle_delay)
        if kind == "hangraw":
            resp = web.StreamResponse(headers=TEXT)
            resp.content_length = 1000
            await resp.prepare(request)
            await resp.write(b"needle " * 10)
            await asyncio.sleep(self.stream_seconds)
            return resp
        if kind == "endlessraw":
            return await self.endless(request, b"a" * 65536)
        if kind == "cl10g":
            return await self.endless(request, b"b" * 65535 + b"\n", length=10 << 30)
        if kind == "403big":
            return await self.endless(request, b"x" * 65536, status=403)
        return web.Response(status=404, text="404: Not Found")


def _deflate(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(wbits=wbits)
    return packer.compress(data) + packer.flush()


_TEXT = b"hello world\n" * 2000 + b"needle in a compressed file\n"
_GZ = gzip.compress(_TEXT)
# Raw kinds with a Content-Encoding: (its value, `|` between two headers; the body). Only the
# `*ok` ones decode whole.
ENCODED: dict[str, tuple[str, bytes]] = {
    "gzip1": ("gzip", gzip.compress(b"needle in a compressed file\n")),
    "gzipok": ("GZip ", _GZ),
    "xgzipok": ("x-gzip", _GZ),
    "gzipmembersok": ("gzip", gzip.compress(_TEXT[:5000]) + gzip.compress(_TEXT[5000:])),
    "deflateok": ("deflate", _deflate(_TEXT, 15)),
    "rawdeflateok": ("deflate", _deflate(_TEXT, -15)),
    "gzip2": ("gzip,gzip", gzip.compress(_GZ)),
    "gzip2headers": ("gzip|gzip", gzip.compress(_GZ)),
    "xenc": ("x-foo", _GZ),
    "brenc": ("br", b"\x1b\x1a\x00\x00needle"),
    "zstdenc": ("zstd", b"\x28\xb5\x2f\xfd needle"),
    "compressenc": ("compress", b"\x1f\x9d needle"),
    "gzipcut": ("gzip", _GZ[: len(_GZ) // 2]),
    "gzipcut8": ("gzip", _GZ[:-8]),  # only the trailer (CRC and size) missing
    "deflatecut": ("deflate", _deflate(_TEXT, 15)[:-6]),
    "rawdeflatecut": ("deflate", _deflate(_TEXT, -15)[:-6]),
    "gzipcorrupt": ("gzip", _GZ[:20] + bytes(range(256)) * 4),
    "gzipheader": ("gzip", b"not gzip at all, needle\n"),
    "gziptrailing": ("gzip", _GZ + b"garbage"),
    "deflatetrailing": ("deflate", _deflate(_TEXT, 15) + b"garbage"),
    "gzipbomb": ("gzip", gzip.compress(b"\0" * (16 << 20), compresslevel=9)),  # > RAW_LIMIT
}


# git_pull_urls a hostile listing may give ({evil}: a directory an attack would write to or
# read from; {alt}: this server under another name).
GIT_URLS: dict[str, str | None] = {
    "ext": "ext::sh -c touch% {evil}/pwned_ext",
    "ext2": "ext::sh -c 'touch {evil}/pwned_ext2'",
    "fileetc": "file:///etc",
    "filerepo": "file://{evil}/localsecret.git",
    "plainpath": "{evil}/localsecret.git",
    "http": "{alt}/capture/gist.git",
    "opt": "--upload-pack=touch {evil}/pwned_opt",
    "ssh": "ssh://127.0.0.1:1/x.git",
    "fd": "fd::3",
    "none": None,
}
