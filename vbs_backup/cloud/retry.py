"""What the HTTP layer retries, and how long it waits in between.

Exactly these, nothing else (`is_retryable`):

| outcome                                              | retried                              |
|------------------------------------------------------|--------------------------------------|
| connection never established (connect error/timeout) | always: the operation did not run    |
| other transport errors (read timeout, dropped conn.) | idempotent calls only                |
| 429 throttled                                        | always, until the throttle deadline  |
| 500, 502, 503, 504                                   | idempotent calls only                |
| anything else                                        | never                                |

So a create POST is never re-sent after a timeout or a 5xx: it may have run, and re-sending would make a
second backup. The caller looks the backup up by its deterministic name instead (and the task layer retries
failed *jobs*, never these errors, so attempts do not multiply).

A 429 means the gateway refused the call before it ran, so re-sending it is safe for every method, creates
included, and says nothing about the call itself: throttled attempts are not counted against
`max_attempts` (which bounds the other failures, as before) but retried until a deadline. The caller sets
that deadline around a unit of work with `retry_throttled_until(time.monotonic() + budget)` (a context
variable: every asyncio task runs in a copy of its creator's context, so each disk's task can have its
own); without one, a call gives up `RetryPolicy.throttle_patience` (900 s) after its first attempt. A
throttled call gives up, raising the `ThrottledError` of its last answer, when its next attempt could not
start before the deadline. `RetryPolicy.start()` returns the per-call book-keeping (`CallRetries`).

Waiting is exponential back-off with full jitter (`uniform(0, min(cap, base * 2**(attempt-1)))`), except
for a 429, which waits `Retry-After` (capped) and at least 2-3 s (a jittered floor) when the gateway says
APIGW.0308, as Huawei advises "retry after 2-5 s" (reference §5f). `RetryPolicy(wait=False)` removes
every wait, for tests (give it a short `throttle_patience` or a deadline when the test throttles without
end); `sleep` and `clock` (which the deadline is read on) can be injected.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import httpx

from .errors import (
    ApiError,
    ThrottledError,
    TransportError,
    parse_error_body,
    parse_retry_after,
)

__all__ = [
    "RETRYABLE_5XX",
    "THROTTLE_CODES",
    "CallRetries",
    "RetryPolicy",
    "describe",
    "is_retryable",
    "retry_throttled_until",
    "throttle_deadline",
]

Outcome = BaseException | httpx.Response

RETRYABLE_5XX = frozenset({500, 502, 503, 504})
# The gateway's throttling codes: OTC docs spell both (reference §5f).
THROTTLE_CODES = frozenset({"APIGW.0308", "APIG.0308"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_THROTTLE_DEADLINE: ContextVar[float | None] = ContextVar("vbs_backup_throttle_deadline", default=None)


@contextmanager
def retry_throttled_until(deadline_monotonic: float | None) -> Iterator[None]:
    """Within this block (this task and the tasks it starts), throttled calls are retried until
    `deadline_monotonic` (on `RetryPolicy.clock`, `time.monotonic()` by default), instead of for the
    policy's `throttle_patience`; None restores that default. Nests: the innermost block wins."""
    token = _THROTTLE_DEADLINE.set(deadline_monotonic)
    try:
        yield
    finally:
        _THROTTLE_DEADLINE.reset(token)


def throttle_deadline() -> float | None:
    """The deadline set by the innermost `retry_throttled_until` around the caller, or None."""
    return _THROTTLE_DEADLINE.get()


def _status(outcome: Outcome) -> int | None:
    if isinstance(outcome, httpx.Response):
        return outcome.status_code
    if isinstance(outcome, ApiError):
        return outcome.http_status
    return None


def _code(outcome: Outcome) -> str | None:
    if isinstance(outcome, httpx.Response):
        return parse_error_body(outcome)[0]
    if isinstance(outcome, ApiError):
        return outcome.code
    return None


