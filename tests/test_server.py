"""The HTTP server over loopback against the fake GitHub: routes, streams, limits, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate as validate_spec

import gistscan
from gistscan import openapi, server
from gistscan.config import Settings, unrolled_size
from gistscan.errors import ListingError, UsageError
from gistscan.records import encode as real_encode
from gistscan.server import ADMISSION, ServerConfig, make_app
from tests.fake_github import FakeFile, FakeGist, FakeGitHub, gist_id, make_gists

Client = TestClient[web.Request, web.Application]
Serve = Callable[..., Awaitable[Client]]

SEARCH = "/api/v1/users/{}/search"
CATASTROPHIC = "(a|aa)+$"  # Fibonacci backtracking in `regex` on a run of a's that fails


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def serve(aiohttp_client: Any) -> Serve:
    """Start the real app against a fake GitHub; keyword arguments are ServerConfig limits,
    `settings` a dict of Settings overrides. aiohttp's TestServer always serves with
    handler_cancellation=True, as `server.run` does."""

    async def start(
        fake: FakeGitHub, *, settings: dict[str, Any] | None = None, **limits: Any
    ) -> Client:
        scan = Settings(api_url=fake.api_url, retries=1, backoff=0.01, **(settings or {}))
        client: Client = await aiohttp_client(make_app(ServerConfig(settings=scan, **limits)))
        return client

    return start


def add_files(
    fake: FakeGitHub, login: str, contents: list[bytes], **file_options: Any
) -> list[str]:
    """One gist per content; returns the gist ids in list order."""
    gists = [
        FakeGist(gist_id(login, i), [FakeFile(f"file{i}.txt", content, **file_options)])
        for i, content in enumerate(contents)
    ]
    fake.add_user(login, gists)
    return [g.id for g in gists]


def upstream_requests(fake: FakeGitHub) -> int:
    return sum(fake.requests.values()) + len(fake.seen_headers) + len(fake.raw_started)


async def documented(client: Client, resp: aiohttp.ClientResponse) -> Any:
    """Read `resp`, check it against the OpenAPI document the server serves, return its body
    (parsed JSON, a list of NDJSON records, or text)."""
    raw = await resp.read()
    # Every body of ours ends with a newline (a terminal shows the prompt on its own line).
    assert raw.endswith(b"\n"), raw[-40:]
    async with client.get("/openapi.json") as doc_resp:
        doc = await doc_resp.json()
    operation = _operation(doc, resp.method, resp.url.path)
    if operation is None:  # no such route or method: the server's own Problem answer
        described: dict[str, Any] = {"content": {"application/json": {"schema": _ref("Problem")}}}
    else:
        responses = operation["responses"]
        described = responses.get(str(resp.status)) or responses["default"]
    content = described["content"]
    assert resp.content_type in content, (resp.content_type, list(content))
    schema = content[resp.content_type]["schema"]
    for header in described.get("headers", {}):
        assert header in resp.headers, f"{header} missing on {resp.status}"
    if resp.content_type == "application/x-ndjson":
        body: Any = [json.loads(line) for line in raw.decode().splitlines()]
        for record in body:
            _validate(doc, schema, record)
        # docs/records.md: every scan ends with exactly one summary, last.
        assert [r["type"] for r in body].count("summary") == 1 and body[-1]["type"] == "summary"
    elif resp.content_type == "application/json":
        body = json.loads(raw)
        _validate(doc, schema, body)
    else:
        body = raw.decode()
        _validate(doc, schema, body)
    return body


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    # Literal paths first, as the app registers them: named routes win over /{username}.
    for template in sorted(doc["paths"], key=lambda t: t.count("{")):
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            operation: dict[str, Any] | None = doc["paths"][template].get(method.lower())
            return operation
    return None


def _validate(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    # The schema sits in a document with the components, so its $refs resolve.
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(instance)


async def stream_lines(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in resp.content]


async def first_record(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(await resp.content.readline())
    return record


async def eventually(check: Callable[[], bool], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


PACKAGE = os.path.dirname(gistscan.__file__) + os.sep  # whatever the checkout is called


def gistscan_tasks() -> list[asyncio.Task[Any]]:
    """Tasks running code of the gistscan package anywhere in their await chain."""
    found = []
    for task in asyncio.all_tasks():
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            if frame is not None and frame.f_code.co_filename.startswith(PACKAGE):
                found.append(task)
                break
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return found


def catastrophic_files(n: int, *, run: int = 34) -> list[bytes]:
    return [(b"a" * run + b"!\n") for _ in range(n)]


# -- the small routes ---------------------------------------------------------------------------


async def test_ping_healthz_openapi(fake: FakeGitHub, serve: Serve) -> None:
    """The small routes answer without asking GitHub anything."""
    client = await serve(fake)
    resp = await client.get("/ping")
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert await documented(client, resp) == "pong\n"
    resp = await client.get("/healthz")
    assert resp.status == 200 and await documented(client, resp) == {"status": "ok"}
    resp = await client.get("/openapi.json")
    assert resp.status == 200 and (await documented(client, resp))["openapi"].startswith("3.1")
    assert upstream_requests(fake) == 0


RESERVED = ("ping", "healthz", "readyz", "metrics", "docs")


async def test_named_routes_win_over_usernames(fake: FakeGitHub, serve: Serve) -> None:
    """The reserved routes answer as themselves even when GitHub users have those names,
    cost no upstream request, and such users are still listed at /api/v1/users/NAME/gists."""
    for name in RESERVED:
        fake.add_user(name, make_gists(name, 2))
    client = await serve(fake)
    assert await (await client.get("/ping")).text() == "pong\n"
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    assert await (await client.get("/readyz")).json() == {"status": "ok"}
    resp = await client.get("/metrics")
    assert resp.status == 200 and "gistscan_searches_running" in await resp.text()
    resp = await client.get("/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert upstream_requests(fake) == 0
    for name in RESERVED:
        resp = await client.get(f"/api/v1/users/{name}/gists")
        assert resp.status == 200
        items = await documented(client, resp)
        assert [item["owner"]["login"] for item in items] == [name, name]
    resp = await client.get("/octocat-not-here")
    assert resp.status == 404  # a single segment that is no named route is a user


async def test_unknown_routes_and_methods_are_json(fake: FakeGitHub, serve: Serve) -> None:
    """404 and 405 come as JSON problems too, 405 with Allow."""
    client = await serve(fake)
    resp = await client.get("/api/v1/nothing/here")
    assert resp.status == 404
    assert (await documented(client, resp))["error"] == "route_not_found"
    resp = await client.post("/ping")
    assert resp.status == 405 and resp.headers["Allow"] == "GET"
    assert (await documented(client, resp))["error"] == "method_not_allowed"
    resp = await client.delete("/api/v1/search")
    assert resp.status == 405 and "POST" in resp.headers["Allow"]
    assert upstream_requests(fake) == 0


# -- the streaming search -----------------------------------------------------------------------


async def test_stream_gives_records_then_summary(fake: FakeGitHub, serve: Serve) -> None:
    """GET .../search streams the records of docs/records.md as NDJSON, the summary last."""
    fake.add_user("alice", make_gists("alice", 3, 2))
    client = await serve(fake)
    resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    records = await documented(client, resp)
    assert [r["type"] for r in records] == ["match"] * 6 + ["summary"]
    assert {r["filename"] for r in records[:-1]} == {
        f"gist{i}_file{j}.txt" for i in range(3) for j in range(2)
    }
    match = records[0]
    assert match["line_number"] == 2 and match["column"] == 5 and match["match"] == "quick"
    assert match["line"] == "the quick brown fox"
    summary = records[-1]
    assert summary["gists"] == 3 and summary["files"] == 6 and summary["matches"] == 6
    assert summary["complete"] is True and summary["errors"] == 0


@pytest.mark.parametrize(
    ("params", "matches", "complete"),
    [
        ({"pattern": "QUICK"}, 0, True),
        ({"pattern": "QUICK", "ignore_case": "true"}, 2, True),
        ({"pattern": "QUICK", "ignore_case": "1"}, 2, True),
        ({"pattern": "o.er"}, 2, True),
        ({"pattern": "o.er", "fixed_strings": "true"}, 0, True),
        ({"pattern": "o", "max_matches": "3"}, 3, False),
    ],
)
async def test_stream_options(
    fake: FakeGitHub, serve: Serve, params: dict[str, str], matches: int, complete: bool
) -> None:
    """ignore_case, fixed_strings and max_matches do what grep users expect."""
    fake.add_user("alice", make_gists("alice", 2))
    client = await serve(fake, settings={"concurrency": 1})
    resp = await client.get(SEARCH.format("alice"), params=params)
    records = await documented(client, resp)
    summary = records[-1]
    assert summary["matches"] == matches == len(records) - 1
    assert summary["complete"] is complete


async def test_records_arrive_while_the_scan_goes_on(make_fake: Any, serve: Serve) -> None:
    """The first record is read before the fake has even started serving the last file."""
    fake = await make_fake(raw_latency=0.2)
    add_files(fake, "slowpoke", [b"needle\n"] * 8)
    client = await serve(fake, settings={"concurrency": 2})
    started = time.monotonic()
    resp = await client.get(SEARCH.format("slowpoke"), params={"pattern": "needle"})
    assert resp.status == 200
    first = json.loads(await resp.content.readline())
    first_at = time.monotonic()
    files_started_then = len(fake.raw_started)
    rest = await stream_lines(resp)
    assert first["type"] == "match"
    assert rest[-1]["type"] == "summary" and rest[-1]["matches"] == 8
    assert files_started_then < 8
    last_file_started = max(t for t, _ in fake.raw_started)
    assert first_at < last_file_started
    assert first_at - started < 0.6  # about one raw latency, not four


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (None, 404, "not_found"),
        ("rate_limited", 429, "rate_limited"),
        ("rate_limited_429", 429, "rate_limited"),
        ("500", 502, "upstream_error"),
        ("503", 502, "upstream_error"),
        ("reset", 502, "upstream_error"),
        ("truncated_json", 502, "invalid_response"),
        ("not_array", 502, "invalid_response"),
    ],
)
@pytest.mark.parametrize("how", ["get", "post", "post-ndjson"])
async def test_listing_failure_is_a_status_before_streaming(
    fake: FakeGitHub, serve: Serve, fault: str | None, status: int, code: str, how: str
) -> None:
    """An unknown user, a rate limit or a failing GitHub is a real status, never a 200."""
    if fault is not None:
        fake.add_user("alice", make_gists("alice", 2))
        fake.set_list_fault("alice", fault)
    client = await serve(fake)
    if how == "get":
        resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
    else:
        headers = {"Accept": "application/x-ndjson"} if how == "post-ndjson" else {}
        body = {"username": "alice", "pattern": "quick"}
        resp = await client.post("/api/v1/search", json=body, headers=headers)
    assert resp.status == status
    problem = await documented(client, resp)
    assert problem["status"] == "error" and problem["error"] == code and problem["message"]
    if status == 429:
        retry_after = int(resp.headers["Retry-After"])
        assert retry_after == 30 if fault == "rate_limited_429" else 55 <= retry_after <= 61
    assert fake.raw_started == []


async def test_fault_after_the_stream_started_is_a_record(fake: FakeGitHub, serve: Serve) -> None:
    """Once the 200 is out, a failing later list page arrives as an error record."""
    fake.add_user("alice", make_gists("alice", 101))  # two pages of 100
    fake.set_page_fault("alice", 2, "502")
    client = await serve(fake)
    resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
    assert resp.status == 200
    records = await documented(client, resp)
    errors = [r for r in records if r["type"] == "error"]
    assert errors and errors[-1]["code"] == "upstream_error" and errors[-1]["gist_id"] is None
    assert records[-1]["type"] == "summary" and records[-1]["complete"] is False


async def test_disconnect_stops_every_download(make_fake: Any, serve: Serve) -> None:
    """A client that hangs up mid-stream cancels its scan: no download or task is left."""
    fake = await make_fake(piece_size=4096)
    # 50 pieces 0.2 s apart: 10 s a file, the first match (after the 8 KiB binary sniff)
    # within a few pieces.
    # Only the first file matches: after it nothing is written, so only the cancellation of
    # the handler (not a failing write) can notice the hang-up.
    add_files(fake, "bob", [b"quick\n" + b"x" * 200_000] + [b"x" * 200_000] * 5, fault="slow")
    client = await serve(fake, settings={"concurrency": 3, "chunk_size": 4096})
    resp = await client.get(SEARCH.format("bob"), params={"pattern": "quick"})
    assert resp.status == 200
    assert (await first_record(resp))["type"] == "match"
    assert fake.raw_in_flight == 3
    assert gistscan_tasks()  # the scan is visible while it runs
    resp.close()  # hang up
    assert await eventually(lambda: fake.raw_in_flight == 0), fake.raw_in_flight
    assert await eventually(lambda: not gistscan_tasks()), gistscan_tasks()
    assert client.app[ADMISSION].active == 0
    assert len(fake.raw_started) == 3  # nothing new was started after the hang-up


async def test_failing_write_also_stops_the_scan(
    make_fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Served without handler_cancellation, the next write after a hang-up fails and the
    scan is closed all the same."""
    fake = await make_fake(piece_size=4096)
    add_files(fake, "bob", [b"quick\n" * 40_000] * 3, fault="slow")  # a match on every line
    settings = Settings(api_url=fake.api_url, chunk_size=4096)
    app = make_app(ServerConfig(settings=settings))
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with caplog.at_level(logging.INFO, logger="gistscan.server"):
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}{SEARCH.format('bob')}?pattern=quick"
                resp = await session.get(url)
                assert json.loads(await resp.content.readline())["type"] == "match"
                resp.close()
                assert await eventually(lambda: fake.raw_in_flight == 0), fake.raw_in_flight
                assert await eventually(lambda: app[ADMISSION].active == 0)
        assert any("client disconnected" in r.getMessage() for r in caplog.records)
    finally:
        await runner.cleanup()


