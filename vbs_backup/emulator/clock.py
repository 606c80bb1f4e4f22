"""The emulator's clock: every timestamp and every job deadline is read from here.

Tests use a `ManualClock` and move time forward on demand (no sleeps); demos and benchmarks use a
`ScaledClock`, real time multiplied by a speed factor, so a ten-minute backup job takes six seconds at
speed 100.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


def real_now() -> datetime:
    """The real current UTC time, rounded down to the second."""
    return datetime.now(UTC).replace(microsecond=0)


class Clock:
    """Virtual UTC time. Subclasses decide how it moves."""

    def now(self) -> datetime:  # pragma: no cover - interface
        raise NotImplementedError

    def advance(self, seconds: float) -> datetime:
        """Jump forward by `seconds` of virtual time (allowed on every clock, useful in demos too)."""
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        return {"kind": type(self).__name__, "now": self.now().isoformat()}


class ManualClock(Clock):
    """Stands still until `advance` (or `set`) is called.

    Without `start` it begins at the real current time, rounded down to the second: timestamps then look
    current and a client that signs AK/SK requests with its real clock is within the gateway's +-15 min
    window (reference §5c) until the clock is advanced far.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or real_now()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class ScaledClock(Clock):
    """Real time times `speed`, starting at the real current time; `advance` adds an offset."""

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._origin_real = time.monotonic()
        self._origin_virtual = start or datetime.now(UTC)
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._origin_real) * self.speed
        with self._lock:
            return self._origin_virtual + timedelta(seconds=elapsed) + self._offset

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "speed": self.speed}
