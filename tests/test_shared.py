"""The shared level against a real redis-server: pages, 404s, raw bytes in chunks, the budget,
fleet-wide single flight, and Redis down, slow, flushed or back. Two `SharedCache`s on one
Redis stand for two replicas (the end-to-end tests run two real servers)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from gistscan.cache import StoredPage
from gistscan.config import Settings
from gistscan.errors import ListingError, UsageError
from gistscan.pipeline import make_github
from gistscan.server import ServerConfig
from gistscan.shared import SharedBudget, SharedCache, SharedStore, identity
from tests.fake_github import FakeFile, FakeGist, FakeGitHub, big_text, make_gists
from tests.redis_server import RedisServer

TOKEN = "ghp_notarealtoken0123456789abcdefghij"
Stores = Callable[..., SharedStore]


@pytest.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[Stores]:
    """Make `SharedStore`s on the test's Redis; all closed afterwards. Its commands may take
    up to 2 s (a loaded CI machine can take more than the default 0.25 s, which the code
    rightly takes for an outage): the tests of a slow Redis set their own timeout."""
    made: list[SharedStore] = []

    def make(**options: Any) -> SharedStore:
        options = {"key_prefix": "t:", "timeout": 2.0, "retry_interval": 0.2, **options}
        store = SharedStore(redis_server.url, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def inspect(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the test's Redis, to look at what the replicas left there."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def shared_cache(store: SharedStore, **options: Any) -> SharedCache:
    return SharedCache(store, **{"token": TOKEN, "lock_timeout": 2.0, **options})


def page(n: int = 1) -> StoredPage:
    return StoredPage(b'[{"id": "%d"}]' % n, f"https://api.example/next?page={n + 1}", f'"e{n}"')


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- pages and 404s ------------------------------------------------------------------------------


async def test_pages_and_404s_kept_by_one_replica_serve_another(
    stores: Stores, inspect: aioredis.Redis
) -> None:
    """A page (body, next, ETag) and a 404 kept by A are found by B; no key holds a URL or the
    token, every key has the prefix."""
    a, b = shared_cache(stores()), shared_cache(stores())
    url = "https://api.example/users/alice/gists?per_page=100"
    await a.put_page(url, page())
    await a.put_not_found("https://api.example/users/ghost/gists?per_page=100")
    found = await b.page(url)
    assert found is not None and found.fresh and found.page == page()
    assert await b.not_found("https://api.example/users/ghost/gists?per_page=100")
    assert not await b.not_found(url)
    keys = [k.decode() for k in await inspect.keys("*")]
    assert keys and all(k.startswith("t:") for k in keys)
    assert not any("http" in k or "alice" in k or TOKEN in k for k in keys)
    assert all(identity(TOKEN) in k for k in keys)


async def test_a_page_from_redis_is_fresh_only_for_the_ttl_from_githubs_answer(
    stores: Stores,
) -> None:
    """B reads A's page late in its TTL: in B's memory it goes stale when it does in Redis,
    and stays there, with its ETag, to be revalidated."""
    a, b = shared_cache(stores(), page_ttl=0.4), shared_cache(stores(), page_ttl=0.4)
    await a.put_page("u", page())
    await asyncio.sleep(0.25)
    first = await b.page("u")
    assert first is not None and first.fresh
    await asyncio.sleep(0.2)
    again = await b.page("u")
    assert again is not None and not again.fresh and again.page.etag == '"e1"'


async def test_replicas_with_other_tokens_share_nothing(stores: Stores) -> None:
    """GitHub's list answers vary by Authorization: another token, another key."""
    a = shared_cache(stores(), token=TOKEN)
    b = shared_cache(stores(), token="ghp_someoneelse")
    anonymous = shared_cache(stores(), token=None)
    await a.put_page("u", page())
    await a.put_not_found("v")
    assert await b.page("u") is None and await anonymous.page("u") is None
    assert not await b.not_found("v")


async def test_key_prefix_and_ttl_are_settings(stores: Stores, inspect: aioredis.Redis) -> None:
    """Keys live under the configured prefix and expire after the configured TTL."""
    cache = shared_cache(stores(key_prefix="fleet7:"), ttl=120.0)
    await cache.put_page("u", page())
    keeper = cache.raw_keeper("r", 3)
    await keeper.add(b"abc")
    await keeper.done()
    keys = sorted(k.decode() for k in await inspect.keys("*"))
    assert len(keys) == 2 and all(k.startswith("fleet7:") for k in keys)
    for key in keys:
        assert 110_000 < await inspect.pttl(key) <= 120_000


# -- raw bytes -----------------------------------------------------------------------------------


