"""The memory cache: pages within a byte budget, remembered 404s, raw bytes, single flight."""

from __future__ import annotations

import asyncio

import pytest

from gistscan.cache import MemoryCache, SingleFlight, StoredPage


def stored(size: int, etag: str = '"e"') -> StoredPage:
    return StoredPage(b"[" + b" " * (size - 2) + b"]", None, etag)


async def test_pages_stay_within_their_byte_budget() -> None:
    """Pages are kept by their body size: past the budget the least recently used go."""
    cache = MemoryCache(page_budget=1000)
    for name in "abc":
        await cache.put_page(name, stored(400))
    assert cache.page_bytes == 800
    assert await cache.page("a") is None  # evicted first
    assert await cache.page("b") is not None and await cache.page("c") is not None
    await cache.put_page("huge", stored(2000))  # bigger than the whole budget: not kept
    assert await cache.page("huge") is None and cache.page_bytes == 800
    await cache.put_page("b", stored(100))  # replaced, not counted twice
    assert cache.page_bytes == 500


async def test_a_404_is_remembered_for_the_page_ttl() -> None:
    """An unknown user's 404 is a hit within the TTL, forgotten after it, and replaced by a page."""
    cache = MemoryCache(page_ttl=0.05)
    await cache.put_not_found("u")
    assert await cache.not_found("u") is True
    await asyncio.sleep(0.06)
    assert await cache.not_found("u") is False
    await cache.put_not_found("v")
    await cache.put_page("v", stored(10))
    assert await cache.not_found("v") is False


async def test_raw_files_over_the_per_file_limit_are_not_kept() -> None:
    cache = MemoryCache(raw_budget=100, raw_max_file=10)
    await cache.put_raw("small", b"x" * 10)
    await cache.put_raw("big", b"x" * 11)
    assert (await cache.raw("small"), await cache.raw("big")) == (b"x" * 10, None)


async def test_single_flight_shares_one_run_and_its_failure() -> None:
    """Callers of one key while it runs share one run: its result, or its exception."""
    flights = SingleFlight()
    runs = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal runs
        runs += 1
        await gate.wait()
        return runs

    waiting = [asyncio.create_task(flights.share("k", work)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [1, 1, 1]

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("upstream said no")

    failing = [asyncio.create_task(flights.share("k", fail)) for _ in range(2)]
    for task in failing:
        with pytest.raises(ValueError, match="upstream said no"):
            await task
    assert await flights.share("k", work) == 2  # a later call runs again


async def test_single_flight_run_ends_with_its_last_caller() -> None:
    """One caller leaving keeps the run for the others; the last one leaving cancels it, and a
    newcomer then starts afresh rather than joining a run being cancelled."""
    flights = SingleFlight()
    cancelled = asyncio.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    first = asyncio.create_task(flights.share("k", slow))
    second = asyncio.create_task(flights.share("k", slow))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    assert not cancelled.is_set()
    second.cancel()
    await asyncio.wait_for(cancelled.wait(), 5)

    async def quick() -> str:
        return "fresh"

    assert await flights.share("k", quick) == "fresh"


async def test_a_download_marked_running_is_waited_for() -> None:
    flights = SingleFlight()
    assert flights.busy("u") is None
    with flights.running("u"):
        event = flights.busy("u")
        assert event is not None and not event.is_set()
    assert event.is_set() and flights.busy("u") is None
