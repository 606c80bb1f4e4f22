"""The `VbsCredentials` Prefect block: where and as whom a deployment talks to the cloud, saved on the
Prefect server with its secrets encrypted, and `settings_from_block(name)`, which turns a saved block into
the product's `Settings`.

A deployment names a block through its `credentials` parameter; without one, a run reads the worker's
`VBS_BACKUP_` environment. The connection (cloud, region, project, credentials, every endpoint) comes from
the block alone: a field the block leaves empty takes its default, never the worker's environment or a
`.env` file, so the block's secrets go only where the block says. The ledger URL, timeouts, the rate limit
and whether plain http:// may leave the machine stay the worker's own (`VBS_BACKUP_DATABASE_URL`, ...),
because they describe the machine that runs the flow, not the cloud account.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, ValidationError, field_validator

from vbs_backup.config import CloudName, ConfigError, Settings, check_endpoint

__all__ = ["SERVICE_ENDPOINT_FIELDS", "VbsCredentials", "block_from_settings", "settings_from_block"]

# Per-service endpoint overrides (otherwise the reference §5d hosts, or the one `endpoint`); the same
# names as the Settings fields that carry them.
SERVICE_ENDPOINT_FIELDS = ("iam_endpoint", "ecs_endpoint", "evs_endpoint", "vbs_endpoint")
_PLAIN_FIELDS = ("cloud", "region", "project_id", "ak", "username", "domain", "endpoint")
_SECRET_FIELDS = ("sk", "password")


class VbsCredentials(Block):
    """Credentials and endpoints of one Huawei Cloud / Flexible Engine / Open Telekom Cloud project.

    Either AK/SK, or an IAM user (user name, password, domain). `endpoint` sends every service to one URL
    (e.g. the emulator); a per-service endpoint wins over it.
    """

    # A rejected value may be a URL with a password in it: never echo it in a validation error.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "VBS Credentials"
    _block_type_slug = "vbs-credentials"
    _description = "Credentials and endpoints for vbs-backup (VBS on Huawei Cloud, Flexible Engine, OTC)."

    cloud: CloudName = Field(
        default=CloudName.huaweicloud, title="Cloud", description="huaweicloud, flexibleengine or otc."
    )
    region: str = Field(default="eu-west-0", title="Region", description="Region name, e.g. eu-west-0.")
    project_id: str | None = Field(default=None, title="Project id", description="32 lowercase hex.")
    ak: str | None = Field(default=None, title="Access key (AK)")
    sk: SecretStr | None = Field(default=None, title="Secret key (SK)")
    username: str | None = Field(default=None, title="IAM user name", description="For token auth.")
    password: SecretStr | None = Field(default=None, title="IAM password", description="For token auth.")
    domain: str | None = Field(default=None, title="IAM domain (account) name", description="For token auth.")
    endpoint: str | None = Field(
        default=None,
        title="Endpoint for every service",
        description="One http(s) URL used for IAM, ECS, EVS and VBS instead of the cloud's own hosts.",
    )
    iam_endpoint: str | None = Field(default=None, title="IAM endpoint", description="Overrides the above.")
    ecs_endpoint: str | None = Field(default=None, title="ECS endpoint", description="Overrides the above.")
    evs_endpoint: str | None = Field(default=None, title="EVS endpoint", description="Overrides the above.")
    vbs_endpoint: str | None = Field(default=None, title="VBS endpoint", description="Overrides the above.")

    @field_validator("endpoint", *SERVICE_ENDPOINT_FIELDS)
    @classmethod
    def _no_user_info(cls, value: str | None) -> str | None:
        # Endpoints are plain fields, saved unmasked: a password in one must never get that far. Plain
        # http:// is judged later, by `settings()`, with the worker's VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS.
        if value is None or not value.strip():
            return None
        check_endpoint(value.strip(), allow_insecure=True)
        return value.strip()

    def settings(self) -> Settings:
        """The product's settings: this block's connection and nothing else's (not the environment's, not
        a `.env` file's), the environment's ledger and limits."""
        values: dict[str, Any] = {name: getattr(self, name) for name in _PLAIN_FIELDS}
        values.update({name: getattr(self, name) for name in SERVICE_ENDPOINT_FIELDS})
        for name in _SECRET_FIELDS:
            secret = getattr(self, name)
            values[name] = secret.get_secret_value() if secret is not None else None
        return Settings.for_connection(values)


def settings_from_block(name: str) -> Settings:
    """Load the saved `VbsCredentials` block `name` and return the settings a flow run uses."""
    try:
        block = VbsCredentials.load(name, _sync=True)
    except ValueError as exc:
        raise ConfigError(f"no VBS credentials block named {name!r} on the Prefect server") from exc
    except RuntimeError as exc:
        if not isinstance(exc.__cause__, ValidationError):
            raise
        # Saved before a check that it now fails; say so without Prefect's chained error and its values.
        raise ConfigError(
            f"VBS credentials block {name!r} is not valid any more (e.g. user info in an endpoint): "
            "register it again with `vbs-backup blocks register`"
        ) from None
    return block.settings()


def block_from_settings(settings: Settings) -> VbsCredentials:
    """A block holding the connection part of `settings` (for `vbs-backup blocks register`)."""
    values: dict[str, Any] = {name: getattr(settings, name) for name in _PLAIN_FIELDS + _SECRET_FIELDS}
    for name in SERVICE_ENDPOINT_FIELDS:
        values[name] = getattr(settings, name, None)
    return VbsCredentials(**values)
