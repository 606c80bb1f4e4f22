"""Retention's `min_verified`: the newest N of our successful backups that passed a restore drill are kept
in addition to what the rules keep, and the ledger's drill marks reach the planner through pruning.

Worked example (one disk, one backup a night, keep_last 1, min_successful 1):

    night       1     2     3     4     5
    drilled     yes   -     yes   -     -
    min_verified 0:  keep 5 (keep_last, min_successful); delete 1-4
    min_verified 1:  keep 5 and 3 (the newest drilled one); delete 1, 2, 4
    min_verified 2:  keep 5, 3 and 1; delete 2, 4
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlmodel import Session

from vbs_backup.cloud.models.backups import Backup
from vbs_backup.ledger import (
    DiskBackupStatus,
    init_db,
    make_engine,
    record_intent,
    record_outcome,
    record_verified,
    start_run,
)
from vbs_backup.plan import BackupPlan, RetentionRules
from vbs_backup.retention.planner import BackupRecord, plan_retention
from vbs_backup.retention.prune import decide, to_records

VOLUME = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"
NIGHT_1 = datetime(2024, 5, 1, 2, tzinfo=UTC)
NOW = NIGHT_1 + timedelta(days=4, hours=1)


def record(
    night: int, *, verified: bool = False, owned: bool = True, status: str = "available"
) -> BackupRecord:
    return BackupRecord(
        id=f"b{night}",
        name=f"vbsb-web-01-vdb-{night}",
        volume_id=VOLUME,
        status=status,
        created_at=NIGHT_1 + timedelta(days=night - 1),
        owned=owned,
        verified=verified,
    )


def kept(backups: list[BackupRecord], **rules: int) -> list[str]:
    plan = plan_retention(backups, RetentionRules(keep_last=1, min_successful=1, **rules), NOW)
    return sorted(b.id for b in plan.to_keep)


FIVE_NIGHTS = [record(n, verified=n in (1, 3)) for n in range(1, 6)]


@pytest.mark.parametrize(
    ("min_verified", "expected"),
    [(0, ["b5"]), (1, ["b3", "b5"]), (2, ["b1", "b3", "b5"]), (5, ["b1", "b3", "b5"])],
)
def test_the_newest_drilled_backups_are_kept_as_well(min_verified, expected):
    assert kept(FIVE_NIGHTS, min_verified=min_verified) == expected


def test_a_verified_backup_says_why_it_is_kept():
    plan = plan_retention(FIVE_NIGHTS, RetentionRules(keep_last=1, min_successful=1, min_verified=1), NOW)

    reasons = {d.backup.id: d.reasons for d in plan.decisions}
    assert reasons["b3"] == ("min_verified 1",)
    assert reasons["b1"] == ("no rule keeps it",)


def test_only_our_available_backups_count_as_verified():
    # A foreign drilled backup is never ours to count; a failed one never restores.
    backups = [
        record(1, verified=True),
        record(2),
        record(3, verified=True, owned=False),
        record(4, verified=True, status="error"),
        record(5),
    ]

    # b1 is the newest drilled backup of ours; b3 is kept only as foreign, b4 goes as a failed backup.
    assert kept(backups, min_verified=1) == ["b1", "b3", "b5"]


def test_min_verified_cannot_be_negative():
    with pytest.raises(ValidationError, match="min_verified"):
        RetentionRules(keep_last=1, min_verified=-1)


def test_drill_marks_in_the_ledger_reach_the_planner(tmp_path: Path):
    plan = BackupPlan.model_validate(
        {
            "selection": {"tags": {"backup": "nightly"}},
            "retention": {"keep_last": 1, "min_successful": 1, "min_verified": 1},
        }
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    init_db(engine)
    cloud: list[Backup] = []
    with Session(engine) as session:
        run = start_run(session=session, plan_name=plan.name, trigger="test")
        for night in range(1, 4):
            name = f"vbsb-web-01-vdb-{night}"
            created = NIGHT_1 + timedelta(days=night - 1)
            row = record_intent(
                session=session,
                run_id=run.id,
                plan_name=plan.name,
                slot_start=created,
                server_id="s",
                server_name="web-01",
                volume_id=VOLUME,
                volume_name="web-01-data",
                device="/dev/vdb",
                size_gb=100,
                is_system_disk=False,
                backup_name=name,
            )
            record_outcome(
                session=session,
                disk_backup_id=row.id,
                status=DiskBackupStatus.succeeded,
                backup_id=f"b{night}",
            )
            if night == 1:
                record_verified(session=session, disk_backup_id=row.id, at=created + timedelta(days=1))
            cloud.append(
                Backup.model_validate(
                    {
                        "id": f"b{night}",
                        "name": name,
                        "status": "available",
                        "volume_id": VOLUME,
                        "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                        "description": json.dumps({"DESC": plan.identity_marker(created), "INC": 1}),
                    }
                )
            )

    records = to_records(cloud, plan, {"b1", "b2", "b3"}, {"b1"})
    decided = decide(engine, VOLUME, cloud, plan, NOW)

    assert [r.verified for r in records] == [True, False, False]
    assert sorted(b.id for b in decided.to_keep) == ["b1", "b3"]
    assert [b.id for b in decided.to_delete] == ["b2"]
