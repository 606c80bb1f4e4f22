"""Wire model of a VBS job (`GET /v1/{pid}/jobs/{job_id}`, reference §2.8).

Owned here: `Job` with its status, typed `entities` and the properties the waiters need (`is_finished`,
`succeeded`, `backup_id`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from .common import OptionalUtcDateTime, WireModel, known_or_raw

__all__ = ["Job", "JobEntities", "JobStatus", "JobType"]


class JobStatus(StrEnum):
    INIT = "INIT"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"


class JobType(StrEnum):
    CREATE_BACKUP = "bksCreateBackup"
    RESTORE_BACKUP = "bksRestoreBackup"  # observed
    DELETE_BACKUP = "bksDeleteBackup"  # CTS trace name; as a job_type unconfirmed


class JobEntities(WireModel):
    """Per job type (§2.8). Create jobs carry all four; a failed create has `backup_id: ""` (observed).
    Restore-job keys are unconfirmed; whatever else arrives is kept as extras."""

    backup_id: str | None = None
    volume_id: str | None = None
    snapshot_id: str | None = None
    bks_create_volume_name: str | None = None


def _empty_entities(value: Any) -> Any:
    return {} if value is None else value


class Job(WireModel):
    job_id: str
    # Only the four documented values end or continue a wait; anything else is kept as text and polled on
    # (golangsdk's WaitForJobSuccess treats unknown values as "keep polling").
    status: Annotated[JobStatus | str, known_or_raw(JobStatus)]
    job_type: Annotated[JobType | str | None, known_or_raw(JobType)] = None
    entities: Annotated[JobEntities, BeforeValidator(_empty_entities)] = Field(default_factory=JobEntities)
    begin_time: OptionalUtcDateTime = None
    end_time: OptionalUtcDateTime = None  # null/absent while running (unconfirmed)
    error_code: str | None = None
    fail_reason: str | None = None
    sub_jobs: Annotated[list[Job], BeforeValidator(lambda v: [] if v is None else v)] = []

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.SUCCESS, JobStatus.FAIL)

    @property
    def succeeded(self) -> bool:
        return self.status == JobStatus.SUCCESS

    @property
    def backup_id(self) -> str | None:
        """The backup a create job made; None while unknown or when the job failed (`""` on the wire)."""
        return self.entities.backup_id or None