async def test_ping_stays_fast_during_a_catastrophic_pattern(make_fake: Any, serve: Serve) -> None:
    """Another client's backtracking pattern never stalls the loop: /ping answers at once."""
    fake = await make_fake()
    add_files(fake, "carol", catastrophic_files(2))
    client = await serve(fake, settings={"regex_timeout": 2.0}, matching_threads=2)
    resp = await client.get(SEARCH.format("carol"), params={"pattern": CATASTROPHIC})
    assert resp.status == 200
    scan = asyncio.create_task(stream_lines(resp))
    assert await eventually(lambda: len(fake.raw_started) >= 2)
    await asyncio.sleep(0.2)  # both matching threads are burning now
    latencies = []
    for _ in range(5):
        started = time.monotonic()
        pong = await client.get("/ping")
        assert await pong.text() == "pong\n"
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.02)
    assert not scan.done(), "the pattern should still be running while we ping"
    assert max(latencies) < 0.1, latencies
    records = await scan
    assert [r["code"] for r in records if r["type"] == "error"] == ["regex_timeout"] * 2
    assert records[-1]["complete"] is False


async def test_search_deadline_ends_a_slow_search(make_fake: Any, serve: Serve) -> None:
    """The per-search deadline stops a search whose files are each within their budget."""
    fake = await make_fake()
    add_files(fake, "dave", catastrophic_files(2))
    # The budget is process CPU time: two threads spend 1.5 s of it in about 0.75 s.
    client = await serve(
        fake, settings={"regex_timeout": 1.5}, search_deadline=0.4, matching_threads=2
    )
    started = time.monotonic()
    resp = await client.get(SEARCH.format("dave"), params={"pattern": CATASTROPHIC})
    records = await documented(client, resp)
    assert time.monotonic() - started < 1.5
    assert records[-2]["type"] == "error" and records[-2]["code"] == "deadline_exceeded"
    assert records[-1]["type"] == "summary" and records[-1]["complete"] is False


