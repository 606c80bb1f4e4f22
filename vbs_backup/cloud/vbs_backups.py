"""VBS backups, jobs and quotas (reference §2.1-§2.10, §2.16): one short async method per API operation.

Owned here: `VbsBase` (the session and the project-scoped paths every VBS facade shares) and
`VbsBackupsApi` with the operations create_backup, delete_cloud_backup, restore_backup,
create_native_backup, list_backups, list_backup_details, get_backup, get_job, delete_backup,
restore_native_backup, get_quotas, plus the helpers iter_backup_details, find_backups_by_name and
wait_for_job. Each operation is a path, a method, the documented success status and a model: retries,
auth, logging and error mapping are `CloudSession`'s.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypedDict

from pydantic import ValidationError
from typing_extensions import Unpack

from ..clock import SYSTEM_CLOCK, Clock, poll_until
from .errors import InvalidResponseError, JobFailedError, JobTimeoutError
from .models import (
    Backup,
    BackupList,
    BackupSummary,
    BackupSummaryList,
    CreateBackupRequest,
    Job,
    JobRef,
    JobStatus,
    NativeBackupRequest,
    NativeRestore,
    Quotas,
    RestoreRequest,
    Tag,
)
from .models.backups import UNREADABLE_STATUS, read_listed_backup
from .models.common import (
    declared_query,
    decode,
    invalid_fields,
    require_opaque_id,
    require_uuid,
)
from .session import CloudSession, Service

__all__ = [
    "BackupDetailPageQuery",
    "BackupDetailQuery",
    "BackupFilters",
    "BackupOrder",
    "BackupPage",
    "BackupPageQuery",
    "VbsBackupsApi",
    "VbsBase",
]

log = logging.getLogger("vbs_backup.cloud")

# Job fields that only inform (when it ran, its sub-jobs): when they cannot be read, the job is read
# without them, so that a FAIL still reports its error code instead of an unreadable answer.
_JOB_INFORMATIVE_FIELDS = frozenset({"begin_time", "end_time", "sub_jobs"})


class BackupFilters(TypedDict, total=False):
    """What the backups lists filter on (§2.5, §2.6), declared once for every method that lists them.
    Here and in the other queries, None is the same as leaving a key out."""

    name: str | None
    status: str | None  # a BackupStatus, or a status the reference does not document
    volume_id: str | None


class BackupPage(TypedDict, total=False):
    """One page of a backups list: `limit` items after `marker` (or `offset` items in)."""

    limit: int | None
    offset: int | None
    marker: str | None


class BackupOrder(TypedDict, total=False):
    """The detailed list's order (§2.6); `created_at` descending when unset."""

    sort_key: str | None
    sort_dir: str | None


class BackupPageQuery(BackupFilters, BackupPage, total=False):
    """`list_backups`: the brief list takes filters and a page."""


class BackupDetailQuery(BackupFilters, BackupOrder, total=False):
    """`iter_backup_details`: filters and an order; the pages are the iterator's."""


class BackupDetailPageQuery(BackupFilters, BackupOrder, BackupPage, total=False):
    """`list_backup_details`: filters, an order and a page."""


def _listed_backup(item: Any, *, volume_id: str | None, operation: str) -> Backup | None:
    """`read_listed_backup`, with a WARNING for an item that could not be read in full (its id and the
    names of the bad fields; never their values)."""
    backup = read_listed_backup(item, volume_id=volume_id)
    if backup is None:
        log.warning("%s: skipped a listed backup without a readable id", operation)
    elif backup.unreadable:
        log.warning(
            "%s: backup %s has unreadable fields (%s); %s",
            operation,
            backup.id,
            ", ".join(backup.unreadable),
            f"treated as status {UNREADABLE_STATUS!r} (kept, never counted as done)"
            if backup.status == UNREADABLE_STATUS
            else "read without them",
            extra={"operation": operation, "backup_id": backup.id, "fields": list(backup.unreadable)},
        )
    return backup


def _job(body: Any, job_id: str) -> Job:
    """A job answer; times and sub-jobs that cannot be read are left out (with a WARNING) rather than
    hiding the job's status, error code and reason behind an `InvalidResponseError`."""
    try:
        return Job.model_validate(body)
    except ValidationError as exc:
        bad = set(invalid_fields(exc))
    if not isinstance(body, dict) or not bad <= _JOB_INFORMATIVE_FIELDS:
        return decode(Job, body, operation="vbs.get_job")  # raises InvalidResponseError naming the fields
    log.warning(
        "vbs.get_job: job %s has unreadable fields (%s); read without them",
        job_id,
        ", ".join(sorted(bad)),
        extra={"operation": "vbs.get_job", "job_id": job_id, "fields": sorted(bad)},
    )
    return decode(Job, {**body, **dict.fromkeys(bad)}, operation="vbs.get_job")


