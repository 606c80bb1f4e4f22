"""Wire models of VBS backups (reference §1, §2.1-§2.7, §2.9, §2.10, §2.16).

Owned here: the backup object (`Backup`, full detail; `BackupSummary`, the brief list form), its two
JSON-in-a-string fields decoded (`description` -> text + `incremental_requested`; `service_metadata` ->
`ServiceMetadata`), the tolerant reading of one listed backup (`read_listed_backup`), the list pages, the
create/restore request bodies, the job reference every asynchronous call answers with, and the quotas.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError, field_validator, model_validator

from .common import (
    LenientInt,
    Link,
    OptionalUtcDateTime,
    Tag,
    UtcDateTime,
    WireModel,
    WireRequest,
    invalid_fields,
    known_or_raw,
    next_marker,
    wire_name,
)

__all__ = [
    "AUTO_BACKUP_PREFIX",
    "UNKNOWN_CREATED_AT",
    "UNREADABLE_STATUS",
    "Backup",
    "BackupList",
    "BackupStatus",
    "BackupSummary",
    "BackupSummaryList",
    "CreateBackupRequest",
    "JobRef",
    "NativeBackupRequest",
    "NativeRestore",
    "QuotaItem",
    "Quotas",
    "RestoreRequest",
    "ServiceMetadata",
    "read_listed_backup",
]

# Policy backups are named `autobk_...`; manual names must not start with `auto` (§2.1, §4.4).
AUTO_BACKUP_PREFIX = "autobk_"

# A listed backup that cannot be read in full (see `read_listed_backup`) gets this status, which is no
# documented status: nothing treats it as finished, successful or deletable (retention keeps any status but
# available/error, waiters poll on). Its `created_at`, when that is what could not be read, is this instant.
UNREADABLE_STATUS = "unknown"
UNKNOWN_CREATED_AT = datetime(1970, 1, 1, tzinfo=UTC)
# Fields that decide what happens to a backup (who owns it, whether it is done, how old it is): when one of
# them cannot be read, the backup is unreadable as a whole. Any other bad field is only dropped.
_DECISIVE_FIELDS = frozenset({"id", "name", "status", "volume_id", "created_at", "description"})


class BackupStatus(StrEnum):
    """Documented backup statuses (§0.4); `error_deleting` is the Cinder convention (unconfirmed)."""

    AVAILABLE = "available"
    ERROR = "error"
    RESTORING = "restoring"
    CREATING = "creating"
    DELETING = "deleting"
    ERROR_RESTORING = "error_restoring"
    ERROR_DELETING = "error_deleting"


class ServiceMetadata(WireModel):
    """The decoded `service_metadata` string (§1). Only the keys we use get names; the rest (`DL`, `VK`,
    `CMKID`, `backupurl`, `snap_id`, `BackupSize`, ...) stay available as extras. `raw` holds the original
    text when it was not a JSON object."""

    type: Annotated[LenientInt, wire_name("Type")] = None  # 0 full, 1 incremental
    progress: LenientInt = None  # documented as int, the example sends "0"
    service_type: Annotated[LenientInt, wire_name("ST")] = None  # 0 disk backup, 1 VM (CSBS), 4/5 copies
    bootable: bool | None = None
    raw: str | None = None

    @property
    def is_incremental(self) -> bool | None:
        return None if self.type is None else self.type == 1

    @property
    def from_csbs(self) -> bool:
        """CSBS (server) backups show up in VBS but can only be deleted through CSBS (§4.11)."""
        return self.service_type in (1, 5)


def _decode_service_metadata(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()  # the documented example has leading and trailing spaces
    if not text:
        return None
    try:
        decoded = json.loads(text)
    except ValueError:
        return {"raw": value}
    return decoded if isinstance(decoded, dict) else {"raw": value}


class Backup(WireModel):
    """A backup in full detail (`GET /v2/{pid}/backups/{id}`, `/backups/detail`, embedded in shares)."""

    id: str
    name: str | None = None
    status: Annotated[BackupStatus | str, known_or_raw(BackupStatus)]
    # The user's text: the wire sends `{"DESC": text, "INC": 0|1}` as a JSON string (§1, observed);
    # a description that is not such JSON is kept as it came.
    description: str | None = None
    incremental_requested: bool | None = None  # decoded from INC; absent on the wire as such
    links: list[Link] = []
    availability_zone: str | None = None
    volume_id: str
    snapshot_id: str | None = None
    fail_reason: str | None = None
    size: LenientInt = None  # GiB of the source disk (unit unconfirmed, §1)
    object_count: LenientInt = None
    container: str | None = None
    created_at: UtcDateTime
    updated_at: OptionalUtcDateTime = None
    data_timestamp: OptionalUtcDateTime = None
    tenant_id: Annotated[str | None, wire_name("os-bak-tenant-attr:tenant_id")] = None
    service_metadata: Annotated[ServiceMetadata | None, BeforeValidator(_decode_service_metadata)] = None
    has_dependent_backups: bool | None = None
    # Documented as "ignored"; `is_incremental` (the property) prefers service_metadata.Type.
    wire_is_incremental: Annotated[bool | None, wire_name("is_incremental")] = None
    # Not on the wire: the fields of a listed backup that could not be read (`read_listed_backup`).
    unreadable: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _decode_description(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("description"), str):
            return data
        try:
            decoded = json.loads(data["description"])
        except ValueError:
            return data
        if not isinstance(decoded, dict) or "DESC" not in decoded:
            return data
        data = dict(data)
        data["description"] = decoded.get("DESC")
        if decoded.get("INC") is not None and "incremental_requested" not in data:
            data["incremental_requested"] = str(decoded["INC"]) in ("1", "True", "true")
        return data

    @property
    def is_incremental(self) -> bool | None:
        """True for an incremental backup, False for a full one, None when the cloud does not say."""
        if self.service_metadata is not None and self.service_metadata.is_incremental is not None:
            return self.service_metadata.is_incremental
        return self.wire_is_incremental

    @property
    def is_policy_backup(self) -> bool:
        """Made by a backup policy (`autobk_...`): this product never deletes those."""
        return (self.name or "").startswith(AUTO_BACKUP_PREFIX)


def read_listed_backup(item: Any, *, volume_id: str | None = None) -> Backup | None:
    """One item of a backups listing, read tolerantly: one odd item must not make a whole page (and so
    the waiter, adoption and retention of a project) unreadable.

    A readable item is returned as it is. An item whose bad fields decide nothing (`size`, `links`,
    `service_metadata`, ...) is returned without them, status kept. An item with a bad decisive field
    (`_DECISIVE_FIELDS`, e.g. no `created_at`) comes back as a placeholder with status `UNREADABLE_STATUS`,
    its readable fields kept, `created_at` `UNKNOWN_CREATED_AT` when unreadable and `volume_id` the
    listing's filter when unreadable: fail closed, it is kept by retention and never counts as done. In
    both cases `unreadable` names the fields. None: not even an id to name it by (nothing can act on it).
    """
    try:
        return Backup.model_validate(item)
    except ValidationError as exc:
        bad = invalid_fields(exc)
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"] or "id" in bad:
        return None
    data = {key: value for key, value in item.items() if key not in bad}
    data["unreadable"] = bad
    if _DECISIVE_FIELDS.isdisjoint(bad):
        try:
            return Backup.model_validate(data)
        except ValidationError:
            pass  # a validator across fields still fails: read it as a placeholder below
    data["status"] = UNREADABLE_STATUS
    data.setdefault("created_at", UNKNOWN_CREATED_AT)
    data.setdefault("volume_id", volume_id or "")
    try:
        return Backup.model_validate(data)
    except ValidationError:
        return Backup(
            id=item["id"],
            status=UNREADABLE_STATUS,
            volume_id=volume_id or "",
            created_at=UNKNOWN_CREATED_AT,
            unreadable=bad,
        )


class BackupSummary(WireModel):
    """The brief form (`GET /v2/{pid}/backups`, native create answer): id, name, links only."""

    id: str
    name: str | None = None
    links: list[Link] = []


class BackupSummaryList(WireModel):
    backups: list[BackupSummary] = []
    backups_links: list[Link] = []

    @property
    def next_marker(self) -> str | None:
        return next_marker(self.backups_links)


class BackupList(WireModel):
    backups: list[Backup] = []
    backups_links: list[Link] = []

    @property
    def next_marker(self) -> str | None:
        return next_marker(self.backups_links)


class JobRef(WireModel):
    """`{"job_id": ...}`: the answer of every asynchronous cloudbackups call."""

    job_id: str


class CreateBackupRequest(WireRequest):
    """`POST /v2/{pid}/cloudbackups` (§2.1). Content rules (name charset, `auto` prefix, lengths) are left
    to the service: they differ between clouds (§8) and its error codes say precisely what is wrong."""

    wrapper = "backup"

    volume_id: str
    name: str
    description: str | None = None
    snapshot_id: str | None = None
    tags: list[Tag] | None = None
    # Only `FullBackup` is documented: "true" forces a full backup; absent means incremental.
    extend_param: dict[str, str] | None = None


class NativeBackupRequest(WireRequest):
    """`POST /v2/{pid}/backups` (§2.4, deprecated). `snapshot_id` is mandatory per the docs."""

    wrapper = "backup"

    volume_id: str
    snapshot_id: str
    name: str | None = None
    description: str | None = None
    container: str | None = None
    incremental: bool | None = None
    force: bool | None = None


class RestoreRequest(WireRequest):
    """`POST .../cloudbackups/{id}/restore` and `.../backups/{id}/restore` (§2.3, §2.10)."""

    wrapper = "restore"

    volume_id: str


class NativeRestore(WireModel):
    """The native restore answer (§2.10): no job, poll the disk and the backup."""

    backup_id: str
    volume_id: str
    volume_name: str | None = None


class QuotaItem(WireModel):
    type: str
    used: int = 0
    reserved: int = 0
    quota: int = -1  # -1 = unlimited

    @field_validator("type")
    @classmethod
    def _squeeze(cls, value: str) -> str:
        # The doc example spells the capacity type "backup_ gigabytes" (§2.16, §8.13).
        return "".join(value.split())

    @property
    def unlimited(self) -> bool:
        return self.quota < 0

    @property
    def remaining(self) -> int | None:
        return None if self.unlimited else self.quota - self.used - self.reserved


class Quotas(WireModel):
    """`{"quotas": {"resources": [...]}}` unwrapped."""

    resources: list[QuotaItem] = []

    def get(self, type_: str) -> QuotaItem | None:
        return next((item for item in self.resources if item.type == type_), None)

    @property
    def backups(self) -> QuotaItem | None:
        return self.get("backups")

    @property
    def backup_gigabytes(self) -> QuotaItem | None:
        return self.get("backup_gigabytes")
