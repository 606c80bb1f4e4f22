"""The real client (`vbs_backup.cloud`) on the emulator, for tests in any folder: `connect(handle)` (an AK/SK
client for the project of an `EmulatorHandle`), `wait(client, job_id, vtime=None, ...)` (`wait_for_job`
without real waiting) and `backup_now(...)` (create a backup and wait for it)."""

from __future__ import annotations

from typing import Any

from tests.clocks import VirtualTime
from vbs_backup.clock import Clock
from vbs_backup.cloud import CloudClient, RetryPolicy

REGION = "eu-west-0"


def connect(handle: Any, *, retry: RetryPolicy | None = None, **overrides: Any) -> CloudClient:
    """An AK/SK client for the project of an `EmulatorHandle` (no waiting between retries by default)."""
    kwargs: dict[str, Any] = dict(
        region=REGION,
        project_id=handle.project_id,
        ak=handle.ak,
        sk=handle.sk,
        endpoint=handle.url,
        retry=retry or RetryPolicy(wait=False),
    )
    kwargs.update(overrides)
    return CloudClient.connect(**kwargs)


async def wait(client: CloudClient, job_id: str, vtime: VirtualTime | None = None, **kwargs: Any) -> Any:
    """`wait_for_job` without real waiting (poll mode moves the job on each `get_job`)."""

    async def no_sleep(_: float) -> None:
        return None

    if vtime is not None:
        clock = Clock(sleep=vtime.sleep, monotonic=vtime.clock)
        return await client.vbs.wait_for_job(job_id, clock=clock, **kwargs)
    return await client.vbs.wait_for_job(job_id, clock=Clock(sleep=no_sleep), **kwargs)


async def backup_now(client: CloudClient, volume_id: str, name: str, **kwargs: Any) -> str:
    """Create a backup and wait for its job; returns the backup id."""
    job = await wait(client, await client.vbs.create_backup(volume_id, name, **kwargs))
    assert job.backup_id, job
    return job.backup_id
