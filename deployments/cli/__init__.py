"""The `vbs-backup` command: `app`, the `[project.scripts]` entry point, put together in `app.py` from one
module per feature (emulator, ledger, nightly, ops, policies, restore, sharing); the commands that run a
flow run it through `running`. Kept out of the core package, which never imports Prefect: the commands
import it only when they run.
"""

from vbs_backup.deployments.cli.app import app

__all__ = ["app"]
