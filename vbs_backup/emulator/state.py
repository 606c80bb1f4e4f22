"""The emulated cloud's state: plain dataclasses, one `CloudState` holding every project.

Owned here: the shape of the state (shared by the gateway, IAM/ECS/EVS and VBS backends), the emulator
settings, the job-fault queue and the tick hooks that move asynchronous work forward. Rules live in the
backends; wire shapes live in the routes. Every mutation happens under `CloudState.lock` (routes take it
through `CloudState.locked()`), because uvicorn serves from one event loop but control calls and tests may
touch the state from other threads.
"""

from __future__ import annotations

import random
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

from .clock import Clock, ManualClock

# A project id as IAM shows it: the fleet file's rule and the share API's check of a target project.
PROJECT_ID_PATTERN = r"^[0-9a-f]{32}$"


def new_uuid(rng: random.Random | None = None) -> str:
    if rng is None:
        return str(uuid.uuid4())
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def new_job_id(rng: random.Random | None = None) -> str:
    """Real services return 32 lowercase hex characters (reference §0.3)."""
    if rng is None:
        return secrets.token_hex(16)
    return f"{rng.getrandbits(128):032x}"


# ---------------------------------------------------------------------------------------------------------
# EVS / ECS


@dataclass
class Attachment:
    server_id: str
    device: str  # e.g. /dev/vda
    boot_index: int | None  # 0 = system disk
    attachment_id: str
    attached_at: datetime
    bus: str = "virtio"


@dataclass
class Volume:
    id: str
    name: str
    size: int  # GiB
    status: str  # §0.4 EVS statuses: available, in-use, backing-up, restoring-backup, ...
    volume_type: str = "SAS"
    availability_zone: str = "eu-west-0a"
    bootable: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    status_before_job: str | None = None  # restored when a backup/restore job ends
    tags: dict[str, str] = field(default_factory=dict)
    multiattach: bool = False  # a shared disk: set once it is attached to a second server


@dataclass
class Server:
    id: str
    name: str
    status: str = "ACTIVE"
    tags: dict[str, str] = field(default_factory=dict)
    availability_zone: str = "eu-west-0a"
    flavor: str = "s3.medium.2"
    created_at: datetime | None = None
    # attached volume ids in attachment order; details live on Volume.attachments
    volume_ids: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# VBS


@dataclass
class Backup:
    id: str
    name: str
    volume_id: str
    project_id: str
    status: str  # creating, available, error, restoring, deleting, error_restoring
    size: int
    created_at: datetime
    updated_at: datetime
    data_timestamp: datetime
    description: str | None = None  # the user's DESC text; the wire carries {"DESC": ..., "INC": 0|1}
    incremental: bool = False
    snapshot_id: str | None = None
    fail_reason: str | None = None
    availability_zone: str = "eu-west-0a"
    container: str | None = None
    object_count: int | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    kind: Literal["manual", "auto"] = "manual"
    policy_id: str | None = None
    # the retention rule in force when an automatic backup was made (§4.5): ("num", N) or ("day", D)
    retention_rule: tuple[str, int] | None = None
    delete_at: datetime | None = None  # when a `deleting` backup disappears


@dataclass
class Job:
    id: str
    project_id: str
    job_type: str  # bksCreateBackup, bksRestoreBackup, bksDeleteBackup
    status: str  # INIT, RUNNING, SUCCESS, FAIL
    begin_time: datetime
    entities: dict[str, str] = field(default_factory=dict)
    end_time: datetime | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    # engine bookkeeping (never on the wire)
    run_at: datetime | None = None  # INIT -> RUNNING
    finish_at: datetime | None = None  # RUNNING -> SUCCESS/FAIL (time mode)
    polls_left: int | None = None  # finish after N status queries (poll mode)
    outcome: Literal["success", "fail", "hang"] = "success"
    outcome_code: str | None = None
    # what the job works on, for the VBS engine: backup_id, volume_id, policy/task ids, planned fail
    # reason, prior backup status (never on the wire)
    context: dict[str, str] = field(default_factory=dict)


@dataclass
class Policy:
    id: str
    name: str
    start_time: str  # "HH:mm[,HH:mm...]"
    status: str  # ON / OFF
    frequency: int | None = None
    week_frequency: list[str] | None = None
    retention_num: int | None = None  # wire: rentention_num
    retention_day: int | None = None  # wire: rentention_day
    remain_first_backup_of_cur_month: str = "N"  # "Y"/"N"
    time_zone: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    resource_ids: list[str] = field(default_factory=list)  # associated volume ids, in association order
    executing: bool = False
    last_run_slot: datetime | None = None  # scheduler bookkeeping


@dataclass
class PolicyTask:
    job_id: str
    policy_id: str
    resource_id: str
    backup_name: str
    status: str  # WAITING, RUNNING, EXECUTE_SUCCESS, EXECUTE_FAIL, EXECUTE_TIMEOUT, SKIP
    created_at: datetime
    finished_at: datetime | None = None
    vbs_job_id: str | None = None
    resource_type: str = "volume"


