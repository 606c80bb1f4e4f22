"""A target of the estate (vbs_backup/estate.py) in a flow run: its credentials block, loaded and checked
against the target before anything is sent.

A target names its cloud, region and project, and the VbsCredentials block that signs in there. The two
are written in different places (the estate file, the Prefect server), so they can disagree: a block
re-registered for another project would make the target's plans run against the wrong project. The run
refuses that in one line, before the first request.
"""

from __future__ import annotations

from vbs_backup.estate import Target
from vbs_backup.settings import ConfigError, Settings
from vbs_backup.tasks.credentials import settings_from_block

__all__ = ["target_settings"]


def target_settings(target: Target) -> Settings:
    """The settings of `target`'s credentials block; a ConfigError with one line when the block is missing
    or signs in somewhere else than the target says (cloud, region or project)."""
    settings = settings_from_block(target.credentials)
    wanted = {"cloud": str(target.cloud), "region": target.region, "project_id": target.project_id}
    found = {"cloud": str(settings.cloud), "region": settings.region, "project_id": settings.project_id}
    wrong = [
        f"{key} {found[key]} (the target says {wanted[key]})" for key in wanted if found[key] != wanted[key]
    ]
    if wrong:
        raise ConfigError(
            f"target {target.name}: credentials block {target.credentials!r} is for another place: "
            + ", ".join(wrong)
        )
    return settings