# -- POST /api/v1/search ------------------------------------------------------------------------


async def test_post_gives_the_challenge_answer(fake: FakeGitHub, serve: Serve) -> None:
    """matches lists each matching gist's URL once, in order of first match; details has
    the match records without type."""
    gists = [
        FakeGist(
            gist_id("erin", 0),
            [FakeFile("a.txt", b"needle\nneedle\n"), FakeFile("b.txt", b"needle")],
        ),
        FakeGist(gist_id("erin", 1), [FakeFile("c.txt", b"hay\n")]),
        FakeGist(gist_id("erin", 2), [FakeFile("d.txt", b"more needle\n")]),
    ]
    fake.add_user("erin", gists)
    client = await serve(fake)
    resp = await client.post("/api/v1/search", json={"username": "erin", "pattern": "needle"})
    assert resp.status == 200 and resp.content_type == "application/json"
    answer = await documented(client, resp)
    assert answer["status"] == "success"
    assert answer["username"] == "erin" and answer["pattern"] == "needle"
    url = "https://gist.github.com/erin/{}".format
    assert sorted(answer["matches"]) == sorted([url(gists[0].id), url(gists[2].id)])
    first_seen = list(dict.fromkeys(url(d["gist_id"]) for d in answer["details"]))
    assert answer["matches"] == first_seen
    assert len(answer["details"]) == 4 and all("type" not in d for d in answer["details"])
    assert answer["errors"] == []
    assert answer["summary"]["matches"] == 4 and "type" not in answer["summary"]


