"""Sharing backups with other projects (reference §2.11-§2.15, §6.6).

Rules: one record per (backup, target project); the backup must be the caller's own and `available`;
target ids are 32 lowercase hex and not the caller's own project (a target project unknown to the emulator
is accepted: the real service cannot refuse a project it merely has not seen). Sharing an already shared
pair again returns the existing record instead of failing, so a retried call is harmless.

Only the owner cancels (by share id, or every share of a backup with `is_backup_id=true`); either side
reads a record. Error codes are not documented for sharing (unconfirmed): malformed input answers
`VolumeBackup.0002` (400), an unknown or foreign backup `VolumeBackup.0043` "failed to query the disk or
backup" (404), a backup that is not available `VolumeBackup.0089` (400), an unknown share 404 with
`VolumeBackup.0043` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import CloudApiError, vbs
from ..state import Backup, CloudState, Project, Share, new_uuid
from .common import PROJECT_ID_RE, int_param, sort_dir_param

SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at")


def _bad(message: str) -> CloudApiError:
    return vbs("VolumeBackup.0002", message)


def _not_found(what: str) -> CloudApiError:
    return vbs("VolumeBackup.0043", f"failed to query the {what}", 404)


def share_backup(state: CloudState, project: Project, payload: Any) -> list[Share]:
    body = payload.get("shared") if isinstance(payload, dict) else None
    if not isinstance(body, dict):
        raise _bad("api request parameter instance null")
    backup_id = body.get("backup_id")
    targets = body.get("to_project_ids")
    if not isinstance(backup_id, str) or not backup_id:
        raise _bad("backup_id is empty")
    if not isinstance(targets, list) or not targets:
        raise _bad("to_project_ids is empty")
    for target in targets:
        if not isinstance(target, str) or not PROJECT_ID_RE.match(target):
            raise _bad(f"invalid project id in to_project_ids: {target!r}")
        if target == project.id:
            raise _bad("a backup cannot be shared with its own project")
    backup = project.backups.get(backup_id)
    if backup is None:
        raise _not_found(f"backup {backup_id}")
    if backup.status != "available":
        raise vbs("VolumeBackup.0089", f"the backup status is {backup.status}, must be available")
    now = state.now()
    out = []
    for target in dict.fromkeys(targets):  # a target listed twice gets one record
        existing = next(
            (s for s in state.shares.values() if s.backup_id == backup_id and s.to_project_id == target), None
        )
        if existing is None:
            existing = Share(
                id=new_uuid(state.rng),
                backup_id=backup_id,
                from_project_id=project.id,
                to_project_id=target,
                created_at=now,
                updated_at=now,
            )
            state.shares[existing.id] = existing
        out.append(existing)
    return out


def cancel_share(state: CloudState, project: Project, share_id: str, *, is_backup_id: bool) -> None:
    if is_backup_id:
        if share_id not in project.backups:
            raise _not_found(f"backup {share_id}")
        for sid in [s.id for s in state.shares.values() if s.backup_id == share_id]:
            del state.shares[sid]
        return
    share = state.shares.get(share_id)
    if share is None or share.from_project_id != project.id:
        raise _not_found(f"share {share_id}")
    del state.shares[share_id]


def get_share(state: CloudState, project: Project, share_id: str) -> tuple[Share, Backup | None]:
    share = state.shares.get(share_id)
    if share is None or project.id not in (share.from_project_id, share.to_project_id):
        raise _not_found(f"share {share_id}")
    return share, _backup(state, share)


def _backup(state: CloudState, share: Share) -> Backup | None:
    found = state.find_backup(share.backup_id)
    return found[1] if found else None


def _matching(
    state: CloudState, project: Project, params: Mapping[str, str]
) -> list[tuple[Share, Backup | None]]:
    to_me = (params.get("share_to_me") or "").lower() == "true"
    # the doc spells the parameter `avalilability_zone`, SDKs send `availability_zone`: accept both
    zone = params.get("availability_zone") or params.get("avalilability_zone")
    name = (params.get("name") or "").lower()
    rows = []
    for share in state.shares.values():
        if (share.to_project_id if to_me else share.from_project_id) != project.id:
            continue
        backup = _backup(state, share)
        checks = (
            (params.get("backup_id"), share.backup_id),
            (params.get("from_project_id"), share.from_project_id),
            (params.get("to_project_id"), share.to_project_id),
            (params.get("volume_id"), backup.volume_id if backup else None),
            (params.get("status"), backup.status if backup else None),
            (zone, backup.availability_zone if backup else None),
        )
        if any(wanted and wanted != actual for wanted, actual in checks):
            continue
        if name and (backup is None or name not in (backup.name or "").lower()):  # fuzzy, case-insensitive
            continue
        rows.append((share, backup))
    return rows


def list_shares(
    state: CloudState, project: Project, params: Mapping[str, str]
) -> list[tuple[Share, Backup | None]]:
    """Sort keys of §2.6: `id`, `created_at`, `updated_at` order the sharing records, `name`, `status`,
    `size` their backups; the image-only keys sort by creation (ties fall back to creation order)."""
    sort_key = params.get("sort_key") or "created_at"
    if sort_key not in SORT_KEYS:
        raise _bad(f"invalid sort_key: {sort_key}")
    descending = sort_dir_param(params, "desc", _bad)
    limit = int_param(params, "limit", None, _bad)
    offset = int_param(params, "offset", 0, _bad) or 0
    rows = _matching(state, project, params)

    order = {id(row[0]): i for i, row in enumerate(rows)}  # ties: the order the records were made

    def key(row: tuple[Share, Backup | None]) -> Any:
        share, backup = row
        tie = order[id(share)]
        if sort_key == "id":
            return (share.id, tie)
        if sort_key == "updated_at":
            return (share.updated_at or share.created_at, tie)
        if sort_key == "size":
            return (backup.size if backup else 0, tie)
        if sort_key in ("name", "status"):
            return ((getattr(backup, sort_key) if backup else "") or "", tie)
        return (share.created_at, tie)

    rows.sort(key=key, reverse=descending)
    rows = rows[offset:]
    return rows if limit is None else rows[:limit]


def count_shares(state: CloudState, project: Project, params: Mapping[str, str]) -> int:
    return len(_matching(state, project, params))
