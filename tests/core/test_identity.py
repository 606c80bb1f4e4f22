"""Backup identity and schedule slots: absolute intervals, correct across DST, for every accepted length."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vbs_backup.identity import identity_marker, parse_marker, slot_start
from vbs_backup.plan import BackupPlan, PlanError, validate_plan

PARIS = "Europe/Paris"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_repeated_hour_of_an_autumn_dst_night_is_a_slot_of_its_own():
    # 2026-10-25: Paris goes from 03:00 CEST back to 02:00 CET at 01:00 UTC; 02:30 local happens twice.
    first, second = utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)
    assert slot_start(first, 60, PARIS) == utc(2026, 10, 25, 0, 0)
    assert slot_start(second, 60, PARIS) == utc(2026, 10, 25, 1, 0)
    # The 25-hour day has 25 hourly slots.
    day = [slot_start(utc(2026, 10, 24, 22, 30) + timedelta(hours=h), 60, PARIS) for h in range(25)]
    assert len(set(day)) == 25


def test_the_skipped_hour_of_a_spring_night_makes_no_empty_slot():
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC; the day has 23 hourly slots.
    day = [slot_start(utc(2026, 3, 28, 23, 30) + timedelta(hours=h), 60, PARIS) for h in range(23)]
    assert len(set(day)) == 23
    assert slot_start(utc(2026, 3, 29, 0, 59), 1440, PARIS) == utc(2026, 3, 28, 23, 0)  # local midnight


def test_daily_slots_start_at_local_midnight_on_both_sides_of_dst():
    assert slot_start(utc(2026, 10, 24, 23, 30), 1440, PARIS) == utc(2026, 10, 24, 22, 0)
    assert slot_start(utc(2026, 10, 25, 23, 30), 1440, PARIS) == utc(2026, 10, 25, 23, 0)


def test_a_weekly_slot_is_an_iso_week_not_a_new_name_every_day():
    monday = slot_start(utc(2026, 11, 23, 6), 10080, PARIS)
    assert monday == utc(2026, 11, 22, 23, 0)  # Monday 00:00 Paris
    for hours in range(0, 7 * 24, 5):
        assert slot_start(utc(2026, 11, 22, 23, 0) + timedelta(hours=hours), 10080, PARIS) == monday


def test_slots_longer_than_a_day_must_be_whole_days():
    with pytest.raises(PlanError, match=r"slot_minutes: .*whole days"):
        validate_plan({"selection": {"tags": {"a": "b"}}, "slot_minutes": 2000})
    assert validate_plan({"selection": {"tags": {"a": "b"}}, "slot_minutes": 2880}).slot_minutes == 2880


@given(
    now=st.datetimes(min_value=datetime(2000, 2, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    minutes=st.sampled_from([1, 7, 15, 60, 90, 360, 1440, 2880, 10080]),
    zone=st.sampled_from([PARIS, "UTC", "America/Santiago", "Australia/Lord_Howe", "Asia/Kolkata"]),
)
def test_a_slot_contains_its_instant_and_is_at_most_its_length(now, minutes, zone):
    start = slot_start(now, minutes, zone)
    assert start <= now
    # A day-long slot may be 25 hours long in real time (an autumn night); never longer than that.
    assert now - start < timedelta(minutes=minutes) + timedelta(hours=1)
    assert slot_start(start, minutes, zone) == start  # a slot's start belongs to that slot


def test_the_marker_carries_plan_and_slot_and_reads_back():
    slot = utc(2026, 11, 29, 23, 0)
    marker = identity_marker("nightly", slot)
    assert marker == "vbsb1 plan=nightly slot=202611292300" and len(identity_marker("p" * 32, slot)) <= 64
    assert parse_marker(marker) == ("nightly", slot)
    for other in (None, "", "managed-by=vbs-backup", marker + " ", "vbsb1 plan=a b slot=202611292300"):
        assert parse_marker(other) is None


def test_plan_names_never_match_by_prefix():
    slot = utc(2026, 11, 29, 23, 0)
    plan = BackupPlan.model_validate({"name": "arch", "selection": {"tags": {"a": "b"}}})
    assert parse_marker(identity_marker("archive", slot)) == ("archive", slot)
    assert parse_marker(plan.identity_marker(slot)) == ("arch", slot)
    assert parse_marker(f"vbsb1 plan={'p' * 33} slot=202611292300") is None  # plan names have 32 at most
