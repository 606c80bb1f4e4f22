"""What an operator sees of a run in Prefect (issue 11), read back from Prefect's API after real runs
against the emulator: a failed disk is its own failed task run named for the disk while the rest of the
night goes on; the flow run carries its own summary (failures first, with the reason) and a progress
artifact; runs are named for what they do; a server is chosen by name or id, and a typo ends the run in
a state that pages nobody."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from sqlmodel import Session, select

from tests.factories import plan
from vbs_backup.flows.failures import INVALID_INPUT
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.server import backup_server
from vbs_backup.ledger import Run

DB_DATA = "799600d6-5263-432d-84cf-6130bcb70380"  # db-01 /dev/vdb
WEB = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
WEB_DISKS = {"0b2e4f71-8c3d-4e5a-9b6c-7d8e9f0a1b2c", "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"}


async def task_runs(flow_run_id: UUID, *, expect: int) -> dict[str, object]:
    """The flow run's task runs by name, once the server has recorded `expect` of them in a final state
    (task run states reach the server as events, a moment after the flow returns)."""
    deadline = asyncio.get_running_loop().time() + 60
    async with get_client() as client:
        while True:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            final = [r for r in runs if r.state is not None and r.state.is_final()]
            if len(final) >= expect or asyncio.get_running_loop().time() > deadline:
                return {r.name: r for r in runs}
            await asyncio.sleep(0.2)


async def artifacts(flow_run_id: UUID) -> dict[str, object]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


async def flow_run_name(flow_run_id: UUID) -> str:
    async with get_client() as client:
        return (await client.read_flow_run(flow_run_id)).name


async def test_a_failed_disk_is_a_red_task_run_named_for_it_and_the_night_goes_on(cloud_env, virtual_time):
    cloud_env.control("POST", "/job_faults", json={"mode": "fail", "volume_id": DB_DATA}).raise_for_status()

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_failed()
    runs = await task_runs(state.state_details.flow_run_id, expect=13)
    disks = {name: r for name, r in runs.items() if name.startswith("back up ")}
    assert set(disks) == {
        "back up db-01 /dev/vda",
        "back up db-01 /dev/vdb",
        "back up db-01 /dev/vdc",
        "back up web-01 /dev/vda",
        "back up web-01 /dev/vdb",
    }
    failed = disks["back up db-01 /dev/vdb"]
    assert failed.state.type.value == "FAILED"
    assert "VolumeBackup.0064" in failed.state.message and "db-01 /dev/vdb" in failed.state.message
    assert {r.state.type.value for n, r in disks.items() if n != "back up db-01 /dev/vdb"} == {"COMPLETED"}
    # the night went on: retention ran for both servers, confirmation too
    assert runs["retention db-01"].state.type.value == "COMPLETED"
    assert runs["retention web-01"].state.type.value == "COMPLETED"
    assert runs["confirm in the cloud"].state.type.value == "COMPLETED"
    # every task run reads as what it did (no `discover-servers-962`)
    assert set(runs) - set(disks) == {
        "discover servers",
        "list backups",
        "check quotas",
        "settle earlier attempts",
        "confirm in the cloud",
        "retention db-01",
        "retention web-01",
    }
    backups = project_backups(cloud_env)
    assert {b.volume_id for b in backups if b.status == "available"} == {
        "710246b6-521e-4671-8d20-f6cd120ae1df",
        "a26eae5c-ba50-45e5-bfa5-43f8f6bf95af",
        *WEB_DISKS,
    }


def project_backups(emulator):
    return list(emulator.state.projects[emulator.project_id].backups.values())


async def test_the_flow_run_carries_a_summary_with_failures_first_and_a_progress_artifact(
    cloud_env, virtual_time
):
    cloud_env.control("POST", "/job_faults", json={"mode": "fail", "volume_id": DB_DATA}).raise_for_status()

    state = await nightly_backup(plan(), return_state=True)

    flow_run_id = state.state_details.flow_run_id
    by_key = await artifacts(flow_run_id)
    summary = by_key["nightly-backup-summary"]
    assert summary.task_run_id is None  # on the flow run itself, not on a task two clicks away
    text = summary.data
    assert text.index("1 failed") < text.index("db-01 /dev/vdb") < text.index("### Disks")
    failure_line = next(line for line in text.splitlines() if "db-01 /dev/vdb" in line)
    assert "VolumeBackup.0064" in failure_line
    assert text.count("✅") == 4 and text.count("❌") == 2  # the heading and the failed disk's row
    progress = by_key["nightly-backup-progress"]
    assert progress.type == "progress" and progress.task_run_id is None
    assert float(progress.data) == 100.0
    assert progress.description == "5 of 5 disks done, 1 failed"
    # the state message (what the alert carries) has the reason, not only the code
    assert "db-01 /dev/vdb (failed: VolumeBackup.0064" in state.message
    assert len(state.message.split("FAILED: ")[1]) > len("db-01 /dev/vdb (failed: VolumeBackup.0064)")


async def test_runs_are_named_for_what_they_do(cloud_env, virtual_time):
    nightly = await nightly_backup(plan(schedule_timezone="Europe/Paris"), return_state=True)
    one = await backup_server("web-01", plan=plan(), return_state=True)

    today = datetime.now(UTC).astimezone().date()  # Paris and UTC agree except around midnight
    name = await flow_run_name(nightly.state_details.flow_run_id)
    assert (
        name.startswith("nightly 20")
        and abs((datetime.fromisoformat(name.split()[1]).date() - today).days) <= 1
    )
    assert await flow_run_name(one.state_details.flow_run_id) == "backup web-01"


async def test_a_server_is_chosen_by_name_or_by_id(cloud_env, virtual_time):
    by_name = await backup_server("web-01", plan=plan(), return_state=True)
    assert by_name.is_completed(), by_name.message
    assert {b.volume_id for b in project_backups(cloud_env)} == WEB_DISKS

    by_id = await backup_server(WEB, plan=plan(), return_state=True)
    assert by_id.is_completed(), by_id.message
    assert len(project_backups(cloud_env)) == 4  # one more backup of each web-01 disk


async def test_a_typed_server_that_does_not_exist_ends_invalid_input_on_one_line(
    cloud_env, virtual_time, ledger
):
    state = await backup_server("web-99", plan=plan(), return_state=True)

    assert state.is_failed() and state.name == INVALID_INPUT  # emits prefect.flow-run.InvalidInput: no page
    assert state.message == "no server is named 'web-99' or has it as id"
    assert project_backups(cloud_env) == []
    with Session(ledger) as session:
        run = session.exec(select(Run)).one()
    assert (run.status.value, run.message) == ("failed", state.message)


async def test_a_name_two_servers_share_is_refused_naming_their_ids(cloud_env, virtual_time):
    cloud_env.control("POST", "/servers/990f449e-b54d-4554-b65d-0d8dedb27e13", json={"name": "web-01"})

    state = await backup_server("web-01", plan=plan(), return_state=True)

    assert state.name == INVALID_INPUT
    assert state.message.startswith("2 servers are named 'web-01' (")
    assert WEB in state.message and state.message.endswith("give the server's id")
    assert project_backups(cloud_env) == []


async def test_a_scheduled_nights_bad_plan_still_fails_loudly(cloud_env, virtual_time, monkeypatch):
    """A plan's unknown server at 02:00 is configuration, not a typo: Failed (alerting), not InvalidInput."""
    from vbs_backup.tasks import runtime

    monkeypatch.setattr(runtime, "trigger", lambda: "scheduled")
    monkeypatch.setattr("vbs_backup.flows.failures.trigger", lambda: "scheduled")
    state = await nightly_backup(
        plan(selection={"ids": ["00000000-0000-4000-8000-000000000000"]}), return_state=True
    )

    assert state.is_failed() and state.name == "Failed"
    assert "unknown server id(s) in the plan: 00000000-0000-4000-8000-000000000000" in state.message