async def test_raw_bytes_are_shared_in_chunks_and_within_the_size_cap(stores: Stores) -> None:
    """A's download is found by B and read in exact chunks, one GETRANGE each: a file bigger
    than B's memory limit is never held there. Over the shared cap, nothing is kept; an
    incomplete download is never published."""
    a = shared_cache(stores(), raw_max_shared=1000, raw_max_file=100)
    b = shared_cache(stores(), raw_max_shared=1000, raw_max_file=100)
    data = bytes(range(256)) * 3  # 768 bytes
    keeper = a.raw_keeper("big", len(data))
    for i in range(0, len(data), 100):
        await keeper.add(data[i : i + 100])
    await keeper.done()
    copy = await b.raw("big")
    assert copy is not None and copy.size == len(data)
    chunks = [chunk async for chunk in copy.chunks(64)]
    assert [len(c) for c in chunks] == [64] * 12 and b"".join(chunks) == data
    assert b.raw_bytes == 0  # over B's memory limit: streamed, not kept whole

    small = a.raw_keeper("small", 10)
    await small.add(b"0123456789")
    await small.done()
    copy = await b.raw("small")
    assert copy is not None and [c async for c in copy.chunks(4)] == [b"0123", b"4567", b"89"]
    assert b.raw_bytes == 10  # small enough for memory: kept there once read

    listed_over = a.raw_keeper("listed", 1001)  # its listed size is over the cap
    await listed_over.add(b"x" * 10)
    await listed_over.done()
    grew_over = a.raw_keeper("grew", None)  # no size listed: it grows over the cap
    for _ in range(11):
        await grew_over.add(b"y" * 100)
    await grew_over.done()
    unfinished = a.raw_keeper("unfinished", 50)
    await unfinished.add(b"z" * 50)  # the download never completes
    assert [await b.raw(u) for u in ("listed", "grew", "unfinished")] == [None, None, None]


async def test_a_partial_copy_evicted_mid_download_is_never_published(
    stores: Stores, inspect: aioredis.Redis
) -> None:
    """Under maxmemory a partial copy may be evicted while a download is written: the next
    APPEND would begin it again without its head. No such copy is ever published, and it is
    no outage."""
    a, b = shared_cache(stores()), shared_cache(stores())
    outages = metric("gistscan_redis_outages_total")
    for last_chunk in (b"c" * 10, None):  # evicted before the last chunk, or after it
        keeper = a.raw_keeper("r", 30)
        await keeper.add(b"a" * 10)
        await keeper.add(b"b" * 10)
        await inspect.delete(*await inspect.keys("t:raw-part:*"))
        if last_chunk is not None:
            await keeper.add(last_chunk)
        await keeper.done()
        assert await b.raw("r") is None
        assert await inspect.keys("*") == []
    assert metric("gistscan_redis_outages_total") == outages


async def test_a_shared_copy_that_vanishes_mid_read_is_finished_from_github(
    stores: Stores, fake: FakeGitHub, redis_server: RedisServer, inspect: aioredis.Redis
) -> None:
    """Redis flushed while B reads a file from it: B gets every byte once, in order, the rest
    downloaded from GitHub."""
    content = big_text(50_000)
    fake.add_user("v", [FakeGist("g1", [FakeFile("big.txt", content)])])
    a = shared_cache(stores(), raw_max_file=1000)
    b = shared_cache(stores(), raw_max_file=1000)
    settings = Settings(api_url=fake.api_url, retries=0)
    async with aiohttp.ClientSession() as session:
        listed = await make_github(session, settings).get_page(fake.api_url + "/users/v/gists")
        raw_url = listed.items[0]["files"]["big.txt"]["raw_url"]
        github_a = make_github(session, settings, a)
        assert b"".join([c async for c in github_a.iter_raw(raw_url, chunk_size=4096)]) == content
        fake.reset_counters()
        github_b = make_github(session, settings, b)
        got = []
        async for chunk in github_b.iter_raw(raw_url, chunk_size=4096, size=len(content)):
            got.append(chunk)
            if len(got) == 3:
                await inspect.flushall()
    assert b"".join(got) == content
    assert all(len(c) == 4096 for c in got[:-1])
    assert fake.requests["raw"] == 1  # the rest, once


# -- fleet-wide single flight --------------------------------------------------------------------


