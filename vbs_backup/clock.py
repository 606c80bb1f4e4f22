"""How the code waits and tells time: one `Clock`, and `poll_until`, the one loop that asks until an answer
is final or a deadline passes.

Every waiter takes a `Clock` rather than calling `asyncio.sleep`, `time.monotonic` or `datetime.now`
itself, so that tests (and the demo) hand in one whose sleeping advances the emulator's clock: no test
waits on wall-clock time. A leaf module: it imports nothing of the project, so the cloud client (the
lowest layer) waits with it too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

__all__ = ["SYSTEM_CLOCK", "Clock", "poll_until"]

T = TypeVar("T")


@dataclass(frozen=True)
class Clock:
    """How to wait (`sleep`), measure waits (`monotonic`, seconds) and say when it is (`now`, aware)."""

    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


SYSTEM_CLOCK = Clock()


async def poll_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float,
    interval: float,
    clock: Clock,
    started: float | None = None,
) -> T:
    """Ask `probe` until `done` says its answer is final, sleeping `interval` seconds between asks (never
    past the deadline); returns the last answer: final, or the one read once `timeout` seconds had passed
    since `started` (on `clock.monotonic`; default: now). What an answer means, and what a timeout returns
    or raises, is the caller's: `done(answer)` tells the two apart. Errors of `probe` propagate."""
    if started is None:
        started = clock.monotonic()
    while True:
        answer = await probe()
        if done(answer):
            return answer
        waited = clock.monotonic() - started
        if waited >= timeout:
            return answer
        await clock.sleep(min(interval, timeout - waited))
