"""Saving and naming credentials blocks: `block_from_settings`, which `vbs-backup blocks register` saves;
`block_reference(name)`, how a deployment's `credentials` parameter names a saved block.

The block itself (`VbsCredentials`) and `settings_from_block` live in tasks/credentials.py, where the flows'
runs load them (Prefect code never imports upward: flows/ and tasks/ never import from deployments/).
"""

from __future__ import annotations

from typing import Any, Literal

from vbs_backup.settings import ConfigError, Settings
from vbs_backup.tasks.credentials import (
    AKSK_FIELDS,
    PLAIN_FIELDS,
    SECRET_FIELDS,
    SERVICE_ENDPOINT_FIELDS,
    USER_FIELDS,
    VbsCredentials,
)

__all__ = ["block_from_settings", "block_reference"]


def block_from_settings(
    settings: Settings, *, auth: Literal["aksk", "token"] | None = None
) -> VbsCredentials:
    """A block holding the connection part of `settings` (for `vbs-backup blocks register`). With `auth`,
    only that way to sign in: "aksk" leaves out the IAM user (name, password, domain), "token" the AK/SK."""
    values: dict[str, Any] = {name: getattr(settings, name) for name in PLAIN_FIELDS + SECRET_FIELDS}
    for name in SERVICE_ENDPOINT_FIELDS:
        values[name] = getattr(settings, name)
    left_out = {"aksk": USER_FIELDS, "token": AKSK_FIELDS, None: ()}[auth]
    for name in left_out:
        values[name] = None
    return VbsCredentials(**values)


def block_reference(name: str) -> dict[str, dict[str, str]]:
    """`{"$ref": {"block_document_id": "<uuid>"}}` for the saved VbsCredentials block `name`: the value of a
    deployment's `credentials` parameter (what the run form's block selector writes; Prefect loads the
    block when a run starts). Asks the Prefect server, for the id only (no secrets); a name it has no block
    of is a ConfigError with one line."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(
                name=name, block_type_slug=VbsCredentials.get_block_type_slug(), include_secrets=False
            )
        except ObjectNotFound:
            raise ConfigError(
                f"no VBS credentials block named {name!r} on the Prefect server "
                f"(`vbs-backup blocks register {name}` saves one)"
            ) from None
    return {"$ref": {"block_document_id": str(document.id)}}
