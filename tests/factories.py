"""Small builders of the product's values, shared by unit tests."""

from __future__ import annotations

from vbs_backup.backup.targets import DiskTarget


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
