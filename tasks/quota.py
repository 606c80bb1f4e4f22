"""Task: the night's quota preflight, before the first create (`vbs_backup.backup.quotas`).

A night that does not fit in the project's backup quotas is refused whole, with one line naming the
shortfall (returned as a `Refusal`, no traceback; the flow `unwrap`s it, the run ends Failed and its ledger
row `failed` with that line), instead of creating until the cloud answers `VolumeBackup.0080` / `.0081`
disk by disk.

When the quotas cannot be read, the night goes on with a warning: the preflight must never make a night
fail that would have worked; a create beyond the quota would still fail its own disk, as without it.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from vbs_backup.backup.quotas import QuotaCheck, check_night, night_need
from vbs_backup.backup.targets import DiskTarget
from vbs_backup.cloud.errors import CloudError
from vbs_backup.cloud.models.backups import Backup
from vbs_backup.tasks.runtime import Refusal, RunContext, failure_line

__all__ = ["check_quota"]


@task(name="check-quota", task_run_name="check quotas", cache_policy=NO_CACHE)
async def check_quota(
    ctx: RunContext, disks: Sequence[DiskTarget], listed: dict[str, list[Backup]]
) -> QuotaCheck | Refusal | None:
    """The night's need (disks without a live backup of this slot in `listed`, the run's listing before any
    create) against the project's quotas: the check when it fits, a `Refusal` when it does not, None when
    the quotas could not be read (logged as a warning; the night goes on)."""
    logger = get_run_logger()
    try:
        quotas = await ctx.client.vbs.get_quotas()
    except CloudError as exc:
        logger.warning("quotas not checked, the night goes on (cannot read them: %s)", failure_line(exc))
        return None
    result = check_night(quotas, night_need(disks, listed, ctx.plan.identity_marker(ctx.slot)))
    if not result.ok:
        return Refusal(result.message())
    logger.info(result.message())
    return result
