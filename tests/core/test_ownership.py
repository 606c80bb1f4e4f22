"""Who owns a backup: the plan whose identity it carries AND whose own attempts recorded creating it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from vbs_backup.cloud.models.backups import Backup
from vbs_backup.identity import identity_marker
from vbs_backup.plan import BackupPlan
from vbs_backup.retention.prune import is_owned

SLOT = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)


def plan(name: str, prefix: str) -> BackupPlan:
    return BackupPlan.model_validate({"name": name, "name_prefix": prefix, "selection": {"tags": {"a": "b"}}})


def backup(backup_id: str, name: str, description: str | None) -> Backup:
    return Backup.model_validate(
        {
            "id": backup_id,
            "name": name,
            "status": "available",
            "volume_id": "v",
            "created_at": "2026-11-29T23:10:00.000000",
            "description": json.dumps({"DESC": description, "INC": 1}),
        }
    )


NIGHTLY, ARCHIVE = plan("nightly", "vbsb"), plan("archive", "vbsb-arch")


def test_identity_and_the_plans_own_record_are_both_needed():
    ours = backup("b1", "vbsb-web-01-vdb-202611292300", identity_marker("nightly", SLOT))
    assert is_owned(ours, NIGHTLY, {"b1"})
    assert not is_owned(ours, NIGHTLY, set())  # a copy of our marker that no attempt of ours recorded
    assert not is_owned(ours, ARCHIVE, {"b1"})  # another plan's identity, even with a matching id


def test_plan_names_and_prefixes_never_match_by_prefix():
    archived = backup("b2", "vbsb-arch-web-01-vdb-202611292300", identity_marker("archive", SLOT))
    assert not is_owned(archived, NIGHTLY, {"b2"})
    assert is_owned(archived, ARCHIVE, {"b2"})
    short = plan("arch", "vbsb")
    assert not is_owned(archived, short, {"b2"})


def test_a_backup_of_an_earlier_version_needs_the_old_marker_the_prefix_and_a_migrated_row():
    legacy = backup("b3", "vbsb-web-01-vdb-202611282300", "managed-by=vbs-backup")
    assert is_owned(legacy, NIGHTLY, {"b3"})  # a migrated ledger row of this plan names it
    assert not is_owned(legacy, NIGHTLY, set())
    assert not is_owned(legacy, plan("nightly", "other"), {"b3"})
    policy = backup("b4", "autobk_1a2b", "managed-by=vbs-backup")
    assert not is_owned(policy, NIGHTLY, {"b4"})


def test_hand_made_and_policy_backups_are_nobodys():
    for made in (backup("b5", "manual", None), backup("b6", "autobk_9f", "vbsb1 plan=nightly")):
        assert not is_owned(made, NIGHTLY, {"b5", "b6"})
