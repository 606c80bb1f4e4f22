"""Alerts on failed runs: a Prefect automation per product (created or updated by name, so
`vbs-backup alerts setup` can be run again at will) that sends a notification through saved notification
blocks (generic webhook, Slack, Microsoft Teams) when a run of one of the catalog's deployments ends
Failed, Crashed or TimedOut; and an e-mail `on_failure` hook for installations whose Prefect server cannot
send e-mail itself.

The automation runs on the Prefect server, so it also covers runs whose process died (Crashed) and needs
nothing from the flow. `prefect.flow-run.Failed` does not cover the other two states, hence three events.
The message is a Jinja template rendered by the server: the deployment, the run, its state message (the
flows put the failed disks there, e.g. "FAILED: db-01 /dev/vdb (failed: VolumeBackup.0064)") and a link to
the run in the UI (`ui_url` uses the server's PREFECT_UI_URL, or its API URL without `/api`).
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from enum import StrEnum
from typing import Any
from uuid import UUID

from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    MicrosoftTeamsWebhook,
    NotificationBlock,
    SlackWebhook,
)
from prefect.client.orchestration import PrefectClient, get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from pydantic import SecretStr

from .catalog import CATALOG

__all__ = [
    "AUTOMATION_NAME",
    "FAILURE_EVENTS",
    "Notifier",
    "SmtpConfig",
    "SmtpSecurityError",
    "alert_automation",
    "email_on_failure",
    "failure_trigger",
    "notification_block",
    "send_email",
    "setup_alerts",
]

log = logging.getLogger(__name__)

AUTOMATION_NAME = "vbs-backup: failed runs"
FAILURE_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut")

SUBJECT = "vbs-backup: {{ deployment.name }} run {{ flow_run.name }} is {{ flow_run.state.name }}"
BODY = """\
Deployment: {{ deployment.name }}
Flow run: {{ flow_run.name }} ({{ flow_run.id }})
State: {{ flow_run.state.name }}
Message: {{ flow_run.state.message }}
Open the run: {{ flow_run|ui_url }}"""


class Notifier(StrEnum):
    """Where notifications go; each kind is saved as one block named `vbs-backup-<kind>`."""

    webhook = "webhook"
    slack = "slack"
    teams = "teams"

    @property
    def block_name(self) -> str:
        return f"vbs-backup-{self.value}"


def notification_block(kind: Notifier, url: str) -> NotificationBlock:
    """The notification block for `kind`. The URL is stored as a secret in every case: webhook URLs
    usually carry their token."""
    if kind is Notifier.slack:
        return SlackWebhook(url=SecretStr(url))
    if kind is Notifier.teams:
        return MicrosoftTeamsWebhook(url=SecretStr(url))
    return CustomWebhookNotificationBlock(
        name="vbs-backup",
        url="{{webhook_url}}",
        secrets={"webhook_url": url},
        # `text` for chat servers that take Slack-style payloads; subject and body for everyone else.
        json_data={"subject": "{{subject}}", "body": "{{body}}", "text": "{{subject}}\n{{body}}"},
    )


def failure_trigger(deployments: Sequence[str]) -> EventTrigger:
    """A flow run of one of `deployments` (by name) entering Failed, Crashed or TimedOut. Matching by
    name, not id, lets alerts be set up before the deployments exist and survive their re-creation."""
    return EventTrigger(
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "deployment", "prefect.resource.name": list(deployments)},
        expect=set(FAILURE_EVENTS),
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def alert_automation(block_ids: Sequence[UUID], deployments: Sequence[str]) -> AutomationCore:
    return AutomationCore(
        name=AUTOMATION_NAME,
        description="Notify when a vbs-backup run ends Failed, Crashed or TimedOut "
        "(created by `vbs-backup alerts setup`).",
        enabled=True,
        trigger=failure_trigger(deployments),
        actions=[SendNotification(block_document_id=b, subject=SUBJECT, body=BODY) for b in block_ids],
        actions_on_trigger=[],
        actions_on_resolve=[],
    )


@dataclass(frozen=True)
class AlertSetup:
    automation_id: UUID
    created: bool  # False: an automation of that name existed and was updated
    blocks: list[str]
    deployments: list[str]


async def setup_alerts(
    targets: Mapping[Notifier, str],
    *,
    deployments: Sequence[str] | None = None,
    client: PrefectClient | None = None,
) -> AlertSetup:
    """Save one notification block per target (overwriting) and create or update the automation so that
    it notifies exactly these targets for runs of `deployments` (default: every catalog deployment)."""
    if not targets:
        raise ValueError("give at least one notification target (webhook, Slack or Teams URL)")
    names = list(deployments) if deployments is not None else [spec.name for spec in CATALOG]
    if client is None:
        async with get_client() as own:
            return await setup_alerts(targets, deployments=names, client=own)
    block_ids = []
    for kind, url in targets.items():
        block = notification_block(kind, url)
        block_ids.append(await block.asave(kind.block_name, overwrite=True, client=client))
    automation = alert_automation(block_ids, names)
    existing = await client.read_automations_by_name(AUTOMATION_NAME)
    if existing:
        await client.update_automation(existing[0].id, automation)
        for duplicate in existing[1:]:  # left by a concurrent setup: one automation, one alert
            await client.delete_automation(duplicate.id)
        automation_id, created = existing[0].id, False
    else:
        automation_id, created = await client.create_automation(automation), True
    return AlertSetup(automation_id, created, [k.block_name for k in targets], names)


# ------------------------------------------------------------------------------------------ e-mail hook


_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")
SMTPS_PORT = 465  # implicit TLS (RFC 8314)


class SmtpSecurityError(ValueError):
    """The SMTP settings would expose the mail password or the mail; the message names the settings."""


@dataclass(frozen=True)
class SmtpConfig:
    """SMTP settings from the environment: VBS_BACKUP_SMTP_HOST, _PORT, _FROM, _TO (comma-separated),
    _USERNAME, _PASSWORD, and the transport security: _SSL=true (implicit TLS, the default on port 465),
    _STARTTLS=true (upgrade a plain connection), _CA_FILE (PEM certificates to trust instead of the
    system's, for a private relay). Certificates and host names are always verified; a password is only
    ever sent over TLS."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    implicit_tls: bool = False
    ca_file: str | None = None

    def __repr__(self) -> str:  # never show the password
        return f"SmtpConfig(host={self.host!r}, port={self.port}, recipients={self.recipients!r})"

    @property
    def tls(self) -> bool:
        return self.implicit_tls or self.starttls

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> SmtpConfig | None:
        host = env.get("VBS_BACKUP_SMTP_HOST", "").strip()
        if not host:
            return None
        recipients = tuple(r.strip() for r in env.get("VBS_BACKUP_SMTP_TO", "").split(",") if r.strip())
        if not recipients:
            raise ValueError("VBS_BACKUP_SMTP_HOST is set but VBS_BACKUP_SMTP_TO names no recipient")
        port = int(env.get("VBS_BACKUP_SMTP_PORT", "25"))
        implicit = _flag(env, "VBS_BACKUP_SMTP_SSL", default=port == SMTPS_PORT)
        starttls = _flag(env, "VBS_BACKUP_SMTP_STARTTLS", default=False)
        if implicit and starttls:
            raise SmtpSecurityError("set VBS_BACKUP_SMTP_SSL or VBS_BACKUP_SMTP_STARTTLS, not both")
        config = cls(
            host=host,
            port=port,
            sender=env.get("VBS_BACKUP_SMTP_FROM", "vbs-backup@localhost"),
            recipients=recipients,
            username=env.get("VBS_BACKUP_SMTP_USERNAME") or None,
            password=env.get("VBS_BACKUP_SMTP_PASSWORD") or None,
            starttls=starttls,
            implicit_tls=implicit,
            ca_file=env.get("VBS_BACKUP_SMTP_CA_FILE", "").strip() or None,
        )
        if (config.username or config.password) and not config.tls:
            raise SmtpSecurityError(
                "VBS_BACKUP_SMTP_USERNAME/_PASSWORD are set but the connection is not encrypted: set "
                "VBS_BACKUP_SMTP_STARTTLS=true or VBS_BACKUP_SMTP_SSL=true (port 465); the password is "
                "never sent in clear"
            )
        return config

    def tls_context(self) -> ssl.SSLContext:
        """Certificate and host name checked, against the system's CAs or only those of `ca_file`."""
        return ssl.create_default_context(cafile=self.ca_file)


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SmtpSecurityError(f"{name} must be true or false")


def send_email(config: SmtpConfig, email: EmailMessage, *, timeout: float = 15) -> None:
    """Send `email` through the relay of `config`: TLS verified before any login, login only over TLS."""
    if (config.username or config.password) and not config.tls:  # from_env refuses it; so do we
        raise SmtpSecurityError("refusing to send the SMTP password over an unencrypted connection")
    smtp: smtplib.SMTP
    if config.implicit_tls:
        smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=timeout, context=config.tls_context())
    else:
        smtp = smtplib.SMTP(config.host, config.port, timeout=timeout)
    with smtp:
        if config.starttls:
            # Raises SMTPNotSupportedError when the relay does not offer it: never fall back to clear.
            smtp.starttls(context=config.tls_context())
        if config.username and config.password:
            smtp.login(config.username, config.password)
        smtp.send_message(email)


