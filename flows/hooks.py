"""State hooks every flow carries: `@flow(..., **ON_FAILURE)`.

ON_FAILURE holds the e-mail hook (on failure and on crash) only where this process has
VBS_BACKUP_SMTP_HOST set when it imports the flows (`vbs-backup serve`, a worker, and the run processes
they start, which inherit their environment); elsewhere it is empty, so Prefect runs no hook and logs no
"Hook 'email_on_failure' finished running successfully" for a mail that was never meant to be sent. The
server-side alert automation is the main alert; this one runs in the flow's own process, so it cannot
report a process that was killed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ON_FAILURE", "email_on_failure", "failure_hooks"]


def email_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    # The mail wiring lives in deployments/ (same pattern as tasks.runtime.load_settings).
    from vbs_backup.deployments.alerts import email_on_failure as send

    send(flow, flow_run, state)


def failure_hooks(env: Mapping[str, str] = os.environ) -> dict[str, list[Callable[..., None]]]:
    """`on_failure` and `on_crashed` with the e-mail hook when `env` configures SMTP, else nothing."""
    if not env.get("VBS_BACKUP_SMTP_HOST", "").strip():
        return {}
    return {"on_failure": [email_on_failure], "on_crashed": [email_on_failure]}


ON_FAILURE = failure_hooks()
