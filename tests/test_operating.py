"""Operating the server, in process over loopback: metrics, request ids, limits per client,
stalled readers, the drain's cut, and the small things (415, headers, config repr)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from gistscan.config import Settings
from gistscan.errors import UsageError
from gistscan.server import ADMISSION, Admission, ServerConfig, handler_options, make_app
from tests.fake_github import FakeGitHub, make_gists
from tests.test_server import (
    SEARCH,
    Client,
    Serve,
    add_files,
    documented,
    eventually,
    serve,  # noqa: F401  (the fixture)
    upstream_requests,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: Client) -> Samples:
    """Every sample of GET /metrics, parsed with prometheus_client's own parser."""
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# -- metrics ----------------------------------------------------------------------------------


async def test_metrics_move_as_a_search_runs(fake: FakeGitHub, serve: Serve) -> None:  # noqa: F811
    """/metrics parses, and its search counters move by what one search did."""
    fake.add_user("alice", make_gists("alice", 3, 2))
    client = await serve(fake)
    before = await scrape(client)
    resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
    records = await documented(client, resp)
    summary = records[-1]
    resp = await client.get(SEARCH.format("nobody"), params={"pattern": "quick"})
    assert resp.status == 404
    resp = await client.get(SEARCH.format("alice"), params={"pattern": "(unclosed"})
    assert resp.status == 400
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gistscan_searches_total", outcome="complete", status="200") == 1
    assert moved("gistscan_searches_total", outcome="refused", status="404") == 1
    assert moved("gistscan_searches_total", outcome="refused", status="400") == 1
    assert moved("gistscan_search_first_record_seconds_count") == 1
    assert moved("gistscan_search_duration_seconds_count") == 1
    assert moved("gistscan_scanned_bytes_total") == summary["bytes"] > 0
    assert value(after, "gistscan_searches_running") == 0
    route = "/api/v1/users/{username}/search"
    assert moved("gistscan_http_requests_total", route=route, method="GET", status="200") == 1
    assert moved("gistscan_http_requests_total", route=route, method="GET", status="404") == 1
    assert moved("gistscan_http_requests_total", route="/metrics", method="GET", status="200") == 1


async def test_error_records_are_counted_by_code(make_fake: Any, serve: Serve) -> None:  # noqa: F811
    """regex_timeout (and every other error record) shows in the metrics by its code."""
    fake = await make_fake()
    add_files(fake, "carol", [b"a" * 34 + b"!\n"] * 2)
    client = await serve(fake, settings={"regex_timeout": 0.2})
    before = await scrape(client)
    resp = await client.get(SEARCH.format("carol"), params={"pattern": "(a|aa)+$"})
    records = await documented(client, resp)
    after = await scrape(client)
    timeouts = sum(r.get("code") == "regex_timeout" for r in records)
    assert timeouts == 2
    assert (
        value(after, "gistscan_error_records_total", code="regex_timeout")
        - value(before, "gistscan_error_records_total", code="regex_timeout")
        == timeouts
    )
    assert (
        value(after, "gistscan_searches_total", outcome="partial", status="200")
        - value(before, "gistscan_searches_total", outcome="partial", status="200")
        == 1
    )


# -- request ids and headers ------------------------------------------------------------------


async def test_request_id_is_echoed_or_made_up(fake: FakeGitHub, serve: Serve) -> None:  # noqa: F811
    """X-Request-Id comes back as sent; without one (or with one unfit for a log) the
    server makes one up."""
    client = await serve(fake)
    resp = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    made = (await client.get("/healthz")).headers["X-Request-Id"]
    assert len(made) == 32 and made != (await client.get("/healthz")).headers["X-Request-Id"]
    forged = (await client.get("/ping", headers={"X-Request-Id": "x\tlevel=error"})).headers
    assert forged["X-Request-Id"] != "x\tlevel=error" and len(forged["X-Request-Id"]) == 32
    resp = await client.get("/no/such/route", headers={"X-Request-Id": "r-404"})
    assert resp.status == 404 and resp.headers["X-Request-Id"] == "r-404"


