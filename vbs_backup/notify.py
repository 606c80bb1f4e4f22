"""The failure notification's wording, and e-mail over SMTP: what the server-side alert automation
(deployments/alerts.py) and the flows' e-mail hook (flows/hooks.py) share, with no Prefect in it.

SUBJECT and BODY are the automation's templates; `render_failure` renders them here as the Prefect server
renders them, so that the e-mail a flow's own process sends reads like the server's notifications: one
wording for every failure notification. `SmtpConfig` reads the relay from the environment and
`send_email` sends over it, never showing or sending the password in clear.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

__all__ = [
    "BODY",
    "SUBJECT",
    "SmtpConfig",
    "SmtpSecurityError",
    "failure_email",
    "render_failure",
    "safe_reason",
    "send_email",
]

# Every failure notification, whoever sends it: the server for the automation, the flow's process for the
# e-mail hook (`render_failure`, same names: flow_run with its state, deployment, flow, `ui_url`). The
# message is shown whole; a run outside any deployment shows its flow's name in the subject.
SUBJECT = "vbs-backup: {{ flow_run.name }} ({{ deployment.name or flow.name }}) is {{ flow_run.state.name }}"
BODY = """\
Message: {{ flow_run.state.message }}
Deployment: {{ deployment.name or "(none)" }}
Flow run: {{ flow_run.name }} ({{ flow_run.id }})
State: {{ flow_run.state.name }}
Open the run: {{ flow_run|ui_url }}"""


def render_failure(
    flow: Any, flow_run: Any, state: Any, *, deployment: str | None, ui_url: str | None
) -> tuple[str, str]:
    """SUBJECT and BODY for a failed run, rendered here as the server renders them (sandboxed Jinja,
    missing values empty); `ui_url` (the Prefect UI's base URL, None when unknown) links to the run."""
    from jinja2 import ChainableUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def run_link(obj: Any) -> str:
        return f"{ui_url.rstrip('/')}/runs/flow-run/{obj.id}" if ui_url else "(no UI URL configured)"

    environment = ImmutableSandboxedEnvironment(undefined=ChainableUndefined)
    environment.filters["ui_url"] = run_link
    context = {
        "flow": SimpleNamespace(name=flow.name),
        "flow_run": SimpleNamespace(
            name=flow_run.name,
            id=flow_run.id,
            state=SimpleNamespace(name=state.name, message=state.message or ""),
        ),
        "deployment": SimpleNamespace(name=deployment) if deployment else None,
    }
    return tuple(environment.from_string(t).render(context) for t in (SUBJECT, BODY))  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ e-mail


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
    config: SmtpConfig, flow: Any, flow_run: Any, state: Any, *, deployment: str | None, ui_url: str | None
) -> EmailMessage:
    """The e-mail for a failed run: the automation's SUBJECT and BODY (`render_failure`)."""
    subject, body = render_failure(flow, flow_run, state, deployment=deployment, ui_url=ui_url)
    email = EmailMessage()
    email["Subject"] = subject
    email["From"] = config.sender
    email["To"] = ", ".join(config.recipients)
    email.set_content(body + "\n")
    return email


def safe_reason(exc: Exception, env: Mapping[str, str] = os.environ) -> str:
    """Why an e-mail was not sent: the exception's type and message, the SMTP password blanked out should
    a relay echo it."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    password = env.get("VBS_BACKUP_SMTP_PASSWORD")
    if password:
        reason = reason.replace(password, "***")
    return reason[:500]
