"""The fake GitHub of tests/fake_github.py as a process the benchmarks drive.

On top of `FakeGitHub` it adds what benchmarks need and tests do not: users built from a
JSON spec (thousands of gists, single files of hundreds of MB, GitHub's 10 MB raw limit
lifted), a log of every request (arrival and finish time on the system-wide monotonic
clock, kind, status), and its counters over HTTP:

    GET  /_bench/counters   {"requests": {kind: n}, "user_ids": {login: id},
                             "log": [[arrived, finished, kind, status, path], ...]}
    POST /_bench/reset      forget the requests and the log

The spec: {"latency": s, "raw_latency": s|null, "piece_size": n, "raw_limit": n|null,
"users": [{"login": str, "gists": n, "files": [n, ...], "content": kind, "size": n}]}.
`files` cycles over the gists (`[1, 2]`: 1, 2, 1, 2 ...). Content kinds: "code" (a small
Python file with one `import requests`), "lines" (`size` bytes of numbered text lines,
every 64th with a `Token123`), "aaa" (`size` bytes of lines `"a" * 30 + "!"`, the food of
`(a|aa)+$`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fake_github import FakeFile, FakeGist, FakeGitHub, gist_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BenchFake(FakeGitHub):
    """A `FakeGitHub` that logs every request and answers `/_bench/*` (without latency)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[tuple[float, float, str, int, str]] = []
        # First in the chain: ahead of the fake's latency middleware and its catch-all route.
        self.app.middlewares.insert(0, self._bench)

    @web.middleware
    async def _bench(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/_bench/counters":
            ids = {user.login: user.id for user in self._users.values()}
            body = {"requests": dict(self.requests), "log": self.log, "user_ids": ids}
            return web.json_response(body)
        if request.path == "/_bench/reset":
            self.reset_counters()
            self.log = []
            return web.json_response({"ok": True})
        arrived = time.monotonic()
        path = request.path
        kind = "raw" if path.startswith("/raw/") else "list" if path.endswith("/gists") else "other"
        status = 499  # the client went away before an answer
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            # A raw body is written inside the handler, so "finished" is its last byte sent.
            self.log.append((arrived, time.monotonic(), kind, status, path))


def code_file(login: str, i: int, j: int) -> bytes:
    """About 1.3 KB of Python with exactly one `import requests` line."""
    lines = [
        f'"""Gist {i}, file {j} of {login}: fetch a page and count its words."""',
        "",
        "import collections",
        "import sys",
        "import requests",
        "",
        f"URL = 'https://example.org/{login}/{i}/{j}'",
        "",
        "",
        "def words(text: str) -> collections.Counter:",
        '    """Count the words of `text`, lower-cased."""',
        "    return collections.Counter(w.lower() for w in text.split() if w.isalpha())",
        "",
        "",
        "def main() -> int:",
        "    resp = requests.get(URL, timeout=10)",
        "    resp.raise_for_status()",
        "    for word, n in words(resp.text).most_common(20):",
        "        print(f'{n:6d} {word}')",
        "    return 0",
        "",
    ]
    filler = [
        f"# note {k}: the quick brown fox jumps over the lazy dog ({i}, {j})" for k in range(8)
    ]
    tail = ["", "if __name__ == '__main__':", "    sys.exit(main())", ""]
    return "\n".join(lines + filler + tail).encode()


def lines_block(size: int) -> bytes:
    """`size` bytes of numbered text lines; every 64th line carries a `Token123`-like word."""
    lines = [
        f"{k:08d} Token{k % 1000:03d} found in the quick brown fox\n"
        if k % 64 == 0
        else f"{k:08d} the quick brown fox jumps over the lazy dog\n"
        for k in range(20_000)
    ]
    unit = "".join(lines).encode()  # about 1 MB, repeated
    return (unit * (size // len(unit) + 1))[:size]


def aaa_block(size: int) -> bytes:
    line = b"a" * 30 + b"!\n"
    return (line * (size // len(line) + 1))[:size]


def build(spec: dict[str, Any]) -> BenchFake:
    raw_limit = spec.get("raw_limit")
    fake = BenchFake(
        latency=float(spec.get("latency", 0.0)),
        raw_latency=spec.get("raw_latency"),
        piece_size=int(spec.get("piece_size", 1000)),
        **({"raw_limit": int(raw_limit)} if raw_limit else {}),
    )
    for user in spec["users"]:
        login = user["login"]
        shapes = user.get("files", [1])
        kind = user.get("content", "code")
        size = int(user.get("size", 0))
        shared = None
        if kind == "lines":
            shared = lines_block(size)
        elif kind == "aaa":
            shared = aaa_block(size)
        gists = []
        for i in range(int(user["gists"])):
            files = []
            for j in range(shapes[i % len(shapes)]):
                # Big kinds share one bytes object: raw URLs differ by gist id anyway.
                content = shared if shared is not None else code_file(login, i, j)
                files.append(
                    FakeFile(f"gist{i}_file{j}.{'py' if shared is None else 'txt'}", content)
                )
            gists.append(FakeGist(gist_id(login, i), files, f"gist {i} of {login}"))
        fake.add_user(login, gists)
    return fake


async def serve(spec: dict[str, Any], port: int) -> None:
    fake = build(spec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(await fake.start("127.0.0.1", port), flush=True)
    try:
        await stop.wait()
    finally:
        await fake.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fakeserve", description=__doc__)
    parser.add_argument("--spec", required=True, help="the JSON spec (see above)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(json.loads(args.spec), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
