"""The `VbsCredentials` Prefect block: where and as whom a run talks to the cloud, saved on the Prefect server
with its secrets encrypted; and `settings_from_block(name)`, which turns a saved block into the product's
`Settings`.

Every flow takes one in its `credentials` parameter (flows/params.py): the run form offers Prefect's block
selector, a deployment or an API call passes `{"$ref": {"block_document_id": "<uuid>"}}`, and Prefect loads
the block when the run starts. Without one, a run reads the worker's `VBS_BACKUP_` environment.

The connection (cloud, region, project, credentials, every endpoint) comes from the block alone: a field the
block leaves empty takes its default, never the worker's environment or a `.env` file, so the block's secrets
go only where the block says. The ledger URL, timeouts, the rate limit and whether plain http:// may leave
the machine stay the worker's own (`VBS_BACKUP_DATABASE_URL`, ...), because they describe the machine that
runs the flow, not the cloud account.

Saving blocks (`vbs-backup blocks register`) is the deployments layer's (deployments/blocks.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect.blocks.core import Block
from prefect.blocks.core import schema_extra as prefect_schema_extra
from pydantic import ConfigDict, Field, SecretStr, ValidationError, WithJsonSchema, field_validator

from vbs_backup.cloud.endpoints import CloudName
from vbs_backup.settings import ConfigError, Settings, check_endpoint

__all__ = [
    "AKSK_FIELDS",
    "PLAIN_FIELDS",
    "SECRET_FIELDS",
    "SERVICE_ENDPOINT_FIELDS",
    "USER_FIELDS",
    "VbsCredentials",
    "settings_from_block",
]

# Per-service endpoint overrides (otherwise the reference §5d hosts, or the one `endpoint`); the same
# names as the Settings fields that carry them.
SERVICE_ENDPOINT_FIELDS = ("iam_endpoint", "ecs_endpoint", "evs_endpoint", "vbs_endpoint")
PLAIN_FIELDS = ("cloud", "region", "project_id", "ak", "username", "domain", "endpoint")
SECRET_FIELDS = ("sk", "password")
# The two ways to sign in; a block holds one of them.
AKSK_FIELDS = ("ak", "sk")
USER_FIELDS = ("username", "password", "domain")

# The cloud as a plain choice of its values: the enum's own schema is a `$ref` to a definition titled
# "CloudName", which the block form shows as the field's label instead of the field's title.
_CloudChoice = Annotated[CloudName, WithJsonSchema({"type": "string", "enum": [c.value for c in CloudName]})]


def _schema_extra(schema: dict[str, Any], model: type[Block]) -> None:
    """Prefect's block schema, with `region` required (every saved block has one: it has a default).

    A block parameter's value is usually a reference, `{"$ref": {"block_document_id": ...}}`, which the
    server checks twice (Prefect 3.9.1): a deployment's default parameters against the plain schema, with
    "required" ignored (a reference passes: blocks allow extra keys); a flow run's parameters against "the
    block or a reference, exactly one of them", which refuses a reference that passes for the block too
    (409 "is valid under each of"). With every field optional, a reference would pass for this block; one
    required field, as Prefect's own blocks have, makes it pass as a reference only."""
    prefect_schema_extra(schema, model)
    schema["required"] = ["region"]


# Huawei's logo, as Wikipedia serves it (the operator's browser loads it; nothing else does).
_LOGO_URL = "https://upload.wikimedia.org/wikipedia/en/0/04/Huawei_Standard_logo.svg"


class VbsCredentials(Block):
    """Credentials and endpoints of one Huawei Cloud / Flexible Engine / Open Telekom Cloud project.

    Either AK/SK, or an IAM user (user name, password, domain). `endpoint` sends every service to one URL
    (e.g. the emulator); a per-service endpoint wins over it.
    """

    # A rejected value may be a URL with a password in it: never echo it in a validation error.
    model_config = ConfigDict(hide_input_in_errors=True, json_schema_extra=_schema_extra)

    _block_type_name = "VBS Credentials"
    _block_type_slug = "vbs-credentials"
    _logo_url = _LOGO_URL  # type: ignore[assignment]  # Prefect declares it as an HttpUrl
    # The block's card shows the first ~170 characters: what it is and where it is used come first.
    _description = (
        "Where and as whom vbs-backup's flows reach VBS (Huawei Cloud, Flexible Engine, Open Telekom "
        "Cloud): pick one in a run's `credentials` parameter. Holds a region, a project and either AK/SK or "
        "an IAM user. Save one with `vbs-backup blocks register NAME`; without one, a run uses the worker's "
        "VBS_BACKUP_ environment."
    )
    # The UI shows the first ```python block of this, BLOCK_NAME (its first occurrence) replaced by the
    # block's name; the module path is the one the package installs.
    _code_example = """\
        ```python
        from vbs_backup.tasks.credentials import VbsCredentials

        credentials = VbsCredentials.load("BLOCK_NAME")
        settings = credentials.settings()  # the connection vbs-backup's clients use

        # vbs-backup's flows take the block as their `credentials` parameter: pick it in
        # the run form, or pass it when calling a flow, e.g.
        #     from flows.server import backup_server
        #     backup_server(server="db-01", credentials=credentials)
        # Save or update a block from the VBS_BACKUP_ environment (secrets from there or
        # typed with --ask-secrets, never on the command line):
        #     vbs-backup blocks register NAME --ak AK           (AK/SK)
        #     vbs-backup blocks register NAME --username USER   (IAM user)
        ```"""

    cloud: _CloudChoice = Field(
        default=CloudName.huaweicloud,
        title="Cloud",
        description="huaweicloud (Huawei Cloud), flexibleengine (Orange Flexible Engine) or otc "
        "(Open Telekom Cloud).",
    )
    region: str = Field(default="eu-west-0", title="Region", description="Region name, e.g. eu-west-0.")
    project_id: str | None = Field(default=None, title="Project id", description="32 lowercase hex.")
    ak: str | None = Field(default=None, title="Access key (AK)", description="For AK/SK auth.")
    sk: SecretStr | None = Field(default=None, title="Secret key (SK)", description="For AK/SK auth.")
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
        values: dict[str, Any] = {name: getattr(self, name) for name in PLAIN_FIELDS}
        values.update({name: getattr(self, name) for name in SERVICE_ENDPOINT_FIELDS})
        for name in SECRET_FIELDS:
            secret = getattr(self, name)
            values[name] = secret.get_secret_value() if secret is not None else None
        return Settings.for_connection(values)


def settings_from_block(name: str) -> Settings:
    """Load the saved `VbsCredentials` block `name` and return the settings a flow run uses; a block that
    does not exist, or no longer validates, is a ConfigError with one line."""
    try:
        # `_sync`: Prefect's switch to the synchronous load inside an event loop; not in load's signature.
        block: VbsCredentials = VbsCredentials.load(name, _sync=True)  # type: ignore[call-arg,assignment]
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
