"""The quota preflight's arithmetic and its message (vbs_backup.backup.quotas), and the watchdog's quota
checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vbs_backup.backup.quotas import NightNeed, QuotaUse, check_night, night_need
from vbs_backup.backup.targets import DiskTarget
from vbs_backup.cloud.models.backups import Backup, Quotas
from vbs_backup.watchdog.check import FindingKind, check_quotas

SLOT = datetime(2026, 3, 10, tzinfo=UTC)
MARKER = "vbsb:nightly:20260310"  # any text: only equality with a backup's description matters


def quotas(backups: tuple[int, int] = (0, -1), gigabytes: tuple[int, int] = (0, -1), reserved=0) -> Quotas:
    """(used, quota) per type; -1 = unlimited."""
    return Quotas.model_validate(
        {
            "resources": [
                {"type": "backups", "used": backups[0], "reserved": reserved, "quota": backups[1]},
                {"type": "backup_gigabytes", "used": gigabytes[0], "reserved": 0, "quota": gigabytes[1]},
            ]
        }
    )


def disk(volume: str, size_gb: int, status: str = "in-use") -> DiskTarget:
    return DiskTarget(
        server_id="s1",
        server_name="web-01",
        volume_id=volume,
        volume_name=volume,
        device=f"/dev/vd{volume[-1]}",
        size_gb=size_gb,
        is_system=False,
        status=status,
    )


def backup(volume: str, description: str, status: str = "available") -> Backup:
    return Backup.model_validate(
        {
            "id": f"b-{volume}-{status}",
            "name": "x",
            "status": status,
            "volume_id": volume,
            "description": description,
            "size": 10,
            "created_at": "2026-03-10T01:00:00.000000",
        }
    )


DISKS = [disk("va", 40), disk("vb", 100), disk("vc", 200)]


# ------------------------------------------------------------------------------------------------- need


def test_every_disk_without_a_backup_of_the_slot_needs_one_of_its_size():
    assert night_need(DISKS, {}, MARKER) == NightNeed(backups=3, gigabytes=340)


def test_a_disk_with_a_live_backup_of_the_slot_adopts_it_and_needs_nothing():
    listed = {
        "va": [backup("va", MARKER)],  # adopted
        "vb": [backup("vb", MARKER, status="creating")],  # adopted (still being made)
        "vc": [backup("vc", MARKER, status="error"), backup("vc", "vbsb:nightly:20260309")],  # not live / old
    }
    assert night_need(DISKS, listed, MARKER) == NightNeed(backups=1, gigabytes=200)


def test_a_disk_evs_cannot_describe_creates_nothing():
    assert night_need([*DISKS, disk("vd", 0, status="missing")], {}, MARKER) == NightNeed(3, 340)


# ------------------------------------------------------------------------------------------- arithmetic


def test_unlimited_quotas_always_fit():
    result = check_night(quotas(), NightNeed(10_000, 10_000_000))
    assert result.ok
    assert result.backups.free is None and result.backups.shortfall == 0
    assert result.backups.usage_ratio is None and result.gigabytes.usage_ratio is None


def test_an_exact_fit_is_enough():
    result = check_night(quotas(backups=(7, 10), gigabytes=(660, 1000)), NightNeed(3, 340))
    assert result.ok
    assert (result.backups.free, result.backups.shortfall) == (3, 0)
    assert (result.gigabytes.free, result.gigabytes.shortfall) == (340, 0)
    assert result.backups.usage_ratio == pytest.approx(0.7)
    assert result.gigabytes.usage_ratio == pytest.approx(0.66)


def test_short_in_count_only():
    result = check_night(quotas(backups=(8, 10), gigabytes=(0, 1000)), NightNeed(3, 340))
    assert not result.ok
    assert (result.backups.shortfall, result.gigabytes.shortfall) == (1, 0)


def test_short_in_gigabytes_only():
    result = check_night(quotas(backups=(0, 10), gigabytes=(700, 1000)), NightNeed(3, 340))
    assert not result.ok
    assert (result.backups.shortfall, result.gigabytes.shortfall) == (0, 40)


def test_short_in_both():
    result = check_night(quotas(backups=(9, 10), gigabytes=(900, 1000)), NightNeed(3, 340))
    assert (result.backups.shortfall, result.gigabytes.shortfall) == (2, 240)


def test_reserved_counts_as_used_and_a_project_over_its_quota_has_nothing_left():
    result = check_night(quotas(backups=(12, 10), reserved=1), NightNeed(1, 10))
    assert result.backups.used == 13 and result.backups.free == 0 and result.backups.shortfall == 1
    assert result.backups.usage_ratio == pytest.approx(1.3)


def test_a_quota_type_the_cloud_does_not_list_is_not_checked():
    only_count = Quotas.model_validate({"resources": [{"type": "backups", "used": 1, "quota": 5}]})
    result = check_night(only_count, NightNeed(4, 1_000_000))
    assert result.ok and result.gigabytes.free is None


def test_a_zero_quota_is_full():
    assert QuotaUse("backups", limit=0, used=0).usage_ratio == 1.0


def test_adopted_disks_are_not_counted_against_the_quota():
    listed = {"vb": [backup("vb", MARKER)], "vc": [backup("vc", MARKER)]}
    # 1 backup left: only va needs one.
    assert check_night(quotas(backups=(9, 10)), night_need(DISKS, listed, MARKER)).ok
    assert not check_night(quotas(backups=(9, 10)), night_need(DISKS, {}, MARKER)).ok


# ---------------------------------------------------------------------------------------------- message


def test_the_shortfall_reads_as_one_line_naming_both_quotas():
    result = check_night(quotas(backups=(800, 1000), gigabytes=(60_000, 100_000)), NightNeed(1000, 41_200))
    assert result.message() == (
        "quota shortfall: this night needs 1,000 new backups (41,200 GiB); the project has 200 backups "
        "left of 1,000 (short by 800) and 40,000 GiB left of 100,000 (short by 1,200). Retention runs only "
        "after the night's backups exist, so the old backups it would delete cannot make room: raise the "
        "quota or delete backups first"
    )
    assert "\n" not in result.message()


def test_an_unlimited_quota_says_so_and_headroom_reads_as_headroom():
    result = check_night(quotas(backups=(5, 10)), NightNeed(1, 40))
    assert result.message() == (
        "quota headroom: this night needs 1 new backup (40 GiB); the project has 5 backups left of 10 "
        "and unlimited GiB"
    )
    short = check_night(quotas(backups=(10, 10)), NightNeed(2, 80)).message()
    assert short.startswith(
        "quota shortfall: this night needs 2 new backups (80 GiB); the project has 0 backups left of 10 "
        "(short by 2) and unlimited GiB."
    )


# --------------------------------------------------------------------------------------------- watchdog


@pytest.mark.parametrize(
    ("backups", "gigabytes", "problems", "warnings"),
    [
        ((500, 1000), (5000, 10_000), [], []),
        ((799, 1000), (0, -1), [], []),
        ((800, 1000), (0, -1), [], [(FindingKind.quota_high, "quota backups")]),
        ((0, -1), (9_500, 10_000), [], [(FindingKind.quota_high, "quota backup_gigabytes")]),
        ((1000, 1000), (0, -1), [(FindingKind.quota_exhausted, "quota backups")], []),
        (
            (1200, 1000),
            (9000, 10_000),
            [(FindingKind.quota_exhausted, "quota backups")],
            [(FindingKind.quota_high, "quota backup_gigabytes")],
        ),
        ((10**6, -1), (10**9, -1), [], []),
    ],
)
def test_the_watchdog_warns_from_80_percent_and_fails_at_100(backups, gigabytes, problems, warnings):
    found, warned = check_quotas(quotas(backups=backups, gigabytes=gigabytes))
    assert [(f.kind, f.subject) for f in found] == problems
    assert [(w.kind, w.subject) for w in warned] == warnings


def test_the_watchdog_quota_lines_read_clearly():
    _, [warning] = check_quotas(quotas(backups=(1, 10), gigabytes=(8_996, 9_000)))
    assert str(warning) == "quota backup_gigabytes: 99 % used (8,996 of 9,000 GiB)"
    [problem], _ = check_quotas(quotas(backups=(10, 10)))
    assert str(problem) == "quota backups: 100 % used (10 of 10 backups): the next night cannot back up"
    _, [unread] = check_quotas(None, error="cannot read them: 503")
    assert unread.kind is FindingKind.quota_unread and str(unread) == "project quotas: cannot read them: 503"
    assert check_quotas(None) == ([], [])
