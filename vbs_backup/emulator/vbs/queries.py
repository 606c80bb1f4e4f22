"""Reading backups through the native API: list, list detail, get one (reference §2.5-§2.7).

Filters `name` (exact), `status`, `volume_id`; `sort_key`/`sort_dir` (default `created_at desc`, ties
broken by id in the same direction); pagination by `marker` (id of the last row of the previous page,
applied first), then `offset`, then `limit`. A page holds at most 1000 rows (Cinder's default maximum),
and the caller is told a next page exists only when more rows really follow (the doc's wording), so
`backups_links` never points at an empty page.

Backups shared *to* the project are not in its list: they are another project's backups and appear only
in the sharing listings (`share_to_me=true`). Reading never moves a job forward (see jobs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CinderError
from ..state import Backup, Project
from .common import int_param, sort_dir_param

MAX_PAGE = 1000
SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at")
FILTERS = ("name", "status", "volume_id")


@dataclass
class Page:
    backups: list[Backup]
    next_marker: str | None  # id of the last row when a next page exists
    limit: int


def _bad(message: str) -> CinderError:
    return CinderError(400, message)


def _sort_value(backup: Backup, key: str) -> Any:
    if key in ("container_format", "disk_format"):
        return ""  # attributes of images, not of backups: every backup sorts equal, then by id
    if key == "name":
        return backup.name or ""
    return getattr(backup, key)


def list_backups(project: Project, params: Mapping[str, str]) -> Page:
    """One page of the project's backups (`/backups` and `/backups/detail` share it)."""
    sort_key = params.get("sort_key") or "created_at"
    if sort_key not in SORT_KEYS:
        raise _bad(f"Invalid sort key: {sort_key}")
    descending = sort_dir_param(params, "desc", _bad)
    limit = int_param(params, "limit", None, _bad)
    offset = int_param(params, "offset", 0, _bad) or 0
    rows = [
        b
        for b in project.backups.values()
        if all(params.get(f) in (None, "") or getattr(b, f) == params[f] for f in FILTERS)
    ]
    rows.sort(key=lambda b: (_sort_value(b, sort_key), b.id), reverse=descending)
    marker = params.get("marker")
    if marker:
        ids = [b.id for b in rows]
        if marker not in ids:
            # The reference (§2.5/§2.6) says nothing about an unknown marker: Cinder's behaviour, its
            # MarkerNotFound turned into 400 badRequest "Marker <id> could not be found.". This is also what
            # a lister sees when the backup its marker names was deleted (or left the filter) in between.
            raise _bad(f"Marker {marker} could not be found.")
        rows = rows[ids.index(marker) + 1 :]
    rows = rows[offset:]
    size = MAX_PAGE if limit is None else min(limit, MAX_PAGE)
    page = rows[:size]
    more = len(rows) > size and bool(page)
    return Page(page, page[-1].id if more else None, size)


def get_backup(project: Project, backup_id: str) -> Backup:
    backup = project.backups.get(backup_id)
    if backup is None:
        raise CinderError(404, f"Backup {backup_id} could not be found.")
    return backup
