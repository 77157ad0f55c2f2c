"""The server against GitHub's rate limits, missing users, slow first pages, and two searches
of one user at once: statuses, Retry-After, and what GitHub is asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gistscan.config import Settings
from gistscan.server import ServerConfig, make_app
from tests.fake_github import FakeGitHub, make_gists
from tests.hostile_github import HostileGitHub
from tests.test_server import SEARCH, Serve

QUICK = {"request_timeout": 0.5, "request_total_timeout": 2.0}


@pytest.fixture
def serve(aiohttp_client: Any) -> Serve:
    """The real app against a fake (either kind); keyword arguments are ServerConfig limits,
    `settings` Settings overrides (one retry, quick backoff, unless they say otherwise)."""

    async def start(
        fake: FakeGitHub | HostileGitHub, *, settings: dict[str, Any] | None = None, **limits: Any
    ) -> Any:
        scan = Settings(
            **{"api_url": fake.api_url, "retries": 1, "backoff": 0.01, **(settings or {})}
        )
        return await aiohttp_client(make_app(ServerConfig(settings=scan, **limits)))

    return start


async def routes(client: Any, user: str) -> list[tuple[int, str | None, dict[str, Any]]]:
    """Status, Retry-After and body of a search on both routes, then of GET /{user}."""
    answers = []
    for method, path, options in (
        ("GET", SEARCH.format(user), {"params": {"pattern": "needle"}}),
        ("POST", "/api/v1/search", {"json": {"username": user, "pattern": "needle"}}),
        ("GET", f"/{user}", {}),
    ):
        async with client.request(method, path, **options) as resp:
            answers.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
    return answers


@pytest.mark.parametrize(
    "user", ["secondary403", "secondary429", "abuse403", "abusedoc403", "shouting403"]
)
async def test_secondary_rate_limit_is_429_with_retry_after_on_every_route(
    hostile: HostileGitHub, serve: Serve, user: str
) -> None:
    """GitHub's secondary limit (no Retry-After, remaining above 0; or a bare 429), in each of
    GitHub's wordings (the older "abuse detection mechanism" too): 429 with
    GitHub's advised minute on both searches and the list, and GitHub is asked once."""
    client = await serve(hostile, settings=QUICK)
    answers = await routes(client, user)
    assert [status for status, _, _ in answers] == [429, 429, 429]
    assert all(after is not None and 55 <= int(after) <= 60 for _, after, _ in answers)
    assert [body["error"] for _, _, body in answers] == ["rate_limited"] * 3
    assert len(hostile.log) == 1  # the later ones waited out the hold without asking


@pytest.mark.parametrize(("user", "after"), [("retry-inf", "3600"), ("retry-nan", "60")])
async def test_unreadable_retry_after_is_a_clamped_whole_number(
    hostile: HostileGitHub, serve: Serve, user: str, after: str
) -> None:
    """Retry-After: 1e999 or nan upstream: a 429 with a finite, whole Retry-After, never a 500."""
    client = await serve(hostile, settings=QUICK)
    async with client.get(SEARCH.format(user), params={"pattern": "needle"}) as resp:
        assert (resp.status, resp.headers["Retry-After"]) == (429, after)


@pytest.mark.parametrize("user", ["trickle", "hanglist"])
async def test_the_search_deadline_covers_page_one(
    hostile: HostileGitHub, serve: Serve, user: str
) -> None:
    """A first page that trickles or stalls: 504 deadline_exceeded at the search deadline,
    on both searches and the list, whatever the request limits."""
    slow = {"request_timeout": 30.0, "request_total_timeout": 30.0}
    client = await serve(hostile, settings=slow, search_deadline=0.5)
    answers = await asyncio.wait_for(routes(client, user), 30)
    assert [status for status, _, _ in answers] == [504, 504, 504]
    assert [body["error"] for _, _, body in answers] == ["deadline_exceeded"] * 3


async def test_an_unknown_user_is_asked_of_github_once(fake: FakeGitHub, serve: Serve) -> None:
    """GitHub's 404 is remembered for the page TTL: probing again costs GitHub nothing."""
    client = await serve(fake)
    for _ in range(3):
        async with client.get(SEARCH.format("ghost"), params={"pattern": "x"}) as resp:
            assert resp.status == 404
    assert fake.requests["list"] == 1
    fake.add_user("ghost", make_gists("ghost", 1))  # the name now exists, but within the TTL
    async with client.get(SEARCH.format("ghost"), params={"pattern": "x"}) as resp:
        assert resp.status == 404
    assert fake.requests["list"] == 1


async def test_two_concurrent_searches_of_one_user_share_every_request(
    make_fake: Any, serve: Serve
) -> None:
    """On a cold server, two searches of the same user at once make one list request per page
    and one download per file, as one search alone does."""
    fake = await make_fake(latency=0.05)
    fake.add_user("pair", make_gists("pair", 150, 2))
    client = await serve(fake)

    async def one(pattern: str) -> list[bytes]:
        url = SEARCH.format("pair")
        async with client.get(url, params={"pattern": pattern}) as resp:
            assert resp.status == 200
            return (await resp.read()).splitlines()

    first, second = await asyncio.gather(one("quick"), one("lazy"))
    assert len(first) == len(second) == 301  # 300 matches and the summary, each
    assert (fake.requests["list"], fake.requests["raw"]) == (2, 300)


@pytest.mark.parametrize("login", ["mees-", "gil--", "-Jerry-", "0----0"])
async def test_legacy_logins_are_searched_and_listed(
    hostile: HostileGitHub, serve: Serve, login: str
) -> None:
    """Every route takes the logins older accounts have."""
    hostile.legacy.add(login)
    client = await serve(hostile)
    async with client.get(SEARCH.format(login), params={"pattern": "legacy|needle"}) as resp:
        assert resp.status == 200
        assert b'"matches":1' in (await resp.read()).splitlines()[-1]
    body = {"username": login, "pattern": "needle"}
    async with client.post("/api/v1/search", json=body) as resp:
        assert resp.status == 200
        assert (await resp.json())["matches"] == [f"https://gist.github.com/{login}/g1"]
    async with client.get(f"/{login}") as resp:
        assert resp.status == 200 and [g["id"] for g in await resp.json()] == ["g1"]


@pytest.mark.parametrize("path", ["/shifty", "/api/v1/users/shifty/gists"])
async def test_the_gist_list_lists_a_gist_met_on_two_pages_once(
    hostile: HostileGitHub, serve: Serve, path: str
) -> None:
    """Offset pages shift while gists are updated: the list route, like a search, gives each
    gist once, at its first place."""
    client = await serve(hostile, settings=QUICK)
    async with client.get(path) as resp:
        assert resp.status == 200
        assert [item["id"] for item in await resp.json()] == ["g0", "g1", "g2"]