async def test_post_with_ndjson_accept_streams(fake: FakeGitHub, serve: Serve) -> None:
    """Accept: application/x-ndjson turns the POST answer into the GET route's stream."""
    fake.add_user("alice", make_gists("alice", 3))
    client = await serve(fake)
    body = {"username": "alice", "pattern": "lazy", "ignore_case": True}
    resp = await client.post(
        "/api/v1/search", json=body, headers={"Accept": "application/x-ndjson"}
    )
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    posted = await documented(client, resp)
    params = {"pattern": "lazy", "ignore_case": "true"}
    resp = await client.get(SEARCH.format("alice"), params=params)
    got = await documented(client, resp)

    def matches(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted((r for r in records if r["type"] == "match"), key=json.dumps)

    assert matches(posted) == matches(got) and len(matches(got)) == 3


async def test_buffered_answer_is_capped(fake: FakeGitHub, serve: Serve) -> None:
    """A JSON answer holds at most max_buffered_matches matches; a stream is not capped."""
    fake.add_user("alice", make_gists("alice", 6))
    client = await serve(fake, max_buffered_matches=3, settings={"concurrency": 1})
    body = {"username": "alice", "pattern": "quick"}
    answer = await documented(client, await client.post("/api/v1/search", json=body))
    assert len(answer["details"]) == 3 and answer["summary"]["complete"] is False
    answer = await documented(
        client, await client.post("/api/v1/search", json={**body, "max_matches": 2})
    )
    assert len(answer["details"]) == 2
    streamed = await documented(
        client,
        await client.post("/api/v1/search", json=body, headers={"Accept": "application/x-ndjson"}),
    )
    assert streamed[-1]["matches"] == 6 and streamed[-1]["complete"] is True


# -- economy: one session, one cache ------------------------------------------------------------


async def test_repeated_search_costs_a_304_and_no_download(fake: FakeGitHub, serve: Serve) -> None:
    """Within the TTL a second search asks GitHub nothing; after it, only a free 304."""
    fake.add_user("alice", make_gists("alice", 3, 2))
    client = await serve(fake, cache_page_ttl=0.3)
    resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
    assert (await documented(client, resp))[-1]["matches"] == 6
    assert fake.requests == {"list": 1, "raw": 6}

    fake.reset_counters()
    resp = await client.get(SEARCH.format("alice"), params={"pattern": "lazy"})
    assert (await documented(client, resp))[-1]["matches"] == 6
    assert fake.requests == {} and fake.raw_started == []

    await asyncio.sleep(0.35)  # the list page is now stale: revalidated with If-None-Match
    fake.reset_counters()
    answer = await documented(
        client, await client.post("/api/v1/search", json={"username": "alice", "pattern": "dog"})
    )
    assert answer["summary"]["matches"] == 6
    assert fake.requests == {"list_304": 1} and fake.raw_started == []
    assert fake.seen_headers[0].get("If-None-Match")


# -- abuse limits -------------------------------------------------------------------------------


async def test_too_many_searches_get_503(make_fake: Any, serve: Serve) -> None:
    """Past max_concurrent_searches a search is refused with 503 and Retry-After."""
    fake = await make_fake(piece_size=100)
    add_files(fake, "bob", [b"x" * 10_000], fault="slow")
    fake.add_user("alice", make_gists("alice", 1))
    client = await serve(fake, max_concurrent_searches=1, busy_retry_after=3)
    running = await client.get(SEARCH.format("bob"), params={"pattern": "quick"})
    assert running.status == 200
    for resp in (
        await client.get(SEARCH.format("alice"), params={"pattern": "quick"}),
        await client.post("/api/v1/search", json={"username": "alice", "pattern": "quick"}),
    ):
        assert resp.status == 503 and resp.headers["Retry-After"] == "3"
        assert (await documented(client, resp))["error"] == "too_many_searches"
    assert fake.requests["list"] == 1  # the refused searches never reached GitHub
    running.close()
    assert await eventually(lambda: client.app[ADMISSION].active == 0)
    resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
    assert resp.status == 200 and (await documented(client, resp))[-1]["matches"] == 1


def bad(
    case: str,
    method: str,
    path: str,
    request: dict[str, Any],
    code: str,
    words: str,
    status: int = 400,
) -> Any:
    """One malformed request: what is sent, and the error code and words expected back."""
    return pytest.param(method, path, request, status, code, words, id=case)


def query(**params: str) -> dict[str, Any]:
    return {"params": params}


def fields(**values: Any) -> dict[str, Any]:
    """A POST body: a valid search with `values` changed (OMIT: left out)."""
    body = {"username": "octocat", "pattern": "x", **values}
    return {"json": {k: v for k, v in body.items() if v is not OMIT}}


def raw(data: bytes, **headers: str) -> dict[str, Any]:
    """A POST body sent as is, as JSON (Content-Type: application/json)."""
    return {"data": data, "headers": {"Content-Type": "application/json", **headers}}


OMIT = object()
S = SEARCH.format("octocat")
P = "/api/v1/search"
LOGIN = "invalid GitHub user name"

BAD_INPUT = [
    # GET /api/v1/users/{username}/search
    bad("no pattern", "GET", S, {}, "invalid_pattern", "missing required parameter 'pattern'"),
    bad("empty pattern", "GET", S, query(pattern=""), "invalid_pattern", "the pattern is empty"),
    bad("long pattern", "GET", S, query(pattern="a" * 1001), "invalid_pattern", "1001 characters"),
    bad("bad regex", "GET", S, query(pattern="(unclosed"), "invalid_pattern", "does not compile"),
    bad("huge repeat", "GET", S, query(pattern="a{100000000}"), "invalid_pattern", "unroll"),
    bad("nested repeats", "GET", S, query(pattern="((a{99}){99}){99}"), "invalid_pattern",
        "unroll"),
    bad("login dot", "GET", SEARCH.format("octo.cat"), query(pattern="x"), "invalid_username",
        LOGIN),
    bad("login 40 chars", "GET", SEARCH.format("a" * 40), query(pattern="x"), "invalid_username",
        LOGIN),
    bad("login cyrillic", "GET", SEARCH.format("octoc\u0430t"), query(pattern="x"),
        "invalid_username", LOGIN),
    bad("login emoji", "GET", SEARCH.format("\U0001f600"), query(pattern="x"), "invalid_username",
        LOGIN),
    bad("bool word", "GET", S, query(pattern="x", ignore_case="yes"), "invalid_request",
        "ignore_case must be true, false, 1 or 0"),
    bad("bool case", "GET", S, query(pattern="x", fixed_strings="True"), "invalid_request",
        "fixed_strings must be true, false, 1 or 0, not 'True'"),
    bad("max zero", "GET", S, query(pattern="x", max_matches="0"), "invalid_request",
        "max_matches must be from 1"),
    bad("max negative", "GET", S, query(pattern="x", max_matches="-1"), "invalid_request",
        "max_matches must be an integer"),
    bad("max fullwidth", "GET", S, query(pattern="x", max_matches="\uff15"), "invalid_request",
        "max_matches must be an integer"),
    bad("max too big", "GET", S, query(pattern="x", max_matches="4294967296"), "invalid_request",
        "max_matches must be from 1 to 2147483647"),
    bad("unknown param", "GET", S, query(pattern="x", colour="red"), "invalid_request",
        "unknown parameter 'colour'"),
    bad("repeated param", "GET", S, {"params": [("pattern", "a"), ("pattern", "b")]},
        "invalid_pattern", "'pattern' is given more than once"),
    # POST /api/v1/search
    bad("bad json", "POST", P, raw(b'{"username": "octocat",'), "invalid_json", "not valid JSON"),
    bad("empty body", "POST", P, raw(b""), "invalid_json", "the body is empty"),
    bad("array body", "POST", P, {"json": ["octocat", "x"]}, "invalid_request",
        "must be a JSON object, not an array"),
    bad("string body", "POST", P, {"json": "octocat"}, "invalid_request",
        "must be a JSON object, not a string"),
    bad("not utf-8", "POST", P, raw(b'{"username": "octo\xff", "pattern": "x"}'), "invalid_json",
        "not UTF-8"),
    bad("NaN", "POST", P, raw(b'{"username": "octocat", "pattern": "x", "max_matches": NaN}'),
        "invalid_json", "NaN is not JSON"),
    bad("bad gzip", "POST", P, raw(b"not gzip", **{"Content-Encoding": "gzip"}),
        "invalid_json", "the body could not be decoded"),
    bad("deep nesting", "POST", P, raw(b"[" * 20000 + b"]" * 20000), "invalid_json",
        "nested too deeply"),
    bad("huge body", "POST", P, fields(pattern="x" * 70_000), "body_too_large",
        "larger than the limit of 65536 bytes", status=413),
    bad("duplicate key", "POST", P, raw(b'{"username": "octocat", "pattern": "a", "pattern": "b"}'),
        "invalid_request", "'pattern' is given more than once"),
    bad("no username", "POST", P, fields(username=OMIT), "invalid_username",
        "missing required field 'username'"),
    bad("no pattern field", "POST", P, fields(pattern=OMIT), "invalid_pattern",
        "missing required field 'pattern'"),
    bad("unknown field", "POST", P, fields(regex="y"), "invalid_request", "unknown field 'regex'"),
    bad("username number", "POST", P, fields(username=42), "invalid_username",
        "'username' must be a string, not an integer"),
    bad("username newline", "POST", P, fields(username="octocat\n"), "invalid_username", LOGIN),
    bad("username NUL", "POST", P, fields(username="octo\u0000cat"), "invalid_username", LOGIN),
    bad("pattern null", "POST", P, fields(pattern=None), "invalid_pattern",
        "'pattern' must be a string, not null"),
    bad("pattern list", "POST", P, fields(pattern=["x"]), "invalid_pattern",
        "'pattern' must be a string, not an array"),
    bad("lone surrogate", "POST", P, raw(b'{"username": "octocat", "pattern": "\\ud800"}'),
        "invalid_pattern", "lone surrogate"),
    bad("bool as string", "POST", P, fields(ignore_case="true"), "invalid_request",
        "'ignore_case' must be a boolean, not a string"),
    bad("bool as int", "POST", P, fields(fixed_strings=1), "invalid_request",
        "'fixed_strings' must be a boolean, not an integer"),
    bad("max float", "POST", P, fields(max_matches=1.5), "invalid_request",
        "'max_matches' must be an integer, not a number"),
    bad("max bool", "POST", P, fields(max_matches=True), "invalid_request",
        "'max_matches' must be an integer, not a boolean"),
    bad("max huge", "POST", P, fields(max_matches=10**30), "invalid_request",
        "max_matches must be from 1 to 2147483647"),
    bad("max zero json", "POST", P, fields(max_matches=0), "invalid_request",
        "max_matches must be from 1"),
    bad("inline VERSION1", "POST", P, fields(pattern="a(?V1)b"), "invalid_pattern",
        "does not compile"),
    bad("bad range json", "POST", P, fields(pattern="[z-a]"), "invalid_pattern",
        "does not compile"),
    # GET /{username}
    bad("page zero", "GET", "/octocat", query(page="0"), "invalid_request", "page must be from 1"),
    bad("per_page 101", "GET", "/octocat", query(per_page="101"), "invalid_request",
        "per_page must be from 1 to 100"),
    bad("per_page word", "GET", "/octocat", query(per_page="ten"), "invalid_request",
        "per_page must be an integer"),
    bad("page twice", "GET", "/octocat", {"params": [("page", "1"), ("page", "2")]},
        "invalid_request", "'page' is given more than once"),
    bad("list unknown param", "GET", "/octocat", query(since="2020-01-01"), "invalid_request",
        "unknown parameter 'since'"),
    bad("list underscore login", "GET", "/octo_cat", {}, "invalid_request", LOGIN),
    # A login has no dot: a single segment with one is a file nobody serves, not a user.
    bad("list dot", "GET", "/octo.cat", {}, "not_found", "nothing at /octo.cat", status=404),
    bad("api list dot", "GET", "/api/v1/users/octo.cat/gists", {}, "invalid_request", LOGIN),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code", "words"), BAD_INPUT)
async def test_bad_input_is_refused_before_any_request(
    fake: FakeGitHub,
    serve: Serve,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    words: str,
) -> None:
    """Each malformed request gets a 4xx JSON error naming the problem; GitHub hears nothing."""
    fake.add_user("octocat", make_gists("octocat", 1))
    client = await serve(fake)
    resp = await client.request(method, path, **kwargs)
    assert resp.status == status
    problem = await documented(client, resp)
    assert problem["error"] == code
    assert words in problem["message"], problem["message"]
    assert upstream_requests(fake) == 0


def test_bad_input_table_is_big_enough() -> None:
    """The issue asks for at least 25 malformed requests."""
    assert len(BAD_INPUT) >= 25


@pytest.mark.parametrize(
    "pattern",
    [
        "import requests",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}",
        r"AKIA[0-9A-Z]{16}",
        r"(?x) \b [A-Z]{2,} \b  # verbose",
        r"x{1,100000000}",  # a large maximum is not unrolled
        "a" * 1000,
    ],
)
def test_ordinary_patterns_pass_the_size_check(pattern: str) -> None:
    """The unrolled-size guard refuses blow-ups, not everyday patterns."""
    assert unrolled_size(pattern) <= ServerConfig().max_pattern_unrolled


@pytest.mark.parametrize(
    "pattern",
    [
        "a{100000}",
        "[ab]{10000000}",
        "(?:a{1000}){1000}",
        r"\b{9999999}",
        "(?:){9999999}",
        "(?x)#[\n a{99999}]",
        "(?V1)[[a]{99999}]",
        "(a{1000}[)]){1000}",
    ],
)
def test_blow_up_patterns_fail_the_size_check(pattern: str) -> None:
    """Each of these makes `regex` build a huge program (seconds, gigabytes) when compiled."""
    assert unrolled_size(pattern) > ServerConfig().max_pattern_unrolled


# -- GET /{username} ------------------------------------------------------------------------------


async def test_user_gists_follows_every_page(fake: FakeGitHub, serve: Serve) -> None:
    """Without page/per_page: GitHub's gist objects of every page, in order, then cached."""
    gists = make_gists("frank", 230)
    fake.add_user("frank", gists)
    client = await serve(fake)
    resp = await client.get("/frank")
    assert resp.status == 200
    items = await documented(client, resp)
    assert [item["id"] for item in items] == [g.id for g in gists]
    assert items[0]["owner"]["login"] == "frank"
    assert "raw_url" in next(iter(items[0]["files"].values()))
    assert fake.requests == {"list": 3}
    fake.reset_counters()
    assert len(await (await client.get("/frank")).json()) == 230
    assert fake.requests == {}  # cached 60 s


@pytest.mark.parametrize(
    ("params", "indexes"),
    [
        ({"page": "2", "per_page": "10"}, range(10, 20)),
        ({"per_page": "5"}, range(5)),
        ({"page": "3"}, range(60, 90)),  # GitHub's default of 30 a page
        ({"page": "99", "per_page": "100"}, range(0)),
    ],
)
async def test_user_gists_one_page(
    fake: FakeGitHub, serve: Serve, params: dict[str, str], indexes: range
) -> None:
    """With page/per_page: just that page, as GitHub pages it."""
    gists = make_gists("frank", 120)
    fake.add_user("frank", gists)
    client = await serve(fake)
    resp = await client.get("/frank", params=params)
    assert resp.status == 200
    assert [item["id"] for item in await documented(client, resp)] == [gists[i].id for i in indexes]
    assert fake.requests == {"list": 1}


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (None, 404, "not_found"),
        ("500", 502, "upstream_error"),
        ("reset", 502, "upstream_error"),
        ("not_array", 502, "invalid_response"),
        ("truncated_json", 502, "invalid_response"),
        ("rate_limited", 429, "rate_limited"),
    ],
)
async def test_user_gists_errors(
    fake: FakeGitHub, serve: Serve, fault: str | None, status: int, code: str
) -> None:
    """Upstream failures have the classic shape, {"error": code, "message": ...}, on both
    routes of the list."""
    if fault is not None:
        fake.add_user("grace", make_gists("grace", 2))
        fake.set_list_fault("grace", fault)
    client = await serve(fake)
    for path, params in (
        ("/grace", {}),
        ("/grace", {"page": "1"}),
        ("/api/v1/users/grace/gists", {}),
    ):
        resp = await client.get(path, params=params)
        assert resp.status == status
        body = await documented(client, resp)
        assert set(body) == {"error", "message"}
        assert body["error"] == code and body["message"]
        if status == 429:
            assert int(resp.headers["Retry-After"]) > 0