def failure_email(
    config: SmtpConfig, *, flow_name: str, run_name: str, state_name: str, message: str, link: str | None
) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = f"vbs-backup: {flow_name} run {run_name} is {state_name}"
    email["From"] = config.sender
    email["To"] = ", ".join(config.recipients)
    email.set_content(
        f"Flow: {flow_name}\nFlow run: {run_name}\nState: {state_name}\nMessage: {message}\n"
        f"Open the run: {link or '(no UI URL configured)'}\n"
    )
    return email


def email_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect `on_failure` / `on_crashed` hook: e-mail the failure when VBS_BACKUP_SMTP_HOST is set.

    It runs in the flow's own process: immediate, but it cannot report a process that was killed (the
    server-side automation can). It never raises: a broken mail relay must not change the run's state.
    """
    try:
        config = SmtpConfig.from_env()
        if config is None:
            return
        email = failure_email(
            config,
            flow_name=flow.name,
            run_name=flow_run.name,
            state_name=state.name,
            message=state.message or "",
            link=_run_link(flow_run.id),
        )
        send_email(config, email)
    except Exception as exc:  # a hook must not fail the run; say why without echoing credentials
        log.error("failure e-mail not sent: %s", _safe_reason(exc))


def _safe_reason(exc: Exception) -> str:
    """The exception's type and message, the SMTP password blanked out should a relay echo it."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    password = os.environ.get("VBS_BACKUP_SMTP_PASSWORD")
    if password:
        reason = reason.replace(password, "***")
    return reason[:500]


def _run_link(flow_run_id: Any) -> str | None:
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None
