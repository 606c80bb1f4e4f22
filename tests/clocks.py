"""Stand-in clocks: the only things the client tests fake.

* `FakeTime`    - `clock`/`sleep` for the rate limiter: sleeping moves the clock; `during_sleep` runs inside
                  a sleep (to play a 429 that arrives while a caller waits).
* `VirtualTime` - `sleep`/`clock` for `wait_for_job(clock=Clock(sleep=..., monotonic=...))`: the same,
                  and with `move_emulator=True` it also advances the emulator's clock (for jobs in "time"
                  mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.during_sleep: list[object] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        while self.during_sleep:
            self.during_sleep.pop(0)()  # type: ignore[operator]
        self.now += seconds


@dataclass
class VirtualTime:
    emulator: Any
    move_emulator: bool = False
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.move_emulator:
            self.emulator.control("POST", "/clock/advance", json={"seconds": seconds}).raise_for_status()
