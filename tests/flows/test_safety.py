"""The safety promises, one regression test per way they were once broken (issue 8), each driving the real
flows against the emulator over HTTP and judging from the emulator's state and the ledger.

Promises: a plan deletes only backups it created; a disk never drops below its plan's `min_successful`; one
backup per (plan, volume, slot), adopted whatever the ledger knows or the server is called; a run is green
only when the cloud shows every disk's backup; every backup we make stays accounted for; dead runs are
marked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from tests.emulator_state import calls
from tests.factories import plan
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.watchdog import backup_watchdog
from vbs_backup.identity import parse_marker
from vbs_backup.ledger import DiskBackup, RetentionDecision, Run, record_intent, start_run
from vbs_backup.plan import BackupPlan

WEB = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
DB = "990f449e-b54d-4554-b65d-0d8dedb27e13"
WEB_DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"  # web-01 /dev/vdb
DB_WAL = "a26eae5c-ba50-45e5-bfa5-43f8f6bf95af"  # db-01 /dev/vdc
DAY = 86400


def backups(emulator) -> dict:
    return dict(emulator.state.projects[emulator.project_id].backups)


def of_plan(emulator, name: str, status: str = "available") -> list:
    return [
        b
        for b in backups(emulator).values()
        if b.status == status and (parse_marker(b.description) or ("",))[0] == name
    ]


def rows(ledger) -> list[DiskBackup]:
    with Session(ledger) as session:
        return list(session.exec(select(DiskBackup).order_by(col(DiskBackup.id))).all())


async def run(p: BackupPlan):
    return await nightly_backup(p, return_state=True)


# 1. ------------------------------------------------------------------------------ ownership across plans


async def test_a_plan_never_deletes_nor_counts_another_plans_backups(cloud_env, virtual_time, ledger):
    archive = plan(name="archive", name_prefix="vbsb-arch", retention={"keep_monthly": 12})
    nightly = plan(name="nightly", name_prefix="vbsb", retention={"keep_last": 2, "min_successful": 1})
    assert (await run(archive)).is_completed()
    kept = {b.id for b in of_plan(cloud_env, "archive")}
    assert len(kept) == 5

    for _ in range(3):
        cloud_env.state.clock.advance(DAY)
        assert (await run(nightly)).is_completed()

    assert {b.id for b in of_plan(cloud_env, "archive")} == kept  # untouched, every one
    per_disk: dict[str, int] = {}
    for b in of_plan(cloud_env, "nightly"):
        per_disk[b.volume_id] = per_disk.get(b.volume_id, 0) + 1
    assert set(per_disk.values()) == {2}  # nightly's own keep_last, not filled by archive's backups
    with Session(ledger) as session:
        nightly_runs = {r.id for r in session.exec(select(Run).where(Run.plan_name == "nightly")).all()}
        about_archive = [
            d
            for d in session.exec(select(RetentionDecision)).all()
            if d.backup_id in kept and d.run_id in nightly_runs
        ]
    assert about_archive and {(d.action.value, d.reasons) for d in about_archive} == {("keep", "not owned")}


async def test_a_copied_marker_or_a_policy_backup_is_never_deleted(cloud_env, virtual_time, ledger):
    nightly = plan(retention={"keep_last": 1, "min_successful": 1})
    assert (await run(nightly)).is_completed()
    ours = next(b for b in of_plan(cloud_env, "nightly") if b.volume_id == WEB_DATA)
    planted = []
    for name, description in (("copy-of-ours", ours.description), ("autobk_1a2b", ours.description)):
        response = cloud_env.control(
            "POST", "/backups", json={"volume_id": WEB_DATA, "name": name, "description": description}
        )
        planted.append(response.json()["id"])

    for _ in range(3):
        cloud_env.state.clock.advance(DAY)
        assert (await run(nightly)).is_completed()

    assert {backups(cloud_env)[i].status for i in planted} == {"available"}
    assert ours.id not in backups(cloud_env)  # ours, pruned as the rules say


# 2. ------------------------------------------------------------------------------ the cloud is the truth


async def test_a_slot_whose_backup_vanished_is_repaired_not_reported_green(cloud_env, virtual_time, ledger):
    assert (await run(plan())).is_completed()
    gone = next(b for b in of_plan(cloud_env, "nightly") if b.volume_id == WEB_DATA)
    cloud_env.call("DELETE", f"/v2/{cloud_env.project_id}/cloudbackups/{gone.id}").raise_for_status()
    cloud_env.state.clock.advance(600)  # same slot; the deletion has completed

    state = await run(plan())

    assert state.is_completed(), state.message
    live = [b for b in of_plan(cloud_env, "nightly") if b.volume_id == WEB_DATA]
    assert len(live) == 1 and live[0].id != gone.id
    assert (
        calls(cloud_env, "vbs.create_backup") == 6
    )  # the four others were adopted, the vanished one made again


async def test_the_watchdog_judges_from_the_cloud(cloud_env, virtual_time, ledger):
    assert (await run(plan())).is_completed()
    assert (await backup_watchdog(plan(), return_state=True)).is_completed()
    gone = next(b for b in of_plan(cloud_env, "nightly") if b.volume_id == WEB_DATA)
    cloud_env.call("DELETE", f"/v2/{cloud_env.project_id}/cloudbackups/{gone.id}").raise_for_status()
    cloud_env.state.clock.advance(600)

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_failed()
    assert "web-01 /dev/vdb" in state.message and gone.id in state.message and "is gone" in state.message


# 3. ------------------------------------------------------------------------------ a second ledger


async def test_a_second_ledger_adopts_instead_of_duplicating_and_never_deletes_them(
    cloud_env, virtual_time, ledger, tmp_path, monkeypatch
):
    nightly = plan(retention={"keep_last": 1, "min_successful": 1})
    assert (await run(nightly)).is_completed()
    first = {b.id for b in of_plan(cloud_env, "nightly")}
    monkeypatch.setenv("VBS_BACKUP_DATABASE_URL", f"sqlite:///{tmp_path / 'laptop.sqlite'}")

    state = await run(nightly)  # same slot, another ledger

    assert state.is_completed(), state.message
    assert (
        calls(cloud_env, "vbs.create_backup") == 5 and {b.id for b in of_plan(cloud_env, "nightly")} == first
    )
    for _ in range(2):
        cloud_env.state.clock.advance(DAY)
        assert (await run(nightly)).is_completed()
    assert {backups(cloud_env)[i].status for i in first} == {"available"}  # not this ledger's to delete


# 4. ------------------------------------------------------------------------------ names are decoration


async def test_renaming_the_server_or_moving_the_disk_never_duplicates_the_slot(
    cloud_env, virtual_time, ledger
):
    assert (await run(plan())).is_completed()
    cloud_env.control("POST", f"/servers/{WEB}", json={"name": "web-01-renamed"}).raise_for_status()
    cloud_env.control("POST", f"/volumes/{DB_WAL}/detach", json={"server_id": DB}).raise_for_status()
    attach = {"server_id": WEB, "device": "/dev/vdd"}
    cloud_env.control("POST", f"/volumes/{DB_WAL}/attach", json=attach).raise_for_status()
    cloud_env.state.clock.advance(600)

    state = await run(plan())

    assert state.is_completed(), state.message
    assert calls(cloud_env, "vbs.create_backup") == 5 and len(of_plan(cloud_env, "nightly")) == 5


async def test_servers_whose_names_sanitise_alike_keep_their_own_backups(cloud_env, virtual_time, ledger):
    cloud_env.control("POST", f"/servers/{DB}", json={"name": "web/01"}).raise_for_status()  # -> "web-01"

    assert (await run(plan())).is_completed()
    cloud_env.state.clock.advance(600)
    assert (await run(plan())).is_completed()

    good = of_plan(cloud_env, "nightly")
    assert calls(cloud_env, "vbs.create_backup") == 5 and len({b.volume_id for b in good}) == 5 == len(good)


# 5. ------------------------------------------------------------------------------ slots across DST


async def test_the_repeated_hour_of_a_dst_night_gets_its_own_backup(cloud_env, virtual_time, ledger):
    hourly = plan(
        name="hourly", slot_minutes=60, schedule_timezone="Europe/Paris", retention={"keep_last": 5}
    )
    cloud_env.state.clock.set(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))  # 02:30 CEST
    assert (await run(hourly)).is_completed()
    cloud_env.state.clock.set(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # 02:30 CET, an hour later

    state = await run(hourly)

    assert state.is_completed(), state.message
    assert calls(cloud_env, "vbs.create_backup") == 10
    slots = {(b.volume_id, parse_marker(b.description)[1]) for b in of_plan(cloud_env, "hourly")}
    assert len(slots) == 10


# 6. ------------------------------------------------------------------------------ nothing orphaned


async def test_a_job_that_ends_after_its_deadline_is_reconciled_by_the_next_run(
    cloud_env, virtual_time, ledger
):
    short = plan(disk_deadline_minutes=1, retention={"keep_last": 3})  # jobs take 60 s + 1.5 s/GiB here
    state = await run(short)
    assert state.is_failed() and "timed_out" in state.message
    late = rows(ledger)
    assert {r.status.value for r in late} == {"timed_out"} and all(r.backup_id for r in late)

    cloud_env.state.clock.advance(DAY)
    state = await run(plan(retention={"keep_last": 3}))

    assert state.is_completed(), state.message
    settled = {r.id: r for r in rows(ledger)}
    assert {settled[r.id].status.value for r in late} == {"succeeded"}
    with Session(ledger) as session:
        kept = {d.backup_id for d in session.exec(select(RetentionDecision)).all() if d.action == "keep"}
    assert {r.backup_id for r in late} <= kept  # counted as ours, and kept by keep_last 3


async def test_a_job_api_that_fails_while_the_list_works_still_ends_green(cloud_env, virtual_time, ledger):
    fault = {"operation": "vbs.get_job", "status": 503}
    cloud_env.control("POST", "/faults", json=fault).raise_for_status()

    state = await run(plan())

    assert state.is_completed(), state.message
    assert {r.status.value for r in rows(ledger)} == {"succeeded"}
    assert {r.backup_id for r in rows(ledger)} == {b.id for b in of_plan(cloud_env, "nightly")}


# 7. ------------------------------------------------------------------------------ multi-attach


async def test_a_volume_attached_to_two_selected_servers_is_backed_up_once(cloud_env, virtual_time, ledger):
    attach = {"server_id": DB, "device": "/dev/vdd"}
    cloud_env.control("POST", f"/volumes/{WEB_DATA}/attach", json=attach).raise_for_status()

    for _ in range(3):
        state = await run(plan(retention={"keep_last": 1, "min_successful": 1}))
        assert state.is_completed(), state.message
        cloud_env.state.clock.advance(DAY)

    assert calls(cloud_env, "vbs.create_backup") == 15
    shared = [b.status for b in backups(cloud_env).values() if b.volume_id == WEB_DATA]
    assert shared.count("available") == 1 and len(shared) <= 2  # pruning goes on: older ones deleted


# 8. ------------------------------------------------------------------------------ dead runs


def dead_run(ledger) -> int:
    """What a killed run leaves: `running`, and silent for an hour (past the lease)."""
    with Session(ledger) as session:
        dead = start_run(session=session, plan_name="nightly", trigger="direct")
        dead.heartbeat_at = datetime.now(UTC) - timedelta(hours=1)
        session.add(dead)
        session.commit()
        return dead.id


async def test_a_run_whose_heartbeat_stopped_is_marked_abandoned(cloud_env, virtual_time, ledger):
    dead_id = dead_run(ledger)
    with Session(ledger) as session:
        alive_id = start_run(session=session, plan_name="nightly", trigger="direct").id  # beating just now

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_failed() and f"run {dead_id} of plan nightly" in state.message
    with Session(ledger) as session:
        assert session.get(Run, dead_id).status.value == "abandoned"
        assert session.get(Run, alive_id).status.value == "running"


async def test_the_next_run_marks_a_dead_run_and_settles_its_attempts(cloud_env, virtual_time, ledger):
    # What a kill right after an intent leaves: a dead run with an open attempt, and no backup.
    dead_id = dead_run(ledger)
    p = plan()
    slot = p.schedule_slot(cloud_env.state.clock.now())
    with Session(ledger) as session:
        record_intent(
            session=session,
            run_id=dead_id,
            plan_name="nightly",
            slot_start=slot,
            server_id=WEB,
            server_name="web-01",
            volume_id=WEB_DATA,
            volume_name="web-01-data",
            device="/dev/vdb",
            size_gb=100,
            is_system_disk=False,
            backup_name=p.backup_name("web-01", "/dev/vdb", slot),
        )

    state = await run(p)

    assert state.is_completed(), state.message
    with Session(ledger) as session:
        assert session.get(Run, dead_id).status.value == "abandoned"
    web_data = [r for r in rows(ledger) if r.volume_id == WEB_DATA]
    assert [(r.attempt, r.status.value) for r in web_data] == [(1, "abandoned"), (2, "succeeded")]


# 9. ------------------------------------------------------------------------------ undescribed disks


async def test_a_selected_disk_that_evs_cannot_describe_fails_the_run(cloud_env, virtual_time, ledger):
    # ECS lists db-01's three disks; EVS answers 404 for the first one asked (db-01 /dev/vda).
    fault = {"operation": "evs.get_volume", "status": 404, "count": 1}
    cloud_env.control("POST", "/faults", json=fault).raise_for_status()

    state = await run(plan(selection={"ids": [DB]}))

    assert state.is_failed()
    assert "db-01 /dev/vda" in state.message and "VolumeNotDescribed" in state.message
    assert calls(cloud_env, "vbs.create_backup") == 2
