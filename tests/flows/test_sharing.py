"""The share flow against the emulator over HTTP, seen from both projects: the other project receives the
newest backup of each disk, a second run changes nothing, and after another night the old shares are taken
back and the new backups shared."""

from __future__ import annotations

import asyncio

from sqlmodel import Session, select
from typer.testing import CliRunner

from tests.factories import plan
from vbs_backup.deployments.cli import app
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.sharing import share_backups
from vbs_backup.ledger.sharing import ShareRecord

THIRD = "aabbccddeeff00112233445566778899"  # any 32-hex id is a valid target
DB_DATA = "799600d6-5263-432d-84cf-6130bcb70380"  # db-01 /dev/vdb
MUTATING = ("vbs.share_backup", "vbs.cancel_share")


def wire(emulator) -> list[dict]:
    """The request log through the control API (served after the gateway logged the last request)."""
    response = emulator.control("GET", "/requests")
    response.raise_for_status()
    return response.json()


def ops(emulator, *operations: str) -> int:
    return sum(1 for entry in wire(emulator) if entry["operation"] in operations)


def backups_of(emulator) -> dict[str, str]:
    """volume id -> id of its newest backup in the emulator."""
    newest: dict[str, tuple] = {}
    for b in emulator.state.projects[emulator.project_id].backups.values():
        if b.status == "available" and (b.volume_id not in newest or b.created_at > newest[b.volume_id][0]):
            newest[b.volume_id] = (b.created_at, b.id)
    return {v: bid for v, (_, bid) in newest.items()}


def rows(ledger) -> list[ShareRecord]:
    with Session(ledger) as session:
        return list(session.exec(select(ShareRecord)).all())


async def test_newest_backups_are_shared_then_a_new_night_replaces_the_shares(
    cloud_env, other_project, other_client, virtual_time, ledger
):
    other = other_project.project_id
    assert (await nightly_backup(plan(), return_state=True)).is_completed()
    first = backups_of(cloud_env)

    state = await share_backups(plan(), [other], return_state=True)

    assert state.is_completed(), state.message
    received = await other_client.vbs.list_shares(share_to_me=True)
    assert {s.backup_id for s in received} == set(first.values())
    assert await other_client.vbs.count_shares(share_to_me=True) == 5
    assert {(r.backup_id, r.to_project_id, r.status.value) for r in rows(ledger)} == {
        (b, other, "active") for b in first.values()
    }
    assert {r.share_id for r in rows(ledger)} == {s.id for s in received}

    # a second run finds everything in place
    before = ops(cloud_env, *MUTATING)
    again = await share_backups(plan(), [other], return_state=True)
    assert again.is_completed(), again.message
    assert ops(cloud_env, *MUTATING) == before
    assert "shared 0, already shared 5, cancelled 0" in again.message

    # the next night makes new backups: they are shared, the old shares cancelled
    cloud_env.state.clock.advance(86400)
    assert (await nightly_backup(plan(), return_state=True)).is_completed()
    second = backups_of(cloud_env)
    assert set(second.values()).isdisjoint(first.values())

    state = await share_backups(plan(), [other], return_state=True)

    assert state.is_completed(), state.message
    received = await other_client.vbs.list_shares(share_to_me=True)
    assert {s.backup_id for s in received} == set(second.values())
    # each old backup was shared with one project only: one call by backup id took its share
    cancels = [e for e in wire(cloud_env) if e["operation"] == "vbs.cancel_share"]
    assert len(cancels) == 5
    assert all(e["method"] == "DELETE" and e["path"].split("/")[-1] in first.values() for e in cancels)
    by_backup = {r.backup_id: r for r in rows(ledger)}
    assert {by_backup[b].status.value for b in first.values()} == {"cancelled"}
    assert all(by_backup[b].cancelled_by_backup and by_backup[b].cancelled_at for b in first.values())
    assert {by_backup[b].status.value for b in second.values()} == {"active"}


async def test_a_share_made_by_hand_is_kept_and_old_shares_go_one_by_one(
    cloud_env, other_project, other_client, virtual_time, ledger
):
    other = other_project.project_id
    web_only = plan(selection={"ids": ["6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"]})
    assert (await nightly_backup(web_only, return_state=True)).is_completed()
    assert (await share_backups(web_only, [other], return_state=True)).is_completed()
    first = backups_of(cloud_env)
    # an operator also shares one of them with a third project, by hand
    data_disk = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"
    cloud_env.call(
        "POST",
        f"/v2/{cloud_env.project_id}/os-vendor-backup-sharing",
        json={"shared": {"backup_id": first[data_disk], "to_project_ids": [THIRD]}},
    ).raise_for_status()
    cloud_env.state.clock.advance(86400)
    assert (await nightly_backup(web_only, return_state=True)).is_completed()

    state = await share_backups(web_only, [other], return_state=True)

    assert state.is_completed(), state.message
    shares = {(s.backup_id, s.to_project_id) for s in cloud_env.state.shares.values()}
    second = backups_of(cloud_env)
    assert shares == {(b, other) for b in second.values()} | {(first[data_disk], THIRD)}
    paths = [e["path"] for e in wire(cloud_env) if e["operation"] == "vbs.cancel_share"]
    # the system disk's old backup lost its only share (by backup id); the data disk's old backup keeps
    # the hand-made share, so only ours went, by its share id
    assert len(paths) == 2
    assert any(p.endswith(first["0b2e4f71-8c3d-4e5a-9b6c-7d8e9f0a1b2c"]) for p in paths)
    assert not any(p.endswith(first[data_disk]) for p in paths)
    assert (await other_client.vbs.count_shares(share_to_me=True)) == 2


