"""The watchdog's protection view as an operator reads it in the UI: a few nights against the emulator (one
disk failing the last one), then the watchdog; the `protection` artifact read back from the Prefect server.
Virtual time: the nights are a day apart on the emulator's clock, which the test sets; nobody sleeps."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)

from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.watchdog import backup_watchdog
from vbs_backup.plan import BackupPlan

PARIS = "Europe/Paris"
DB_VDB = "799600d6-5263-432d-84cf-6130bcb70380"  # db-01 /dev/vdb
REASON = "CreateBackup Task-fail: fsp cinder return backup status is error."


def plan() -> BackupPlan:
    return BackupPlan.model_validate(
        {
            "selection": {"tags": {"backup": "nightly"}},
            "poll_interval_seconds": 30,
            "schedule_timezone": PARIS,
        }
    )


async def protection_of(state) -> tuple[str, object]:
    """The `protection` artifact of the watchdog run that ended in `state` (and the artifact itself)."""
    run_id = state.state_details.flow_run_id
    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["protection"]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])
            )
        )
        [latest] = await client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=["protection"]))
        )
    assert latest.latest_id == artifact.id  # the Artifacts page's "protection" is this run's
    assert artifact.task_run_id is None  # published by the flow itself: it hangs off the run
    return artifact.data, artifact


def rows_under(text: str, heading: str) -> list[list[str]]:
    section = text.split(f"### {heading}", 1)[1].split("\n### ", 1)[0]
    return [
        [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in section.splitlines()
        if line.startswith("|")
    ]


async def test_the_protection_view_puts_the_failing_disk_first_with_its_reason_and_its_night(
    cloud_env, virtual_time, ledger
):
    clock = cloud_env.state.clock
    # The nights of the last two days and tonight's: the ledger stamps a run's start with the real time,
    # so the last night runs now, on both clocks.
    today = clock.now()
    nights = []
    for days_ago in (2, 1, 0):
        clock.set(today - timedelta(days=days_ago))
        if days_ago == 0:  # db-01 /dev/vdb fails the last night
            fault = {"mode": "fail", "volume_id": DB_VDB, "count": 1}
            cloud_env.control("POST", "/job_faults", json=fault).raise_for_status()
        nights.append(plan().schedule_slot(clock.now()).astimezone(ZoneInfo(PARIS)).date())
        state = await nightly_backup(plan(), return_state=True)
        assert state.is_failed() == (days_ago == 0), state.message

    # At once: db-01 /dev/vdb's newest good backup is a night old, within the RPO, but its last night failed.
    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_completed(), state.message
    text, _ = await protection_of(state)
    assert text.startswith("## ⚠️ Plan nightly: 5 of 5 disks protected within the RPO (26 h)\n")
    assert re.search(r"Last nightly run: \d{4}-\d\d-\d\d \d\d:\d\d CES?T \(direct\), failed, 4 of 5", text)
    warning = next(line for line in text.splitlines() if line.startswith("- ⚠️ **db-01 /dev/vdb**"))
    assert "last attempt failed VolumeBackup.0064" in warning and REASON in warning
    disks = rows_under(text, "Disks")[2:]
    assert (disks[0][0], disks[0][1], disks[0][2]) == ("⚠️", "db-01", "/dev/vdb")  # first
    assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d failed VolumeBackup\.0064", disks[0][6])
    assert re.fullmatch(r"2[34]\.\d h ok", disks[0][5])
    assert {d[0] for d in disks[1:]} == {"✅"} and len(disks) == 5

    grid = rows_under(text, "Last 14 nights")
    header, body = grid[0], grid[2:]
    assert len(header) == 1 + 14
    columns = [header.index(f"{night:%d}") for night in nights]
    row = body[0]
    assert row[0] == "db-01 /dev/vdb"
    assert [row[c] for c in columns] == ["✅", "✅", "❌"]
    assert set(row[1 : columns[0]]) <= {"·"}  # nothing before the first night
    for other in body[1:]:
        assert [other[c] for c in columns] == ["✅", "✅", "✅"]

    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    assert re.fullmatch(r"watchdog nightly \d{4}-\d\d-\d\d \d\d:\d\d CES?T", run.name)
    assert {t.name for t in tasks} == {
        "discover protected disks",
        "read quotas",
        "check protection",
        "read the last 14 nights",
    }

    # Three hours on, that disk is over the RPO: the watchdog fails and the view says so first.
    clock.advance(3 * 3600)
    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_failed() and "db-01 /dev/vdb: newest good backup is" in state.message
    text, _ = await protection_of(state)
    assert text.startswith("## ❌ Plan nightly: 4 of 5 disks protected within the RPO (26 h)\n")
    problems = [line for line in text.split("### Problems", 1)[1].splitlines() if line.startswith("- ")]
    assert problems[0].startswith("- ❌ **db-01 /dev/vdb**: newest good backup is 2")
    assert "last attempt failed VolumeBackup.0064" in problems[0] and REASON in problems[0]
    disks = rows_under(text, "Disks")[2:]
    assert (disks[0][0], disks[0][1], disks[0][2]) == ("❌", "db-01", "/dev/vdb")
    assert disks[0][5].endswith("— OVER RPO**")


def test_the_run_name_reads_the_plan_as_json_or_as_a_plan_and_never_fails(monkeypatch):
    from datetime import UTC, datetime
    from types import SimpleNamespace

    import vbs_backup.flows.names as names
    from vbs_backup.clock import Clock
    from vbs_backup.tasks.runtime import use_clock

    def named(parameters) -> str:
        monkeypatch.setattr(
            names, "runtime", SimpleNamespace(flow_run=SimpleNamespace(parameters=parameters))
        )
        return names.watchdog_run_name()

    at = datetime(2026, 11, 30, 2, 30, tzinfo=UTC)
    with use_clock(Clock(now=lambda: at)):
        assert (
            named({"plan": {"name": "prod", "schedule_timezone": PARIS}})
            == "watchdog prod 2026-11-30 03:30 CET"
        )
        assert named({"plan": plan()}) == "watchdog nightly 2026-11-30 03:30 CET"
        assert named({"plan": {"selection": {}}}) == "watchdog nightly 2026-11-30 02:30 UTC"  # the defaults
        assert (
            named({"plan": {"schedule_timezone": "Mars/Olympus"}}) == "watchdog nightly 2026-11-30 02:30 UTC"
        )
        assert named({}) == "watchdog nightly 2026-11-30 02:30 UTC"  # the default plan
