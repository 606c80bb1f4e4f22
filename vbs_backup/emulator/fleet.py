"""The fleet file: which projects, credentials, servers and disks the emulated cloud starts with.

`load_fleet` reads YAML (a path or a YAML string) or a dict and validates it with pydantic; every problem is
reported as one `FleetError` listing `field.path: problem` lines. `apply_fleet` adds a validated fleet to a
`CloudState`: disks listed under a server are attached (`in-use`, the one with `boot_index: 0` is the
bootable system disk), volumes listed under a project are detached (`available`). Extra keys are accepted
and ignored, except `settings:` (emulator `Settings` overrides, checked here) and `availability_zone:`
(default AZ; otherwise `<region>a`, e.g. `eu-west-0a`).

Schema (see `examples/fleet.yaml`):

    region: eu-west-0
    availability_zone: eu-west-0a        # optional
    settings: {job_mode: polls}          # optional
    projects:
      - id: <32 hex>
        name: eu-west-0
        account: acme                    # optional; default: the project id (an account of its own)
        access_keys: [{ak, sk}]
        users: [{name, password, domain}]
        quotas: {backups: 1000, backup_gigabytes: 100000}     # -1 = unlimited
        servers: [{id, name, status?, tags: {k: v}, disks: [{id, name, size_gb, device, boot_index?,
                  volume_type?, bus?}]}]
        volumes: [{id, name, size_gb, volume_type?}]

`account`: in Huawei Cloud an account (IAM domain) owns several projects, and the API gateway's throttling
applies per account, so projects of one account share one rate budget. Projects naming the same `account`
belong to it: the gateway logs each request with its caller's project and account, and
`POST /_emulator/rate_limit {"account": ..., "rate": ...}` limits all of an account's projects together.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .state import (
    PROJECT_ID_PATTERN,
    Attachment,
    CloudState,
    Project,
    Server,
    Settings,
    User,
    Volume,
    new_uuid,
)


class FleetError(ValueError):
    """The fleet is invalid; the message lists every problem as `field.path: problem`."""


def _uuid(value: str) -> str:
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a UUID like 6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10") from None
    if canonical != value:
        raise ValueError("must be a lowercase UUID with dashes")
    return value


Uuid = Annotated[str, AfterValidator(_uuid)]
VolumeType = Literal["SATA", "SAS", "SSD", "GPSSD", "ESSD"]  # reference §5a


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class AccessKeyModel(_Model):
    ak: str = Field(min_length=1)
    sk: str = Field(min_length=1, repr=False)


class UserModel(_Model):
    name: str = Field(min_length=1)
    password: str = Field(min_length=1, repr=False)
    domain: str = Field(min_length=1)


class QuotasModel(_Model):
    backups: int = Field(default=1000, ge=-1)
    backup_gigabytes: int = Field(default=-1, ge=-1)


class DiskModel(_Model):
    id: Uuid
    name: str = Field(min_length=1, max_length=255)
    size_gb: int = Field(ge=1, le=32768)
    device: str = Field(pattern=r"^/dev/[a-z]+[a-z0-9]*$")
    boot_index: int | None = Field(default=None, ge=0)
    volume_type: VolumeType = "SAS"
    bus: Literal["virtio", "scsi"] = "virtio"
    metadata: dict[str, str] = Field(default_factory=dict)


class ServerModel(_Model):
    id: Uuid
    name: str = Field(min_length=1, max_length=255)
    status: str = "ACTIVE"
    tags: dict[str, str] = Field(default_factory=dict)
    availability_zone: str | None = None
    flavor: str = "s3.medium.2"
    disks: list[DiskModel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_disks(self) -> ServerModel:
        devices = Counter(disk.device for disk in self.disks)
        twice = sorted(device for device, n in devices.items() if n > 1)
        if twice:
            raise ValueError(f"device used by more than one disk: {', '.join(twice)}")
        if sum(1 for disk in self.disks if disk.boot_index == 0) > 1:
            raise ValueError("more than one disk has boot_index 0 (the system disk)")
        return self


class VolumeModel(_Model):
    id: Uuid
    name: str = Field(min_length=1, max_length=255)
    size_gb: int = Field(ge=1, le=32768)
    volume_type: VolumeType = "SAS"
    availability_zone: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class ProjectModel(_Model):
    id: str = Field(pattern=PROJECT_ID_PATTERN)
    name: str = Field(min_length=1)
    account: str | None = Field(default=None, min_length=1)  # None: the project id
    access_keys: list[AccessKeyModel] = Field(default_factory=list)
    users: list[UserModel] = Field(default_factory=list)
    quotas: QuotasModel = Field(default_factory=QuotasModel)
    servers: list[ServerModel] = Field(default_factory=list)
    volumes: list[VolumeModel] = Field(default_factory=list)


class FleetModel(_Model):
    region: str = Field(default="eu-west-0", pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    availability_zone: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    projects: list[ProjectModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_unique(self) -> FleetModel:
        problems: list[str] = []
        for what, values in (
            ("project id", [p.id for p in self.projects]),
            ("access key", [k.ak for p in self.projects for k in p.access_keys]),
            ("server id", [s.id for p in self.projects for s in p.servers]),
            (
                "volume id",
                [d.id for p in self.projects for s in p.servers for d in s.disks]
                + [v.id for p in self.projects for v in p.volumes],
            ),
        ):
            twice = sorted(value for value, n in Counter(values).items() if n > 1)
            if twice:
                problems.append(f"{what} used more than once: {', '.join(twice)}")
        if problems:
            raise ValueError("; ".join(problems))
        settings_from(self.settings)  # raises ValueError naming the bad setting
        return self

    @property
    def default_zone(self) -> str:
        return self.availability_zone or f"{self.region}a"


def settings_from(updates: dict[str, Any], base: Settings | None = None) -> Settings:
    """`base` (default: fresh `Settings()`) with `updates` applied, validated field by field."""
    base = base or Settings()
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(updates) - known)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    merged = {**dataclasses.asdict(base), **updates}
    try:
        return TypeAdapter(Settings).validate_python(merged)
    except ValidationError as exc:
        raise ValueError(f"invalid settings: {_describe(exc, prefix='settings')}") from None


def _describe(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(part) for part in ((prefix,) if prefix else ()) + tuple(err["loc"]))
        lines.append(f"{path or '(fleet)'}: {err['msg']}")
    return "\n".join(lines)


def load_fleet(source: Path | str | dict[str, Any] | FleetModel) -> FleetModel:
    """Validate a fleet given as a dict, a path to a YAML file, or YAML text; raises `FleetError`."""
    if isinstance(source, FleetModel):
        return source
    data: Any = source
    looks_like_path = isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
    if isinstance(source, Path) or looks_like_path:
        path = Path(str(source))
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise FleetError(f"cannot read fleet file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise FleetError(f"fleet file {path} is not valid YAML: {exc}") from None
    elif isinstance(source, str):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise FleetError(f"fleet is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise FleetError("the fleet must be a mapping with `region` and `projects`")
    try:
        return FleetModel.model_validate(data)
    except ValidationError as exc:
        raise FleetError(f"invalid fleet:\n{_describe(exc)}") from None


def apply_fleet(state: CloudState, fleet: FleetModel) -> list[Project]:
    """Add the fleet's projects to `state` (and apply its settings); returns the new projects.

    Raises `FleetError` when a project id, access key, server or volume id already exists in `state`.
    """
    with state.locked():
        _check_no_clash(state, fleet)
        if fleet.settings or fleet.region != state.settings.region:
            try:
                state.settings = settings_from(
                    {"region": fleet.region, **fleet.settings}, base=state.settings
                )
            except ValueError as exc:
                raise FleetError(str(exc)) from None
        now = state.now()
        added = []
        for spec in fleet.projects:
            project = Project(
                id=spec.id,
                name=spec.name,
                account=spec.account or spec.id,
                access_keys={key.ak: key.sk for key in spec.access_keys},
                users=[User(name=u.name, password=u.password, domain=u.domain) for u in spec.users],
                quotas={"backups": spec.quotas.backups, "backup_gigabytes": spec.quotas.backup_gigabytes},
            )
            # Creation times one second apart in fleet order, so "newest first" listings are deterministic.
            total = len(spec.servers) + len(spec.volumes) + sum(len(s.disks) for s in spec.servers)
            stamp = iter(now - timedelta(seconds=n) for n in range(total, 0, -1))
            for server_spec in spec.servers:
                zone = server_spec.availability_zone or fleet.default_zone
                server = Server(
                    id=server_spec.id,
                    name=server_spec.name,
                    status=server_spec.status,
                    tags=dict(server_spec.tags),
                    availability_zone=zone,
                    flavor=server_spec.flavor,
                    created_at=next(stamp),
                )
                for disk in server_spec.disks:
                    created = next(stamp)
                    project.volumes[disk.id] = Volume(
                        id=disk.id,
                        name=disk.name,
                        size=disk.size_gb,
                        status="in-use",
                        volume_type=disk.volume_type,
                        availability_zone=zone,
                        bootable=disk.boot_index == 0,
                        metadata=dict(disk.metadata),
                        attachments=[
                            Attachment(
                                server_id=server.id,
                                device=disk.device,
                                boot_index=disk.boot_index,
                                attachment_id=new_uuid(state.rng),
                                attached_at=created,
                                bus=disk.bus,
                            )
                        ],
                        created_at=created,
                        updated_at=created,
                    )
                    server.volume_ids.append(disk.id)
                project.servers[server.id] = server
            for volume_spec in spec.volumes:
                created = next(stamp)
                project.volumes[volume_spec.id] = Volume(
                    id=volume_spec.id,
                    name=volume_spec.name,
                    size=volume_spec.size_gb,
                    status="available",
                    volume_type=volume_spec.volume_type,
                    availability_zone=volume_spec.availability_zone or fleet.default_zone,
                    metadata=dict(volume_spec.metadata),
                    created_at=created,
                    updated_at=created,
                )
            state.projects[project.id] = project
            added.append(project)
        return added


def _check_no_clash(state: CloudState, fleet: FleetModel) -> None:
    problems = []
    existing_aks = {ak for p in state.projects.values() for ak in p.access_keys}
    existing_servers = {sid for p in state.projects.values() for sid in p.servers}
    existing_volumes = {vid for p in state.projects.values() for vid in p.volumes}
    for i, spec in enumerate(fleet.projects):
        if spec.id in state.projects:
            problems.append(f"projects.{i}.id: project {spec.id} already exists")
        problems += [
            f"projects.{i}: access key {k.ak} already exists"
            for k in spec.access_keys
            if k.ak in existing_aks
        ]
        problems += [
            f"projects.{i}: server {s.id} already exists" for s in spec.servers if s.id in existing_servers
        ]
        ids = [d.id for s in spec.servers for d in s.disks] + [v.id for v in spec.volumes]
        problems += [f"projects.{i}: volume {vid} already exists" for vid in ids if vid in existing_volumes]
    if problems:
        raise FleetError("fleet clashes with the current state:\n" + "\n".join(problems))
