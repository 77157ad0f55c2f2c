"""Single requests of the GitHub client, mocked with aioresponses: statuses, headers, retries."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from gistscan.errors import FetchError, ListingError
from gistscan.github import GitHub, _next_link

API = "https://api.github.test"
LIST = f"{API}/users/octo/gists?per_page=100"
RAW = "https://raw.github.test/octo/abc/raw/0123/a%20b.txt"


class _Response(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's `stream_writer`
    (pnuckowski/aioresponses#289): supply a stand-in (checked by hand against 0.7.9)."""

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
    """Each refusal is a ListingError with the code of docs/records.md, and never retried."""
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


def test_next_link_is_taken_verbatim() -> None:
    """Only rel="next" counts, and its URL is returned exactly as written."""
    header = '<https://x/a?p=1>; rel="prev", <https://x/user/9/gists?per_page=3&page=2>; rel="next"'
    assert _next_link(header) == "https://x/user/9/gists?per_page=3&page=2"
    assert _next_link('<https://x/a?p=1>; rel="last"') is None
    assert _next_link("") is None
