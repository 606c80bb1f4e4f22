"""Our own request budget: an asyncio token bucket the session passes through before every attempt.

The gateway throttles per user per minute (reference §5f); staying under it ourselves is cheaper than
collecting 429s and backing off. One limiter is shared by every coroutine of a run (it is not thread-safe:
use it from one event loop). Waiters are served in arrival order: the lock is held while sleeping, so a
burst of callers queues up instead of all waking at once and overshooting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most `rate_per_second` acquisitions per second on average, `burst` at once after an idle spell.

    `rate_per_second=None` means unlimited. `clock` and `sleep` are injectable so tests can drive the
    bucket with a fake clock instead of waiting.
    """

    def __init__(
        self,
        rate_per_second: float | None,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_second is not None and rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive (or None for unlimited)")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate_per_second
        # default burst: one second's worth of requests
        self.burst = max(1, int(burst if burst is not None else (rate_per_second or 1)))
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._updated = clock()
        self._lock: asyncio.Lock | None = None  # created inside the running loop
        self.waited = 0.0  # total seconds spent waiting, for benchmarks

    def __repr__(self) -> str:
        return f"RateLimiter(rate_per_second={self.rate}, burst={self.burst})"

    def _refill(self) -> None:
        assert self.rate is not None
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> float:
        """Take one token, waiting for it if needed; returns the seconds waited."""
        if self.rate is None:
            return 0.0
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._refill()
            waited = 0.0
            if self._tokens < 1:
                waited = (1 - self._tokens) / self.rate
                await self._sleep(waited)
                self._refill()
                # a fake or coarse clock may not have moved by the full amount: the token is ours anyway
                self._tokens = max(self._tokens, 1.0)
            self._tokens -= 1
            self.waited += waited
            return waited
