"""State hooks every flow carries: `@flow(..., **ON_FAILURE)`.

ON_FAILURE holds the e-mail hook (`email_on_failure`, on failure and on crash) only where this process has
VBS_BACKUP_SMTP_HOST set when it imports the flows (`vbs-backup serve`, a worker, and the run processes
they start, which inherit their environment); elsewhere it is empty, so Prefect runs no hook and logs no
"Hook 'email_on_failure' finished running successfully" for a mail that was never meant to be sent. It
is for installations whose Prefect server cannot send e-mail itself: the server-side alert automation
(deployments/alerts.py) is the main alert; this one runs in the flow's own process, so it cannot report a
process that was killed. Both say it in the same words (vbs_backup.notify).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from prefect.settings import PREFECT_UI_URL

from vbs_backup.flows.failures import INVALID_INPUT
from vbs_backup.notify import SmtpConfig, failure_email, safe_reason, send_email

__all__ = ["ON_FAILURE", "email_on_failure", "failure_hooks"]

log = logging.getLogger(__name__)


def email_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect `on_failure` / `on_crashed` hook: e-mail the failure when VBS_BACKUP_SMTP_HOST is set,
    except for a run refused for its input (state INVALID_INPUT: the person who typed it sees it).

    It runs in the flow's own process: immediate, but it cannot report a process that was killed (the
    server-side automation can). It never raises: a broken mail relay must not change the run's state.
    """
    try:
        if state.name == INVALID_INPUT:
            return
        config = SmtpConfig.from_env()
        if config is None:
            return
        # Every catalog deployment is named after its flow (tests/server/test_alerts_*.py checks it): no
        # API call on the failure path to learn the deployment's name.
        deployment = flow.name if getattr(flow_run, "deployment_id", None) else None
        email = failure_email(
            config, flow, flow_run, state, deployment=deployment, ui_url=PREFECT_UI_URL.value()
        )
        send_email(config, email)
    except Exception as exc:  # a hook must not fail the run; say why without echoing credentials
        log.error("failure e-mail not sent: %s", safe_reason(exc))


def failure_hooks(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """`on_failure` and `on_crashed` with the e-mail hook when `env` configures SMTP, else nothing (typed
    `Any` so that it can be spread into `@flow(...)`, whose keywords each have their own type)."""
    if not env.get("VBS_BACKUP_SMTP_HOST", "").strip():
        return {}
    return {"on_failure": [email_on_failure], "on_crashed": [email_on_failure]}


ON_FAILURE = failure_hooks()
