"""Applying a `PolicyPlan`: one API call per change, in the plan's order (deletions, disassociations,
creations, modifications, enable/disable, tags, associations), so a disk moving between two policies of the
file is never in two at once.

Tags: several new keys go in one batch `create`, changed values in one batch `update` (the documented
upsert), several removals in one batch `delete`; a single new key uses `add_policy_tag` and a single removal
`delete_policy_tag` (§3.10-§3.14). Partial association answers are failures of the change (§3.5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..cloud import CloudClient
from ..cloud.errors import CloudError
from ..cloud.models.common import Tag
from ..cloud.models.policies import CreatePolicyRequest, UpdatePolicyRequest
from ..cloud.models.tags import TagAction
from .cloud import Inventory
from .diff import Change, ChangeKind, PolicyPlan
from .model import PolicyFileError


@dataclass
class ApplyResult:
    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)
    skipped: list[tuple[Change, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


async def apply_plan(
    client: CloudClient,
    plan: PolicyPlan,
    inventory: Inventory,
    *,
    report: Callable[[Change, str | None], None] | None = None,
) -> ApplyResult:
    """Carry out the plan's changes in order; a refused change is reported and the others go on (a policy
    that could not be created skips its own later changes). Refuses to start when the plan has errors."""
    if plan.errors:
        raise PolicyFileError("(plan)", plan.errors)
    result = ApplyResult()
    ids = dict(plan.policy_ids)
    for change in plan.changes:
        policy_id = ids.get(change.policy)
        if policy_id is None and change.kind is not ChangeKind.create:
            reason = "skipped: the policy could not be created"
            result.skipped.append((change, reason))
            if report:
                report(change, reason)
            continue
        try:
            failure = await _apply_one(client, plan, change, ids, inventory)
        except CloudError as exc:
            failure = str(exc)
        if failure:
            result.failed.append((change, failure))
        else:
            result.done.append(change)
        if report:
            report(change, failure)
    return result


async def _apply_one(
    client: CloudClient, plan: PolicyPlan, change: Change, ids: dict[str, str], inventory: Inventory
) -> str | None:
    vbs = client.vbs
    spec = plan.specs.get(change.policy)
    policy_id = ids.get(change.policy, "")
    kind = change.kind
    if kind is ChangeKind.delete:
        await vbs.delete_policy(policy_id)
    elif kind is ChangeKind.create:
        assert spec is not None
        create = CreatePolicyRequest(
            backup_policy_name=spec.name,
            scheduled_policy=spec.scheduled_policy(with_status=True),
            tags=[Tag(key=k, value=v) for k, v in sorted(spec.tags.items())] or None,
            time_zone=spec.time_zone,
        )
        ids[spec.name] = await vbs.create_policy(create)
    elif kind is ChangeKind.modify:
        assert spec is not None
        # the time zone only when it changes (its support in Paris is unconfirmed, §3.1); no zone = UTC
        zone = (spec.time_zone or "UTC+00:00") if "time_zone" in change.fields else None
        update = UpdatePolicyRequest(
            scheduled_policy=spec.scheduled_policy(with_status=False), time_zone=zone
        )
        await vbs.update_policy(policy_id, update)
    elif kind is ChangeKind.enable:
        await vbs.enable_policy(policy_id)
    elif kind is ChangeKind.disable:
        await vbs.disable_policy(policy_id)
    elif kind is ChangeKind.tag_add and len(change.tags) == 1:
        await vbs.add_policy_tag(policy_id, *change.tags[0])
    elif kind in (ChangeKind.tag_add, ChangeKind.tag_update):
        action = TagAction.CREATE if kind is ChangeKind.tag_add else TagAction.UPDATE
        await vbs.batch_policy_tags(policy_id, action, dict(change.tags))
    elif kind is ChangeKind.tag_delete and len(change.tags) == 1:
        await vbs.delete_policy_tag(policy_id, change.tags[0][0])
    elif kind is ChangeKind.tag_delete:
        await vbs.batch_policy_tags(policy_id, TagAction.DELETE, {k: None for k, _ in change.tags})
    elif kind in (ChangeKind.associate, ChangeKind.disassociate):
        call = vbs.associate_resources if kind is ChangeKind.associate else vbs.disassociate_resources
        answer = await call(policy_id, list(change.volume_ids))
        if answer.fail_resources:
            return "; ".join(
                f"{inventory.label(r.resource_id)}: {r.code or 'failed'} {r.message or ''}".rstrip()
                for r in answer.fail_resources
            )
    return None