async def test_a_disk_without_a_good_backup_fails_the_run_and_the_others_are_shared(
    cloud_env, other_project, virtual_time, ledger
):
    cloud_env.control("POST", "/job_faults", json={"mode": "fail", "volume_id": DB_DATA}).raise_for_status()
    assert (await nightly_backup(plan(), return_state=True)).is_failed()

    state = await share_backups(plan(), [other_project.project_id], return_state=True)

    assert state.is_failed()
    assert "db-01 /dev/vdb" in state.message and "no good backup" in state.message
    shared = {s.backup_id for s in cloud_env.state.shares.values()}
    assert len(shared) == 4 and len(rows(ledger)) == 4


async def test_bad_project_ids_fail_before_any_request(cloud_env, virtual_time, ledger):
    cloud_env.control("DELETE", "/requests").raise_for_status()

    state = await share_backups(plan(), ["not-a-project", "0123"], return_state=True)

    assert state.is_failed()
    assert "not a project id" in state.message and "'not-a-project'" in state.message
    assert "'0123'" in state.message
    assert wire(cloud_env) == []

    own = await share_backups(plan(), [cloud_env.project_id], return_state=True)
    assert own.is_failed() and "is this project" in own.message
    assert wire(cloud_env) == []


async def test_an_unknown_server_or_wrong_credentials_fail_before_any_share(
    cloud_env, other_project, virtual_time, ledger, monkeypatch
):
    unknown = plan(selection={"ids": ["00000000-0000-4000-8000-000000000000"]})

    state = await share_backups(unknown, [other_project.project_id], return_state=True)

    assert state.is_failed() and "unknown server id" in state.message
    monkeypatch.setenv("VBS_BACKUP_SK", "not-the-secret-0123456789")
    denied = await share_backups(plan(), [other_project.project_id], return_state=True)
    assert denied.is_failed() and "APIGW.0301" in denied.message and "not-the-secret" not in denied.message
    assert ops(cloud_env, *MUTATING) == 0 and rows(ledger) == []


async def test_dry_run_says_what_it_would_share_and_changes_nothing(
    cloud_env, other_project, virtual_time, ledger
):
    assert (await nightly_backup(plan(), return_state=True)).is_completed()

    state = await share_backups(plan(dry_run=True), [other_project.project_id], return_state=True)

    assert state.is_completed(), state.message
    assert "would share 5" in state.message
    assert ops(cloud_env, *MUTATING) == 0 and not cloud_env.state.shares and rows(ledger) == []


async def test_a_share_whose_answer_was_lost_is_adopted_not_repeated(
    cloud_env, other_project, virtual_time, ledger
):
    web_only = plan(selection={"ids": ["6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"]})
    assert (await nightly_backup(web_only, return_state=True)).is_completed()
    fault = {"operation": "vbs.share_backup", "kind": "drop_after", "count": 1}
    cloud_env.control("POST", "/faults", json=fault).raise_for_status()

    first = await share_backups(web_only, [other_project.project_id], return_state=True)

    assert first.is_failed() and "sharing" in first.message
    assert len(cloud_env.state.shares) == 2  # the lost call did share
    assert sorted(r.status.value for r in rows(ledger)) == ["active", "intent"]

    second = await share_backups(web_only, [other_project.project_id], return_state=True)

    assert second.is_completed(), second.message
    assert len(cloud_env.state.shares) == 2
    assert ops(cloud_env, "vbs.share_backup") == 2  # the adopted share was not sent again
    assert {r.status.value for r in rows(ledger)} == {"active"}
    assert {r.share_id for r in rows(ledger)} == set(cloud_env.state.shares)


def test_the_share_command_runs_the_flow(cloud_env, other_project, virtual_time, ledger, tmp_path):
    # a plain test: the command runs its own event loop, as it does from a shell
    assert asyncio.run(nightly_backup(plan(), return_state=True)).is_completed()
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("selection: {tags: {backup: nightly}}\n")
    runner = CliRunner()

    dry = runner.invoke(
        app, ["share", "--plan", str(plan_file), "--to", other_project.project_id, "--dry-run"]
    )
    real = runner.invoke(app, ["share", "--plan", str(plan_file), "--to", other_project.project_id])
    bad = runner.invoke(app, ["share", "--plan", str(plan_file), "--to", "0123"])

    assert dry.exit_code == 0 and "Completed: 5 disks, 1 target projects: would share 5" in dry.output
    assert real.exit_code == 0 and "Completed: 5 disks, 1 target projects: shared 5" in real.output
    assert bad.exit_code == 2 and "not a project id" in bad.output
    assert len(cloud_env.state.shares) == 5
