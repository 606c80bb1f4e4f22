"""The watchdog flow against the emulator and a real ledger (its checks as pure functions are in
tests/core/test_watchdog_check.py)."""

from __future__ import annotations

import re

from tests.factories import plan
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.watchdog import backup_watchdog

DB_01 = "990f449e-b54d-4554-b65d-0d8dedb27e13"


async def test_the_watchdog_is_green_after_a_good_night(cloud_env, virtual_time, ledger):
    assert (await nightly_backup(plan(), return_state=True)).is_completed()

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_completed(), state.message
    assert state.message == "all 5 protected disks have a good backup within the RPO"


async def test_a_day_without_a_run_fails_naming_every_stale_disk_and_the_missed_run(
    cloud_env, virtual_time, ledger
):
    assert (await nightly_backup(plan(), return_state=True)).is_completed()
    cloud_env.state.clock.advance(27 * 3600)  # the next night's run never happened

    state = await backup_watchdog(plan(), rpo_hours=26, return_state=True)

    assert state.is_failed()
    assert "plan nightly: no run started in the last 26.0 h" in state.message
    for label in ("web-01 /dev/vda", "web-01 /dev/vdb", "db-01 /dev/vda", "db-01 /dev/vdb", "db-01 /dev/vdc"):
        # 27 h and the few virtual minutes the night's job polling took
        assert re.search(rf"{label}: newest good backup is 27\.\d h old \(RPO 26\.0 h\)", state.message)


async def test_a_disk_that_no_run_has_backed_up_fails_the_watchdog(cloud_env, virtual_time, ledger):
    # Last night's plan left db-01 out; today's plan protects it.
    assert (
        await nightly_backup(plan(selection={"name_patterns": ["web-*"]}), return_state=True)
    ).is_completed()

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_failed()
    for device in ("/dev/vda", "/dev/vdb", "/dev/vdc"):
        assert f"db-01 {device}: never backed up (no run has attempted it yet)" in state.message
    assert "web-01" not in state.message


async def test_a_cloud_outage_is_reported_and_the_ledger_is_still_checked(cloud_env, virtual_time, ledger):
    assert (await nightly_backup(plan(), return_state=True)).is_completed()
    cloud_env.control(
        "POST", "/faults", json={"operation": "*", "kind": "error", "status": 403, "code": "APIGW.0301"}
    ).raise_for_status()
    cloud_env.state.clock.advance(27 * 3600)

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_failed()
    assert "plan nightly: cannot list the plan's disks" in state.message
    assert re.search(r"db-01 /dev/vdb: newest good backup is 27\.\d h old", state.message)  # the ledger's
