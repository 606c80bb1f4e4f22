"""The policy audit flow against the emulator: a policy runs, the audit records its tasks in the ledger and
ends Completed; a task that failed within the window ends the audit Failed, naming policy, disk and backup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

import vbs_backup.policies.audit
from tests.clients import connect
from vbs_backup.cloud import CloudClient
from vbs_backup.cloud.models.policies import CreatePolicyRequest, PolicyStatus, ScheduledPolicy
from vbs_backup.deployments.cli import app
from vbs_backup.flows.policies import policy_audit
from vbs_backup.ledger.policy_audit import PolicyTaskRecord

WEB_DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"
DB_DATA = "799600d6-5263-432d-84cf-6130bcb70380"
DB_WAL = "a26eae5c-ba50-45e5-bfa5-43f8f6bf95af"


@pytest.fixture
async def client(cloud_env) -> AsyncIterator[CloudClient]:
    async with connect(cloud_env) as cloud:
        yield cloud


async def make_policy(client: CloudClient, name: str, disks: list[str]) -> str:
    request = CreatePolicyRequest(
        backup_policy_name=name,
        scheduled_policy=ScheduledPolicy(
            start_time="03:00", frequency=1, retention_num=5, status=PolicyStatus.OFF
        ),
    )
    policy_id = await client.vbs.create_policy(request)
    assert (await client.vbs.associate_resources(policy_id, disks)).all_succeeded
    return policy_id


def rows(ledger) -> list[PolicyTaskRecord]:
    with Session(ledger) as session:
        return list(session.exec(select(PolicyTaskRecord).order_by(PolicyTaskRecord.resource_id)).all())


async def test_the_audit_records_a_policy_run_and_completes(cloud_env, client, virtual_time, ledger):
    policy_id = await make_policy(client, "db-nightly", [DB_DATA, DB_WAL])
    await client.vbs.execute_policy(policy_id)

    running = await policy_audit(return_state=True)  # the jobs have not moved yet

    assert running.is_completed(), running.message
    assert {r.status for r in rows(ledger)} <= {"WAITING", "RUNNING"} and len(rows(ledger)) == 2

    cloud_env.state.clock.advance(3600)
    state = await policy_audit(return_state=True)

    assert state.is_completed(), state.message
    assert "1 policies, 2 tasks recorded (0 new)" in state.message
    recorded = rows(ledger)
    tasks = {t.job_id: t for t in cloud_env.state.projects[cloud_env.project_id].tasks}
    assert len(recorded) == 2 and {r.job_id for r in recorded} == set(tasks)  # upserted, not duplicated
    assert [r.resource_id for r in recorded] == sorted([DB_DATA, DB_WAL])
    assert {r.status for r in recorded} == {"EXECUTE_SUCCESS"}
    assert {(r.policy_id, r.policy_name) for r in recorded} == {(policy_id, "db-nightly")}
    assert all(
        r.backup_name == tasks[r.job_id].backup_name and r.backup_name.startswith("autobk_") for r in recorded
    )
    assert all(r.finished_at is not None and r.seen_at >= r.first_seen_at for r in recorded)


async def test_a_failed_policy_task_fails_the_audit_naming_the_disk(cloud_env, client, virtual_time, ledger):
    await make_policy(client, "db-nightly", [DB_DATA, DB_WAL])
    web = await make_policy(client, "web-nightly", [WEB_DATA])
    fault = {"mode": "fail", "volume_id": DB_WAL, "error_code": "VolumeBackup.0064"}
    cloud_env.control("POST", "/job_faults", json=fault).raise_for_status()
    for policy in await client.vbs.list_policies():
        await client.vbs.execute_policy(policy.backup_policy_id)
    cloud_env.state.clock.advance(3600)

    state = await policy_audit(return_state=True)

    assert state.is_failed()
    failed = next(t for t in cloud_env.state.projects[cloud_env.project_id].tasks if t.resource_id == DB_WAL)
    assert failed.status == "EXECUTE_FAIL"
    assert (
        f"policy db-nightly: disk db-01-wal ({DB_WAL}) backup {failed.backup_name} EXECUTE_FAIL"
        in state.message
    )
    assert "web-nightly" not in state.message.split("FAILED")[1]
    by_disk = {r.resource_id: r for r in rows(ledger)}
    assert by_disk[DB_WAL].status == "EXECUTE_FAIL"
    assert by_disk[DB_DATA].status == by_disk[WEB_DATA].status == "EXECUTE_SUCCESS"
    assert by_disk[WEB_DATA].policy_id == web

    # two days later the failure is outside a 24-hour window: recorded, no longer alerting
    cloud_env.state.clock.advance(2 * 86400)
    later = await policy_audit(since_hours=24, return_state=True)

    assert later.is_completed(), later.message
    assert len(rows(ledger)) == 3


async def test_every_page_of_tasks_is_read(cloud_env, client, virtual_time, ledger, monkeypatch):
    monkeypatch.setattr(vbs_backup.policies.audit, "TASK_PAGE", 2)
    policy_id = await make_policy(client, "db-nightly", [DB_DATA, DB_WAL])
    for _ in range(3):  # three runs, six tasks: three pages of two
        await client.vbs.execute_policy(policy_id)
        cloud_env.state.clock.advance(3600)
        await client.vbs.list_policies()  # a request moves the emulator's jobs on

    state = await policy_audit(return_state=True)

    assert state.is_completed(), state.message
    assert len(rows(ledger)) == 6
    log = cloud_env.control("GET", "/requests").json()
    pages = [e for e in log if e["operation"] == "vbs.list_policy_tasks"]
    assert len(pages) == 4  # 2 + 2 + 2 + an empty last page


async def test_no_policies_is_a_quiet_success(cloud_env, virtual_time, ledger):
    state = await policy_audit(return_state=True)

    assert state.is_completed(), state.message
    assert state.message.startswith("0 policies, 0 tasks")


def test_the_audit_command_runs_the_flow(cloud_env, virtual_time, ledger):
    async def failing_policy() -> None:
        async with CloudClient.connect(
            region="eu-west-0",
            project_id=cloud_env.project_id,
            ak=cloud_env.ak,
            sk=cloud_env.sk,
            endpoint=cloud_env.url,
        ) as cloud:
            policy_id = await make_policy(cloud, "web-nightly", [WEB_DATA])
            await cloud.vbs.execute_policy(policy_id)

    cloud_env.control("POST", "/job_faults", json={"mode": "fail", "volume_id": WEB_DATA}).raise_for_status()
    # a plain test: the command runs its own event loop, as it does from a shell
    asyncio.run(failing_policy())
    cloud_env.state.clock.advance(3600)

    result = CliRunner().invoke(app, ["policies", "audit", "--since-hours", "2"])

    assert result.exit_code == 1, result.output
    assert "Failed: 1 policies, 1 tasks recorded (1 new)" in result.output
    assert f"disk web-01-data ({WEB_DATA})" in result.output and "EXECUTE_FAIL" in result.output
