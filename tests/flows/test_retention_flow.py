"""Retention over several nights: what the planner decided is deleted, never a backup we do not own."""

from __future__ import annotations

from sqlmodel import Session, select

from tests import factories
from tests.clients import connect
from vbs_backup.cloud.models.policies import CreatePolicyRequest, ScheduledPolicy
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.server import apply_retention
from vbs_backup.ledger import RetentionDecision
from vbs_backup.plan import BackupPlan

WEB_DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"
DAY = 86400


def plan(**overrides) -> BackupPlan:
    return factories.plan(**{"retention": {"keep_last": 2, "min_successful": 2}, **overrides})


async def foreign_backups(emulator) -> set[str]:
    """A look-alike manual backup (our prefix, not our description, no ledger row) and a policy backup."""
    async with connect(emulator) as client:
        job = await client.vbs.create_backup(
            WEB_DATA, "vbsb-web-01-vdb-190001010000", description="someone else"
        )
        emulator.state.clock.advance(3600)
        await client.vbs.get_job(job)
        request = CreatePolicyRequest(
            backup_policy_name="ops-policy",
            scheduled_policy=ScheduledPolicy(start_time="03:00", frequency=1, retention_num=5, status="OFF"),
        )
        policy = await client.vbs.create_policy(request)
        await client.vbs.associate_resources(policy, [WEB_DATA])
        await client.vbs.execute_policy(policy)
        emulator.state.clock.advance(3600)
        backups = [b async for b in client.vbs.iter_backup_details(volume_id=WEB_DATA)]
    assert {b.status for b in backups} == {"available"}, backups
    return {b.id for b in backups}


async def test_retention_deletes_what_the_planner_decided_and_nothing_foreign(
    cloud_env, virtual_time, ledger
):
    foreign = await foreign_backups(cloud_env)
    project = cloud_env.state.projects[cloud_env.project_id]
    ours_by_night: list[set[str]] = []
    for _night in range(4):
        state = await nightly_backup(plan(), return_state=True)
        assert state.is_completed(), state.message
        ours_by_night.append({b.id for b in project.backups.values() if b.id not in foreign})
        cloud_env.state.clock.advance(DAY)

    alive = {b.id for b in project.backups.values() if b.status != "deleting"}
    assert foreign <= alive  # the look-alike and the autobk_ backup survive every night
    for volume_id in {v for s in project.servers.values() for v in s.volume_ids}:
        ours = sorted(
            (b for b in project.backups.values() if b.volume_id == volume_id and b.id not in foreign),
            key=lambda b: b.created_at,
        )
        live = [b for b in ours if b.status == "available"]
        assert len(live) == 2 and live == ours[-2:], volume_id  # keep_last 2: the two newest survive
    with Session(ledger) as session:
        deletes = session.exec(select(RetentionDecision).where(RetentionDecision.action == "delete")).all()
        decided = session.exec(select(RetentionDecision)).all()
    deleted_ids = {d.backup_id for d in deletes}
    assert all(d.delete_status.value == "done" for d in deletes)
    assert deleted_ids.isdisjoint(foreign) and deleted_ids.isdisjoint(alive)
    created = set().union(*ours_by_night)
    assert deleted_ids == {b for b in created if b not in alive}  # exactly the decided ones are gone
    assert {d.backup_id for d in decided if d.backup_id in foreign and d.action == "keep"} == foreign
    assert all(d.reasons for d in decided)


async def test_apply_retention_is_a_dry_run_by_default(cloud_env, virtual_time, ledger):
    for _night in range(3):
        assert (await nightly_backup(plan(retention={"keep_last": 5}), return_state=True)).is_completed()
        cloud_env.state.clock.advance(DAY)
    before = set(cloud_env.state.projects[cloud_env.project_id].backups)

    state = await apply_retention(plan(retention={"keep_last": 2, "min_successful": 1}), return_state=True)

    assert state.is_completed(), state.message
    assert set(cloud_env.state.projects[cloud_env.project_id].backups) == before
    with Session(ledger) as session:
        shown = session.exec(select(RetentionDecision).where(RetentionDecision.dry_run == True)).all()  # noqa: E712
    assert sum(1 for d in shown if d.action == "delete") == 5  # one per disk: the oldest of three


async def test_a_delete_whose_answer_was_lost_is_recorded_as_done(cloud_env, virtual_time, ledger):
    for _night in range(2):
        assert (await nightly_backup(plan(retention={"keep_last": 5}), return_state=True)).is_completed()
        cloud_env.state.clock.advance(DAY)
    fault = {"operation": "vbs.delete_backup", "kind": "drop_after", "count": 1}
    cloud_env.control("POST", "/faults", json=fault).raise_for_status()

    state = await apply_retention(
        plan(retention={"keep_last": 1, "min_successful": 1}), dry_run=False, return_state=True
    )

    assert state.is_completed(), state.message
    with Session(ledger) as session:
        deletes = session.exec(select(RetentionDecision).where(RetentionDecision.action == "delete")).all()
    assert len(deletes) == 5 and {d.delete_status.value for d in deletes} == {"done"}
    sent = [e for e in cloud_env.state.request_log if e[0] == "vbs.delete_backup"]
    assert len(sent) == 6 and sum(1 for e in sent if e[3] == 400) == 1  # the re-sent one found it deleting
    project = cloud_env.state.projects[cloud_env.project_id]
    assert all(
        project.backups[d.backup_id].status == "deleting" for d in deletes if d.backup_id in project.backups
    )
