"""The estate: every project an operations team backs up, in one file (issue "Many projects").

An estate file lists targets; a target is one project in one region of one cloud, the name of the Prefect
credentials block that signs in to it, and the plan(s) to apply there, inline or by file (a path relative to
the estate file), with optional per-target overrides of the plans' schedule timezone and retention:

```yaml
name: acme
targets:
  - cloud: huaweicloud
    region: eu-west-101
    project_id: 0123456789abcdef0123456789abcdef
    credentials: hwc-prod            # a VbsCredentials block (vbs-backup blocks register)
    account: hwc-acme                # optional: who shares one API budget (default: the credentials)
    plans: [{file: plans/nightly.yaml}, {name: db, selection: {name_patterns: ["db-*"]}}]
    schedule_timezone: Europe/Paris  # optional overrides, for every plan of this target
    retention: {keep_daily: 14}
```

`load_estate` reads and validates all of it, the plans included, before anything runs: every problem
becomes one line of one :class:`EstateError` (``targets.1.plans.0: ...``), like a plan's. A backup's
identity is (plan, volume, slot) within a project, so two targets may not apply plans of the same name to
the same project: that is refused here.

This module is Prefect-free and touches neither the network nor the disk at import time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .cloud.endpoints import CloudName
from .cloud.models.common import is_project_id
from .plan import BackupPlan, InputError, PlanError, read_yaml, validate_plan, validation_problems
from .settings import DASHED_NAME, check_region

__all__ = ["Estate", "EstateError", "Target", "UnknownTargetError", "load_estate", "validate_estate"]


class EstateError(InputError):
    """An estate file is malformed."""

    what = "estate"


def _slug(value: str) -> str:
    if not DASHED_NAME.match(value):  # as Prefect's block names are
        raise ValueError("must be lowercase letters, digits and dashes, like hwc-prod")
    return value


class Target(BaseModel):
    """One project in one region of one cloud, and the plans applied there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        description="How reports and runs name the target; default: <cloud>-<region>-<project>."
    )
    cloud: CloudName
    region: str
    project_id: str
    credentials: str = Field(description="The VbsCredentials block that signs in to this project.")
    account: str = Field(description="Targets with one account share one API rate budget.")
    plans: tuple[BackupPlan, ...] = Field(min_length=1)

    _region = field_validator("region")(check_region)
    _names = field_validator("name", "credentials", "account")(_slug)

    @field_validator("project_id")
    @classmethod
    def _check_project_id(cls, value: str) -> str:
        if not is_project_id(value):
            raise ValueError("must be 32 lowercase hexadecimal characters")
        return value


class Estate(BaseModel):
    """Every target of one operations team, checked as a whole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    targets: tuple[Target, ...] = Field(min_length=1)

    _name = field_validator("name")(_slug)

    def target(self, name: str) -> Target:
        """The target called `name`; an :class:`UnknownTargetError` naming the known ones otherwise."""
        return self.choose([name])[0]

    def choose(self, names: Sequence[str] | None) -> list[Target]:
        """The targets called `names`, in the estate's order; every target when `names` is empty or None.
        An unknown name is an :class:`UnknownTargetError` of one line naming the estate's targets."""
        if not names:
            return list(self.targets)
        known = [t.name for t in self.targets]
        unknown = [n for n in dict.fromkeys(names) if n not in known]
        if unknown:
            raise UnknownTargetError(
                f"estate {self.name} has no target {', '.join(unknown)} (its targets: {', '.join(known)})"
            )
        return [t for t in self.targets if t.name in names]


class UnknownTargetError(KeyError):
    """Targets asked for by a name that the estate does not have (a run's `targets` parameter)."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0])


_OVERRIDES = ("schedule_timezone", "retention")


def validate_estate(data: Any, *, source: str = "(inline)", base: Path | None = None) -> Estate:
    """Validate plain data (parsed YAML) into an :class:`Estate`, its plans read and overridden; plan files
    are relative to `base`. Every problem, in the estate or in any of its plans, is one line of one
    :class:`EstateError`."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise EstateError(source, [f"(estate): expected a mapping with name and targets, got {kind}"])
    problems: list[str] = []
    raw_targets = data.get("targets")
    if isinstance(raw_targets, list):
        where = base or Path.cwd()
        targets = [_target_data(raw, f"targets.{i}", where, problems) for i, raw in enumerate(raw_targets)]
        data = {**data, "targets": targets}
    try:
        estate = Estate.model_validate(data)
    except ValidationError as exc:
        # A target whose plans did not validate has none left here: their own problems above say why.
        lines = validation_problems(exc, whole="(estate)")
        problems += [line for line in lines if not _emptied(line, problems + lines)]
        raise EstateError(source, problems) from None
    problems += _duplicates(estate)
    if problems:
        raise EstateError(source, problems)
    return estate