async def test_ndjson_is_not_cached_nor_buffered(fake: FakeGitHub, serve: Serve) -> None:  # noqa: F811
    """A stream tells caches and proxies (nginx) to pass it through as it comes."""
    fake.add_user("alice", make_gists("alice", 1))
    client = await serve(fake)
    resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Accel-Buffering"] == "no"
    await documented(client, resp)


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/octet-stream"},
    ],
)
async def test_post_that_is_not_json_gets_415(
    fake: FakeGitHub,
    serve: Serve,  # noqa: F811
    headers: dict[str, str],
) -> None:
    """A POST a foreign web page could send without a CORS preflight is refused unread."""
    fake.add_user("octocat", make_gists("octocat", 1))
    client = await serve(fake)
    body = json.dumps({"username": "octocat", "pattern": "quick"})
    resp = await client.post("/api/v1/search", data=body, headers=headers)
    assert resp.status == 415
    problem = await documented(client, resp)
    assert problem["error"] == "unsupported_media_type" and "application/json" in problem["message"]
    assert upstream_requests(fake) == 0
    ok = await client.post(
        "/api/v1/search", data=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert ok.status == 200


async def test_integral_numbers_are_integers(fake: FakeGitHub, serve: Serve) -> None:  # noqa: F811
    """max_matches 2.0 is the integer 2, as JSON Schema's `integer` says; 2.5 is refused."""
    fake.add_user("alice", make_gists("alice", 4))
    client = await serve(fake, settings={"concurrency": 1})
    body = {"username": "alice", "pattern": "quick", "max_matches": 2.0}
    answer = await documented(client, await client.post("/api/v1/search", json=body))
    assert len(answer["details"]) == 2
    resp = await client.post("/api/v1/search", json={**body, "max_matches": 891711.0})
    assert resp.status == 200
    resp = await client.post("/api/v1/search", json={**body, "max_matches": 2.5})
    assert resp.status == 400


async def test_longest_pattern_fits_in_a_request_line(
    fake: FakeGitHub, aiohttp_client: Any
) -> None:
    """A pattern of the most characters allowed, each 4 UTF-8 bytes (12 once
    percent-encoded), is a valid GET: the server reads such a request line."""
    fake.add_user("alice", make_gists("alice", 1))
    config = ServerConfig(settings=Settings(api_url=fake.api_url))
    # As `serve` runs it (pytest-aiohttp's server_kwargs never reach the runner).
    server = TestServer(make_app(config))
    options = {k: v for k, v in handler_options(config).items() if k != "handler_cancellation"}
    await server.start_server(**options)
    client = await aiohttp_client(server)
    pattern = "\U0001f600" * config.max_pattern_length
    resp = await client.get(SEARCH.format("alice"), params={"pattern": pattern})
    assert resp.status == 200
    assert (await documented(client, resp))[-1]["matches"] == 0


def test_token_is_in_no_repr_and_no_message() -> None:
    """GITHUB_TOKEN never shows in a config's repr nor in a configuration error."""
    token = "ghp_" + "S3cr3t" * 6
    config = ServerConfig.from_env({"GITHUB_TOKEN": token, "GISTSCAN_API_URL": "http://x"})
    assert config.settings.token == token
    assert token not in repr(config) and token not in repr(config.settings)
    assert token not in str(config) and token not in repr(config.scan_settings)
    for env in (
        {"GITHUB_TOKEN": token, "GISTSCAN_API_URL": "ftp://x"},
        {"GITHUB_TOKEN": token, "GISTSCAN_STALL_TIMEOUT": "-1"},
        {"GITHUB_TOKEN": token, "GISTSCAN_TRUSTED_PROXIES": "not-an-ip"},
    ):
        with pytest.raises(UsageError) as caught:
            ServerConfig.from_env(env)
        assert token not in str(caught.value) and token not in repr(caught.value)


def test_new_settings_from_env() -> None:
    """The operating settings are read from the environment and checked."""
    config = ServerConfig.from_env(
        {
            "GISTSCAN_MAX_SEARCHES_PER_CLIENT": "2",
            "GISTSCAN_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1",
            "GISTSCAN_STALL_TIMEOUT": "3.5",
            "GISTSCAN_SHUTDOWN_TIMEOUT": "20",
            "GISTSCAN_LOG_FORMAT": "text",
        }
    )
    assert config.max_searches_per_client == 2
    assert config.trusted_proxies == ("10.0.0.0/8", "192.168.1.1")
    assert config.stall_timeout == 3.5 and config.drain_seconds == 20
    assert config.log_format == "text"
    # By default the drain outlasts the search deadline, so no search is cut short.
    assert ServerConfig().drain_seconds > ServerConfig().search_deadline  # type: ignore[operator]
    assert ServerConfig(search_deadline=120).drain_seconds > 120
    with pytest.raises(UsageError, match="GISTSCAN_LOG_FORMAT"):
        ServerConfig.from_env({"GISTSCAN_LOG_FORMAT": "xml"})


# -- limits per client ------------------------------------------------------------------------


async def held_search(client: Client, user: str, **kwargs: Any) -> aiohttp.ClientResponse:
    resp = await client.get(SEARCH.format(user), params={"pattern": "quick"}, **kwargs)
    assert resp.status == 200
    return resp


async def test_per_client_limit(make_fake: Any, serve: Serve) -> None:  # noqa: F811
    """The (n+1)th concurrent search of one client gets 429 with Retry-After, while another
    client (another peer address) still gets 200; GET /{username} counts too."""
    fake = await make_fake(piece_size=100)
    add_files(fake, "bob", [b"x" * 20_000], fault="slow")  # 40 s a search: it is held
    fake.add_user("alice", make_gists("alice", 1))
    client = await serve(fake, max_searches_per_client=2, busy_retry_after=7)
    held = [await held_search(client, "bob") for _ in range(2)]
    for resp in (
        await client.get(SEARCH.format("alice"), params={"pattern": "quick"}),
        await client.post("/api/v1/search", json={"username": "alice", "pattern": "quick"}),
        await client.get("/alice"),
        await client.get("/api/v1/users/alice/gists"),
    ):
        assert resp.status == 429 and resp.headers["Retry-After"] == "7"
        assert (await documented(client, resp))["error"] == "too_many_searches_from_client"
    # Another peer: 127.0.0.2 is loopback too.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        url = client.make_url(SEARCH.format("alice"))
        async with other.get(url, params={"pattern": "quick"}) as resp:
            assert resp.status == 200
            assert json.loads((await resp.read()).splitlines()[-1])["matches"] == 1
        async with other.get(client.make_url("/alice")) as resp:
            assert resp.status == 200
    for resp in held:
        resp.close()
    assert await eventually(lambda: client.app[ADMISSION].active == 0)
    resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
    assert resp.status == 200


async def test_clients_behind_a_trusted_proxy(make_fake: Any, serve: Serve) -> None:  # noqa: F811
    """Behind a trusted proxy the client is the X-Forwarded-For entry that proxy added;
    what the client itself wrote to the left of it changes nothing."""
    fake = await make_fake(piece_size=100)
    add_files(fake, "bob", [b"x" * 20_000], fault="slow")
    client = await serve(fake, max_searches_per_client=1, trusted_proxies=("127.0.0.1",))
    first = await held_search(client, "bob", headers={"X-Forwarded-For": "203.0.113.5"})
    spoofed = {"X-Forwarded-For": "198.51.100.9, 203.0.113.5"}
    resp = await client.get(SEARCH.format("bob"), params={"pattern": "quick"}, headers=spoofed)
    assert resp.status == 429
    second = await held_search(client, "bob", headers={"X-Forwarded-For": "203.0.113.6"})
    for resp in (first, second):
        resp.close()
    assert await eventually(lambda: client.app[ADMISSION].active == 0)


class _Req:
    """Just what Admission.client reads of a request."""

    def __init__(self, remote: str, forwarded: list[str]) -> None:
        self.remote = remote
        self.headers = self
        self._forwarded = forwarded

    def getall(self, name: str, default: list[str]) -> list[str]:
        return self._forwarded or default


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        ((), "192.0.2.1", ["203.0.113.5"], "192.0.2.1"),  # no trusted proxy: the peer
        (("10.0.0.0/8",), "192.0.2.1", ["203.0.113.5"], "192.0.2.1"),  # peer not trusted
        (("10.0.0.0/8",), "10.1.1.1", ["203.0.113.5"], "203.0.113.5"),
        (("10.0.0.0/8",), "10.1.1.1", ["1.2.3.4, 203.0.113.5"], "203.0.113.5"),
        (("10.0.0.0/8",), "10.1.1.1", ["203.0.113.5, 10.2.2.2"], "203.0.113.5"),  # two hops
        (("10.0.0.0/8",), "10.1.1.1", ["junk, 10.2.2.2"], "10.2.2.2"),
        (("10.0.0.0/8",), "10.1.1.1", [], "10.1.1.1"),
        (("10.0.0.0/8",), "10.1.1.1", ["1.1.1.1", "203.0.113.5"], "203.0.113.5"),
        (("2001:db8::/32",), "2001:db8::1", ["2001:db8:ffff::9, 2a00::5"], "2a00::5"),
    ],
)
def test_client_identity(
    trusted: tuple[str, ...], peer: str, forwarded: list[str], client: str
) -> None:
    """Right to left through X-Forwarded-For, past trusted proxies only."""
    admission = Admission(limit=1, per_client=1, retry_after=1, trusted=trusted)
    assert admission.client(_Req(peer, forwarded)) == client  # type: ignore[arg-type]


