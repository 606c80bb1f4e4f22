"""A backup's identity: (plan, volume, schedule slot), carried on the backup itself and read back from the
cloud.

Ownership and adoption never rest on a backup's name (a server is renamed, a disk is re-attached under
another device, two servers sanitise to the same name) nor on the ledger alone (a lost, restored or second
ledger). The identity is written into the one field that VBS lets us set and documents reading back, the
description (64 characters, no ``<``/``>``): ``vbsb1 plan=<plan name> slot=<slot start, UTC, minutes>``. The
volume is the backup's own ``volume_id``. Names stay readable but are decoration.

Slots are absolute time intervals. A slot shorter than a day counts real elapsed minutes from local midnight
in the plan's timezone, so the repeated hour of an autumn DST night is a slot of its own, the skipped hour of
a spring night simply does not exist, and a day's last slot may be shorter (a 25-hour day with 6-hour slots
ends with a one-hour slot). A slot of whole days (1 to 7) is that many local calendar days, counted from a
Monday (2000-01-03), so a 7-day slot is an ISO week and never restarts at midnight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "CLOCK_SKEW",
    "DAY_MINUTES",
    "MARKER_PREFIX",
    "BackupIdentity",
    "identity_marker",
    "parse_marker",
    "slot_start",
]

# How far the cloud's clock may lag ours when we decide that a backup appeared after a moment of ours (an
# attempt's intent). A clock further off makes us miss a match, never make a wrong one: the waiter then asks
# the job API, and reconciliation marks the attempt abandoned instead of claiming a backup.
CLOCK_SKEW = timedelta(minutes=5)

MARKER_PREFIX = "vbsb1"
DAY_MINUTES = 1440
# Multi-day slots count days from this Monday, so weekly slots are ISO weeks.
_DAY_ANCHOR = date(2000, 1, 3)
_STAMP = "%Y%m%d%H%M"
_MARKER = re.compile(rf"^{MARKER_PREFIX} plan=(?P<plan>[A-Za-z0-9_-]{{1,32}}) slot=(?P<slot>\d{{12}})$")


@dataclass(frozen=True, slots=True)
class BackupIdentity:
    """What a backup is *for*: one plan, one volume, one slot (its start, aware UTC)."""

    plan: str
    volume_id: str
    slot: datetime

    @property
    def marker(self) -> str:
        return identity_marker(self.plan, self.slot)


def identity_marker(plan: str, slot: datetime) -> str:
    """The description written on every backup of `plan` for the slot starting at `slot` (at most 61
    characters: plan names have at most 32)."""
    if slot.tzinfo is None or slot.utcoffset() is None:
        raise ValueError("slot must be a timezone-aware datetime")
    return f"{MARKER_PREFIX} plan={plan} slot={slot.astimezone(UTC).strftime(_STAMP)}"


def parse_marker(description: str | None) -> tuple[str, datetime] | None:
    """(plan, slot start) from a backup's description, or None when it carries no identity of ours."""
    if not description:
        return None
    m = _MARKER.match(description)
    if m is None:
        return None
    return m.group("plan"), datetime.strptime(m.group("slot"), _STAMP).replace(tzinfo=UTC)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    # A midnight that a DST jump skips resolves (fold=0) to the instant of the jump: still the day's start.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def slot_start(now: datetime, minutes: int, timezone: str) -> datetime:
    """Start (aware UTC) of the slot of `minutes` that contains `now`, in `timezone` (see the module text).
    `minutes` is below a day, or a whole number of days."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    if minutes < 1 or (minutes >= DAY_MINUTES and minutes % DAY_MINUTES):
        raise ValueError(f"slot of {minutes} minutes: use less than a day, or whole days")
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    if minutes % DAY_MINUTES == 0:
        days = minutes // DAY_MINUTES
        offset = (today - _DAY_ANCHOR).days // days * days
        return _local_midnight(_DAY_ANCHOR + timedelta(days=offset), zone)
    midnight = _local_midnight(today, zone)
    elapsed = now.astimezone(UTC) - midnight  # real time, whatever the wall clock did
    return midnight + (elapsed // timedelta(minutes=minutes)) * timedelta(minutes=minutes)
