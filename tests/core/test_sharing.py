"""Sharing without Prefect: target-project checks, the share and policy-task ledgers, and the
`vbs-backup share --list / --count / --show` command against the emulator (the flow is tested in
tests/flows/test_sharing.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from tests.clients import backup_now, connect
from tests.commands import command_runner
from tests.environment import use_emulator
from vbs_backup.deployments.cli.app import app
from vbs_backup.ledger import init_db, make_engine
from vbs_backup.ledger.policy_audit import TaskSighting, policy_task_records, upsert_policy_tasks
from vbs_backup.ledger.sharing import (
    ShareRecord,
    ShareStatus,
    mark_share_cancelled,
    mark_share_cancelling,
    mark_share_failed,
    mark_share_gone,
    mark_shared,
    record_share_intent,
    share_records,
)
from vbs_backup.sharing import ShareInputError, check_target_projects

OTHER = "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
THIRD = "aabbccddeeff00112233445566778899"
BACKUP = "066b1e37-9305-4057-97e5-2e99b21fc71d"
VOLUME = "a7d7783f-0000-4000-8000-000000000001"
WEB_DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"


@pytest.fixture
def session(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    init_db(engine)
    with Session(engine) as s:
        yield s


# -- target projects -----------------------------------------------------------------------------------


def test_target_projects_are_checked_and_deduplicated():
    assert check_target_projects([OTHER, THIRD, OTHER]) == [OTHER, THIRD]
    with pytest.raises(ShareInputError, match=r"'ABCDEF', 'short'"):
        check_target_projects([OTHER, "ABCDEF", "short"])
    with pytest.raises(ShareInputError, match="is this project"):
        check_target_projects([OTHER], own_project_id=OTHER)
    with pytest.raises(ShareInputError, match="at least one"):
        check_target_projects([])


# -- the share ledger ----------------------------------------------------------------------------------


def test_a_share_goes_from_intent_to_active_to_cancelled(session):
    row = record_share_intent(
        session=session, backup_id=BACKUP, backup_name="b1", volume_id=VOLUME, to_project_id=OTHER
    )
    assert row.status is ShareStatus.intent and row.share_id is None
    row = mark_shared(
        session=session,
        backup_id=BACKUP,
        backup_name="b1",
        volume_id=VOLUME,
        to_project_id=OTHER,
        share_id="8332443e-9866-41d8-8a58-a898cf5db030",
    )
    assert (row.status, row.share_id) == (ShareStatus.active, "8332443e-9866-41d8-8a58-a898cf5db030")
    assert row.created_at is not None and row.created_at.tzinfo is UTC
    assert row.id is not None
    row = mark_share_cancelling(session=session, record_id=row.id, by_backup=True)
    assert row.status is ShareStatus.cancelling and row.cancelled_by_backup
    row = mark_share_cancelled(session=session, record_id=row.id)
    assert row.status is ShareStatus.cancelled and row.cancelled_at is not None

    # shared again later: the same row, its history reset
    again = record_share_intent(
        session=session, backup_id=BACKUP, backup_name="b1", volume_id=VOLUME, to_project_id=OTHER
    )
    assert again.id == row.id and again.status is ShareStatus.intent and again.cancelled_at is None
    assert len(share_records(session=session)) == 1


def test_a_vanished_share_is_gone_unless_we_were_cancelling_it(session):
    rows = []
    for project in (OTHER, THIRD):
        rows.append(
            mark_shared(
                session=session,
                backup_id=BACKUP,
                backup_name="b1",
                volume_id=VOLUME,
                to_project_id=project,
                share_id=f"{project[:8]}-0000-4000-8000-000000000000",
            )
        )
    mark_share_cancelling(session=session, record_id=rows[0].id)

    ours = mark_share_gone(session=session, record_id=rows[0].id, reason="not listed")
    theirs = mark_share_gone(session=session, record_id=rows[1].id, reason="not listed")

    assert ours.status is ShareStatus.cancelled  # our cancel went through, only its answer was lost
    assert theirs.status is ShareStatus.gone and theirs.error == "not listed"
    assert share_records(session=session, statuses=ShareStatus.live()) == []
    assert len(share_records(session=session, to_project_ids=[THIRD], volume_ids=[VOLUME])) == 1


def test_one_row_per_backup_and_project(session):
    record_share_intent(
        session=session, backup_id=BACKUP, backup_name=None, volume_id=VOLUME, to_project_id=OTHER
    )
    session.add(ShareRecord(backup_id=BACKUP, volume_id=VOLUME, to_project_id=OTHER))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    row = share_records(session=session)[0]
    assert row.id is not None
    failed = mark_share_failed(session=session, record_id=row.id, error="VolumeBackup.0089 " + "x" * 3000)
    assert failed.status is ShareStatus.failed and len(failed.error or "") == 2000


# -- the policy-task ledger ----------------------------------------------------------------------------


def test_policy_tasks_are_upserted_by_job_id(session):
    created = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)
    task = TaskSighting(
        job_id="0781095c-b8ab-4ce5-99f3-4c5f6ff75319",
        policy_id="ed8b9f73-4415-494d-a54e-5f3373bc353d",
        policy_name="plan01",
        resource_id=VOLUME,
        backup_name="autobk_a61d",
        status="RUNNING",
        created_at=created,
    )
    assert upsert_policy_tasks(session=session, tasks=[task], seen_at=created) == (1, 0)
    done = TaskSighting(
        **{**task.__dict__, "status": "EXECUTE_FAIL", "finished_at": created + timedelta(hours=1)}
    )
    later = created + timedelta(hours=2)
    assert upsert_policy_tasks(session=session, tasks=[done], seen_at=later) == (0, 1)

    (row,) = policy_task_records(session=session)
    assert (row.status, row.finished_at, row.first_seen_at, row.seen_at) == (
        "EXECUTE_FAIL",
        created + timedelta(hours=1),
        created,
        later,
    )
    assert policy_task_records(session=session, since=created + timedelta(minutes=1)) == []
    assert len(policy_task_records(session=session, policy_id=task.policy_id)) == 1


# -- the share command without the flow ----------------------------------------------------------------


@pytest.fixture
def cli(emulator, monkeypatch):
    use_emulator(monkeypatch, emulator)
    return command_runner(app)


def test_share_list_count_and_show(cli, emulator, other_project):
    async def share_one():
        async with connect(emulator) as client:
            backup_id = await backup_now(client, WEB_DATA, "manual-share-1")
            (share,) = await client.vbs.share_backup(backup_id, [other_project.project_id])
            return backup_id, share

    # a plain test: the command runs its own event loop
    backup_id, share = asyncio.run(share_one())

    counted = cli("share", "--count")
    listed = cli("share", "--list")
    shown = cli("share", "--show", share.id)

    assert "shared by this project: 1" in counted and "shared with this project: 0" in counted
    assert "Shared by this project (1)" in listed and share.id in listed and "manual-share-1" in listed
    assert other_project.project_id in listed and "Shared with this project (0)" in listed
    assert (
        f"backup: manual-share-1 ({backup_id})" in shown
        and f"to project: {other_project.project_id}" in shown
    )
    log = emulator.control("GET", "/requests").json()
    assert {"vbs.count_shares", "vbs.list_shares", "vbs.get_share"} <= {e["operation"] for e in log}


def test_share_command_input_errors(cli, emulator):
    assert "exactly one of" in cli("share", code=2)
    assert "exactly one of" in cli("share", "--list", "--count", code=2)
    assert "share_id must be a UUID" in cli("share", "--show", "nope", code=2)
    missing = cli("share", "--show", "00000000-0000-4000-8000-000000000000", code=1)
    assert "get_share failed: 404 VolumeBackup.0043" in missing and emulator.sk not in missing