@pytest.mark.parametrize("path", ["/favicon.ico", "/robots.txt", "/apple-touch-icon.png", "/a.b"])
async def test_a_single_segment_with_a_dot_is_no_user(
    fake: FakeGitHub, serve: Serve, path: str
) -> None:
    """GitHub logins have no dot: /favicon.ico is a file nobody serves here (404 not_found,
    the list's error shape), not a user name to refuse (400); GitHub is not asked."""
    client = await serve(fake)
    resp = await client.get(path)
    assert resp.status == 404
    body = await documented(client, resp)
    assert body == {"error": "not_found", "message": f"nothing at {path}"}
    assert upstream_requests(fake) == 0
    resp = await client.get("/api/v1/users/a.b/gists")  # the API route still says why
    assert resp.status == 400 and LOGIN in (await resp.json())["message"]


async def test_user_gists_later_page_fails(fake: FakeGitHub, serve: Serve) -> None:
    """A failure on any page fails the whole list: never a partial list with a 200."""
    fake.add_user("grace", make_gists("grace", 150))
    fake.set_page_fault("grace", 2, "503")
    client = await serve(fake)
    resp = await client.get("/grace")
    assert resp.status == 502 and (await documented(client, resp))["error"] == "upstream_error"


async def test_user_gists_too_many_pages(fake: FakeGitHub, serve: Serve) -> None:
    """A list longer than max_list_pages is refused (too_large), not held in memory."""
    fake.add_user("heidi", make_gists("heidi", 250))
    client = await serve(fake, max_list_pages=2)
    resp = await client.get("/heidi")
    assert resp.status == 502
    problem = await documented(client, resp)
    assert problem["error"] == "too_large" and "page=" in problem["message"]
    assert fake.requests == {"list": 2}  # page two's Link showed there was more
    resp = await client.get("/heidi", params={"page": "3", "per_page": "100"})
    assert resp.status == 200 and len(await documented(client, resp)) == 50


