"""What the HTTP layer retries, and how long it waits in between.

Exactly these, nothing else (`is_retryable`):

| outcome                                              | retried                              |
|------------------------------------------------------|--------------------------------------|
| connection never established (connect error/timeout) | always: the operation did not run    |
| other transport errors (read timeout, dropped conn.) | idempotent calls only                |
| 429 throttled                                        | always: the gateway refused it first |
| 500, 502, 503, 504                                   | idempotent calls only                |
| anything else                                        | never                                |

So a create POST is never re-sent after a timeout or a 5xx: it may have run, and re-sending would make a
second backup. The caller looks the backup up by its deterministic name instead (and the task layer retries
failed *jobs*, never these errors, so attempts do not multiply).

Waiting is exponential back-off with full jitter (`uniform(0, min(cap, base * 2**(attempt-1)))`), except
for a 429, which waits `Retry-After` (capped) and at least 2-3 s (a jittered floor) when the gateway says
APIGW.0308, as Huawei advises "retry after 2-5 s" (reference §5f). `RetryPolicy(wait=False)` removes
every wait, for tests; `sleep` can be injected.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from .errors import (
    ApiError,
    ThrottledError,
    TransportError,
    parse_error_body,
    parse_retry_after,
)

__all__ = ["RETRYABLE_5XX", "THROTTLE_CODES", "RetryPolicy", "describe", "is_retryable"]

Outcome = BaseException | httpx.Response

RETRYABLE_5XX = frozenset({500, 502, 503, 504})
# The gateway's throttling codes: OTC docs spell both (reference §5f).
THROTTLE_CODES = frozenset({"APIGW.0308", "APIG.0308"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


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
    """How many attempts (first one included) and how long to wait between them."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    wait: bool = True
    throttle_min_wait: float = 2.0
    sleep: Callable[[float], Awaitable[None]] = _asyncio_sleep
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must not be negative")

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