# -- stalled readers --------------------------------------------------------------------------


async def test_stalled_reader_is_cut_and_its_slot_freed(make_fake: Any, serve: Serve) -> None:  # noqa: F811
    """A client that stops reading holds its slot no longer than the stall setting: its
    stream is cut, the search (and its downloads) closed, the slot free for others."""
    fake = await make_fake()
    # A match on every line: many megabytes of records, more than socket buffers hold.
    add_files(fake, "bob", [b"quick\n" * 300_000] * 4)
    client = await serve(fake, stall_timeout=0.5, max_concurrent_searches=1)
    before = await scrape(client)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((client.host, client.port))
    sock.sendall(f"GET {SEARCH.format('bob')}?pattern=quick HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        admission = client.app[ADMISSION]
        assert await eventually(lambda: admission.active == 1)
        # The reader never reads: within the stall setting (and the time to fill the
        # buffers) the slot is free again.
        assert await eventually(lambda: admission.active == 0, within=10.0)
        assert await eventually(lambda: fake.raw_in_flight == 0)
        after = await scrape(client)
        stalled = value(after, "gistscan_searches_total", outcome="stalled", status="200")
        assert (
            stalled - value(before, "gistscan_searches_total", outcome="stalled", status="200") == 1
        )
        fake.add_user("alice", make_gists("alice", 1))
        resp = await client.get(SEARCH.format("alice"), params={"pattern": "quick"})
        assert resp.status == 200
    finally:
        sock.close()


# -- the drain's cut, in process --------------------------------------------------------------


@pytest.mark.parametrize("how", ["stream", "buffered"])
async def test_drain_cuts_a_running_search_with_its_summary(
    make_fake: Any,
    serve: Serve,  # noqa: F811
    how: str,
) -> None:
    """When the drain's cut comes, a running search ends with a deadline_exceeded record
    and its summary (complete: false), streamed or buffered; new searches get 503."""
    fake = await make_fake(piece_size=100)
    add_files(fake, "bob", [b"quick\n" + b"x" * 20_000, b"quick\n"], fault="slow")
    client = await serve(fake, settings={"concurrency": 2}, busy_retry_after=4)
    admission = client.app[ADMISSION]
    if how == "stream":
        pending = client.get(SEARCH.format("bob"), params={"pattern": "quick"})
    else:
        pending = client.post("/api/v1/search", json={"username": "bob", "pattern": "quick"})
    task = asyncio.create_task(pending)
    assert await eventually(lambda: admission.active == 1)
    await asyncio.sleep(0.5)  # the small file is done, the big one still downloading
    started = time.monotonic()
    admission.drain(asyncio.get_running_loop().time() + 0.3)
    resp = await client.get(SEARCH.format("bob"), params={"pattern": "quick"})
    assert resp.status == 503 and resp.headers["Retry-After"] == "4"
    assert (await documented(client, resp))["error"] == "shutting_down"
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await documented(client, ready))["error"] == "shutting_down"
    resp = await task
    body = await documented(client, resp)
    assert time.monotonic() - started < 5
    if how == "stream":
        error, summary = body[-2], body[-1]
        assert error["type"] == "error"
        matches = sum(r["type"] == "match" for r in body)
    else:
        error, summary = body["errors"][-1], body["summary"]
        matches = len(body["details"])
    assert error["code"] == "deadline_exceeded" and error["gist_id"] is None
    assert summary["complete"] is False and summary["errors"] == 1
    assert summary["matches"] == matches >= 1 and summary["files"] >= 1
    assert await eventually(lambda: fake.raw_in_flight == 0)
    assert admission.active == 0


