"""Tags of backup policies: add, remove, list, batch, project-wide aggregation, query by tag (§3.10-§3.15).

Choices (unconfirmed in the reference):
* Adding an existing key overwrites its value (upsert, as CTS calls it "adding or modifying").
* A missing key on remove answers `AutoBackup.0216` with 404.
* Batch `delete` removes a key when no value is given or the given value matches; a different value or an
  absent key leaves things as they are, without error (the TF provider deletes all old tags, then creates).
  Batch `create`/`update` are atomic: the whole request is validated before any tag changes.
* Query by tag: an empty `values` list matches any value of the key (TMS convention); `matches` on
  `resource_name` is a case-insensitive substring match; results in creation order.
"""

from __future__ import annotations

from typing import Any

from ..errors import CloudApiError, vbs
from ..state import Policy, Project
from .common import MAX_POLICY_TAGS, has_forbidden_tag_chars, is_word, valid_policy_tag
from .policies import bad_param, check_body, get_policy

_TAG_LISTS = ("tags", "tags_any", "not_tags", "not_tags_any")


def _invalid(message: str) -> CloudApiError:
    return vbs("AutoBackup.0214", message)


def add_policy_tag(project: Project, policy_id: str, payload: Any) -> None:
    body = check_body(payload)
    policy = get_policy(project, policy_id)
    tag = body.get("tag")
    key = tag.get("key") if isinstance(tag, dict) else None
    value = tag.get("value", "") if isinstance(tag, dict) else None
    if not valid_policy_tag(key, value):
        raise _invalid(f"invalid tag {tag!r}")
    key, value = str(key), str(value)
    if key not in policy.tags and len(policy.tags) >= MAX_POLICY_TAGS:
        raise vbs("AutoBackup.0215", "a policy has at most 10 tags")
    policy.tags[key] = value


def delete_policy_tag(project: Project, policy_id: str, key: str) -> None:
    policy = get_policy(project, policy_id)
    if key not in policy.tags:
        raise vbs("AutoBackup.0216", f"the tag {key} does not exist", 404)
    del policy.tags[key]


def list_policy_tags(project: Project, policy_id: str) -> dict[str, str]:
    return dict(get_policy(project, policy_id).tags)


def list_project_policy_tags(project: Project) -> dict[str, list[str]]:
    """Every key used on a policy of the project with its distinct values, in first-seen order."""
    out: dict[str, list[str]] = {}
    for policy in project.policies.values():
        for key, value in policy.tags.items():
            values = out.setdefault(key, [])
            if value not in values:
                values.append(value)
    return out


def batch_policy_tags(project: Project, policy_id: str, payload: Any) -> None:
    body = check_body(payload)
    policy = get_policy(project, policy_id)
    action = body.get("action")
    if action not in ("create", "update", "delete"):
        raise vbs("AutoBackup.0222", f"unsupported action {action!r}")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, dict) for t in tags):
        raise _invalid("tags must be a list of objects")
    if action == "delete":
        for tag in tags:
            key, value = tag.get("key"), tag.get("value")
            if not isinstance(key, str) or not 1 <= len(key) <= 127 or has_forbidden_tag_chars(key):
                raise _invalid(f"invalid tag key {key!r}")
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise _invalid(f"invalid tag value {value!r}")
        for tag in tags:
            key, value = tag["key"], tag.get("value")
            if key in policy.tags and (value is None or policy.tags[key] == value):
                del policy.tags[key]
        return
    new: dict[str, str] = {}
    for tag in tags:
        key, value = tag.get("key"), tag.get("value")
        if not isinstance(key, str) or not 1 <= len(key) <= 36 or has_forbidden_tag_chars(key) or key in new:
            raise _invalid(f"invalid tag key {key!r}")
        if not isinstance(value, str) or len(value) > 43 or (value and not is_word(value)):
            raise _invalid(f"invalid tag value {value!r}")
        new[key] = value
    if len({**policy.tags, **new}) > MAX_POLICY_TAGS:
        raise vbs("AutoBackup.0215", "a policy has at most 10 tags")
    policy.tags.update(new)


# --------------------------------------------------------------------------------------------------------
# POST /v2/{pid}/backuppolicy/resource_instances/action


def _tag_filter(body: dict[str, Any], name: str) -> list[tuple[str, list[str]]] | None:
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 10 or (name == "tags_any" and not raw):
        raise _invalid(f"{name} must be a list of at most 10 entries")
    out: list[tuple[str, list[str]]] = []
    for entry in raw:
        key = entry.get("key") if isinstance(entry, dict) else None
        values = entry.get("values", []) if isinstance(entry, dict) else None
        if not isinstance(key, str) or not key or any(k == key for k, _ in out):
            raise _invalid(f"invalid or repeated key in {name}: {entry!r}")
        if (
            not isinstance(values, list)
            or not all(isinstance(v, str) for v in values)
            or len(set(values)) > 10
        ):
            raise _invalid(f"invalid values in {name}: {entry!r}")
        out.append((key, values))
    return out


def _string_number(body: dict[str, Any], name: str, default: int, low: int, high: int | None) -> int:
    """`limit`/`offset` are JSON *strings* here (§3.15)."""
    raw = body.get(name)
    if raw is None:
        return default
    if (
        not isinstance(raw, str)
        or not raw.isdigit()
        or int(raw) < low
        or (high is not None and int(raw) > high)
    ):
        raise bad_param(
            f"{name} must be a string holding an integer from {low}" + (f" to {high}" if high else "")
        )
    return int(raw)


def _has(policy: Policy, key: str, values: list[str]) -> bool:
    return key in policy.tags and (not values or policy.tags[key] in values)


def query_policies_by_tags(project: Project, payload: Any) -> tuple[int, list[Policy] | None]:
    """(total_count, page) for `filter`; (total_count, None) for `count`."""
    body = check_body(payload)
    action = body.get("action")
    if action not in ("filter", "count"):
        raise vbs("AutoBackup.0222", f"unsupported action {action!r}")
    tags, tags_any, not_tags, not_tags_any = (_tag_filter(body, n) for n in _TAG_LISTS)
    matches = body.get("matches")
    name_part = ""
    if matches is not None:
        if not isinstance(matches, list):
            raise _invalid("matches must be a list")
        for match in matches:
            if (
                not isinstance(match, dict)
                or match.get("key") != "resource_name"
                or not isinstance(match.get("value"), str)
            ):
                raise _invalid(f"invalid match {match!r}: only resource_name is supported")
            name_part = match["value"].lower()
    limit = _string_number(body, "limit", 1000, 1, 1000) if action == "filter" else 1000
    offset = _string_number(body, "offset", 0, 0, None) if action == "filter" else 0
    found = []
    for policy in project.policies.values():
        if tags and not all(_has(policy, k, v) for k, v in tags):
            continue
        if tags_any and not any(_has(policy, k, v) for k, v in tags_any):
            continue
        if not_tags and all(_has(policy, k, v) for k, v in not_tags):
            continue
        if not_tags_any and any(_has(policy, k, v) for k, v in not_tags_any):
            continue
        if name_part and name_part not in policy.name.lower():
            continue
        found.append(policy)
    if action == "count":
        return len(found), None
    return len(found), found[offset : offset + limit]
