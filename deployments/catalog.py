"""The product's deployments, in one list: name, flow, schedule, default parameters, concurrency.

`vbs-backup serve` builds its deployments from this list, and `prefect.yaml` (the work-pool path) mirrors
it; `tests/server/test_deployments.py` checks that the two agree. Adding a flow's deployment is one
`DeploymentSpec` here plus its entry in prefect.yaml.

Schedules are in an IANA timezone (a cron without one is UTC), the plan's `schedule_timezone` is the same
zone so that a run's schedule slot (and so its backup names) follows local midnight, and the nightly
deployment allows one run at a time: a night that overruns makes the next one wait, never overlap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from vbs_backup.flows.default_plan import DEFAULT_PLAN, TIMEZONE
from vbs_backup.plan import BackupPlan

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Schedule

__all__ = [
    "ALL_DEPLOYMENTS",
    "CATALOG",
    "DEFAULT_PLAN",
    "ESTATE_CATALOG",
    "TAG",
    "TIMEZONE",
    "DeploymentSpec",
    "by_name",
    "plan_parameters",
]

TAG = "vbs-backup"  # on every deployment, so the UI can filter the product's deployments


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment. `entrypoint` is prefect.yaml's `path/to/file.py:function`."""

    name: str
    entrypoint: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    timezone: str = TIMEZONE
    concurrency_limit: int | None = None
    tags: tuple[str, ...] = (TAG,)
    takes_plan: bool = False  # its `plan` parameter defaults to the served plan

    @property
    def module_path(self) -> str:
        """`vbs_backup.flows.nightly.nightly_backup`: the entrypoint as an importable name (what `serve`
        registers, so that a served run finds its flow wherever the process was started)."""
        path, function = self.entrypoint.split(":")
        return f"vbs_backup.{path.removesuffix('.py').replace('/', '.')}.{function}"

    def load_flow(self) -> Flow:
        module, _, function = self.module_path.rpartition(".")
        return getattr(importlib.import_module(module), function)

    def schedules(self) -> list[Schedule]:
        from prefect.schedules import Cron

        return [Cron(self.cron, timezone=self.timezone)] if self.cron else []

    def to_deployment(
        self, *, plan: dict[str, Any] | None = None, credentials: str | None = None
    ) -> RunnerDeployment:
        """The deployment `serve` registers; `plan` and `credentials` (a VbsCredentials block's name, looked
        up on the Prefect server) replace the default parameters."""
        from prefect.types.entrypoint import EntrypointType

        parameters = dict(self.parameters)
        timezone = self.timezone
        if plan is not None and self.takes_plan:
            parameters["plan"] = plan
            timezone = plan.get("schedule_timezone", "UTC")
        if credentials:
            # A block parameter is a reference to the saved block, which Prefect loads when a run starts
            # (and the run form shows as the selected block); a name without a block: ConfigError.
            from vbs_backup.deployments.blocks import block_reference

            parameters["credentials"] = block_reference(credentials)
        spec = replace(self, timezone=timezone)
        # Prefect's UI shows a schedule without its zone ("At 02:00 AM every day"): the description says it.
        description = self.description.replace(f"({self.timezone})", f"({timezone})")
        # Sync context: to_deployment returns the deployment itself (it dispatches on the event loop).
        return self.load_flow().to_deployment(  # type: ignore[return-value]
            name=self.name,
            description=description,
            schedules=spec.schedules(),
            concurrency_limit=self.concurrency_limit,
            parameters=parameters,
            tags=list(self.tags),
            entrypoint_type=EntrypointType.MODULE_PATH,
        )