def is_retryable(outcome: Outcome, idempotent: bool) -> bool:
    """True when a call that ended in `outcome` (an exception or an error response) may be sent again."""
    if isinstance(outcome, TransportError):
        return idempotent or not outcome.may_have_reached_server
    if isinstance(outcome, httpx.TransportError):
        return idempotent or isinstance(outcome, _NOT_SENT)
    status = _status(outcome)
    if status == 429:
        return True
    if status in RETRYABLE_5XX:
        return idempotent
    return False


def describe(outcome: Outcome) -> str:
    """A short reason for a retry log line: `503 VolumeBackup.0900`, `ReadTimeout`. Never a secret."""
    status = _status(outcome)
    if status is not None:
        code = _code(outcome)
        return f"{status} {code}" if code else str(status)
    if isinstance(outcome, TransportError) and outcome.__cause__ is not None:
        return type(outcome.__cause__).__name__
    return type(outcome).__name__


def _retry_after(outcome: Outcome) -> float | None:
    if isinstance(outcome, httpx.Response):
        return parse_retry_after(outcome.headers.get("Retry-After"))
    if isinstance(outcome, ThrottledError):
        return outcome.retry_after
    return None


async def _asyncio_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts (first one included; throttled ones not counted) and how long to wait between
    them; how long a throttled call keeps trying when the caller set no deadline (`throttle_patience`
    seconds from its first attempt)."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    wait: bool = True
    throttle_min_wait: float = 2.0
    sleep: Callable[[float], Awaitable[None]] = _asyncio_sleep
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    throttle_patience: float = 900.0
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must not be negative")
        if self.throttle_patience < 0:
            raise ValueError("throttle_patience must not be negative")

    def start(self) -> CallRetries:
        """The retry book-keeping of one call that starts now, under the caller's throttle deadline."""
        deadline = throttle_deadline()
        if deadline is None:
            deadline = self.clock() + self.throttle_patience
        return CallRetries(self, deadline)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential back-off after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return self.rng.uniform(0, ceiling)

    def delay(self, attempt: int, outcome: Outcome) -> float:
        """Seconds to wait before the attempt after `attempt`, which ended in `outcome`."""
        if not self.wait:
            return 0.0
        if _status(outcome) == 429:
            retry_after = _retry_after(outcome)
            seconds = min(retry_after, self.cap) if retry_after is not None else self.backoff(attempt)
            floor = min(self.throttle_min_wait, self.cap)
            if _code(outcome) in THROTTLE_CODES and seconds < floor:
                # up to 50 % jitter on top, so that callers throttled together do not all come back together
                seconds = min(floor + self.rng.uniform(0, floor / 2), self.cap)
            return seconds
        return self.backoff(attempt)

    async def pause(self, seconds: float) -> None:
        if self.wait and seconds > 0:
            await self.sleep(seconds)


class CallRetries:
    """One call's retries: failures counted against `max_attempts` (everything but 429) and throttled
    attempts, which are retried until `deadline` (on the policy's clock) instead."""

    def __init__(self, policy: RetryPolicy, deadline: float) -> None:
        self.policy = policy
        self.deadline = deadline
        self.failures = 0  # failed attempts that count against max_attempts
        self.throttled = 0  # attempts answered 429

    def next_delay(self, outcome: Outcome, idempotent: bool, *, not_before: float = 0.0) -> float | None:
        """Seconds to wait before re-sending a call whose last attempt ended in `outcome`, or None to give
        up. `not_before`: seconds before which the next attempt cannot start anyway (our rate limiter's
        Retry-After pause), so that a throttled call gives up now rather than after the deadline."""
        if _status(outcome) == 429:
            self.throttled += 1
            delay = self.policy.delay(self.throttled, outcome)
            if self.policy.clock() + max(delay, not_before) >= self.deadline:
                return None
            return delay
        self.failures += 1
        if self.failures >= self.policy.max_attempts or not is_retryable(outcome, idempotent):
            return None
        return self.policy.delay(self.failures, outcome)

    def remaining(self) -> float:
        """Seconds left until the throttle deadline."""
        return max(0.0, self.deadline - self.policy.clock())
