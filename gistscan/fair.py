"""Matching threads shared fairly between searches: each search gets its own Executor view.

A first-come-first-served pool lets one search that queues many slow chunks (a catastrophic
pattern: each chunk may hold a thread for the file's whole regex budget) delay every other
search's chunks behind its own. Here each search submits to its own `Share`; the pool's
workers take work from the shares in turn (round robin), and one search never holds more
threads at once than its fair part of `cores`: all of them when it runs alone,
`max(1, cores // searches)` when several have work. The pool keeps enough threads (`threads`,
above `cores`) that a search arriving beside slow ones finds one idle at once; the
operating system then shares the cores between the running threads, so between searches.

A running chunk is never interrupted (a thread cannot be); it is bounded by the file's
regex budget. Work still queued when its search ends (`Share.shutdown`) is cancelled. The
threads are started with the pool and joined by `FairPool.shutdown`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(slots=True)
class _Work:
    future: Future[Any]
    fn: Callable[[], Any]


class Share(Executor):
    """One search's view of a `FairPool`: `submit` queues work for the pool's workers."""

    def __init__(self, pool: FairPool) -> None:
        self._pool = pool
        self.queue: deque[_Work] = deque()  # guarded by the pool's lock
        self.running = 0  # threads running this share's work now (same lock)
        self.closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self._pool._put(self, _Work(future, lambda: fn(*args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = True) -> None:
        """Cancel this share's queued work (running work finishes in its thread). Never
        waits: the pool's own shutdown does."""
        self._pool._close(self)


class FairPool:
    """Up to `threads` worker threads, shared round robin between `Share`s.

    `cores` is how many threads one search may use when it runs alone; with n searches
    having work, each may use `max(1, cores // n)` at once.
    """

    def __init__(self, *, cores: int, threads: int, name: str = "gistscan-match") -> None:
        if cores < 1 or threads < cores:
            raise ValueError("need 1 <= cores <= threads")
        self.cores = cores
        self.threads = threads
        self._lock = threading.Condition()
        self._busy: list[Share] = []  # shares with queued or running work, in turn order
        self._stopping = False
        # All started now: a thread waiting on the condition is what a notify() needs to
        # reach, so work never sits queued beside a thread that was about to start.
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-{i}") for i in range(threads)
        ]
        for worker in self._workers:
            worker.start()

    def share(self) -> Share:
        """A new Executor view for one search; `shutdown()` it when the search ends."""
        return Share(self)

    def _put(self, share: Share, work: _Work) -> None:
        with self._lock:
            if self._stopping or share.closed:
                raise RuntimeError("cannot schedule new work after shutdown")
            share.queue.append(work)
            if share not in self._busy:
                self._busy.append(share)
            self._lock.notify()

    def _close(self, share: Share) -> None:
        with self._lock:
            share.closed = True
            while share.queue:
                share.queue.popleft().future.cancel()
            if share.running == 0 and share in self._busy:
                self._busy.remove(share)
                self._wake()  # the others' caps grew

    def _next(self) -> tuple[Share, _Work] | None:
        """The next work to run (the lock held): the first share in turn order that has
        queued work and is under its cap; that share then goes to the back of the line."""
        cap = max(1, self.cores // max(1, len(self._busy)))
        for share in self._busy:
            if share.queue and share.running < cap:
                self._busy.remove(share)
                self._busy.append(share)
                share.running += 1
                return share, share.queue.popleft()
        return None

    def _wake(self) -> None:
        """Wake as many waiting workers as there is work now allowed to start (the lock
        held). Never all of them: with one thread per search slot, waking every thread on
        each finished chunk cost a busy server most of its CPU."""
        cap = max(1, self.cores // max(1, len(self._busy)))
        startable = sum(min(len(s.queue), cap - s.running) for s in self._busy if s.running < cap)
        if startable:
            self._lock.notify(startable)

    def _work(self) -> None:
        while True:
            with self._lock:
                picked = self._next()
                while picked is None:
                    if self._stopping:
                        return
                    self._lock.wait()
                    picked = self._next()
            share, work = picked
            if work.future.set_running_or_notify_cancel():
                try:
                    result = work.fn()
                except BaseException as exc:
                    work.future.set_exception(exc)
                else:
                    work.future.set_result(result)
            with self._lock:
                share.running -= 1
                if share.running == 0 and not share.queue and share in self._busy:
                    self._busy.remove(share)  # the others' caps grew
                self._wake()

    def shutdown(self, *, wait: bool = True) -> None:
        """Cancel all queued work; with `wait`, join the workers (each finishes the chunk
        it is matching, bounded by that file's regex budget)."""
        with self._lock:
            self._stopping = True
            for share in self._busy:
                share.closed = True
                while share.queue:
                    share.queue.popleft().future.cancel()
            self._lock.notify_all()
        if wait:
            for worker in self._workers:
                worker.join()
