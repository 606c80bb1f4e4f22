"""Expected failures end a run Failed with one clear line and no traceback; a bug keeps its traceback.

Expected: a plan's unknown server, credentials the cloud refuses, settings that are missing or do not
validate. Each flow runs under the Prefect test server against the emulator; what Prefect recorded is read
back through its API (the run's logs, as the UI shows them), the ledger through its tables.
"""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from tests.factories import plan
from tests.flows.prefect_logs import logged
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.policies import policy_audit
from vbs_backup.flows.restore import restore_disk, restore_drill
from vbs_backup.flows.sharing import share_backups
from vbs_backup.flows.watchdog import backup_watchdog
from vbs_backup.ledger import Run
from vbs_backup.tasks import discovery

UNKNOWN = "00000000-0000-4000-8000-000000000000"
WRONG_SK = "not-the-secret-0123456789"
THIRD_PROJECT = "aabbccddeeff00112233445566778899"  # any 32-hex id other than ours is a valid target
TRACEBACK_MARKS = ("Traceback", "Task run failed with exception", "Encountered exception during execution")


def runs(ledger) -> list[Run]:
    with Session(ledger) as session:
        return list(session.exec(select(Run)).all())


def assert_clean(text: str) -> None:
    found = [mark for mark in TRACEBACK_MARKS if mark in text]
    assert not found, text


async def test_an_unknown_server_fails_the_run_with_one_line_and_no_traceback(
    cloud_env, virtual_time, ledger
):
    state = await nightly_backup(plan(selection={"ids": [UNKNOWN]}), return_state=True)

    assert state.is_failed()
    assert state.message == f"unknown server id(s) in the plan: {UNKNOWN}"
    assert_clean(await logged(state))
    [run] = runs(ledger)
    assert (run.status.value, run.message) == ("failed", state.message)  # failed, not crashed
    assert not cloud_env.state.projects[cloud_env.project_id].backups


async def test_a_wrong_sk_names_code_request_and_what_to_check_without_the_gateway_dump(
    cloud_env, virtual_time, ledger, monkeypatch
):
    monkeypatch.setenv("VBS_BACKUP_SK", WRONG_SK)

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_failed()
    message = state.message
    assert "401 APIGW.0301" in message
    assert "verify aksk signature fail (check the AK/SK pair and the machine's clock)" in message
    assert "(request " in message and "canonicalRequest" not in message and "|" not in message
    assert WRONG_SK not in message and cloud_env.sk not in message
    assert "\n" not in message
    text = await logged(state)
    assert_clean(text)
    assert WRONG_SK not in text
    [run] = runs(ledger)
    assert (run.status.value, run.message) == ("failed", message)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("VBS_BACKUP_PROJECT_ID", None, "VBS_BACKUP_PROJECT_ID is not set"),
        ("VBS_BACKUP_REGION", "Not A Region!", "invalid settings: region: must look like eu-west-0"),
    ],
)
async def test_missing_or_invalid_settings_fail_with_one_line(
    cloud_env, virtual_time, monkeypatch, variable, value, expected
):
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_failed()
    assert state.message.startswith(expected) and "\n" not in state.message
    assert_clean(await logged(state))


# The other flows, run with a wrong SK: each one's first cloud call (its preflight) is refused.
OTHER_FLOWS = {
    "policy-audit": lambda: policy_audit(return_state=True),
    "share-backups": lambda: share_backups(plan(), [THIRD_PROJECT], return_state=True),
    "restore-disk": lambda: restore_disk(UNKNOWN, return_state=True),
    "restore-drill": lambda: restore_drill(plan(), sample=2, return_state=True),
}


@pytest.mark.parametrize("name", list(OTHER_FLOWS))
async def test_the_other_flows_end_the_same_way(cloud_env, virtual_time, ledger, monkeypatch, name):
    monkeypatch.setenv("VBS_BACKUP_SK", WRONG_SK)

    state = await OTHER_FLOWS[name]()

    assert state.is_failed()
    message = state.message
    assert "401 APIGW.0301" in message and "(check the AK/SK pair" in message, message
    assert "\n" not in message and "canonicalRequest" not in message
    assert WRONG_SK not in message and cloud_env.sk not in message
    text = await logged(state)
    assert_clean(text)
    assert WRONG_SK not in text


async def test_the_watchdog_reports_an_unreadable_cloud_without_a_task_traceback(
    cloud_env, virtual_time, ledger, monkeypatch
):
    monkeypatch.setenv("VBS_BACKUP_SK", WRONG_SK)

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_failed() and "cannot list the plan's disks" in state.message
    assert "APIGW.0301" in state.message
    assert_clean(await logged(state))


async def test_a_bug_keeps_its_traceback_and_marks_the_run_crashed(
    cloud_env, virtual_time, ledger, monkeypatch
):
    async def broken(client, plan):
        raise RuntimeError("a bug in discovery")

    monkeypatch.setattr(discovery, "discover_targets", broken)

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_failed() and "RuntimeError" in state.message
    text = await logged(state)
    assert "Traceback" in text and "a bug in discovery" in text
    [run] = runs(ledger)
    assert run.status.value == "crashed"
