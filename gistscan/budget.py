"""GitHub's budget as last heard: when each host may be asked again, and the API's rate limit.

One `Budget` is shared by every request of a process (the server's searches, or one CLI
search), and the GitHub client consults it before each request. Times are Unix seconds, so a
store shared between processes (Redis) can hold the same state behind the same async methods.
"""

from __future__ import annotations

import time

from gistscan.metrics import GITHUB_RATELIMIT_REMAINING, GITHUB_RATELIMIT_RESET

# Longest wait any upstream may impose on us: GitHub's rate-limit window is an hour, so a
# Retry-After or x-ratelimit-reset further away than this is taken to mean this.
MAX_WAIT = 3600.0


class Budget:
    """When each host kind (`api`, `raw`) may be asked again, and the API's last rate limit.

    A host is held after it refused us for a rate limit (a secondary limit, a 429 of the raw
    host: "the whole client should wait"), or when the API's `x-ratelimit-remaining` fell
    under `reserve` (at least 1: an exhausted limit always holds): no request goes to it
    before the hold ends, the reset. Answers kept in a cache need no request, so searches
    served from it go on.
    """

    def __init__(self, *, reserve: int = 0) -> None:
        self.reserve = reserve
        self._until: dict[str, float] = {}  # host kind -> Unix time it may be asked again
        self.remaining: int | None = None  # the API's last x-ratelimit-remaining
        self.reset: float | None = None  # the API's last x-ratelimit-reset (Unix seconds)

    @property
    def exhausted(self) -> bool:
        """Whether the API's primary limit, as last heard, is used up (or under the reserve)."""
        if self.remaining is None or self.reset is None or self.reset <= time.time():
            return False
        return self.remaining < max(1, self.reserve)

    async def wait(self, host: str) -> float:
        """Seconds before `host` may be asked again (0.0: now)."""
        return max(0.0, self._until.get(host, 0.0) - time.time())

    async def hold(self, host: str, seconds: float) -> None:
        """Ask `host` nothing for `seconds` (clamped to 0..MAX_WAIT) from now; a longer hold
        already set stands."""
        until = time.time() + min(max(seconds, 0.0), MAX_WAIT)
        if until > self._until.get(host, 0.0):
            self._until[host] = until

    async def observe(self, remaining: int, reset: float) -> None:
        """The API's `x-ratelimit-remaining` and `-reset` of an answer: kept (and exported as
        gauges); under the reserve (or at 0), the API is held until the reset."""
        self.remaining, self.reset = remaining, reset
        GITHUB_RATELIMIT_REMAINING.set(remaining)
        GITHUB_RATELIMIT_RESET.set(reset)
        if remaining < max(1, self.reserve):
            await self.hold("api", reset - time.time())