async def test_identical_requests_of_two_replicas_at_once_cost_github_one(
    stores: Stores, make_fake: Any
) -> None:
    """A and B ask for the same list page and the same file at the same moment: GitHub is
    asked once for each; the replica that waited reads the other's answer from Redis."""
    fake = await make_fake(latency=0.2)
    fake.add_user("twin", make_gists("twin", 3))
    a, b = shared_cache(stores()), shared_cache(stores())
    settings = Settings(api_url=fake.api_url, retries=0)
    url = fake.api_url + "/users/twin/gists?per_page=100"
    async with aiohttp.ClientSession() as session:
        github_a, github_b = make_github(session, settings, a), make_github(session, settings, b)
        page_a, page_b = await asyncio.gather(github_a.get_page(url), github_b.get_page(url))
        assert page_a.items == page_b.items and fake.requests["list"] == 1
        file = page_a.items[0]["files"]["gist0_file0.txt"]

        async def read(github: Any) -> bytes:
            chunks = github.iter_raw(file["raw_url"], chunk_size=16, size=file["size"])
            return b"".join([c async for c in chunks])

        first, second = await asyncio.gather(read(github_a), read(github_b))
    assert first == second and len(first) == file["size"]
    assert fake.requests["raw"] == 1


async def test_a_download_held_by_a_slow_reader_is_not_waited_for_long(
    stores: Stores, fake: FakeGitHub
) -> None:
    """A's reader stops after the first chunk of a file (a slow client), holding its download:
    B, reading the same file, waits a moment and then downloads it itself."""
    content = big_text(10_000)
    fake.add_user("v", [FakeGist("g1", [FakeFile("big.txt", content)])])
    a, b = shared_cache(stores(), lock_timeout=30.0), shared_cache(stores(), lock_timeout=30.0)
    settings = Settings(api_url=fake.api_url, retries=0)
    async with aiohttp.ClientSession() as session:
        listed = await make_github(session, settings).get_page(fake.api_url + "/users/v/gists")
        raw_url = listed.items[0]["files"]["big.txt"]["raw_url"]
        held = make_github(session, settings, a).iter_raw(raw_url, chunk_size=1000)
        assert len(await anext(held)) == 1000
        chunks = make_github(session, settings, b).iter_raw(raw_url, chunk_size=1000)
        got = await asyncio.wait_for(_join(chunks), 10)  # far under A's lock of 30 s
        await held.aclose()
    assert got == content and fake.requests["raw"] == 2


async def _join(chunks: Any) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def test_an_unknown_user_probed_by_one_replica_costs_another_nothing(
    stores: Stores, fake: FakeGitHub
) -> None:
    a, b = shared_cache(stores()), shared_cache(stores())
    settings = Settings(api_url=fake.api_url, retries=0)
    url = fake.api_url + "/users/ghost/gists?per_page=100"
    async with aiohttp.ClientSession() as session:
        for cache in (a, b, b):
            with pytest.raises(ListingError) as caught:
                await make_github(session, settings, cache).get_page(url)
            assert caught.value.code == "not_found"
    assert fake.requests["list"] == 1


# -- the budget ----------------------------------------------------------------------------------


async def test_a_hold_learnt_by_one_replica_binds_all(stores: Stores) -> None:
    """A secondary limit's wait seen by A: B waits too; a shorter hold never shortens it."""
    a = SharedBudget(stores(), token=TOKEN)
    b = SharedBudget(stores(), token=TOKEN)
    other = SharedBudget(stores(), token="ghp_other")
    await a.hold("api", 30)
    await b.hold("api", 5)
    assert 29 < await b.wait("api") <= 30
    assert await b.wait("raw") == 0 and await other.wait("api") == 0


async def test_the_fleets_ratelimit_view_and_reserve(
    stores: Stores, inspect: aioredis.Redis
) -> None:
    """Answers of both replicas merge into one view (the lowest remaining of the newest
    window); below the reserve the API is held on every replica until the reset."""
    a = SharedBudget(stores(), token=TOKEN, reserve=10)
    b = SharedBudget(stores(), token=TOKEN, reserve=10)
    reset = time.time() + 40
    await a.observe(500, reset)
    await b.observe(300, reset)
    await a.observe(450, reset)  # older news, arriving late
    assert (a.remaining, b.remaining) == (300, 300)
    assert await b.wait("api") == 0
    await a.observe(9, reset)
    assert 38 < await b.wait("api") <= 40
    key = f"t:ratelimit:{identity(TOKEN)}"
    assert await inspect.hmget(key, ["remaining", "reset"]) == [b"9", repr(reset).encode()]
    await b.observe(5000, reset + 3600)  # a new window replaces the view
    assert b.remaining == 5000
    assert await inspect.ttl(key) > 3600


# -- Redis down, slow, back ----------------------------------------------------------------------