CATALOG: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        name="nightly-backup",
        entrypoint="flows/nightly.py:nightly_backup",
        description="Every night at 02:00 (Europe/Paris): back up every disk of the plan's servers, then "
        "apply retention.",
        parameters={"plan": DEFAULT_PLAN},
        cron="0 2 * * *",
        concurrency_limit=1,
        takes_plan=True,
    ),
    DeploymentSpec(
        name="backup-server",
        entrypoint="flows/server.py:backup_server",
        description="On demand: back up every disk of one server now (type its name or id in the run form).",
        # The served plan, so that an on-demand backup gets the same names, tags and retention.
        parameters={"plan": DEFAULT_PLAN},
        takes_plan=True,
    ),
    DeploymentSpec(
        name="apply-retention",
        entrypoint="flows/server.py:apply_retention",
        description="On demand: apply the plan's retention; a dry run (the default) only shows the plan.",
        parameters={"plan": DEFAULT_PLAN, "dry_run": True},
        takes_plan=True,
    ),
    DeploymentSpec(
        name="backup-watchdog",
        entrypoint="flows/watchdog.py:backup_watchdog",
        description="Hourly: fail (and so alert) when a disk's newest good backup is older than the RPO, "
        "when the nightly run did not happen, or when a disk was never backed up.",
        parameters={"plan": DEFAULT_PLAN, "rpo_hours": 26},
        # At half past, so that it never races the nightly run's start.
        cron="30 * * * *",
        concurrency_limit=1,
        takes_plan=True,
    ),
    DeploymentSpec(
        name="restore-disk",
        entrypoint="flows/restore.py:restore_disk",
        description="On demand: restore a detached disk from a backup (by id, or the newest good one before "
        "a time), after checking every documented precondition; a dry run only says what would happen.",
    ),
    DeploymentSpec(
        name="restore-drill",
        entrypoint="flows/restore.py:restore_drill",
        description="Sundays at 05:00 (Europe/Paris): restore a sample of protected disks into scratch "
        "disks, check them, record the time it took, delete the scratch disks; fails (and alerts) when a "
        "drill fails.",
        parameters={"plan": DEFAULT_PLAN, "sample": 2, "wait_minutes": 60},
        cron="0 5 * * 0",
        concurrency_limit=1,
        takes_plan=True,
    ),
    DeploymentSpec(
        name="share-backups",
        entrypoint="flows/sharing.py:share_backups",
        description="On demand (schedule it once the target projects are set): share the newest good backup "
        "of each disk with other projects, e.g. a disaster-recovery project, and withdraw older shares.",
        parameters={"plan": DEFAULT_PLAN, "to_project_ids": []},
        concurrency_limit=1,
        takes_plan=True,
    ),
    DeploymentSpec(
        name="policy-audit",
        entrypoint="flows/policies.py:policy_audit",
        description="Daily at 07:00 (Europe/Paris): record every task the native VBS backup policies ran; "
        "fails (and alerts) on EXECUTE_FAIL or EXECUTE_TIMEOUT.",
        parameters={"since_hours": 25},
        cron="0 7 * * *",
        concurrency_limit=1,
    ),
)

# The estate's deployments (flows/estate.py): work-pool only, in prefect.yaml after the catalog's, never
# served by `vbs-backup serve` (the parent starts its children through the work pool, one per target).
ESTATE_CATALOG: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        name="estate-nightly",
        entrypoint="flows/estate.py:estate_nightly",
        description="Every night at 02:00 (Europe/Paris): back up every target of the estate file, one "
        "estate-target run per target on the work pool; fails (and alerts) naming each target that "
        "failed, crashed or timed out.",
        parameters={"estate": "estate.yaml"},
        cron="0 2 * * *",
        concurrency_limit=1,
    ),
    DeploymentSpec(
        name="estate-target",
        entrypoint="flows/estate.py:estate_target",
        description="Started by estate-nightly: back up one target of the estate (its plans, with its "
        "credentials block, within its account's shared API budget).",
    ),
    DeploymentSpec(
        name="estate-watchdog",
        entrypoint="flows/estate_watchdog.py:estate_watchdog",
        description="Hourly: fail (and so alert) naming each target's problems when a disk of the estate has "
        "no good backup within the RPO, or a target's plan did not run.",
        parameters={"estate": "estate.yaml", "rpo_hours": 26},
        cron="30 * * * *",
        concurrency_limit=1,
    ),
)
ALL_DEPLOYMENTS = CATALOG + ESTATE_CATALOG


def by_name(name: str) -> DeploymentSpec:
    for spec in ALL_DEPLOYMENTS:
        if spec.name == name:
            return spec
    raise KeyError(f"no deployment named {name!r}; known: {', '.join(s.name for s in ALL_DEPLOYMENTS)}")


def plan_parameters(plan: BackupPlan) -> dict[str, Any]:
    """A plan as deployment parameters: its non-default fields as JSON (what the UI form shows)."""
    return plan.model_dump(mode="json", exclude_defaults=True)