async def test_drain_cuts_the_wait_for_page_one(make_fake: Any, serve: Serve) -> None:  # noqa: F811
    """A search still waiting for GitHub's first page when the cut comes gets 503
    shutting_down (no answer has started, so a status can still say so)."""
    fake = await make_fake(latency=5.0)
    fake.add_user("alice", make_gists("alice", 1))
    client = await serve(fake)
    admission = client.app[ADMISSION]
    task = asyncio.create_task(client.get(SEARCH.format("alice"), params={"pattern": "quick"}))
    assert await eventually(lambda: admission.active == 1)
    started = time.monotonic()
    admission.drain(asyncio.get_running_loop().time() + 0.2)
    resp = await task
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert (await documented(client, resp))["error"] == "shutting_down"
    assert time.monotonic() - started < 3  # well before GitHub's 5 s answer
    assert await eventually(lambda: admission.active == 0)


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
async def test_since_past_the_calendar_is_a_400(fake: FakeGitHub, serve: Serve, since: str) -> None:  # noqa: F811
    """A `since` whose UTC time falls before year 1 or after 9999 is refused, not a 500
    (schemathesis found it: the document allows these dates)."""
    client = await serve(fake)
    body = {"username": "alice", "pattern": "x", "since": since}
    resp = await client.post("/api/v1/search", json=body)
    assert resp.status == 400
    assert (await documented(client, resp))["field"] == "since"
    assert upstream_requests(fake) == 0
