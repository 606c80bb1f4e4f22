"""The quota preflight and the watchdog's quota checks, against the emulator over HTTP under a Prefect test
server. The example fleet's plan protects five disks of 40 + 100 + 40 + 200 + 50 = 430 GiB; each test sets
the project's quotas in the fleet spec (the emulator counts what is used and refuses a create beyond a
quota with `VolumeBackup.0080` / `.0081`, reference §2.1, §2.16).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from tests.emulator_state import calls
from tests.factories import plan
from tests.flows.prefect_logs import logged
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.watchdog import backup_watchdog
from vbs_backup.ledger import DiskBackup, Run

TRACEBACK_MARKS = ("Traceback", "Task run failed with exception", "Encountered exception during execution")


@pytest.fixture
def quotas(cloud_env, fleet_path: Path):
    """`quotas(backups=…, backup_gigabytes=…)`: reset the emulator to the example fleet with these quotas
    (and the flows' virtual-time job mode)."""

    def set_quotas(*, backups: int = -1, backup_gigabytes: int = -1) -> None:
        fleet = yaml.safe_load(fleet_path.read_text())
        fleet["projects"][0]["quotas"] = {"backups": backups, "backup_gigabytes": backup_gigabytes}
        fleet["settings"] = {"job_mode": "time"}
        cloud_env.control("POST", "/reset", json=fleet).raise_for_status()

    return set_quotas


def backups_in_cloud(emulator) -> int:
    return len(emulator.state.projects[emulator.project_id].backups)


def ledger_rows(ledger) -> tuple[list[Run], list[DiskBackup]]:
    with Session(ledger) as session:
        return list(session.exec(select(Run)).all()), list(session.exec(select(DiskBackup)).all())


# ------------------------------------------------------------------------------------------- preflight


async def test_a_night_beyond_the_backup_quota_is_refused_before_any_create(
    cloud_env, quotas, virtual_time, ledger
):
    quotas(backups=3, backup_gigabytes=100_000)

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_failed()
    assert state.message == (
        "quota shortfall: this night needs 5 new backups (430 GiB); the project has 3 backups left of 3 "
        "(short by 2) and 100,000 GiB left of 100,000. Retention runs only after the night's backups "
        "exist, so the old backups it would delete cannot make room: raise the quota or delete backups first"
    )
    assert calls(cloud_env, "vbs.create_backup") == 0 and backups_in_cloud(cloud_env) == 0
    assert sum(1 for e in cloud_env.state.request_log if e[0] == "vbs.get_quotas") == 1
    [run], attempts = ledger_rows(ledger)
    assert (run.status.value, run.message) == ("failed", state.message)
    assert attempts == []
    text = await logged(state)
    assert not [mark for mark in TRACEBACK_MARKS if mark in text], text


async def test_a_night_beyond_the_gigabyte_quota_is_refused_too(cloud_env, quotas, virtual_time, ledger):
    quotas(backups=1000, backup_gigabytes=429)

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_failed()
    assert "429 GiB left of 429 (short by 1)" in state.message
    assert calls(cloud_env, "vbs.create_backup") == 0
    [run], attempts = ledger_rows(ledger)
    assert run.status.value == "failed" and attempts == []


async def test_a_night_that_fits_exactly_runs(cloud_env, quotas, virtual_time, ledger):
    quotas(backups=5, backup_gigabytes=430)

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_completed(), state.message
    assert calls(cloud_env, "vbs.create_backup") == 5 and backups_in_cloud(cloud_env) == 5
    [run], attempts = ledger_rows(ledger)
    assert run.status.value == "completed" and {a.status.value for a in attempts} == {"succeeded"}


async def test_a_rerun_of_the_slot_adopts_and_needs_no_quota(cloud_env, quotas, virtual_time, ledger):
    quotas(backups=5, backup_gigabytes=430)
    assert (await nightly_backup(plan(), return_state=True)).is_completed()

    state = await nightly_backup(plan(), return_state=True)  # the same slot; the quota is now full

    assert state.is_completed(), state.message
    assert calls(cloud_env, "vbs.create_backup") == 5


async def test_a_dry_run_is_not_refused(cloud_env, quotas, virtual_time, ledger):
    quotas(backups=0)

    state = await nightly_backup(plan(dry_run=True), return_state=True)

    assert state.is_completed(), state.message
    assert not [e for e in cloud_env.state.request_log if e[0] in ("vbs.get_quotas", "vbs.create_backup")]


async def test_quotas_that_cannot_be_read_do_not_stop_the_night(cloud_env, quotas, virtual_time, ledger):
    quotas(backups=1000)
    fault = {"operation": "vbs.get_quotas", "kind": "error", "status": 400, "code": "VolumeBackup.0070"}
    cloud_env.control("POST", "/faults", json=fault).raise_for_status()

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_completed(), state.message
    assert calls(cloud_env, "vbs.create_backup") == 5
    assert "quotas not checked, the night goes on (cannot read them:" in await logged(state)


# -------------------------------------------------------------------------------------------- watchdog


async def test_the_watchdog_warns_above_80_percent_but_stays_green(cloud_env, quotas, virtual_time, ledger):
    quotas(backups=6, backup_gigabytes=100_000)
    assert (await nightly_backup(plan(), return_state=True)).is_completed()  # 5 of 6 used: 83 %

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_completed(), state.message
    assert state.message == (
        "all 5 protected disks have a good backup within the RPO; "
        "1 warning(s): quota backups: 83 % used (5 of 6 backups)"
    )
    assert "watchdog warning: quota backups: 83 % used (5 of 6 backups)" in await logged(state)


async def test_the_watchdog_says_nothing_at_50_percent(cloud_env, quotas, virtual_time, ledger):
    quotas(backups=10, backup_gigabytes=860)
    assert (await nightly_backup(plan(), return_state=True)).is_completed()  # 5 of 10, 430 of 860 GiB

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_completed(), state.message
    assert state.message == "all 5 protected disks have a good backup within the RPO"
    assert "quota" not in await logged(state)


async def test_a_used_up_quota_fails_the_watchdog(cloud_env, quotas, virtual_time, ledger):
    quotas(backups=1000, backup_gigabytes=430)
    assert (await nightly_backup(plan(), return_state=True)).is_completed()

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_failed()
    assert state.message == (
        "1 protection problem(s): quota backup_gigabytes: 100 % used (430 of 430 GiB): "
        "the next night cannot back up"
    )