# -- faults of the server itself ------------------------------------------------------------------


async def test_unexpected_exception_is_a_logged_json_500(
    fake: FakeGitHub,
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug gives a JSON 500 with no traceback in the answer; the traceback is logged."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(server, "first_page", broken)
    client = await serve(fake)
    with caplog.at_level(logging.ERROR, logger="gistscan.server"):
        resp = await client.get(SEARCH.format("octocat"), params={"pattern": "x"})
        text = await resp.text()
    assert resp.status == 500
    assert json.loads(text)["error"] == "internal_error"
    assert "secret" not in text and "Traceback" not in text
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


async def test_fault_mid_stream_cuts_the_body(
    fake: FakeGitHub,
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the 200, a server fault cuts the chunked body so the client sees it broken."""
    fake.add_user("alice", make_gists("alice", 3))
    calls = []

    def encode(record: Any) -> bytes:
        calls.append(record)
        if len(calls) == 2:
            raise RuntimeError("encoder bug")
        return real_encode(record)

    monkeypatch.setattr(server, "encode", encode)
    client = await serve(fake)
    with caplog.at_level(logging.ERROR, logger="gistscan.server"):
        resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert any("encoder bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


# -- configuration --------------------------------------------------------------------------------


def test_config_from_env() -> None:
    """Every variable of ServerConfig.ENV reaches its setting; unset ones keep defaults."""
    config = ServerConfig.from_env(
        {
            "GITHUB_TOKEN": "t0ken",
            "GISTSCAN_API_URL": "http://127.0.0.1:9999",
            "GISTSCAN_CONCURRENCY": "4",
            "GISTSCAN_REGEX_TIMEOUT": "none",
            "GISTSCAN_MAX_CONCURRENT_SEARCHES": "2",
            "GISTSCAN_SEARCH_DEADLINE": "12.5",
            "GISTSCAN_MAX_PATTERN_LENGTH": "200",
            "GISTSCAN_CACHE_PAGE_TTL": "30",
            "GISTSCAN_MATCHING_THREADS": "3",
            "UNRELATED": "x",
        }
    )
    assert config.settings.token == "t0ken" and config.settings.api_url == "http://127.0.0.1:9999"
    assert config.settings.concurrency == 4 and config.settings.regex_timeout is None
    assert config.max_concurrent_searches == 2 and config.search_deadline == 12.5
    assert config.scan_settings.deadline == 12.5
    assert config.max_pattern_length == 200 and config.cache_page_ttl == 30
    assert config.matching_threads == 3
    assert config.max_buffered_matches == ServerConfig().max_buffered_matches
    assert ServerConfig.from_env({}) == ServerConfig()
    assert set(server.ENV) >= {"GITHUB_TOKEN", "GISTSCAN_API_URL"}


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("GISTSCAN_MAX_CONCURRENT_SEARCHES", "many", "GISTSCAN_MAX_CONCURRENT_SEARCHES='many'"),
        ("GISTSCAN_MAX_CONCURRENT_SEARCHES", "0", "GISTSCAN_MAX_CONCURRENT_SEARCHES"),
        ("GISTSCAN_MAX_PATTERN_LENGTH", "5000", "at most 1000"),
        ("GISTSCAN_MAX_PATTERN_UNROLLED", "5000", "at most 2000"),
        ("GISTSCAN_SEARCH_DEADLINE", "-1", "GISTSCAN_SEARCH_DEADLINE"),
        ("GISTSCAN_API_URL", "ftp://x", "http://"),
    ],
)
def test_config_from_env_refuses_bad_values(variable: str, value: str, words: str) -> None:
    """A bad variable is named in the error, before the server starts."""
    with pytest.raises(UsageError, match=re.escape(words)):
        ServerConfig.from_env({variable: value})


# -- OpenAPI ---------------------------------------------------------------------------------------


async def test_openapi_describes_every_route(fake: FakeGitHub, serve: Serve) -> None:
    """Every registered route is in /openapi.json and nothing else is; the document is valid."""
    client = await serve(fake)
    doc = await (await client.get("/openapi.json")).json()
    validate_spec(doc)
    registered = {
        (route.resource.canonical, route.method.lower())
        for route in client.app.router.routes()
        if route.resource is not None
    }
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert registered == described
    limits = doc["components"]["schemas"]["SearchRequest"]["properties"]["pattern"]
    assert limits["maxLength"] == ServerConfig().max_pattern_length


async def test_openapi_tracks_the_configured_limits(fake: FakeGitHub, serve: Serve) -> None:
    """Limits in the document are the server's own, not hard-coded copies."""
    client = await serve(fake, max_pattern_length=50)
    doc = await (await client.get("/openapi.json")).json()
    assert doc["components"]["schemas"]["SearchRequest"]["properties"]["pattern"]["maxLength"] == 50
    assert (openapi.MAX_INT, openapi.GITHUB_MAX_PER_PAGE) == (
        server.MAX_INT,
        server.GITHUB_MAX_PER_PAGE,
    )
    resp = await client.get(SEARCH.format("octocat"), params={"pattern": "x" * 51})
    assert resp.status == 400 and "limit is 50" in (await documented(client, resp))["message"]


def test_retry_after_is_whole_seconds() -> None:
    """Retry-After is an integer number of seconds, rounded up, at least 1."""
    for seconds, expected in ((0.0, "1"), (0.2, "1"), (29.5, "30"), (60.0, "60")):
        refusal = server._listing_refusal(
            ListingError("rate_limited", "limited", status=403, retry_after=seconds), {}
        )
        assert refusal.status == 429 and refusal.headers["Retry-After"] == expected
