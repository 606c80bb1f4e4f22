"""State hooks every flow carries: an e-mail on failure or crash where the Prefect server cannot send
e-mail itself (a no-op unless VBS_BACKUP_SMTP_HOST is set). The server-side alert automation is the main
alert; this one runs in the flow's own process, so it cannot report a process that was killed."""

from __future__ import annotations

from typing import Any


def email_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    # The mail wiring lives in deployments/ (same pattern as tasks.runtime.load_settings).
    from deployments.alerts import email_on_failure as send

    send(flow, flow_run, state)


ON_FAILURE = {"on_failure": [email_on_failure], "on_crashed": [email_on_failure]}
