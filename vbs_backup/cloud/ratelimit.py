"""Our own request budget: an asyncio token bucket the session passes through before every attempt, whose
rate follows what the gateway really allows (AIMD), and which reports the rate it achieved.

The gateway throttles per user (reference §5f); staying under it ourselves is cheaper than collecting 429s
and backing off. But its limit is not documented and differs between clouds, services and accounts, so the
configured rate is only a ceiling: the session tells the limiter about every answer, and the limiter adapts
the way TCP does (additive increase, multiplicative decrease):

* `throttled(retry_after)` (a 429): the rate drops to just under what the gateway let through over the last
  few seconds (`OBSERVED_SECONDS`; that is the gateway's rate, measured), but by no more than `decrease`
  (0.5) and by at least 10 %, never below `min_rate` (0.1 req/s), at most once per `window` (1 s, extended
  to the end of a Retry-After pause): a burst of 429s from requests that were already on their way says
  the same thing once, so it lowers the rate once. The measured rate is kept as the gateway's estimate. The
  bucket is emptied (the gateway's is), and when the gateway sent `Retry-After` (capped at `max_pause`)
  no token is granted before that moment: every caller pauses, not only the throttled one; the first
  goes when the pause ends (the gateway has a token again then: that is what the header says).
* `succeeded()` (any other answer): the rate climbs by `increase_per_second` (default `rate_max / 20`) per
  second of answered traffic, at most one second's worth per answer (an idle spell is no evidence that a
  higher rate is fine), up to the configured maximum; answers within a decrease window do not count (they
  were sent at the old rate). Near the gateway's estimated rate (from 90 % to 120 % of it) it climbs
  gently instead, 1 % of the rate per second (`PROBE_PER_SECOND`): a 429 costs the throttled call a retry
  and every caller the Retry-After pause, so the limiter settles just under the gateway's rate and
  probes above it every several seconds, rather than sawing between half of it and all of it (measured
  with a 2 req/s gateway and a client configured for 10: see bench/README.md, run (b)). Beyond 120 % of
  the estimate without a 429 the gateway has become faster: the estimate is dropped, the climb is fast
  again.

The burst shrinks with the rate (`burst_max * rate / rate_max`, at least 1), so a slowed limiter does not
send a clump after an idle spell. `report()` returns a `RateReport`: requests granted, 429s seen, the rate
achieved, the current and the lowest rate (the nightly flow logs it at the end of a run).

One limiter is shared by every coroutine of a run (it is not thread-safe: use it from one event loop).
Waiters are served in arrival order: the lock is held while sleeping, so a burst of callers queues up
instead of all waking at once and overshooting; a waiter that wakes after the rate dropped or a pause began
meanwhile waits again before taking its token.

A `RateLimiter` knows only its own process. When several processes (Prefect workers) call one account, the
gateway sees their sum: a `RequestBudget` (the Protocol below) is the budget they share, which the session
also awaits once per attempt, after this limiter's token. This package only defines the hook; the budget
itself lives outside it (`vbs_backup.tasks.budget`: a Prefect global concurrency limit in rate-limit mode).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

__all__ = ["RateLimiter", "RateReport", "RequestBudget", "prepaid_token"]

OBSERVED_SECONDS = 5.0  # the answers of this last span measure what the gateway lets through
PROBE_PER_SECOND = 0.01  # near the gateway's estimated rate, climb by this share of the rate per second

# Tokens taken in advance for the current asyncio task (see `RateLimiter.acquire(count)`): its next
# single-token acquisition uses one instead of queueing again.
_PREPAID: ContextVar[int] = ContextVar("vbs_backup_prepaid_tokens", default=0)


class RequestBudget(Protocol):
    """A request budget shared with other processes: every process that calls one account takes one unit
    per request from it, so that together they stay within the account's rate (the gateway limits an
    account, not a process).

    `CloudSession` awaits `acquire()` once per HTTP attempt (retries and throttled attempts included: they
    reach the gateway too), after its own `RateLimiter`'s token and inside its in-flight bound, just before
    sending. It returns when the attempt may go; whatever it raises propagates out of the call unchanged,
    and nothing is sent (so it must not raise httpx's errors, which the session would take for the cloud's).

    A prepaid token (`prepaid_token`: a server's creates granted together by this process's limiter)
    covers the local limiter only: each of those creates still takes its own unit here, one by one, so a
    wave larger than the account's free burst leaves at the account's rate rather than at once. Units are
    never taken in batches, so the shared budget counts exactly the attempts sent.
    """

    async def acquire(self) -> None: ...


def prepaid_token() -> None:
    """Give the current task one token that was already taken from the limiter (by a batch `acquire`):
    its next request passes without waiting. Used so that a server's creates, granted together, are also
    sent together."""
    _PREPAID.set(_PREPAID.get() + 1)


def _take_prepaid() -> bool:
    held = _PREPAID.get()
    if held > 0:
        _PREPAID.set(held - 1)
        return True
    return False


@dataclass(frozen=True)
class RateReport:
    """What a `RateLimiter` granted and learnt so far; times are on the limiter's clock (monotonic).

    `granted` counts tokens handed out, one per HTTP attempt (retries and throttled attempts included);
    `succeeded`/`throttled` count the answers the session reported (`throttled` = 429s). `rate` is the
    current rate, `rate_max` the configured one, `lowest_rate` the lowest it went down to (all None for an
    unlimited limiter); `decreases` counts the times the rate was lowered; `waited` is the total seconds
    callers waited for tokens.
    """

    granted: int
    succeeded: int
    throttled: int
    decreases: int
    first_grant: float | None
    last_grant: float | None
    last_success: float | None
    rate: float | None
    rate_max: float | None
    lowest_rate: float | None
    waited: float

    @property
    def achieved_rate(self) -> float | None:
        """Answered (not throttled) requests per second, from the first grant to the last such answer: the
        rate the gateway really let through. None before two answers or when no time has passed."""
        if self.first_grant is None or self.last_success is None or self.succeeded < 2:
            return None
        span = self.last_success - self.first_grant
        return self.succeeded / span if span > 0 else None

    @property
    def sent_rate(self) -> float | None:
        """Attempts per second from the first to the last grant (throttled ones included): what we asked."""
        if self.first_grant is None or self.last_grant is None or self.granted < 2:
            return None
        span = self.last_grant - self.first_grant
        return (self.granted - 1) / span if span > 0 else None

    def describe(self) -> str:
        """One line for a run's log: `412 requests, 1.93 req/s achieved; 17 throttled (429); rate 2.5 req/s
        (configured 10, lowest 1.25)`."""

        def rate(value: float | None) -> str:
            return "unlimited" if value is None else f"{value:.3g}"

        achieved = self.achieved_rate
        return (
            f"{self.granted} requests, {'-' if achieved is None else f'{achieved:.3g}'} req/s achieved; "
            f"{self.throttled} throttled (429); rate {rate(self.rate)} req/s "
            f"(configured {rate(self.rate_max)}, lowest {rate(self.lowest_rate)})"
        )


class RateLimiter:
    """At most `rate_per_second` acquisitions per second on average, `burst` at once after an idle spell,
    adapting to the gateway's 429s (module docstring).

    `rate_per_second=None` means unlimited (429s are still counted and Retry-After pauses honoured, but
    there is no rate to adapt). `rate` is the current rate and `burst` the current burst; `rate_max` and
    `burst_max` are the configured ones. `clock` and `sleep` are injectable so tests can drive the bucket
    with a fake clock instead of waiting.
    """

    def __init__(
        self,
        rate_per_second: float | None,
        burst: int | None = None,
        *,
        min_rate: float = 0.1,
        decrease: float = 0.5,
        increase_per_second: float | None = None,
        window: float = 1.0,
        max_pause: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_second is not None and rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive (or None for unlimited)")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        if min_rate <= 0 or not 0 < decrease <= 1 or window < 0 or max_pause < 0:
            raise ValueError("need min_rate > 0, 0 < decrease <= 1, window >= 0 and max_pause >= 0")
        if increase_per_second is not None and increase_per_second < 0:
            raise ValueError("increase_per_second must not be negative")
        self.rate_max = rate_per_second
        self.rate = rate_per_second
        # default burst: one second's worth of requests
        self.burst_max = max(1, int(burst if burst is not None else (rate_per_second or 1)))
        self.min_rate = min(min_rate, rate_per_second) if rate_per_second is not None else min_rate
        self.decrease = decrease
        self.increase_per_second = (
            increase_per_second
            if increase_per_second is not None
            else (rate_per_second / 20 if rate_per_second is not None else 0.0)
        )
        self.window = window
        self.max_pause = max_pause
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst_max)
        self._updated = clock()
        self._paused_until = float("-inf")  # no token before this moment (Retry-After)
        self._window_end = float("-inf")  # no further decrease, and no increase, before this moment
        self._last_success = float("-inf")  # when the increase last counted an answer
        self._epoch = 0  # bumped whenever the rate drops or a pause begins: sleeping waiters re-check
        self._lock: asyncio.Lock | None = None  # created inside the running loop
        self.waited = 0.0  # total seconds spent waiting, for benchmarks
        self.lowest_rate = rate_per_second
        self._granted = 0
        self._succeeded = 0
        self._throttled = 0
        self._decreases = 0
        self._first_grant: float | None = None
        self._last_grant: float | None = None
        self._last_answer: float | None = None
        self._answers: deque[float] = deque()  # times of the answers of the last OBSERVED_SECONDS
        self.estimate: float | None = None  # the gateway's rate, as measured at the last decrease

    def __repr__(self) -> str:
        return f"RateLimiter(rate_per_second={self.rate}, burst={self.burst}, rate_max={self.rate_max})"

    @property
    def burst(self) -> int:
        """The current burst: the configured one scaled down with the rate (at least 1)."""
        if self.rate is None or self.rate_max is None:
            return self.burst_max
        return max(1, int(self.burst_max * self.rate / self.rate_max))

    def _refill(self) -> None:
        """Add the tokens earned since the last refill at the current rate; none are earned in a pause."""
        assert self.rate is not None
        now = self._clock()
        start = max(self._updated, self._paused_until)
        if now > start:
            self._tokens = min(self.burst, self._tokens + (now - start) * self.rate)
        self._updated = max(self._updated, now)

    def _wait_needed(self) -> float:
        """Seconds until a token can be granted: the rest of a pause, then the missing part of a token."""
        now = self._clock()
        pause = max(0.0, self._paused_until - now)
        if self.rate is None:
            return pause
        self._refill()
        return pause + max(0.0, 1 - self._tokens) / self.rate

    def pause_remaining(self) -> float:
        """Seconds until the current Retry-After pause ends (0 when there is none)."""
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self, count: int = 1) -> float:
        """Take `count` tokens, one after the other at the current rate, waiting for them if needed; returns
        the seconds waited. Nobody else is served in between, so callers that hold the tokens (see
        `prepaid_token`) can send their requests together. A single-token call made by a coroutine that
        holds a prepaid token uses it instead and does not wait."""
        if count == 1 and _take_prepaid():
            return 0.0
        if self.rate is None and self._paused_until == float("-inf"):
            for _ in range(count):
                self._granted_now()
            return 0.0
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            waited = 0.0
            for _ in range(count):
                waited += await self._take_one()
            self.waited += waited
            return waited

    async def _take_one(self) -> float:
        """One token, under the lock: waits out a pause, and again when the rate drops meanwhile."""
        waited = 0.0
        while (wait := self._wait_needed()) > 0:
            epoch = self._epoch
            await self._sleep(wait)
            waited += wait
            if self._epoch == epoch:
                # a fake or coarse clock may not have moved by the full amount: the token is ours anyway
                if self.rate is not None:
                    self._refill()
                    self._tokens = max(self._tokens, 1.0)
                break
            # the rate dropped or a pause began while we slept: wait for the new terms
        if self.rate is not None:
            self._tokens -= 1
        self._granted_now()
        return waited

    def _granted_now(self) -> None:
        now = self._clock()
        self._granted += 1
        if self._first_grant is None:
            self._first_grant = now
        self._last_grant = now

    def throttled(self, retry_after: float | None = None) -> None:
        """The gateway answered 429 (the call did not run): slow down, and pause every caller until
        `retry_after` seconds from now when the gateway said so (capped at `max_pause`)."""
        now = self._clock()
        self._throttled += 1
        paused = retry_after is not None and retry_after > 0
        if self.rate is not None:
            self._refill()
            # the gateway's bucket is empty: no clump when we resume; one token for the end of a pause
            self._tokens = 1.0 if paused else 0.0
        if paused and retry_after is not None:
            self._paused_until = max(self._paused_until, now + min(retry_after, self.max_pause))
        if self.rate is not None and self.lowest_rate is not None:
            if now >= self._window_end and self.rate > self.min_rate:
                observed = self._observed(now)
                target = self.rate * self.decrease if observed is None else 0.95 * observed
                self.rate = max(self.min_rate, min(self.rate * 0.9, max(self.rate * self.decrease, target)))
                self.estimate = observed
                self.lowest_rate = min(self.lowest_rate, self.rate)
                self._decreases += 1
                self._window_end = now + self.window
            # answers arriving during the pause come from requests sent before it
            self._window_end = max(self._window_end, self._paused_until)
        if paused or self.rate is not None:
            self._epoch += 1

    def succeeded(self) -> None:
        """The gateway let a request through (any answer but 429): probe a little higher."""
        now = self._clock()
        self._succeeded += 1
        self._last_answer = now
        self._answers.append(now)
        while self._answers and self._answers[0] < now - OBSERVED_SECONDS:
            self._answers.popleft()
        if self.rate is None or self.rate_max is None or now < self._window_end:
            return
        if self.rate < self.rate_max:
            # one second's worth at most: time without answers is no evidence that more would pass
            elapsed = min(1.0, now - max(self._last_success, self._window_end))
            self._refill()  # tokens earned so far at the old rate
            step = self.increase_per_second
            if self.estimate is not None and self.rate > 1.2 * self.estimate:
                self.estimate = None  # the gateway lets more through than it did: climb fast again
            elif self.estimate is not None and self.rate >= 0.9 * self.estimate:
                step = self.rate * PROBE_PER_SECOND
            self.rate = min(self.rate_max, self.rate + step * elapsed)
        self._last_success = now

    def _observed(self, now: float) -> float | None:
        """Answers per second over the last OBSERVED_SECONDS (over at least one second); None without any."""
        recent = [t for t in self._answers if t >= now - OBSERVED_SECONDS]
        if len(recent) < 2:
            return None
        return len(recent) / max(1.0, now - recent[0])

    def report(self) -> RateReport:
        """What was granted and learnt so far (see `RateReport`)."""
        return RateReport(
            granted=self._granted,
            succeeded=self._succeeded,
            throttled=self._throttled,
            decreases=self._decreases,
            first_grant=self._first_grant,
            last_grant=self._last_grant,
            last_success=self._last_answer,
            rate=self.rate,
            rate_max=self.rate_max,
            lowest_rate=self.lowest_rate,
            waited=self.waited,
        )

    def achieved_rate(self) -> float | None:
        """`report().achieved_rate`: answered (not throttled) requests per second so far."""
        return self.report().achieved_rate
