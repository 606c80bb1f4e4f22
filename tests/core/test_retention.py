"""The retention planner: worked examples, rule validation, and property tests of the safety invariants."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vbs_backup.retention.planner import (
    BackupRecord,
    RetentionPlan,
    RetentionRules,
    plan_retention,
)

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
SUSPENDED = "newest attempt failed: pruning suspended"


def backup(
    created_at: datetime,
    *,
    id: str | None = None,
    status: str = "available",
    owned: bool = True,
    name: str | None = None,
) -> BackupRecord:
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M")
    return BackupRecord(
        id=id or f"bk-{stamp}",
        name=name or f"vbsb-srv1-vda-{stamp}",
        volume_id="vol-1",
        status=status,
        created_at=created_at,
        owned=owned,
    )


def reasons_by_id(plan: RetentionPlan) -> dict[str, tuple[str, ...]]:
    return {d.backup.id: d.reasons for d in plan.decisions}


def kept_ids(plan: RetentionPlan) -> set[str]:
    return {b.id for b in plan.to_keep}


# --- worked examples -------------------------------------------------------------------------------------


def test_keep_last_keeps_the_newest_n_successful_backups() -> None:
    backups = [backup(NOW - timedelta(days=d, hours=1), id=f"d{d}") for d in range(6)]
    backups.insert(0, backup(NOW, id="err", status="error"))  # not counted by rules

    plan = plan_retention(backups, RetentionRules(keep_last=3, min_successful=1), NOW)

    assert reasons_by_id(plan) == {
        "err": ("failed backup newer than any successful one (kept for diagnosis)",),
        "d0": ("keep_last 3 (#1)", "min_successful 1"),
        "d1": ("keep_last 3 (#2)",),
        "d2": ("keep_last 3 (#3)",),
        "d3": ("no rule keeps it",),
        "d4": ("no rule keeps it",),
        "d5": ("no rule keeps it",),
    }
    assert [b.id for b in plan.to_delete] == ["d3", "d4", "d5"]


def test_keep_within_days_is_inclusive_of_the_boundary() -> None:
    backups = [backup(NOW - timedelta(days=d), id=f"d{d:02d}") for d in range(21)]

    plan = plan_retention(backups, RetentionRules(keep_within_days=14, min_successful=1), NOW)

    assert kept_ids(plan) == {f"d{d:02d}" for d in range(15)}
    assert reasons_by_id(plan)["d14"] == ("within 14 days",)
    assert reasons_by_id(plan)["d15"] == ("no rule keeps it",)


def _nightly_in_paris(first: date, last: date) -> list[BackupRecord]:
    """One backup a night at 00:30 Paris time, which is the previous day in UTC (summer and winter)."""
    days = (last - first).days + 1
    return [
        backup(
            datetime.combine(first + timedelta(days=n), time(0, 30), tzinfo=PARIS),
            id=str(first + timedelta(days=n)),
        )
        for n in range(days)
    ]


def test_grandfather_father_son_over_a_year_in_paris_across_dst() -> None:
    backups = _nightly_in_paris(date(2024, 12, 1), date(2025, 12, 31))  # spans both 2025 DST changes
    now = datetime(2026, 1, 1, 9, 0, tzinfo=PARIS)
    rules = RetentionRules(
        keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2, min_successful=1, timezone="Europe/Paris"
    )

    plan = plan_retention(backups, rules, now)

    daily = {f"2025-12-{d}" for d in range(25, 32)}
    weekly = {"2025-12-21", "2025-12-14"}  # plus 12-31 (2026-W01) and 12-28 (2025-W52), already daily
    monthly = {
        "2025-11-30", "2025-10-31", "2025-09-30", "2025-08-31", "2025-07-31", "2025-06-30",
        "2025-05-31", "2025-04-30", "2025-03-31", "2025-02-28", "2025-01-31",
    }  # fmt: skip
    yearly = {"2024-12-31"}
    assert kept_ids(plan) == daily | weekly | monthly | yearly
    assert len(plan.to_delete) == len(backups) - 21
    assert reasons_by_id(plan)["2025-12-31"] == (
        "keep_daily 7 (2025-12-31)",
        "keep_weekly 4 (2026-W01)",
        "keep_monthly 12 (2025-12)",
        "keep_yearly 2 (2025)",
        "min_successful 1",
    )
    assert reasons_by_id(plan)["2025-12-28"] == ("keep_daily 7 (2025-12-28)", "keep_weekly 4 (2025-W52)")
    # 2025-03-31 00:30 CEST is 2025-03-30 22:30 UTC: the local month decides, right after spring-forward.
    assert reasons_by_id(plan)["2025-03-31"] == ("keep_monthly 12 (2025-03)",)
    assert reasons_by_id(plan)["2024-12-31"] == ("keep_yearly 2 (2024)",)

    # The same backups counted in UTC fall on other days: the timezone matters.
    in_utc = plan_retention(backups, rules.model_copy(update={"timezone": "UTC"}), now)
    assert "2025-12-01" in kept_ids(in_utc)  # 2025-11-30 23:30 UTC, newest of November in UTC
    assert "2025-11-30" not in kept_ids(in_utc)


def test_keep_daily_uses_local_days_on_the_fall_back_night() -> None:
    # Paris leaves summer time on 2025-10-26 at 03:00: that local day lasts 25 hours.
    backups = [
        backup(datetime(2025, 10, 24, 22, 30, tzinfo=UTC), id="sat-0030"),  # 2025-10-25 00:30 CEST
        backup(datetime(2025, 10, 25, 22, 30, tzinfo=UTC), id="sun-0030"),  # 2025-10-26 00:30 CEST
        backup(datetime(2025, 10, 26, 22, 30, tzinfo=UTC), id="sun-2330"),  # 2025-10-26 23:30 CET
    ]
    now = datetime(2025, 10, 27, tzinfo=UTC)

    paris = plan_retention(
        backups, RetentionRules(keep_daily=2, min_successful=1, timezone="Europe/Paris"), now
    )
    utc = plan_retention(backups, RetentionRules(keep_daily=2, min_successful=1), now)

    assert kept_ids(paris) == {"sun-2330", "sat-0030"}
    assert reasons_by_id(paris)["sat-0030"] == ("keep_daily 2 (2025-10-25)",)
    assert kept_ids(utc) == {"sun-2330", "sun-0030"}


def test_rules_without_a_timezone_count_in_the_inherited_one() -> None:
    """A plan's rules that name no timezone count in its schedule timezone (BackupPlan hands it down with
    `in_timezone`); on their own, in UTC; a timezone they name always wins."""
    rules = RetentionRules(keep_daily=2, min_successful=1)
    assert rules.timezone is None and rules.tz == ZoneInfo("UTC")
    inherited = rules.in_timezone("Europe/Paris")
    assert inherited.tz == PARIS and inherited.effective_timezone == "Europe/Paris"
    assert rules.tz == ZoneInfo("UTC")  # a copy: the original is untouched
    assert inherited == rules and hash(inherited) == hash(rules)  # the rules as written are the same
    assert inherited.model_dump()["timezone"] is None
    own = RetentionRules(keep_daily=2, min_successful=1, timezone="Asia/Tokyo").in_timezone("Europe/Paris")
    assert own.tz == ZoneInfo("Asia/Tokyo")
    with pytest.raises(KeyError):
        rules.in_timezone("Europe/Nowhere")

    backups = [  # the fall-back night of the test below
        backup(datetime(2025, 10, 24, 22, 30, tzinfo=UTC), id="sat-0030"),
        backup(datetime(2025, 10, 25, 22, 30, tzinfo=UTC), id="sun-0030"),
        backup(datetime(2025, 10, 26, 22, 30, tzinfo=UTC), id="sun-2330"),
    ]
    now = datetime(2025, 10, 27, tzinfo=UTC)
    assert kept_ids(plan_retention(backups, inherited, now)) == {"sun-2330", "sat-0030"}  # Paris days
    assert kept_ids(plan_retention(backups, rules, now)) == {"sun-2330", "sun-0030"}  # UTC days


def test_keep_within_days_counts_local_days_across_a_dst_change() -> None:
    # Paris leaves summer time on 2025-10-26: 7 local days before 2025-10-30 02:00 CET is 2025-10-23
    # 02:00 CEST, 7 days and 1 hour of real time earlier.
    now = datetime(2025, 10, 30, 1, 0, tzinfo=UTC)  # 02:00 CET
    edge = backup(datetime(2025, 10, 23, 0, 0, tzinfo=UTC), id="edge")  # 02:00 CEST, exactly 7 local days
    before = backup(datetime(2025, 10, 22, 23, 59, tzinfo=UTC), id="before")
    rules = RetentionRules(keep_within_days=7, min_successful=1)
    fresh = backup(now, id="fresh")  # the one min_successful keeps
    paris = plan_retention([fresh, edge, before], rules.in_timezone("Europe/Paris"), now)
    assert reasons_by_id(paris)["edge"] == ("within 7 days",)
    assert "before" not in kept_ids(paris)
    # In UTC, where those days have 24 hours each, the same backup is 7 days and 1 hour old.
    assert "edge" not in kept_ids(plan_retention([fresh, edge, before], rules, now))


def test_keep_within_days_keeps_the_earlier_reading_of_a_repeated_or_skipped_wall_time() -> None:
    rules = RetentionRules(keep_within_days=1, min_successful=1).in_timezone("Europe/Paris")
    # 2025-10-27 02:30 CET; one local day before is 2025-10-26 02:30, which happened twice (CEST, then CET).
    now = datetime(2025, 10, 27, 1, 30, tzinfo=UTC)
    first = backup(datetime(2025, 10, 26, 0, 30, tzinfo=UTC), id="first")  # 02:30 CEST
    assert reasons_by_id(plan_retention([backup(now), first], rules, now))["first"] == ("within 1 days",)
    # 2025-03-31 02:30 CEST; one local day before is 2025-03-30 02:30, which never happened: the earlier
    # reading (02:30 at +02:00, 00:30 UTC) is the boundary.
    now = datetime(2025, 3, 31, 0, 30, tzinfo=UTC)
    early = backup(datetime(2025, 3, 30, 0, 30, tzinfo=UTC), id="early")
    assert reasons_by_id(plan_retention([backup(now), early], rules, now))["early"] == ("within 1 days",)


def test_keep_first_of_month_keeps_the_oldest_success_of_each_local_month() -> None:
    stamps = ["01-05", "01-15", "01-25", "02-10", "02-20", "03-02", "03-12"]
    backups = [backup(datetime.fromisoformat(f"2025-{s}T10:00+00:00"), id=s) for s in stamps]
    backups.append(backup(datetime(2025, 1, 31, 23, 30, tzinfo=UTC), id="feb-1-paris"))  # 2025-02-01 00:30
    backups.append(backup(datetime(2025, 1, 2, tzinfo=UTC), id="jan-err", status="error"))  # not a success
    rules = RetentionRules(keep_first_of_month=True, keep_last=1, min_successful=1, timezone="Europe/Paris")

    plan = plan_retention(backups, rules, datetime(2025, 3, 15, tzinfo=UTC))

    assert kept_ids(plan) == {"01-05", "feb-1-paris", "03-02", "03-12"}
    assert reasons_by_id(plan)["feb-1-paris"] == ("first of month 2025-02",)
    assert reasons_by_id(plan)["03-12"] == ("keep_last 1 (#1)", "min_successful 1")
    assert reasons_by_id(plan)["jan-err"] == ("failed backup",)


def test_backups_we_do_not_own_are_never_deleted() -> None:
    backups = [
        backup(NOW, id="ours"),
        backup(NOW - timedelta(days=400), id="theirs", owned=False),
        backup(NOW - timedelta(days=500), id="theirs-err", owned=False, status="error"),
    ]

    plan = plan_retention(backups, RetentionRules(keep_last=1, min_successful=1), NOW)

    assert plan.to_delete == []
    assert reasons_by_id(plan)["theirs"] == ("not owned",)
    assert reasons_by_id(plan)["theirs-err"] == ("not owned",)


def test_policy_backups_are_never_deleted_even_if_marked_owned() -> None:
    backups = [
        backup(NOW, id="ours"),
        backup(NOW - timedelta(days=90), id="policy", name="autobk_a1b2"),
        backup(NOW - timedelta(days=91), id="policy-theirs", name="autobk_c3d4", owned=False),
    ]

    plan = plan_retention(backups, RetentionRules(keep_last=1, min_successful=1), NOW)

    assert plan.to_delete == []
    assert plan.decisions[1].backup.is_policy_backup
    assert reasons_by_id(plan)["policy"] == ("policy backup (autobk_)",)
    assert reasons_by_id(plan)["policy-theirs"] == ("not owned", "policy backup (autobk_)")


@pytest.mark.parametrize("status", ["creating", "deleting", "restoring", "error_restoring", "frozen"])
def test_backups_in_a_transitional_state_are_never_deleted(status: str) -> None:
    backups = [backup(NOW, id="new"), backup(NOW - timedelta(days=30), id="old", status=status)]

    plan = plan_retention(backups, RetentionRules(keep_last=1, min_successful=1), NOW)

    assert plan.to_delete == []
    assert reasons_by_id(plan)["old"] == (f"transitional status {status}",)


def test_a_failed_newest_attempt_suspends_all_pruning() -> None:
    backups = [
        backup(NOW - timedelta(days=d), id=f"d{d}", status="error" if d == 2 else "available")
        for d in range(5)
    ]
    rules = RetentionRules(keep_last=1, min_successful=1)
    assert len(plan_retention(backups, rules, NOW).to_delete) == 4

    plan = plan_retention(backups, rules, NOW, newest_attempt_failed=True)

    assert plan.to_delete == []
    assert plan.pruning_suspended
    assert all(SUSPENDED in d.reasons for d in plan.decisions)
    assert reasons_by_id(plan)["d0"] == ("keep_last 1 (#1)", "min_successful 1", SUSPENDED)
    assert reasons_by_id(plan)["d1"] == (SUSPENDED, "would delete: no rule keeps it")
    assert reasons_by_id(plan)["d2"] == (SUSPENDED, "would delete: failed backup")


def test_min_successful_overrides_an_aggressive_rule() -> None:
    backups = [backup(NOW - timedelta(days=30 + d), id=f"d{d}") for d in range(5)]

    plan = plan_retention(backups, RetentionRules(keep_within_days=1, min_successful=3), NOW)

    assert [b.id for b in plan.to_keep] == ["d0", "d1", "d2"]
    assert reasons_by_id(plan)["d2"] == ("min_successful 3",)
    assert [b.id for b in plan.to_delete] == ["d3", "d4"]


def test_min_successful_counts_only_our_own_backups() -> None:
    # Policy backups can vanish with the policy's own retention: they never stand in for ours.
    backups = [
        backup(NOW, id="policy-1", name="autobk_1", owned=False),
        backup(NOW - timedelta(hours=1), id="policy-2", name="autobk_2", owned=False),
        *(backup(NOW - timedelta(days=30 + d), id=f"ours-{d}") for d in range(4)),
    ]

    plan = plan_retention(backups, RetentionRules(keep_within_days=7, min_successful=2), NOW)

    assert [b.id for b in plan.to_delete] == ["ours-2", "ours-3"]


def test_failed_backups_are_deleted_once_a_newer_backup_succeeded() -> None:
    backups = [
        backup(NOW, id="err-newest", status="error"),
        backup(NOW - timedelta(days=1), id="ok-1"),
        backup(NOW - timedelta(days=2), id="err-middle", status="error"),
        backup(NOW - timedelta(days=3), id="ok-2"),
        backup(NOW - timedelta(days=4), id="err-oldest", status="error"),
    ]

    plan = plan_retention(backups, RetentionRules(keep_last=5), NOW)

    assert [b.id for b in plan.to_delete] == ["err-middle", "err-oldest"]
    assert reasons_by_id(plan)["err-middle"] == ("failed backup",)
    assert reasons_by_id(plan)["err-newest"] == (
        "failed backup newer than any successful one (kept for diagnosis)",
    )


def test_failed_backups_are_kept_while_no_backup_of_ours_succeeded() -> None:
    backups = [backup(NOW - timedelta(days=d), id=f"err-{d}", status="error") for d in range(3)]

    plan = plan_retention(backups, RetentionRules(keep_last=1), NOW)

    assert plan.to_delete == []


def test_decisions_are_newest_first_with_ties_broken_by_id() -> None:
    backups = [
        backup(NOW - timedelta(days=1), id="old"),
        backup(NOW, id="a"),
        backup(NOW.astimezone(PARIS), id="b"),  # the same instant, written in another timezone
    ]
    rules = RetentionRules(keep_last=1, min_successful=1)

    plan = plan_retention(backups, rules, NOW)

    assert [d.backup.id for d in plan.decisions] == ["b", "a", "old"]
    assert plan == plan_retention(list(reversed(backups)), rules, NOW)


def test_an_empty_disk_gets_an_empty_plan() -> None:
    assert plan_retention([], RetentionRules(keep_last=1), NOW).decisions == []


# --- validation --------------------------------------------------------------------------------------------


def test_rules_that_keep_nothing_are_rejected_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="retention keeps nothing: set at least one of keep_last, "):
        RetentionRules()
    with pytest.raises(ValidationError, match="retention keeps nothing"):
        RetentionRules(min_successful=5, keep_first_of_month=False)


@pytest.mark.parametrize("name", ["Europe/Nowhere", "America", "", "../etc/passwd", "/etc/localtime"])
def test_an_unknown_timezone_is_rejected_naming_the_field(name: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        RetentionRules(keep_last=1, timezone=name)
    (error,) = excinfo.value.errors()
    assert error["loc"] == ("timezone",)
    assert "unknown IANA timezone" in error["msg"]


@pytest.mark.parametrize(
    "field", ["keep_last", "keep_within_days", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]
)
@pytest.mark.parametrize("value", [0, -1])
def test_counts_below_one_are_rejected(field: str, value: int) -> None:
    with pytest.raises(ValidationError) as excinfo:
        RetentionRules.model_validate({"keep_first_of_month": True, field: value})
    assert excinfo.value.errors()[0]["loc"] == (field,)


def test_min_successful_below_one_and_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="min_successful"):
        RetentionRules(keep_last=3, min_successful=0)
    with pytest.raises(ValidationError, match="keep_dayly"):
        RetentionRules(keep_last=3, keep_dayly=7)  # type: ignore[call-arg]


def test_min_successful_above_keep_last_is_allowed_and_wins() -> None:
    rules = RetentionRules(keep_last=1, min_successful=3)
    backups = [backup(NOW - timedelta(days=d), id=f"d{d}") for d in range(4)]
    assert [b.id for b in plan_retention(backups, rules, NOW).to_delete] == ["d3"]


def test_rules_are_frozen_and_render_as_a_titled_form() -> None:
    rules = RetentionRules(keep_daily=7, timezone="Europe/Paris")
    with pytest.raises(ValidationError):
        rules.keep_daily = 1  # type: ignore[misc]
    assert rules.tz == PARIS
    properties = RetentionRules.model_json_schema()["properties"]
    assert all(p.get("title") and p.get("description") for p in properties.values())
    # Optional numbers and the optional timezone are plain fields in Prefect's form (no null branch).
    assert properties["keep_last"] == {
        "description": "Keep the N newest successful backups.",
        "minimum": 1,
        "title": "Keep last",
        "type": "integer",
    }
    assert properties["timezone"]["type"] == "string" and "default" not in properties["timezone"]


def test_naive_datetimes_mixed_disks_and_duplicate_ids_are_rejected() -> None:
    rules = RetentionRules(keep_last=1)
    with pytest.raises(ValidationError, match="timezone"):
        backup(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_retention([], rules, datetime(2025, 1, 1))
    other_disk = backup(NOW).model_copy(update={"id": "x", "volume_id": "vol-2"})
    with pytest.raises(ValueError, match="one disk at a time"):
        plan_retention([backup(NOW), other_disk], rules, NOW)
    with pytest.raises(ValueError, match="duplicate backup ids"):
        plan_retention([backup(NOW, id="a"), backup(NOW - timedelta(days=1), id="a")], rules, NOW)


# --- properties ----------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=100, deadline=None)
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
ZONES = ["UTC", "Europe/Paris", "Asia/Shanghai", "America/Sao_Paulo", "Pacific/Chatham"]
STATUSES = ["available"] * 4 + ["error"] * 2 + ["creating", "deleting", "restoring", "error_restoring"]
OFFSETS = [UTC, PARIS, ZoneInfo("Asia/Tokyo"), timezone(-timedelta(hours=5))]
# (status, owned, policy name) in one draw: drawing is what costs time here, not planning.
KINDS = [
    (s, owned, policy) for s in STATUSES for owned in (True, True, False) for policy in (False, False, True)
]


# Hours from a narrow range collide often, which exercises the tie-breaking by id.
_HOURS = st.integers(0, 6) | st.integers(0, 24 * 800)
_BACKUP_FIELDS = st.tuples(_HOURS, st.sampled_from(KINDS), st.sampled_from(OFFSETS))


def _records(fields: list[tuple[int, tuple[str, bool, bool], tzinfo]]) -> list[BackupRecord]:
    return [
        BackupRecord(
            id=f"bk-{(n * 7919) % 101:03d}",  # unique, and not in creation order
            name=f"autobk_{n}" if policy else f"vbsb-{n}",
            volume_id="vol-1",
            status=status,
            created_at=(EPOCH + timedelta(hours=hours)).astimezone(offset),
            owned=owned,
        )
        for n, (hours, (status, owned, policy), offset) in enumerate(fields)
    ]


backup_lists = st.lists(_BACKUP_FIELDS, max_size=20).map(_records)
_SMALL = st.integers(1, 6)
_ZONES = st.sampled_from(ZONES)
_COUNT_RULES = ["keep_last", "keep_within_days", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]
_RULE_NAMES = st.sampled_from([*_COUNT_RULES, "keep_first_of_month"])


@st.composite
def retention_rules(draw: st.DrawFn) -> RetentionRules:
    # Few, small rules: sparse rule sets are the aggressive ones, where the safety rules have work to do.
    chosen = draw(st.sets(_RULE_NAMES, min_size=1, max_size=3))
    return RetentionRules(
        **{name: draw(_SMALL) for name in chosen if name != "keep_first_of_month"},
        keep_first_of_month="keep_first_of_month" in chosen,
        min_successful=draw(_SMALL),
        timezone=draw(_ZONES),
    )


nows = st.integers(0, 24 * 900).map(lambda h: EPOCH + timedelta(hours=h))


@PROPERTY
@given(backup_lists, retention_rules(), nows, st.booleans())
def test_every_backup_gets_exactly_one_explained_decision_newest_first(
    backups: list[BackupRecord], rules: RetentionRules, now: datetime, failed: bool
) -> None:
    plan = plan_retention(backups, rules, now, newest_attempt_failed=failed)

    assert sorted(d.backup.id for d in plan.decisions) == sorted(b.id for b in backups)
    assert all(d.reasons and all(d.reasons) for d in plan.decisions)
    keys = [(d.backup.created_at, d.backup.id) for d in plan.decisions]
    assert keys == sorted(keys, reverse=True)
    assert len(plan.to_keep) + len(plan.to_delete) == len(backups)


@PROPERTY
@given(backup_lists, retention_rules(), nows)
def test_never_deletes_foreign_policy_or_transitional_backups(
    backups: list[BackupRecord], rules: RetentionRules, now: datetime
) -> None:
    for deleted in plan_retention(backups, rules, now).to_delete:
        assert deleted.owned
        assert not deleted.name.startswith("autobk_")
        assert deleted.status in ("available", "error")


@PROPERTY
@given(backup_lists, retention_rules(), nows)
def test_never_drops_below_min_successful(
    backups: list[BackupRecord], rules: RetentionRules, now: datetime
) -> None:
    plan = plan_retention(backups, rules, now)

    available = sorted((b for b in backups if b.status == "available"), key=lambda b: (b.created_at, b.id))
    floor = min(rules.min_successful, len(available))
    kept = kept_ids(plan)
    assert all(b.id in kept for b in available[::-1][:floor])
    assert sum(b.id in kept for b in available) >= floor


@PROPERTY
@given(backup_lists, retention_rules(), nows)
def test_a_failed_newest_attempt_deletes_nothing_and_says_so(
    backups: list[BackupRecord], rules: RetentionRules, now: datetime
) -> None:
    plan = plan_retention(backups, rules, now, newest_attempt_failed=True)

    assert plan.to_delete == []
    assert all(SUSPENDED in d.reasons for d in plan.decisions)


@PROPERTY
@given(backup_lists, retention_rules(), nows, st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_input_order(
    backups: list[BackupRecord], rules: RetentionRules, now: datetime, random: object
) -> None:
    shuffled = list(backups)
    random.shuffle(shuffled)  # type: ignore[attr-defined]

    assert plan_retention(shuffled, rules, now) == plan_retention(backups, rules, now)


@PROPERTY
@given(backup_lists, retention_rules(), retention_rules(), nows)
def test_adding_rules_never_deletes_more(
    backups: list[BackupRecord], rules: RetentionRules, more: RetentionRules, now: datetime
) -> None:
    # Rules are OR-ed: adding rules, or raising their counts, can only keep more.
    larger = {name: max(getattr(rules, name) or 0, getattr(more, name) or 0) or None for name in _COUNT_RULES}
    larger["keep_first_of_month"] = rules.keep_first_of_month or more.keep_first_of_month
    union = rules.model_copy(update=larger)
    deleted = {b.id for b in plan_retention(backups, union, now).to_delete}

    assert deleted <= {b.id for b in plan_retention(backups, rules, now).to_delete}


@PROPERTY
@given(backup_lists, retention_rules(), nows)
def test_deletions_are_unkept_successes_or_superseded_failures(
    backups: list[BackupRecord], rules: RetentionRules, now: datetime
) -> None:
    plan = plan_retention(backups, rules, now)
    ours_ok = [
        (b.created_at, b.id)
        for b in backups
        if b.status == "available" and b.owned and not b.is_policy_backup
    ]

    for decision in plan.decisions:
        if decision.action != "delete":
            continue
        if decision.backup.status == "available":
            assert decision.reasons == ("no rule keeps it",)
        else:
            assert decision.reasons == ("failed backup",)
            assert (decision.backup.created_at, decision.backup.id) < max(ours_ok)
