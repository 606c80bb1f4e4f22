"""Fixtures for flow tests: every one runs on the session's Prefect test server (tests/conftest.py, which
also gives `cloud_env`, the VBS_BACKUP_ settings pointing at the emulator, and `ledger_url`), with a fresh
SQLite ledger per test and virtual time.

Virtual time: the flows wait between poll rounds through `tasks.runtime`'s clock (`run_clock`). Here sleeping
advances the emulator's ManualClock instead of waiting, and "now" is the emulator's clock, so a backup job
of several virtual minutes finishes in a few real milliseconds and no test sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from vbs_backup.clock import Clock
from vbs_backup.ledger import init_db, make_engine
from vbs_backup.tasks.runtime import use_clock


@pytest.fixture(scope="session", autouse=True)
def prefect_server(prefect_server: None) -> None:
    return prefect_server


@pytest.fixture
def ledger(ledger_url: str) -> Engine:
    engine = make_engine(ledger_url)
    init_db(engine)
    return engine


@pytest.fixture
def virtual_time(emulator) -> Iterator[Clock]:
    clock = emulator.state.clock

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    source = Clock(sleep=sleep, monotonic=lambda: clock.now().timestamp(), now=clock.now)
    with use_clock(source):
        yield source
