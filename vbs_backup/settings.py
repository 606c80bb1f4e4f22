"""Settings: *where* and *as whom* (cloud, region, credentials, endpoint override, ledger URL).

:class:`Settings` comes from ``VBS_BACKUP_*`` environment variables or a ``.env`` file and holds the secrets,
which never appear in its ``repr``/``str`` (``SecretStr``, and the ledger URL is shown with its password
hidden). ``Settings()`` reads ``./.env`` (for commands typed at a terminal and scripts); a flow run uses
:meth:`Settings.from_environment` (the process environment only) or :meth:`Settings.for_connection` (a
credentials block: its connection alone, nothing from the environment). Endpoints carry no user info, and
plain ``http://`` is only accepted to this machine unless ``VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS=true``.
*What* to back up is the plan's business (:mod:`vbs_backup.plan`).

This module is Prefect-free and touches neither the network nor the disk at import time.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    Field,
    HttpUrl,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from vbs_backup.cloud.endpoints import CloudName
from vbs_backup.cloud.models.common import is_project_id

__all__ = [
    "CONNECTION_FIELDS",
    "DASHED_NAME",
    "ConfigError",
    "Settings",
    "check_endpoint",
    "check_region",
    "default_database_url",
    "redact_url",
]

ENV_PREFIX = "VBS_BACKUP_"

# Lowercase letters and digits in dash-separated words: region ids, Prefect block names, estate names.
DASHED_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def check_region(value: str) -> str:
    """`value` when it reads as a region id (eu-west-0, ap-southeast-3), else a ValueError saying so."""
    if not DASHED_NAME.match(value):
        raise ValueError("must look like eu-west-0 (lowercase letters, digits and dashes)")
    return value


class ConfigError(ValueError):
    """The settings are incomplete or inconsistent (for example, no complete set of credentials)."""


def default_database_url() -> str:
    """SQLite file ``ledger.sqlite`` in the user data directory; computed here, created by ``make_engine``."""
    path = Path(platformdirs.user_data_dir("vbs-backup")) / "ledger.sqlite"
    return f"sqlite:///{path}"


def redact_url(url: str) -> str:
    """Return ``url`` with the password of its user info replaced by ``***``.

    It errs on the side of hiding too much: when the URL is ambiguous (an ``@`` in the path or query), more
    than the password may be hidden, never less.
    """
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*://)(.*)$", url, re.DOTALL)
    if not m:
        return url
    scheme, rest = m.group(1), m.group(2)
    if rest.startswith("/"):  # no authority part, e.g. sqlite:////abs/path
        return url
    at = rest.rfind("@")
    if at < 0:
        return url
    userinfo = rest[:at]
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{user}:***@{rest[at + 1 :]}"


_HTTP_URL = TypeAdapter(HttpUrl)


_ENDPOINT_FIELDS = ("endpoint", "iam_endpoint", "ecs_endpoint", "evs_endpoint", "vbs_endpoint")
# What a credentials block governs: where and as whom. The other settings (ledger, timeout, rate limit,
# insecure endpoints allowed or not) belong to the machine that runs the flow.
CONNECTION_FIELDS = (
    "cloud",
    "region",
    "project_id",
    "ak",
    "sk",
    "username",
    "password",
    "domain",
    *_ENDPOINT_FIELDS,
)
ALLOW_INSECURE_VARIABLE = f"{ENV_PREFIX}ALLOW_INSECURE_ENDPOINTS"
_LOOPBACK_NAMES = ("localhost",)


def _is_loopback(host: str) -> bool:
    host = host.rstrip(".").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


def check_endpoint(url: str, *, allow_insecure: bool = False) -> str:
    """``url`` without its trailing slashes, if it can be a cloud endpoint; else ``ValueError``.

    Refused: anything but an http(s) URL; user info (``user:password@``), which would be saved in clear
    where endpoints are saved; and plain ``http://`` beyond this machine (127.0.0.0/8, ::1, localhost),
    over which signatures, tokens and the IAM password would travel in clear, unless ``allow_insecure``.
    The message never repeats the URL: it may hold a password.
    """
    try:
        _HTTP_URL.validate_python(url)
    except ValidationError:
        raise ValueError("must be an http:// or https:// URL") from None
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError("must not contain user info (user:password@); credentials have their own settings")
    if parts.scheme.lower() == "http" and not allow_insecure and not _is_loopback(parts.hostname or ""):
        raise ValueError(
            "plain http:// is only allowed to this machine (127.0.0.0/8, ::1, localhost): use https://, "
            f"or set {ALLOW_INSECURE_VARIABLE}=true where the flows run"
        )
    return url.rstrip("/")


class Settings(BaseSettings):
    """Where to connect and as whom. Read from ``VBS_BACKUP_*`` environment variables and ``./.env``
    (``Settings()``), the environment alone (:meth:`from_environment`), or a block (:meth:`for_connection`).

    Credentials are either AK/SK (``VBS_BACKUP_AK`` + ``VBS_BACKUP_SK``) or an IAM user
    (``VBS_BACKUP_USERNAME`` + ``VBS_BACKUP_PASSWORD`` + ``VBS_BACKUP_DOMAIN``); see :meth:`credentials_mode`.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # Validation errors would otherwise echo the rejected input, which may be a secret or a URL
        # with a password in it. The field name is still in the message.
        hide_input_in_errors=True,
        validate_default=True,
    )

    cloud: CloudName = Field(
        default=CloudName.huaweicloud,
        title="Cloud",
        description="Which cloud runs the API: huaweicloud, flexibleengine or otc.",
    )
    region: str = Field(default="eu-west-0", title="Region", description="Region name, e.g. eu-west-0.")
    project_id: str | None = Field(
        default=None,
        title="Project id",
        description="32 lowercase hex characters. Optional: derived from the region when absent.",
    )
    ak: str | None = Field(default=None, title="Access key (AK)", description="AK of an AK/SK pair.")
    sk: SecretStr | None = Field(default=None, title="Secret key (SK)", description="SK of an AK/SK pair.")
    username: str | None = Field(default=None, title="IAM user name", description="For token auth.")
    password: SecretStr | None = Field(default=None, title="IAM password", description="For token auth.")
    domain: str | None = Field(default=None, title="IAM domain (account) name", description="For token auth.")
    # Declared before the endpoints: their validator reads it.
    allow_insecure_endpoints: bool = Field(
        default=False,
        title="Allow plain http:// endpoints beyond this machine",
        description="Off by default: signatures, tokens and the IAM password would cross the network in "
        "clear. http:// to 127.0.0.0/8, ::1 or localhost (the emulator) is always allowed.",
    )
    endpoint: str | None = Field(
        default=None,
        title="Endpoint override",
        description="One http(s) URL used for every service instead of the cloud's own hosts, "
        "e.g. the local emulator. Trailing slashes are removed.",
    )
    iam_endpoint: str | None = Field(default=None, title="IAM endpoint", description="Overrides `endpoint`.")
    ecs_endpoint: str | None = Field(default=None, title="ECS endpoint", description="Overrides `endpoint`.")
    evs_endpoint: str | None = Field(default=None, title="EVS endpoint", description="Overrides `endpoint`.")
    vbs_endpoint: str | None = Field(default=None, title="VBS endpoint", description="Overrides `endpoint`.")
    database_url: str = Field(
        default_factory=default_database_url,
        title="Ledger database URL",
        description="SQLAlchemy URL of the ledger: sqlite:///path or postgresql://user:pass@host/db. "
        "Default: ledger.sqlite in the user data directory.",
    )
    database_pool_size: int = Field(
        default=24,
        ge=1,
        le=200,
        title="Ledger connections",
        description="PostgreSQL connections one run keeps open to the ledger (a third more in a burst): one "
        "per thread a run writes from. Lower it when many runs share one PostgreSQL server (an estate over "
        "workers: runs x connections must stay under its max_connections).",
    )
    request_timeout: float = Field(
        default=30.0, gt=0, title="Request timeout", description="Seconds per HTTP request."
    )
    max_requests_per_second: float = Field(
        default=10.0,
        gt=0,
        title="API rate limit",
        description="Requests per second that the client allows itself against the cloud API.",
    )

    @field_validator(
        "project_id", "ak", "sk", "username", "password", "domain", *_ENDPOINT_FIELDS, mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `VBS_BACKUP_AK=` in a .env file means "not set", not "the empty key".
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("cloud", mode="before")
    @classmethod
    def _cloud_lowercase(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        return check_region(value)

    @field_validator("project_id")
    @classmethod
    def _check_project_id(cls, value: str | None) -> str | None:
        if value is not None and not is_project_id(value):
            raise ValueError("must be 32 lowercase hexadecimal characters")
        return value

    @field_validator(*_ENDPOINT_FIELDS)
    @classmethod
    def _check_endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return check_endpoint(value, allow_insecure=bool(info.data.get("allow_insecure_endpoints")))

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        value = value.strip()
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", value):
            raise ValueError("must be a database URL such as sqlite:///path or postgresql://host/db")
        return value

    @classmethod
    def from_environment(cls) -> Settings:
        """The settings of a flow run without a block: the process environment, never a ``.env`` file
        (a flow must not take its endpoints from whatever directory it happens to run in)."""
        return cls(_env_file=None)

    @classmethod
    def for_connection(cls, connection: Mapping[str, Any]) -> Settings:
        """Settings whose connection (every name of :data:`CONNECTION_FIELDS`) is ``connection`` alone:
        a field it leaves out or sets to None takes the field's default, never a ``VBS_BACKUP_*`` variable
        or a ``.env`` file, so a block's credentials go only where the block says. The rest (ledger URL,
        timeout, rate limit, insecure endpoints allowed) comes from the process environment."""
        unknown = sorted(set(connection) - set(CONNECTION_FIELDS))
        if unknown:
            raise ConfigError(f"not connection settings: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name in CONNECTION_FIELDS:
            value = connection.get(name)
            # An explicit None also overrides the environment (the default of every optional field).
            values[name] = value if value is not None else cls.model_fields[name].default
        return cls(_env_file=None, **values)

    def credentials_mode(self) -> Literal["aksk", "token"]:
        """``"aksk"`` when AK and SK are set, else ``"token"`` when user, password and domain are set.

        AK/SK wins when both sets are complete. Raises :class:`ConfigError` naming the missing variables
        (never their values) when neither set is complete.
        """
        if self.ak and self.sk:
            return "aksk"
        if self.username and self.password and self.domain:
            return "token"
        missing_aksk = [f"{ENV_PREFIX}{n.upper()}" for n in ("ak", "sk") if not getattr(self, n)]
        missing_token = [
            f"{ENV_PREFIX}{n.upper()}" for n in ("username", "password", "domain") if not getattr(self, n)
        ]
        raise ConfigError(
            "No complete cloud credentials. Set either "
            f"{ENV_PREFIX}AK and {ENV_PREFIX}SK (missing: {', '.join(missing_aksk)}), or "
            f"{ENV_PREFIX}USERNAME, {ENV_PREFIX}PASSWORD and {ENV_PREFIX}DOMAIN "
            f"(missing: {', '.join(missing_token)})."
        )

    def database_url_redacted(self) -> str:
        """The ledger URL with its password hidden, safe for logs and messages."""
        return redact_url(self.database_url)

    def __repr_args__(self) -> Any:
        # The ledger URL may carry a password: show it redacted, like the SecretStr fields.
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "database_url" and isinstance(value, str) else value)
