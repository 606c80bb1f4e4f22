"""`vbs-backup serve`: every deployment of the catalog served from one long-running process.

For small installations: no work pool, no worker; the process polls the Prefect server for scheduled and
UI-started runs of its deployments and runs each in a subprocess. Stopping it pauses the schedules
(Prefect's `pause_on_shutdown`), so runs do not pile up while nothing serves them. Larger installations
use prefect.yaml with a process work pool and `prefect worker start` instead (see README).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vbs_backup.deployments.catalog import CATALOG, DeploymentSpec, plan_parameters
from vbs_backup.plan import BackupPlan

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

__all__ = ["build_deployments", "serve_catalog"]


def build_deployments(
    *,
    plan: BackupPlan | None = None,
    credentials: str | None = None,
    specs: Sequence[DeploymentSpec] = CATALOG,
) -> list[RunnerDeployment]:
    """The catalog's deployments; `plan` replaces the default plan of those that take one (and its
    `schedule_timezone` their cron's timezone), `credentials` names a VbsCredentials block for all."""
    plan_json = plan_parameters(plan) if plan is not None else None
    return [spec.to_deployment(plan=plan_json, credentials=credentials) for spec in specs]


def serve_catalog(
    *, plan: BackupPlan | None = None, credentials: str | None = None, limit: int | None = None
) -> None:
    """Register the deployments and serve them until interrupted (blocking)."""
    from prefect import serve

    serve(*build_deployments(plan=plan, credentials=credentials), limit=limit)
