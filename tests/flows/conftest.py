"""Fixtures for flow tests: one Prefect test server for the session, the VBS_BACKUP_ settings pointing
at the emulator, a fresh SQLite ledger per test, and virtual time.

Virtual time: the flows wait between poll rounds through `tasks.runtime`'s time source. Here sleeping
advances the emulator's ManualClock instead of waiting, and "now" is the emulator's clock, so a backup job
of several virtual minutes finishes in a few real milliseconds and no test sleeps.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before Prefect reads its settings: a private home, no telemetry, room for a slow first start.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="vbsb-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import Engine

from vbs_backup.ledger import init_db, make_engine
from vbs_backup.tasks.runtime import TimeSource, use_time_source


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def cloud_env(emulator, ledger_url: str, monkeypatch: pytest.MonkeyPatch):
    """The flows' settings point at the emulator (AK/SK) and a fresh ledger; jobs run on the clock."""
    for key, value in {
        "VBS_BACKUP_ENDPOINT": emulator.url,
        "VBS_BACKUP_PROJECT_ID": emulator.project_id,
        "VBS_BACKUP_AK": emulator.ak,
        "VBS_BACKUP_SK": emulator.sk,
        "VBS_BACKUP_DATABASE_URL": ledger_url,
        "VBS_BACKUP_MAX_REQUESTS_PER_SECOND": "1000",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("VBS_BACKUP_USERNAME", "VBS_BACKUP_PASSWORD", "VBS_BACKUP_DOMAIN"):
        monkeypatch.delenv(key, raising=False)
    emulator.control("POST", "/settings", json={"job_mode": "time"}).raise_for_status()
    return emulator


@pytest.fixture
def ledger(ledger_url: str) -> Engine:
    engine = make_engine(ledger_url)
    init_db(engine)
    return engine


@pytest.fixture
def virtual_time(emulator) -> Iterator[TimeSource]:
    clock = emulator.state.clock

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    source = TimeSource(sleep=sleep, monotonic=lambda: clock.now().timestamp(), now=clock.now)
    with use_time_source(source):
        yield source