@dataclass
class Share:
    id: str
    backup_id: str
    from_project_id: str
    to_project_id: str
    created_at: datetime
    updated_at: datetime | None = None


# ---------------------------------------------------------------------------------------------------------
# Projects, credentials, faults


@dataclass
class User:
    name: str
    password: str
    domain: str


@dataclass
class Project:
    id: str  # 32 lowercase hex
    name: str
    # the account (IAM domain) owning the project; the gateway's per-account rate limits apply to it.
    # "" = an account of its own, named by the project id.
    account: str = ""
    access_keys: dict[str, str] = field(default_factory=dict)  # ak -> sk
    users: list[User] = field(default_factory=list)
    quotas: dict[str, int] = field(default_factory=lambda: {"backups": 1000, "backup_gigabytes": -1})
    servers: dict[str, Server] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    backups: dict[str, Backup] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    tasks: list[PolicyTask] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.account = self.account or self.id


@dataclass
class Token:
    value: str
    project_id: str
    user: str
    domain: str
    issued_at: datetime
    expires_at: datetime


@dataclass
class JobFault:
    """Make matching jobs fail (with a documented error code) or never finish."""

    mode: Literal["fail", "hang"]
    job_type: str | None = None  # None = any
    volume_id: str | None = None  # None = any
    error_code: str = "VolumeBackup.0064"
    fail_reason: str = "CreateBackup Task-fail: fsp cinder return backup status is error."
    count: int | None = None  # how many jobs it still applies to; None = all
    probability: float = 1.0


@dataclass
class Settings:
    """Emulator behaviour switches; every one can be changed by the control API."""

    job_mode: Literal["time", "polls"] = "time"
    polls_to_finish: int = 2  # poll mode: status queries before a job ends
    job_base_seconds: float = 60.0  # time mode: virtual duration = base + per_gib * size
    job_seconds_per_gib: float = 1.5
    job_start_seconds: float = 1.0  # INIT -> RUNNING
    delete_seconds: float = 5.0  # `deleting` -> gone
    restore_in_use: Literal["reject", "allow"] = "reject"  # §2.3 unconfirmed: VolumeBackup.0205 by default
    max_policies: int = 10
    frequency_range: tuple[int, int] = (1, 30)
    retention_num_range: tuple[int, int] = (2, 99)
    per_disk_backup_limit: int | None = None  # VolumeBackup.0040 when set (doc says 20; unconfirmed)
    region: str = "eu-west-0"
    token_ttl_seconds: int = 24 * 3600
    signature_window_seconds: int = 15 * 60


class LoggedRequest(NamedTuple):
    """One request the gateway saw (control API calls are not logged)."""

    operation: str | None  # `vbs.create_backup`; None when no route matched
    method: str
    path: str
    status: int  # 0 when the connection was dropped before the operation ran
    at: float  # arrival, wall-clock seconds since the epoch (the app's `wall_clock`)
    project_id: str | None  # the authenticated caller's project; None for `iam.create_token` or a 401
    account: str | None  # that project's account


@dataclass
class CloudState:
    clock: Clock = field(default_factory=ManualClock)
    settings: Settings = field(default_factory=Settings)
    projects: dict[str, Project] = field(default_factory=dict)
    shares: dict[str, Share] = field(default_factory=dict)  # cross-project, by share id
    tokens: dict[str, Token] = field(default_factory=dict)
    job_faults: list[JobFault] = field(default_factory=list)
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)
    # called (under the lock) before every request and by the control API, to move async work forward
    tick_hooks: list[Callable[[CloudState], None]] = field(default_factory=list)
    # every request the gateway saw, appended as each ends (`at` is its arrival); tests and benchmarks
    # count these
    request_log: list[LoggedRequest] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @contextmanager
    def locked(self) -> Iterator[CloudState]:
        with self.lock:
            yield self

    def now(self) -> datetime:
        return self.clock.now()

    def tick(self) -> None:
        with self.lock:
            for hook in self.tick_hooks:
                hook(self)

    def project(self, project_id: str) -> Project | None:
        return self.projects.get(project_id)

    def find_server(self, server_id: str) -> tuple[Project, Server] | None:
        for project in self.projects.values():
            if server_id in project.servers:
                return project, project.servers[server_id]
        return None

    def find_volume(self, volume_id: str) -> tuple[Project, Volume] | None:
        for project in self.projects.values():
            if volume_id in project.volumes:
                return project, project.volumes[volume_id]
        return None

    def find_backup(self, backup_id: str) -> tuple[Project, Backup] | None:
        for project in self.projects.values():
            if backup_id in project.backups:
                return project, project.backups[backup_id]
        return None

    def take_job_fault(self, job_type: str, volume_id: str | None) -> JobFault | None:
        """The first matching job fault, consumed once (its `count` goes down); None when none applies."""
        with self.lock:
            for fault in self.job_faults:
                if fault.job_type not in (None, job_type):
                    continue
                if fault.volume_id not in (None, volume_id):
                    continue
                if fault.probability < 1.0 and self.rng.random() >= fault.probability:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.job_faults.remove(fault)
                return fault
        return None
