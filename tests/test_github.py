"""Single requests of the GitHub client, mocked with aioresponses: statuses, headers, retries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses
from prometheus_client import REGISTRY

from gistscan.cache import MemoryCache
from gistscan.config import Query, Settings
from gistscan.errors import FetchError, ListingError
from gistscan.github import GitHub
from gistscan.pipeline import make_github, search
from tests.conftest import MakeFake
from tests.fake_github import make_gists

API = "https://api.github.test"
LIST = f"{API}/users/octo/gists?per_page=100"
RAW = "https://raw.github.test/octo/abc/raw/0123/a%20b.txt"


class _Response(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's `stream_writer`
    (pnuckowski/aioresponses#289): supply a stand-in."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("stream_writer", type("Writer", (), {"output_size": 0})())
        super().__init__(*args, **kw)


def mock(m: aioresponses, url: str, **kw: Any) -> None:
    m.get(url, response_class=_Response, **kw)


@pytest.fixture
async def github() -> AsyncIterator[GitHub]:
    async with aiohttp.ClientSession() as session:
        yield GitHub(session, api_url=API, token="t0k", retries=2, backoff=0.001)


def sent_headers(m: aioresponses, url: str) -> dict[str, str]:
    (call,) = next(calls for key, calls in m.requests.items() if str(key[1]) == url)
    return dict(call.kwargs["headers"])


async def test_page_items_next_link_and_headers(github: GitHub) -> None:
    """A list page: items, the next URL verbatim, and the three API headers plus the token."""
    link = (
        f'<{API}/user/7/gists?per_page=100&page=2>; rel="next", '
        f'<{API}/user/7/gists?page=3>; rel="last"'
    )
    with aioresponses() as m:
        mock(m, LIST, payload=[{"id": "a"}], headers={"Link": link, "ETag": '"e1"'})
        page = await github.get_page(LIST)
        headers = sent_headers(m, LIST)
    assert page.items == [{"id": "a"}]
    assert page.next_url == f"{API}/user/7/gists?per_page=100&page=2"
    assert page.etag == '"e1"'
    assert headers["Accept"] == "application/vnd.github+json"
    assert headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert headers["Authorization"] == "Bearer t0k"
    assert headers["User-Agent"]


async def test_raw_request_carries_no_token(github: GitHub) -> None:
    """The token goes to the API host only, never to the raw host."""
    with aioresponses() as m:
        mock(m, RAW, body=b"hello", content_type="text/plain")
        chunks = [c async for c in github.iter_raw(RAW, chunk_size=2)]
        headers = sent_headers(m, RAW)
    assert chunks == [b"he", b"ll", b"o"]
    assert "Authorization" not in headers


@pytest.mark.parametrize(
    ("status", "headers", "body", "code", "retry_after"),
    [
        (404, {}, {"message": "Not Found"}, "not_found", None),
        (
            403,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{reset}"},
            {},
            "rate_limited",
            100,
        ),
        (429, {"Retry-After": "30"}, {}, "rate_limited", 30),
        (401, {}, {"message": "Bad credentials"}, "upstream_error", None),
        (422, {}, {"message": "Validation Failed"}, "upstream_error", None),
    ],
)
async def test_listing_statuses_map_to_codes(
    github: GitHub,
    status: int,
    headers: dict[str, str],
    body: dict[str, str],
    code: str,
    retry_after: float | None,
) -> None:
    """Each refusal is a ListingError with its record code, not retried (a rate limit asking
    for longer than backoff_max is reported, not waited for)."""
    headers = {k: v.format(reset=int(time.time()) + 100) for k, v in headers.items()}
    with aioresponses() as m:
        mock(m, LIST, status=status, body=json.dumps(body), headers=headers, repeat=True)
        with pytest.raises(ListingError) as raised:
            await github.get_page(LIST)
        assert len(next(iter(m.requests.values()))) == 1
    assert raised.value.code == code
    if retry_after is None:
        assert raised.value.retry_after is None
    else:
        assert raised.value.retry_after == pytest.approx(retry_after, abs=2)
    if body.get("message") and code == "upstream_error":
        assert body["message"] in raised.value.message


async def test_5xx_is_retried_then_reported(github: GitHub) -> None:
    """A 5xx is retried `retries` times, then is `upstream_error`."""
    with aioresponses() as m:
        mock(m, LIST, status=502, repeat=True)
        with pytest.raises(ListingError) as raised:
            await github.get_page(LIST)
        assert len(next(iter(m.requests.values()))) == 3
    assert raised.value.code == "upstream_error"
    assert "502" in raised.value.message


async def test_connection_error_is_retried_then_succeeds(github: GitHub) -> None:
    """A connection error once, then an answer: the page arrives."""
    with aioresponses() as m:
        mock(m, LIST, exception=aiohttp.ClientConnectionError("refused"))
        mock(m, LIST, payload=[])
        page = await github.get_page(LIST)
    assert page.items == [] and page.next_url is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[1, 2", "not valid JSON"),
        ('{"message": "x"}', "not a JSON array"),
        ("[1]", "not a JSON array"),
    ],
)
async def test_listing_body_not_a_list_of_gists(github: GitHub, body: str, message: str) -> None:
    """A 200 whose body is not a JSON array of objects is `invalid_response`."""
    with aioresponses() as m:
        mock(m, LIST, body=body)
        with pytest.raises(ListingError) as raised:
            await github.get_page(LIST)
    assert raised.value.code == "invalid_response" and message in raised.value.message


@pytest.mark.parametrize(
    ("size", "code"), [(12, "upstream_error"), (10 * 1024 * 1024 + 1, "too_large")]
)
async def test_raw_403_is_too_large_only_for_files_over_the_limit(
    github: GitHub, size: int, code: str
) -> None:
    """GitHub refuses raw files over 10 MB with 403; on a small file a 403 is another refusal."""
    with aioresponses() as m:
        mock(m, RAW, status=403, body="forbidden")
        with pytest.raises(FetchError) as raised:
            async for _ in github.iter_raw(RAW, chunk_size=10, size=size):
                pass
    assert raised.value.code == code


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the client takes between requests, recorded instead of slept."""
    taken: list[float] = []

    async def record(self: GitHub, seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(GitHub, "_sleep", record)
    return taken


async def test_backoff_has_a_ceiling_per_wait(waits: list[float]) -> None:
    """Ten retries of a 502: every wait is at most backoff_max (it doubled past it)."""
    async with aiohttp.ClientSession() as session:
        github = GitHub(session, api_url=API, retries=10, backoff=0.5, backoff_max=2.0)
        with aioresponses() as m:
            mock(m, LIST, status=502, repeat=True)
            with pytest.raises(ListingError):
                await github.get_page(LIST)
            assert len(next(iter(m.requests.values()))) == 11
    assert len(waits) == 10 and max(waits) == 2.0
    # Doubling from 0.5 s, each wait jittered by x0.5-1.5 (so the first two may overlap).
    assert 0.25 <= waits[0] <= 0.75 and 0.5 <= waits[1] <= 1.5


async def test_backoff_has_a_ceiling_per_request() -> None:
    """Retries stop when the next wait would pass the request's total time."""
    async with aiohttp.ClientSession() as session:
        github = GitHub(
            session,
            api_url=API,
            retries=10,
            backoff=0.2,
            backoff_max=0.2,
            request_total_timeout=0.5,
        )
        with aioresponses() as m:
            mock(m, LIST, status=502, repeat=True)
            with pytest.raises(ListingError) as raised:
                await github.get_page(LIST)
            # Each wait is at least 0.1 s (jitter), so at most 5 fit in 0.5 s.
            assert 2 <= len(next(iter(m.requests.values()))) <= 6
    assert raised.value.code == "upstream_error"


async def test_a_5xx_retry_after_is_honoured_within_the_ceiling(waits: list[float]) -> None:
    """A 503's Retry-After is waited (not the shorter backoff); one past the ceiling ends the
    tries at once."""
    async with aiohttp.ClientSession() as session:
        github = GitHub(session, api_url=API, retries=3, backoff=0.01, backoff_max=10.0)
        with aioresponses() as m:
            mock(m, LIST, status=503, headers={"Retry-After": "3"})
            mock(m, LIST, payload=[])
            assert (await github.get_page(LIST)).items == []
        assert waits == [3.0]
        with aioresponses() as m:
            mock(m, LIST, status=503, headers={"Retry-After": "1e999"}, repeat=True)
            with pytest.raises(ListingError) as raised:
                await github.get_page(LIST)
            assert len(next(iter(m.requests.values()))) == 1
    assert (raised.value.code, raised.value.status) == ("upstream_error", 503)
    assert waits == [3.0]


async def test_an_unknown_host_is_not_retried_and_is_named(waits: list[float]) -> None:
    """A host name that does not resolve fails at once (no retries), naming the URL."""
    async with aiohttp.ClientSession() as session:
        github = GitHub(session, api_url="http://gistscan-test.invalid", retries=3)
        url = github.user_gists_url("octo")
        with pytest.raises(ListingError) as raised:
            await github.get_page(url)
    assert (raised.value.code, raised.value.url) == ("upstream_error", url)
    assert url in raised.value.message
    assert waits == []


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_move_where_things_happen(make_fake: MakeFake) -> None:
    """Upstream requests, retries, rate-limit waits, GitHub's remaining budget, bytes and
    cache lookups are counted as they happen."""
    fake = await make_fake()
    fake.add_user("metric", make_gists("metric", 2))
    fake.set_page_fault("metric", 1, "502", times=1)
    names = {
        "api": ("gistscan_upstream_requests_total", {"host": "api", "status": "200"}),
        "raw": ("gistscan_upstream_requests_total", {"host": "raw", "status": "200"}),
        "502": ("gistscan_upstream_requests_total", {"host": "api", "status": "502"}),
        "retries": ("gistscan_upstream_retries_total", {"host": "api"}),
        "bytes": ("gistscan_downloaded_bytes_total", {"host": "raw"}),
        "page_miss": ("gistscan_cache_lookups_total", {"kind": "page", "result": "miss"}),
        "page_hit": ("gistscan_cache_lookups_total", {"kind": "page", "result": "hit"}),
        "raw_hit": ("gistscan_cache_lookups_total", {"kind": "raw", "result": "hit"}),
        "404_hit": ("gistscan_cache_lookups_total", {"kind": "not_found", "result": "hit"}),
        "waits": ("gistscan_rate_limit_waits_total", {"host": "api"}),
    }
    before = {key: sample(name, **labels) for key, (name, labels) in names.items()}
    cache = MemoryCache()
    settings = Settings(api_url=fake.api_url, backoff=0.01)
    async with aiohttp.ClientSession() as session:
        for user in ("metric", "metric", "ghost", "ghost"):
            github = make_github(session, settings, cache)
            async for _ in search(Query(user, "fox"), github=github):
                pass
        fake.set_list_fault("limited", "rate_limited")
        with pytest.raises(ListingError):
            github = make_github(session, settings, cache)
            await github.get_page(github.user_gists_url("limited"))
    moved = {key: sample(name, **labels) - before[key] for key, (name, labels) in names.items()}
    assert moved.pop("bytes") == 2 * len(make_gists("metric", 1)[0].files[0].content)
    assert moved == {
        "api": 1,  # metric's page (after its 502); then from the cache
        "raw": 2,
        "502": 1,
        "retries": 1,
        "page_miss": 4,  # metric, ghost twice (the second a remembered 404), limited
        "page_hit": 1,
        "raw_hit": 2,
        "404_hit": 1,
        "waits": 1,
    }
    # The last answer was the primary limit's 403: nothing remains until its reset.
    assert sample("gistscan_github_ratelimit_remaining") == 0
    reset = sample("gistscan_github_ratelimit_reset_timestamp_seconds")
    assert time.time() < reset <= time.time() + 61


async def test_a_slow_consumer_does_not_spend_the_request_time(make_fake: MakeFake) -> None:
    """The total time of a request counts the upstream's time, not the time our consumer
    takes over each chunk: a reader slower than the limit still gets the whole file."""
    fake = await make_fake()
    fake.add_user("slowreader", make_gists("slowreader", 1))
    async with aiohttp.ClientSession() as session:
        github = GitHub(session, api_url=fake.api_url, request_total_timeout=0.3, retries=0)
        page = await github.get_page(github.user_gists_url("slowreader"))
        [entry] = page.items[0]["files"].values()
        got = b""
        async for chunk in github.iter_raw(entry["raw_url"], chunk_size=16):
            got += chunk
            await asyncio.sleep(0.1)  # five chunks: longer than the whole limit
    assert len(got) == entry["size"] > 4 * 16
    assert fake.requests["raw"] == 1


async def test_proxy_variables_are_honoured_and_netrc_is_never_read(
    make_fake: MakeFake, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """HTTP_PROXY carries every request (NO_PROXY exempts a host), while ~/.netrc, which
    aiohttp's trust_env would read and send to every host, plays no part: the token still
    goes to the API host alone, and no Basic credentials anywhere."""
    fake = await make_fake()
    fake.add_user("octo", make_gists("octo", 1, 1))
    seen: list[tuple[str, str | None]] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        return web.json_response([])

    proxy_server = TestServer(web.Application(), host="127.0.0.1")
    proxy_server.app.router.add_route("*", "/{tail:.*}", proxy)
    await proxy_server.start_server()
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_server.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = Settings(api_url=fake.api_url, token="t0k")
    try:
        records = [r async for r in search(Query("octo", "x"), settings)]
        assert [url for url, _ in seen] == [f"{fake.api_url}/users/octo/gists?per_page=100"]
        assert seen[0][1] == "Bearer t0k"
        assert fake.requests["list"] == 0 and records[-1].gists == 0
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        records = [r async for r in search(Query("octo", "gist"), settings)]
        assert len(seen) == 1 and fake.requests["list"] == 1
        assert records[-1].matches >= 1 and records[-1].complete
        sent = [h.get("authorization") for h in fake.seen_headers + fake.raw_seen_headers]
        assert sent[0] == "Bearer t0k" and set(sent[1:]) == {None}, "netrc credentials sent"
    finally:
        await proxy_server.close()