class VbsBase:
    """What every VBS facade shares: the session and the project-scoped path builders."""

    def __init__(self, session: CloudSession) -> None:
        self.session = session

    def _v2(self, path: str = "") -> str:
        # read at call time: the session may learn its project id only when it authenticates
        return f"/v2/{self.session.project_id}{path}"

    def _v1(self, path: str = "") -> str:
        return f"/v1/{self.session.project_id}{path}"

    async def _call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        ok: tuple[int, ...] = (200,),
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        return await self.session.json(
            Service.VBS,
            method,
            path,
            params=params or None,
            json=json,
            ok=ok,
            idempotent=idempotent,
            operation=f"vbs.{operation}",
        )


class VbsBackupsApi(VbsBase):
    # -- cloudbackups (§2.1-§2.3) ---------------------------------------------------------------------

    async def create_backup(
        self,
        volume_id: str,
        name: str,
        *,
        description: str | None = None,
        snapshot_id: str | None = None,
        tags: Sequence[Tag] | Mapping[str, str] | None = None,
        full_backup: bool = False,
    ) -> str:
        """Start a backup of one disk; returns the job id (poll it with `wait_for_job`). Not retried by
        the session (a POST): after a lost answer, look the backup up by its name before creating again."""
        if isinstance(tags, Mapping):
            tags = [Tag(key=k, value=v) for k, v in tags.items()]
        request = CreateBackupRequest(
            volume_id=volume_id,
            name=name,
            description=description,
            snapshot_id=snapshot_id,
            tags=list(tags) if tags is not None else None,
            extend_param={"FullBackup": "true"} if full_backup else None,
        )
        body = await self._call("POST", self._v2("/cloudbackups"), "create_backup", json=request.to_body())
        return decode(JobRef, body, operation="vbs.create_backup").job_id

    async def delete_cloud_backup(self, backup_id: str) -> str:
        """Deprecated delete (§2.2): documented as POST without a body; returns the job id. Prefer
        `delete_backup`."""
        path = self._v2(f"/cloudbackups/{require_uuid('backup_id', backup_id)}")
        body = await self._call("POST", path, "delete_cloud_backup")
        return decode(JobRef, body, operation="vbs.delete_cloud_backup").job_id

    async def restore_backup(self, backup_id: str, volume_id: str) -> str:
        """Restore a disk (detach it first, §2.3); returns the job id."""
        path = self._v2(f"/cloudbackups/{require_uuid('backup_id', backup_id)}/restore")
        json = RestoreRequest(volume_id=volume_id).to_body()
        body = await self._call("POST", path, "restore_backup", json=json)
        return decode(JobRef, body, operation="vbs.restore_backup").job_id

    # -- native backups (§2.4-§2.10) ----------------------------------------------------------------

    async def create_native_backup(self, request: NativeBackupRequest) -> BackupSummary:
        """Deprecated native create (§2.4): 202, no job; poll `get_backup`."""
        body = await self._call(
            "POST", self._v2("/backups"), "create_native_backup", ok=(202,), json=request.to_body()
        )
        return decode(BackupSummary, (body or {}).get("backup"), operation="vbs.create_native_backup")

    async def list_backups(self, **query: Unpack[BackupPageQuery]) -> BackupSummaryList:
        """One page of the brief list (id, name, links); `next_marker` says whether more exist."""
        params = declared_query(BackupPageQuery, query)
        body = await self._call("GET", self._v2("/backups"), "list_backups", params=params)
        return decode(BackupSummaryList, body, operation="vbs.list_backups")

    async def list_backup_details(self, **query: Unpack[BackupDetailPageQuery]) -> BackupList:
        """One page of full backups; see `iter_backup_details` for all pages."""
        params = declared_query(BackupDetailPageQuery, query)
        volume_id = query.get("volume_id")
        body = await self._call("GET", self._v2("/backups/detail"), "list_backup_details", params=params)
        page = dict(body) if isinstance(body, dict) else body
        items = (page.pop("backups", None) if isinstance(page, dict) else None) or []
        if not isinstance(items, list):
            raise InvalidResponseError("vbs.list_backup_details: 'backups' is not a list")
        result = decode(BackupList, page, operation="vbs.list_backup_details")
        listed = (_listed_backup(i, volume_id=volume_id, operation="vbs.list_backup_details") for i in items)
        result.backups = [b for b in listed if b is not None]
        return result

    async def get_backup(self, backup_id: str) -> Backup:
        """One backup; a missing one raises `NotFoundError` (404 itemNotFound)."""
        path = self._v2(f"/backups/{require_uuid('backup_id', backup_id)}")
        body = await self._call("GET", path, "get_backup")
        return decode(Backup, (body or {}).get("backup"), operation="vbs.get_backup")

    async def delete_backup(self, backup_id: str) -> None:
        """Native delete (§2.9): 202, the backup goes `deleting` then disappears."""
        path = self._v2(f"/backups/{require_uuid('backup_id', backup_id)}")
        await self._call("DELETE", path, "delete_backup", ok=(202,))

    async def restore_native_backup(self, backup_id: str, volume_id: str) -> NativeRestore:
        """Native restore (§2.10): 202, no job; poll the disk and the backup."""
        path = self._v2(f"/backups/{require_uuid('backup_id', backup_id)}/restore")
        json = RestoreRequest(volume_id=volume_id).to_body()
        body = await self._call("POST", path, "restore_native_backup", ok=(202,), json=json)
        return decode(NativeRestore, (body or {}).get("restore"), operation="vbs.restore_native_backup")

    # -- jobs and quotas (§2.8, §2.16) --------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        """One job (note the `/v1` path); an unknown id raises `NotFoundError` (common.0011)."""
        path = self._v1(f"/jobs/{require_opaque_id('job_id', job_id)}")
        body = await self._call("GET", path, "get_job")
        return _job(body, job_id)

    async def get_quotas(self) -> Quotas:
        body = await self._call("GET", self._v2("/cloudbackups/quota"), "get_quotas")
        return decode(Quotas, (body or {}).get("quotas"), operation="vbs.get_quotas")

    # -- helpers ------------------------------------------------------------------------------------

    async def iter_backup_details(
        self, *, page_size: int = 100, **query: Unpack[BackupDetailQuery]
    ) -> AsyncIterator[Backup]:
        """Every backup matching the filters, across pages (marker paging over `backups_links`), in the
        documented default order (`created_at` descending) unless `sort_key`/`sort_dir` say otherwise; a
        caller that stops iterating stops the paging (no further page is asked for).

        Items are read tolerantly (`read_listed_backup`): one that cannot be read in full is logged and
        yielded as what could be read, a placeholder with status `UNREADABLE_STATUS` when a field that
        decides anything is bad, so that retention still sees (and keeps) it and the rest of the page is
        used; only an item without a readable id is left out."""
        items = self.session.paginate(
            Service.VBS,
            self._v2("/backups/detail"),
            items_key="backups",
            links_key="backups_links",
            params=declared_query(BackupDetailQuery, query),
            page_size=page_size,
            style="marker",
            operation="vbs.list_backup_details",
        )
        volume_id = query.get("volume_id")
        async for item in items:
            backup = _listed_backup(item, volume_id=volume_id, operation="vbs.list_backup_details")
            if backup is not None:
                yield backup

    async def find_backups_by_name(self, name: str, volume_id: str | None = None) -> list[Backup]:
        """Backups with exactly this name (the server filter is an exact match, §2.5; checked again here
        so a fuzzy server could never hand us someone else's backup). Used to adopt a backup whose create
        answer was lost."""
        found = [b async for b in self.iter_backup_details(name=name, volume_id=volume_id)]
        return [b for b in found if b.name == name and (volume_id is None or b.volume_id == volume_id)]

    async def find_backups_by_description(self, description: str, volume_id: str) -> list[Backup]:
        """This disk's backups whose description is exactly `description` (the list API has no description
        filter, so the disk's backups are listed and matched here). Used to find a backup by the identity
        written in its description."""
        return [
            b async for b in self.iter_backup_details(volume_id=volume_id) if b.description == description
        ]

    async def wait_for_job(
        self,
        job_id: str,
        *,
        timeout: float = 1200.0,
        interval: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> Job:
        """Poll `get_job` until SUCCESS (returns the job) or FAIL (raises `JobFailedError`); past `timeout`
        seconds raises `JobTimeoutError`. Other statuses, documented or not, mean "keep polling" (§2.8).
        The `clock` is injectable so that tests drive time instead of waiting for it."""
        require_opaque_id("job_id", job_id)
        job = await poll_until(
            lambda: self.get_job(job_id),
            lambda job: job.is_finished,
            timeout=timeout,
            interval=interval,
            clock=clock,
        )
        if job.status == JobStatus.SUCCESS:
            return job
        if job.status == JobStatus.FAIL:
            raise JobFailedError(job_id, job.error_code, job.fail_reason)
        raise JobTimeoutError(job_id, timeout, str(job.status))
