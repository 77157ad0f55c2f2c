"""The fair matching pool: searches take turns, none holds more than its share of the cores."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future

import pytest

from gistscan.fair import FairPool

WAIT = 10.0  # seconds any single wait may take before the test fails (never reached when right)


@pytest.fixture
def pool() -> Iterator[FairPool]:
    pool = FairPool(cores=2, threads=6)
    yield pool
    pool.shutdown()


def blocker(gate: threading.Event, started: threading.Semaphore, name: str) -> str:
    started.release()
    assert gate.wait(WAIT)
    return name


def test_submit_runs_and_returns(pool: FairPool) -> None:
    """A share is an Executor: results and exceptions come back through its futures."""
    share = pool.share()
    assert share.submit(sum, [1, 2, 3]).result(WAIT) == 6
    failing = share.submit(int, "x")
    with pytest.raises(ValueError):
        failing.result(WAIT)
    share.shutdown()


def test_one_search_alone_uses_all_cores(pool: FairPool) -> None:
    """Alone, a search's chunks run on `cores` threads at once, no more."""
    share = pool.share()
    gate, started = threading.Event(), threading.Semaphore(0)
    futures = [share.submit(blocker, gate, started, f"c{i}") for i in range(4)]
    assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
    assert not started.acquire(timeout=0.2)  # the third waits for one of the two
    assert sum(f.running() for f in futures) == 2
    gate.set()
    assert [f.result(WAIT) for f in futures] == ["c0", "c1", "c2", "c3"]
    share.shutdown()


def test_a_newcomer_runs_at_once_beside_a_busy_search(pool: FairPool) -> None:
    """A search whose chunks hold the cores (a catastrophic pattern) does not make another
    search's chunk wait: it starts on a spare thread straight away."""
    slow, quick = pool.share(), pool.share()
    gate, started = threading.Event(), threading.Semaphore(0)
    held = [slow.submit(blocker, gate, started, f"slow{i}") for i in range(5)]
    assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
    assert quick.submit(lambda: "quick").result(WAIT) == "quick"
    assert sum(f.running() for f in held) == 2  # nothing of the slow search finished
    gate.set()
    for f in held:
        f.result(WAIT)
    slow.shutdown()
    quick.shutdown()


def test_several_searches_each_get_their_share() -> None:
    """With more searches than cores, each runs one chunk at a time: the busy ones cannot
    take threads from each other, and work is picked from each in turn."""
    pool = FairPool(cores=2, threads=8)
    try:
        shares = [pool.share() for _ in range(3)]
        gate = threading.Event()
        started = [threading.Semaphore(0) for _ in shares]
        futures = [
            [share.submit(blocker, gate, started[k], f"{k}.{i}") for i in range(3)]
            for k, share in enumerate(shares)
        ]
        for k in range(3):
            assert started[k].acquire(timeout=WAIT), f"search {k} never ran"
        # Alone the first search could have taken both cores; three at once get one each.
        # (The first may still hold a second thread it took before the others came.)
        running = [sum(f.running() for f in futures[k]) for k in range(3)]
        assert running[1] == running[2] == 1 and running[0] <= 2, running
        gate.set()
        for row in futures:
            for f in row:
                f.result(WAIT)
    finally:
        pool.shutdown()


def test_shutdown_of_a_share_cancels_its_queued_work(pool: FairPool) -> None:
    """A search that ends drops its queued chunks; the one running finishes in its thread."""
    share = pool.share()
    gate, started = threading.Event(), threading.Semaphore(0)
    futures = [share.submit(blocker, gate, started, f"c{i}") for i in range(5)]
    assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
    share.shutdown()
    queued = futures[2:]
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError):
        share.submit(lambda: None)
    gate.set()
    assert [f.result(WAIT) for f in futures[:2]] == ["c0", "c1"]
    for f in queued:
        with pytest.raises(CancelledError):
            f.result(WAIT)


async def test_cancelled_awaits_never_run() -> None:
    """`loop.run_in_executor(share, ...)` cancelled while queued: the work is skipped."""
    pool = FairPool(cores=1, threads=1)
    share = pool.share()
    gate, started = threading.Event(), threading.Semaphore(0)
    ran: list[str] = []
    loop = asyncio.get_running_loop()
    first = loop.run_in_executor(share, blocker, gate, started, "first")
    assert await asyncio.to_thread(started.acquire, True, WAIT)
    second = loop.run_in_executor(share, ran.append, "second")
    second.cancel()
    await asyncio.sleep(0)  # the loop passes the cancellation on to the pool's future
    gate.set()
    assert await first == "first"
    await asyncio.sleep(0.1)
    share.shutdown()
    await asyncio.to_thread(pool.shutdown)
    assert ran == []


def test_pool_shutdown_cancels_everything_queued() -> None:
    """The pool's shutdown cancels queued work at once and waits for the running chunk."""
    pool = FairPool(cores=1, threads=1)
    share = pool.share()
    gate, started = threading.Event(), threading.Semaphore(0)
    running = share.submit(blocker, gate, started, "running")
    assert started.acquire(timeout=WAIT)
    queued: Future[str] = share.submit(lambda: "queued")
    stopper = threading.Thread(target=pool.shutdown)
    stopper.start()
    deadline = time.monotonic() + WAIT
    while not queued.cancelled() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queued.cancelled() and stopper.is_alive()  # waiting for the running chunk
    gate.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert running.result(WAIT) == "running" and queued.cancelled()


def test_bad_sizes_are_refused() -> None:
    """A pool needs a core, and at least as many threads as cores."""
    with pytest.raises(ValueError):
        FairPool(cores=0, threads=1)
    with pytest.raises(ValueError):
        FairPool(cores=4, threads=2)
