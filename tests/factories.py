"""Small builders of the product's values, shared by unit and flow tests."""

from __future__ import annotations

from typing import Any

from vbs_backup.backup.targets import DiskTarget
from vbs_backup.plan import BackupPlan


def disk(server: str, device: str, volume: str) -> DiskTarget:
    """An in-use disk of `server` at `device` (the system disk at /dev/vda), 10 GB."""
    return DiskTarget(
        server_id=f"id-{server}",
        server_name=server,
        volume_id=volume,
        volume_name=f"{server}-{device}",
        device=device,
        size_gb=10,
        is_system=device == "/dev/vda",
        status="in-use",
    )


def plan(**overrides: Any) -> BackupPlan:
    """The nightly plan of the example fleet (servers tagged backup=nightly, polled every 30 s), with
    `overrides` for its top-level fields."""
    data: dict[str, Any] = {"selection": {"tags": {"backup": "nightly"}}, "poll_interval_seconds": 30}
    data.update(overrides)
    return BackupPlan.model_validate(data)
