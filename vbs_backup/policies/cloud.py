"""What the cloud has: the project's disks and servers, its policies with their tags and members, the
file's members resolved to disk ids, and the file written back from the cloud (import).

The VBS API has no "list members" call: a policy's members are the EVS disks whose metadata key `policy`
holds its id (reference §3.5, §4.8, one user's report), read with one paginated EVS listing. Each policy's
`policy_resource_count` is compared with that, and a mismatch is a warning in the plan.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import yaml

from ..cloud import CloudClient
from ..cloud.models.ecs import Server
from ..cloud.models.evs import Volume
from ..cloud.models.policies import Policy
from .model import PolicyFile, PolicyFileError, PolicySpec, tz_minutes


@dataclass
class Inventory:
    """The project's disks and servers, read once (two paginated listings)."""

    volumes: dict[str, Volume]
    servers: list[Server]

    def name(self, volume_id: str) -> str:
        """How people name a disk: `db-01 /dev/vdb (db-01-data)`, or its name alone when detached."""
        volume = self.volumes.get(volume_id)
        if volume is None:
            return "unknown disk"
        servers = {s.id: s.name or s.id for s in self.servers}
        attached = [a for a in volume.attachments if a.server_id]
        if not attached:
            return volume.name or "unnamed disk"
        server = servers.get(attached[0].server_id or "", attached[0].server_id)
        return f"{server} {attached[0].device} ({volume.name or 'unnamed'})"

    def label(self, volume_id: str) -> str:
        """The name and the id: `db-01 /dev/vdb (db-01-data) 799600d6-...`."""
        return f"{self.name(volume_id)} {volume_id}"


async def read_inventory(client: CloudClient) -> Inventory:
    volumes = {v.id: v async for v in client.evs.iter_volumes()}
    servers = [s async for s in client.ecs.iter_servers()]
    return Inventory(volumes=volumes, servers=servers)


@dataclass
class CloudPolicy:
    policy: Policy
    tags: dict[str, str]
    members: set[str]  # EVS disks whose metadata `policy` is this policy's id (§4.8)

    @property
    def name(self) -> str:
        return self.policy.backup_policy_name or self.policy.backup_policy_id


async def read_cloud(client: CloudClient, inventory: Inventory) -> list[CloudPolicy]:
    members: dict[str, set[str]] = defaultdict(set)
    for volume in inventory.volumes.values():
        policy_id = volume.metadata.get("policy")
        if isinstance(policy_id, str) and policy_id:
            members[policy_id].add(volume.id)
    found = []
    for policy in await client.vbs.list_policies():
        tags = {t.key: t.value for t in await client.vbs.list_policy_tags(policy.backup_policy_id)}
        found.append(CloudPolicy(policy, tags, members.get(policy.backup_policy_id, set())))
    return found


def resolve_members(file: PolicyFile, inventory: Inventory, *, source: str = "") -> dict[str, list[str]]:
    """Each policy's member disk ids (servers expanded to their disks), or `PolicyFileError` listing every
    unknown disk or server and every disk claimed by two policies (a disk has one policy at most, §4.6)."""
    problems: list[str] = []
    resolved: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    by_name: dict[str, list[Server]] = defaultdict(list)
    for listed in inventory.servers:
        by_name[listed.name or ""].append(listed)
    by_id = {s.id: s for s in inventory.servers}
    for spec in file.policies:
        where = f"policies[{spec.name}].members"
        disks: list[str] = []
        for disk in spec.members.disks:
            if disk not in inventory.volumes:
                problems.append(f"{where}.disks: unknown disk {disk} (no such EVS disk in this project)")
            disks.append(disk)
        for ref in spec.members.servers:
            server: Server | None
            if ref.id is not None:
                server = by_id.get(ref.id)
                if server is None:
                    problems.append(f"{where}.servers: unknown server id {ref.id}")
                    continue
            else:
                matches = by_name.get(ref.name or "", [])
                if len(matches) != 1:
                    what = (
                        "no server"
                        if not matches
                        else f"{len(matches)} servers ({', '.join(s.id for s in matches)})"
                    )
                    problems.append(
                        f"{where}.servers: {what} named {ref.name!r}" + (": name it by id" if matches else "")
                    )
                    continue
                server = matches[0]
            for attached in server.volumes_attached:
                system = attached.boot_index == 0 or (
                    server.root_device_name is not None and attached.device == server.root_device_name
                )
                if system and not spec.members.include_system_disk:
                    continue
                disks.append(attached.id)
        unique = list(dict.fromkeys(disks))
        for disk in unique:
            if disk in owner:
                problems.append(
                    f"{where}: disk {inventory.label(disk)} is also a member of policy {owner[disk]} "
                    "(a disk belongs to one policy at most)"
                )
            owner.setdefault(disk, spec.name)
        resolved[spec.name] = sorted(unique)
    if problems:
        raise PolicyFileError(source, problems)
    return resolved


# --------------------------------------------------------------------------------------------------------
# Import


def spec_from_cloud(item: CloudPolicy, inventory: Inventory) -> PolicySpec:
    sp = item.policy.scheduled_policy
    schedule: dict[str, Any] = {
        "start_time": [t.strip() for t in (sp.start_time or "").split(",") if t.strip()]
    }
    if sp.frequency is not None:
        schedule["frequency"] = sp.frequency
    else:
        schedule["week_frequency"] = [str(d) for d in sp.week_frequency or []]
    retention = (
        {"retention_num": sp.retention_num}
        if sp.retention_num is not None
        else {"retention_day": sp.retention_day}
    )
    zone = item.policy.time_zone if item.policy.time_zone and tz_minutes(item.policy.time_zone) else None
    return PolicySpec.model_validate(
        {
            "name": item.name,
            "schedule": schedule,
            "retention": retention,
            "remain_first_backup_of_cur_month": bool(sp.remain_first_backup_of_cur_month),
            "enabled": item.policy.enabled,
            "time_zone": zone,
            "tags": item.tags,
            "members": {"disks": sorted(item.members, key=inventory.label)},
        }
    )


async def import_policies(client: CloudClient) -> tuple[PolicyFile, Inventory]:
    """The cloud's current policies as a policy file (members as disk ids)."""
    inventory = await read_inventory(client)
    cloud = await read_cloud(client, inventory)
    specs = [spec_from_cloud(item, inventory) for item in sorted(cloud, key=lambda c: c.name)]
    return PolicyFile(policies=specs), inventory


def dump_policy_file(file: PolicyFile, inventory: Inventory, *, header: str = "") -> str:
    """YAML for the file, each member disk followed by a comment naming it."""
    policies = []
    for spec in file.policies:
        full = spec.model_dump(mode="json", exclude_none=True)
        trimmed = spec.model_dump(mode="json", exclude_defaults=True)
        # `enabled` is said even when it is the default: it matters; the other defaults are left out
        policies.append({k: trimmed.get(k, v) for k, v in full.items() if k in trimmed or k == "enabled"})
    text = yaml.safe_dump(
        {"policies": policies}, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("- ") and stripped[2:] in inventory.volumes:
            line = f"{line}  # {inventory.name(stripped[2:])}"
        lines.append(line)
    return header + "\n".join(lines) + "\n"