async def test_redis_down_is_a_miss_logged_once_then_used_again_when_back(
    stores: Stores, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed: every operation answers at once as a miss, the outage is logged once and
    counted; started again (empty): used again after the retry interval, logged once."""
    caplog.set_level(logging.INFO, logger="gistscan.shared")
    store = stores(retry_interval=0.3)
    cache, budget = shared_cache(store), SharedBudget(store, token=TOKEN)
    await cache.put_page("u", page())
    outages = metric("gistscan_redis_outages_total")
    redis_server.kill()
    started = time.monotonic()
    for _ in range(20):
        other = shared_cache(store)  # a fresh memory level: only Redis could answer
        assert await other.page("u") is None
        assert await other.raw("r") is None and not await other.not_found("v")
        await budget.hold("api", 10)  # kept locally, at least
        assert await budget.wait("api") > 9
        async with other.lead_page("u") as look_again:
            assert not look_again  # no Redis: fetch at once
    assert time.monotonic() - started < 2.0
    assert metric("gistscan_redis_outages_total") == outages + 1
    assert metric("gistscan_redis_up") == 0
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and redis_server.url.split("/")[2] in failed[0].getMessage()

    redis_server.start()
    await asyncio.sleep(0.35)
    await cache.put_page("u", page(2))
    found = await shared_cache(store).page("u")
    assert found is not None and found.page == page(2)
    assert metric("gistscan_redis_up") == 1
    back = [r for r in caplog.records if "answers again after" in r.getMessage()]
    assert len(back) == 1
    assert TOKEN not in caplog.text and "http" not in caplog.text


async def test_a_redis_that_never_answers_costs_one_timeout_per_retry_interval(
    stores: Stores, redis_server: RedisServer
) -> None:
    """Paused (connections accepted, no answer): the first command waits out the timeout,
    the next ones are not sent until the retry interval has passed."""
    store = stores(timeout=0.2, retry_interval=5.0)
    cache = shared_cache(store)
    await cache.put_page("u", page())  # a pooled connection exists
    redis_server.pause()
    try:
        started = time.monotonic()
        assert await shared_cache(store).page("u") is None
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(50):
            assert await shared_cache(store).page("u") is None
        rest = time.monotonic() - started
    finally:
        redis_server.resume()
    assert 0.15 < first < 1.5
    assert rest < 0.5


async def test_a_flushed_redis_is_a_cold_cache(stores: Stores, inspect: aioredis.Redis) -> None:
    """FLUSHALL: the next lookups miss in Redis (memory still answers), and what is put
    afterwards is shared again."""
    a, b = shared_cache(stores()), shared_cache(stores())
    await a.put_page("u", page())
    await inspect.flushall()
    assert await b.page("u") is None
    mine = await a.page("u")
    assert mine is not None and mine.fresh
    await a.put_page("w", page(3))
    found = await b.page("w")
    assert found is not None and found.page == page(3)


# -- settings ------------------------------------------------------------------------------------


def test_redis_settings_are_read_checked_and_never_show_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every GISTSCAN_REDIS_* variable reaches its field; a bad one is refused naming the
    variable and never repeating the URL (it may hold a password), nor does a repr."""
    env = {
        "GISTSCAN_REDIS_URL": "redis://:s3cretpw@10.0.0.5:6380/2",
        "GISTSCAN_REDIS_KEY_PREFIX": "fleet:",
        "GISTSCAN_REDIS_TIMEOUT": "0.5",
        "GISTSCAN_REDIS_TTL": "600",
        "GISTSCAN_REDIS_RAW_MAX_FILE": "1000",
        "GISTSCAN_REDIS_LOCK_TIMEOUT": "3",
        "GISTSCAN_RATELIMIT_RESERVE": "50",
    }
    config = ServerConfig.from_env(env)
    assert (config.redis_url, config.redis_key_prefix) == (env["GISTSCAN_REDIS_URL"], "fleet:")
    assert (config.redis_timeout, config.redis_ttl, config.redis_lock_timeout) == (0.5, 600, 3)
    assert (config.redis_raw_max_file, config.ratelimit_reserve) == (1000, 50)
    assert "s3cretpw" not in repr(config)
    assert ServerConfig.from_env({}).redis_url is None
    for variable, value in (
        ("GISTSCAN_REDIS_URL", "http://:s3cretpw@h/0"),
        ("GISTSCAN_REDIS_URL", "redis://:s3cretpw@h:port/0"),
        ("GISTSCAN_REDIS_URL", "redis://:s3cretpw@h:6379/0?nosuchoption=1"),
        ("GISTSCAN_REDIS_TIMEOUT", "0"),
        ("GISTSCAN_REDIS_LOCK_TIMEOUT", "inf"),
        ("GISTSCAN_RATELIMIT_RESERVE", "-1"),
    ):
        with pytest.raises(UsageError) as caught:
            ServerConfig.from_env({**env, variable: value})
        assert caught.value.message.startswith(variable) and "s3cretpw" not in str(caught.value)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    with pytest.raises(UsageError, match=r"pip install 'gistscan\[redis\]'"):
        ServerConfig.from_env(env)