def load_estate(path: str | Path) -> Estate:
    """Read an :class:`Estate` from a YAML file; any problem becomes one :class:`EstateError`."""
    source = f"in {path}"
    try:
        data = read_yaml(path)
    except ValueError as exc:
        raise EstateError(source, [str(exc)]) from exc.__cause__
    return validate_estate(data, source=source, base=Path(path).parent)


def _target_data(raw: Any, where: str, base: Path, problems: list[str]) -> Any:
    """A target's data with its plans read, overridden and validated (their problems added to
    `problems` under the target's path) and its defaults filled in."""
    if not isinstance(raw, dict):
        return raw  # the model says what is wrong with it
    overrides = {key: raw[key] for key in _OVERRIDES if key in raw}
    plans = []
    raw_plans = raw.get("plans")
    for index, plan in enumerate(raw_plans if isinstance(raw_plans, list) else []):
        read = _plan(plan, f"{where}.plans.{index}", base, overrides, problems)
        if read is not None:
            plans.append(read)
    target = {key: value for key, value in raw.items() if key not in _OVERRIDES}
    if isinstance(raw_plans, list):
        target["plans"] = plans
    name = _default_name(raw)
    if name is not None:
        target.setdefault("name", name)
    if isinstance(raw.get("credentials"), str):
        target.setdefault("account", raw["credentials"])
    return target


def _plan(
    plan: Any, where: str, base: Path, overrides: dict[str, Any], problems: list[str]
) -> BackupPlan | None:
    if isinstance(plan, dict) and set(plan) == {"file"}:
        path = base / str(plan["file"])
        try:
            data = read_yaml(path)
        except ValueError as exc:
            problems.append(f"{where} ({path}): {exc}")
            return None
        source = f"{where} ({path})"
    else:
        data, source = plan, where
    if not isinstance(data, dict):
        problems.append(f"{source}: expected a plan (a mapping) or {{file: path}}")
        return None
    try:
        return validate_plan({**data, **_overridden(data, overrides)}, source=source)
    except PlanError as exc:
        problems.extend(f"{source}: {problem}" for problem in exc.problems)
        return None


def _overridden(plan: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The target's overrides of one plan: its schedule timezone, and its retention rules merged over the
    plan's own (a target that says `keep_daily: 14` keeps the plan's other rules)."""
    result = dict(overrides)
    if isinstance(overrides.get("retention"), dict) and isinstance(plan.get("retention"), dict):
        result["retention"] = {**plan["retention"], **overrides["retention"]}
    return result


def _emptied(line: str, problems: list[str]) -> bool:
    """Whether `line` only says that a list came out empty because its items are wrong, which the items'
    own problems say better (pydantic reports both)."""
    path = line.split(":")[0]
    return "should have at least" in line and any(p.startswith(f"{path}.") for p in problems)


def _default_name(raw: dict[str, Any]) -> str | None:
    """`<cloud>-<region>-<first 8 of the project id>`: short enough for a report's column (two targets
    that would share it are refused, and then need a name)."""
    parts = [raw.get("cloud"), raw.get("region"), raw.get("project_id")]
    if not all(isinstance(p, str) and p for p in parts):
        return None
    cloud, region, project = (str(p) for p in parts)
    return f"{cloud}-{region}-{project[:8]}"


def _duplicates(estate: Estate) -> list[str]:
    problems = []
    names = Counter(t.name for t in estate.targets)
    problems += [f"targets: two targets are named {name}" for name, n in names.items() if n > 1]
    owners: dict[tuple[str, str], str] = {}
    for target in estate.targets:
        plan_names = Counter(p.name for p in target.plans)
        problems += [f"{target.name}.plans: two plans are named {n}" for n, c in plan_names.items() if c > 1]
        for plan in target.plans:
            key = (target.project_id, plan.name)
            if key in owners and owners[key] != target.name:
                problems.append(
                    f"{target.name}.plans: plan {plan.name} is also applied to project {target.project_id}"
                    f" by {owners[key]} (a backup's identity is its plan, volume and slot: one owner each)"
                )
            owners.setdefault(key, target.name)
    return problems
