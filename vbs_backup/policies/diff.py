"""The diff between the file and the cloud: a `PolicyPlan` of `Change`s in apply order, with warnings (a
disk also in the nightly plan, a member count the metadata does not explain) and errors that block apply
(two cloud policies with one name, a disk VBS would refuse to associate).

Policies are matched by name (uniqueness is unconfirmed, §3.1). No `time_zone` means UTC: the API cannot
remove a time zone once set, only change it. Cloud policies that the file does not name are left alone
unless `prune` asks to delete them (their backups are kept, §3.4).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..cloud.models.policies import (
    Policy,
)
from .cloud import CloudPolicy, Inventory
from .model import WEEKDAYS, PolicyFile, PolicySpec, tz_minutes

# disk states VBS refuses to associate (§3.5, §4.10)
UNASSOCIABLE = (
    "awaiting-transfer",
    "error_extending",
    "error_restoring",
    "error_rollbacking",
    "error",
    "error_deleting",
)


class ChangeKind(StrEnum):
    delete = "delete"
    disassociate = "disassociate"
    create = "create"
    modify = "modify"
    enable = "enable"
    disable = "disable"
    tag_add = "tag-add"
    tag_update = "tag-update"
    tag_delete = "tag-delete"
    associate = "associate"


APPLY_ORDER = list(ChangeKind)  # the enum is declared in apply order


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    policy: str  # the policy's name
    detail: str  # for people
    volume_ids: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    fields: tuple[str, ...] = ()  # a modification's changed fields

    @property
    def symbol(self) -> str:
        return {
            "create": "+",
            "associate": "+",
            "tag-add": "+",
            "delete": "-",
            "disassociate": "-",
            "tag-delete": "-",
        }.get(self.kind.value, "~")

    def __str__(self) -> str:
        return f"{self.symbol} {self.kind.value} {self.policy}: {self.detail}"


@dataclass
class PolicyPlan:
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # problems that block apply
    unmanaged: list[str] = field(default_factory=list)  # cloud policies not in the file, kept
    policy_ids: dict[str, str] = field(default_factory=dict)  # name -> id of every uniquely named policy
    specs: dict[str, PolicySpec] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)


def _schedule_of(cloud: Policy) -> dict[str, Any]:
    sp = cloud.scheduled_policy
    return {
        "start_time": frozenset(int(t.strip()[:2]) for t in (sp.start_time or "").split(",") if t.strip()),
        "frequency": sp.frequency,
        "week_frequency": frozenset(str(d) for d in sp.week_frequency)
        if sp.week_frequency is not None
        else None,
        "retention_num": sp.retention_num,
        "retention_day": sp.retention_day,
        "remain_first_backup_of_cur_month": bool(sp.remain_first_backup_of_cur_month),
        "time_zone": tz_minutes(cloud.time_zone) if cloud.time_zone else 0,
    }


def _schedule_wanted(spec: PolicySpec) -> dict[str, Any]:
    s = spec.schedule
    return {
        "start_time": s.hours,
        "frequency": s.frequency,
        "week_frequency": frozenset(s.week_frequency) if s.week_frequency is not None else None,
        "retention_num": spec.retention.retention_num,
        "retention_day": spec.retention.retention_day,
        "remain_first_backup_of_cur_month": spec.remain_first_backup_of_cur_month,
        "time_zone": tz_minutes(spec.time_zone),
    }


def _show(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "start_time":
        return ",".join(f"{h:02d}:00" for h in sorted(value))
    if key == "week_frequency":
        return ",".join(sorted(value, key=WEEKDAYS.index))
    if key == "time_zone":
        return f"UTC{'+' if value >= 0 else '-'}{abs(value) // 60:02d}:{abs(value) % 60:02d}"
    return str(value)


def _describe(spec: PolicySpec) -> str:
    s, r = spec.schedule, spec.retention
    when = f"every {s.frequency} day(s)" if s.frequency else "on " + ",".join(s.week_frequency or [])
    keep = f"keep {r.retention_num}" if r.retention_num else f"keep {r.retention_day} days"
    return (
        f"{spec.start_time_text()} UTC {when}, {keep}, {'ON' if spec.enabled else 'OFF'}"
        + (f", time zone {spec.time_zone}" if spec.time_zone else "")
        + (f", tags {spec.tags}" if spec.tags else "")
    )


def make_plan(
    file: PolicyFile,
    members: Mapping[str, list[str]],
    cloud: Iterable[CloudPolicy],
    inventory: Inventory,
    *,
    prune: bool = False,
    nightly: Mapping[str, str] | None = None,
) -> PolicyPlan:
    """The changes that make the cloud match the file (pure). `nightly` maps the disks of this product's
    nightly plan to their names, to warn about disks backed up twice."""
    plan = PolicyPlan(specs={p.name: p for p in file.policies})
    cloud = list(cloud)
    by_name: dict[str, list[CloudPolicy]] = defaultdict(list)
    for item in cloud:
        by_name[item.name].append(item)
    policy_of = {v: c.name for c in cloud for v in c.members}
    for name, items in sorted(by_name.items()):
        if len(items) > 1:
            plan.errors.append(
                f"{len(items)} cloud policies are named {name}: rename or delete all but one first"
            )
        for item in items:
            if item.policy.policy_resource_count != len(item.members):
                plan.warnings.append(
                    f"policy {name}: the service counts {item.policy.policy_resource_count} member disks, "
                    f"the EVS metadata `policy` names {len(item.members)} (members are read from it)"
                )
        if len(items) == 1:
            plan.policy_ids[name] = items[0].policy.backup_policy_id
        if name not in plan.specs:
            if prune:
                plan.changes.append(Change(ChangeKind.delete, name, "not in the file (its backups are kept)"))
                continue
            plan.unmanaged.append(name)
            for item in items:
                _warn_nightly(plan, name, sorted(item.members), nightly)
    for spec in file.policies:
        wanted = members.get(spec.name, [])
        existing = by_name.get(spec.name, [])
        bad = [
            v for v in wanted if (vol := inventory.volumes.get(v)) is not None and vol.status in UNASSOCIABLE
        ]
        current = existing[0] if len(existing) == 1 else None
        to_join = [v for v in wanted if current is None or v not in current.members]
        for volume_id in bad:
            if volume_id in to_join:
                status = inventory.volumes[volume_id].status
                plan.errors.append(
                    f"policy {spec.name}: disk {inventory.label(volume_id)} is {status}: "
                    "VBS refuses to associate it (AutoBackup.0206)"
                )
        if len(existing) > 1:
            continue
        if current is None:
            plan.changes.append(Change(ChangeKind.create, spec.name, _describe(spec)))
        else:
            _compare(plan, spec, current, wanted, inventory)
        if to_join:
            moves = sorted({policy_of[v] for v in to_join if v in policy_of and policy_of[v] != spec.name})
            note = f" (moves from {', '.join(moves)})" if moves else ""
            labels = ", ".join(inventory.label(v) for v in to_join)
            plan.changes.append(
                Change(ChangeKind.associate, spec.name, labels + note, volume_ids=tuple(to_join))
            )
        _warn_nightly(plan, spec.name, wanted, nightly)
    plan.changes.sort(key=lambda c: APPLY_ORDER.index(c.kind))
    return plan


def _warn_nightly(
    plan: PolicyPlan, policy: str, volume_ids: Iterable[str], nightly: Mapping[str, str] | None
) -> None:
    for volume_id in volume_ids:
        if nightly and volume_id in nightly:
            plan.warnings.append(
                f"disk {nightly[volume_id]} is in native policy {policy} and in the nightly plan: "
                "it is backed up twice, and each retention only sees its own backups"
            )


def _compare(
    plan: PolicyPlan, spec: PolicySpec, current: CloudPolicy, wanted: list[str], inventory: Inventory
) -> None:
    have, want = _schedule_of(current.policy), _schedule_wanted(spec)
    changed_fields = tuple(k for k in want if have[k] != want[k])
    if changed_fields:
        shown = "; ".join(f"{k} {_show(k, have[k])} -> {_show(k, want[k])}" for k in changed_fields)
        plan.changes.append(Change(ChangeKind.modify, spec.name, shown, fields=changed_fields))
    if current.policy.enabled != spec.enabled:
        kind = ChangeKind.enable if spec.enabled else ChangeKind.disable
        plan.changes.append(
            Change(kind, spec.name, "status " + ("OFF -> ON" if spec.enabled else "ON -> OFF"))
        )
    added = tuple((k, v) for k, v in sorted(spec.tags.items()) if k not in current.tags)
    changed = tuple(
        (k, v) for k, v in sorted(spec.tags.items()) if k in current.tags and current.tags[k] != v
    )
    removed = tuple((k, current.tags[k]) for k in sorted(current.tags) if k not in spec.tags)
    if added:
        plan.changes.append(
            Change(ChangeKind.tag_add, spec.name, ", ".join(f"{k}={v}" for k, v in added), tags=added)
        )
    if changed:
        shown = ", ".join(f"{k}: {current.tags[k]} -> {v}" for k, v in changed)
        plan.changes.append(Change(ChangeKind.tag_update, spec.name, shown, tags=changed))
    if removed:
        plan.changes.append(
            Change(ChangeKind.tag_delete, spec.name, ", ".join(k for k, _ in removed), tags=removed)
        )
    leaving = tuple(sorted(current.members - set(wanted)))
    if leaving:
        plan.changes.append(
            Change(
                ChangeKind.disassociate,
                spec.name,
                ", ".join(inventory.label(v) for v in leaving),
                volume_ids=leaving,
            )
        )
