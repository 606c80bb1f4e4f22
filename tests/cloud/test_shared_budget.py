"""The session's hook for a request budget shared with other processes (`RequestBudget`, ratelimit.py): one
unit per HTTP attempt, retries and throttled attempts included, taken after the process's own limiter and
before anything is sent. The real client against the emulator over a socket; the budget is a recorder
(the Prefect one, tasks/budget.py, is tested on a real Prefect server: tests/server/test_estate_limits.py).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.clients import connect
from vbs_backup.cloud import RateLimiter
from vbs_backup.cloud.ratelimit import prepaid_token


class RecordingBudget:  # a `RequestBudget`
    """Counts `acquire` calls, noting how many tokens the local limiter had granted at each; can hold
    callers until `opened` is set, or fail."""

    def __init__(self, limiter: RateLimiter | None = None, *, fail: Exception | None = None) -> None:
        self.limiter = limiter
        self.fail = fail
        self.granted_before: list[int | None] = []
        self.opened = asyncio.Event()
        self.opened.set()

    @property
    def calls(self) -> int:
        return len(self.granted_before)

    async def acquire(self) -> None:
        self.granted_before.append(self.limiter.report().granted if self.limiter else None)
        await self.opened.wait()
        if self.fail is not None:
            raise self.fail


def add_fault(emulator, **rule) -> None:
    emulator.control("POST", "/faults", json=rule).raise_for_status()


async def test_every_attempt_takes_one_unit_retries_and_throttled_ones_included(emulator, wire):
    budget = RecordingBudget()
    add_fault(emulator, operation="vbs.get_quotas", kind="error", status=503, count=2)
    add_fault(emulator, operation="evs.list_volumes", kind="error", status=429, count=1)
    async with connect(emulator, shared_budget=budget) as client:
        await client.vbs.get_quotas()
        await client.evs.list_volumes()
        stats = dict(client.session.stats)

    assert wire.statuses("vbs.get_quotas") == [503, 503, 200]
    assert wire.statuses("evs.list_volumes") == [429, 200]
    # As many units as requests that crossed the socket: the gateway counts them all.
    assert budget.calls == len(wire.entries()) == sum(stats.values()) == 5


async def test_the_unit_is_taken_after_the_local_token_even_a_prepaid_one(emulator, wire):
    async with connect(emulator, max_requests_per_second=1000) as client:
        limiter = client.session.rate_limiter
        assert limiter is not None
        budget = RecordingBudget(limiter)
        client.session.shared_budget = budget
        await client.vbs.get_quotas()
        await client.vbs.get_quotas()
        # A token taken in advance (a server's creates granted together) covers the local limiter only.
        await limiter.acquire(1)
        prepaid_token()
        await client.vbs.get_quotas()

    assert budget.granted_before == [1, 2, 3]  # the local token was always there first
    assert limiter.report().granted == 3 and len(wire.entries()) == 3


async def test_nothing_is_sent_before_the_budget_says_so(emulator, wire):
    budget = RecordingBudget()
    budget.opened.clear()
    async with connect(emulator, shared_budget=budget) as client:
        call = asyncio.create_task(client.vbs.get_quotas())
        while budget.calls == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert wire.entries() == [] and not call.done()
        budget.opened.set()
        await call

    assert wire.statuses("vbs.get_quotas") == [200]


async def test_a_failing_budget_stops_the_call_before_anything_is_sent(emulator, wire):
    refused = RuntimeError("no slot for you")
    async with connect(emulator, shared_budget=RecordingBudget(fail=refused)) as client:
        with pytest.raises(RuntimeError) as caught:
            await client.vbs.get_quotas()

    assert caught.value is refused  # unchanged, and not retried
    assert wire.entries() == []
