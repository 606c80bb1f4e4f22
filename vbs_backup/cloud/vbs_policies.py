"""VBS backup policies and their tags (reference §3): one short async method per API operation.

Owned here: create_policy, list_policies, update_policy, delete_policy, associate_resources,
disassociate_resources, execute_policy, list_policy_tasks, add_policy_tag, delete_policy_tag,
list_project_policy_tags, list_policy_tags, batch_policy_tags, query_policies_by_tags, and the helpers
get_policy (§3.0 has no single GET), enable_policy/disable_policy (§3.8) and iter_policy_tasks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter

from .errors import NotFoundError
from .models import (
    AssociateRequest,
    AssociateResult,
    BatchTag,
    BatchTagsRequest,
    CreatePolicyRequest,
    DisassociateRequest,
    Policy,
    PolicyIdRef,
    PolicyResource,
    PolicyStatus,
    PolicyTask,
    PolicyTaskList,
    ResourceRef,
    ScheduledPolicy,
    Tag,
    TagAction,
    TagQuery,
    TagQueryResult,
    TagValues,
    UpdatePolicyRequest,
)
from .models.common import decode, path_segment, query_params, require_tag_key, require_uuid
from .session import Service
from .vbs_backups import VbsBase

__all__ = ["VbsPoliciesApi", "tag_key_segment"]

_POLICIES = TypeAdapter(list[Policy])
_TAGS = TypeAdapter(list[Tag])
_TAG_VALUES = TypeAdapter(list[TagValues])


def tag_key_segment(key: str) -> str:
    """A tag key as one path segment: percent-encoded, `/` included (`#` -> `%23`, §3.11); `.` and `..`
    are refused (ValueError), as no encoding keeps them from changing the path."""
    return path_segment("key", key)


class VbsPoliciesApi(VbsBase):
    def _policy(self, policy_id: str, path: str = "") -> str:
        return self._v2(f"/backuppolicy/{require_uuid('policy_id', policy_id)}{path}")

    # -- policies (§3.1-§3.4, §3.7) -----------------------------------------------------------------

    async def create_policy(self, request: CreatePolicyRequest) -> str:
        """Create a policy; returns its id."""
        body = await self._call("POST", self._v2("/backuppolicy"), "create_policy", json=request.to_body())
        return decode(PolicyIdRef, body, operation="vbs.create_policy").backup_policy_id

    async def list_policies(self) -> list[Policy]:
        body = await self._call("GET", self._v2("/backuppolicy"), "list_policies")
        return decode(_POLICIES, (body or {}).get("backup_policies", []), operation="vbs.list_policies")

    async def get_policy(self, policy_id: str) -> Policy:
        """One policy, from the list (there is no single GET, §3.0); `NotFoundError` when it is absent."""
        require_uuid("policy_id", policy_id)
        for policy in await self.list_policies():
            if policy.backup_policy_id == policy_id:
                return policy
        # The code the service uses for a missing policy, so callers handle both cases alike.
        raise NotFoundError(
            http_status=404,
            code="AutoBackup.0205",
            message=f"backup policy {policy_id} is not in the policy list",
            operation="vbs.get_policy",
        )

    async def update_policy(self, policy_id: str, request: UpdatePolicyRequest) -> str:
        """Partial update (the service merges, §3.3). When `scheduled_policy` is sent without a frequency,
        the policy's current `frequency`/`week_frequency` is added: OTC rejects schedule updates without
        one (§3.3 client rule), which costs one list call."""
        path = self._policy(policy_id)
        sp = request.scheduled_policy
        if sp is not None and not sp.has_frequency:
            current = (await self.get_policy(policy_id)).scheduled_policy
            if current.has_frequency:
                filled: dict[str, Any] = (
                    {"frequency": current.frequency}
                    if current.frequency is not None
                    else {"week_frequency": current.week_frequency}
                )
                request = request.model_copy(update={"scheduled_policy": sp.model_copy(update=filled)})
        body = await self._call("PUT", path, "update_policy", json=request.to_body())
        return decode(PolicyIdRef, body, operation="vbs.update_policy").backup_policy_id

    async def enable_policy(self, policy_id: str) -> str:
        """Switch scheduling ON (§3.8: an update of `scheduled_policy.status`)."""
        return await self._set_status(policy_id, PolicyStatus.ON)

    async def disable_policy(self, policy_id: str) -> str:
        """Switch scheduling OFF; existing backups are untouched."""
        return await self._set_status(policy_id, PolicyStatus.OFF)

    async def _set_status(self, policy_id: str, status: PolicyStatus) -> str:
        request = UpdatePolicyRequest(scheduled_policy=ScheduledPolicy(status=status))
        return await self.update_policy(policy_id, request)

    async def delete_policy(self, policy_id: str) -> None:
        """Delete a policy (204); the backups it made are kept."""
        await self._call("DELETE", self._policy(policy_id), "delete_policy", ok=(204,))

    async def execute_policy(self, policy_id: str) -> None:
        """Run the policy now: one task per associated disk (204, no body, §3.7)."""
        await self._call("POST", self._policy(policy_id, "/action"), "execute_policy", ok=(204,))

    # -- resources and tasks (§3.5, §3.6, §3.9) -----------------------------------------------------

    async def associate_resources(self, policy_id: str, volume_ids: Sequence[str]) -> AssociateResult:
        """Attach disks to a policy (a disk in another policy moves). Partial failure is a normal answer:
        check `fail_resources`."""
        request = AssociateRequest(
            backup_policy_id=require_uuid("policy_id", policy_id),
            resources=[PolicyResource(resource_id=v) for v in volume_ids],
        )
        path = self._v2("/backuppolicyresources")
        body = await self._call("POST", path, "associate_resources", json=request.to_body())
        return decode(AssociateResult, body, operation="vbs.associate_resources")

    async def disassociate_resources(self, policy_id: str, volume_ids: Sequence[str]) -> AssociateResult:
        """Detach disks from a policy; a disk not in it ends up in `fail_resources`."""
        request = DisassociateRequest(resources=[ResourceRef(resource_id=v) for v in volume_ids])
        path = self._v2(f"/backuppolicyresources/{require_uuid('policy_id', policy_id)}/deleted_resources")
        body = await self._call("POST", path, "disassociate_resources", json=request.to_body())
        return decode(AssociateResult, body, operation="vbs.disassociate_resources")

    async def list_policy_tasks(
        self,
        policy_id: str,
        *,
        status: str | None = None,
        job_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        marker: str | None = None,
        sort_key: str | None = None,
        sort_dir: str | None = None,
    ) -> PolicyTaskList:
        """One page of the policy's backup tasks (default page 20); `count` is the total."""
        params = query_params(
            status=status,
            job_id=job_id,
            limit=limit,
            offset=offset,
            marker=marker,
            sort_key=sort_key,
            sort_dir=sort_dir,
        )
        path = self._policy(policy_id, "/backuptasks")
        body = await self._call("GET", path, "list_policy_tasks", params=params)
        return decode(PolicyTaskList, body, operation="vbs.list_policy_tasks")

    async def iter_policy_tasks(
        self, policy_id: str, *, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[PolicyTask]:
        """Every task of the policy, across pages (`limit`/`offset` paging)."""
        items = self.session.paginate(
            Service.VBS,
            self._policy(policy_id, "/backuptasks"),
            items_key="tasks",
            params=query_params(status=status),
            page_size=page_size,
            style="offset",
            operation="vbs.list_policy_tasks",
        )
        async for item in items:
            yield decode(PolicyTask, item, operation="vbs.list_policy_tasks")

    # -- tags (§3.10-§3.15) -------------------------------------------------------------------------

    async def add_policy_tag(self, policy_id: str, key: str, value: str = "") -> None:
        """Add a tag (an existing key is overwritten, upsert unconfirmed)."""
        json = {"tag": Tag(key=require_tag_key(key), value=value).model_dump(mode="json")}
        await self._call("POST", self._policy(policy_id, "/tags"), "add_policy_tag", ok=(204,), json=json)

    async def delete_policy_tag(self, policy_id: str, key: str) -> None:
        """Remove a tag by key; the key is percent-encoded into the path (§3.11). A key outside the
        documented rule (§2.1/§3.14), or `.`/`..`, is a ValueError before anything is sent: no such tag
        can exist, and a dot segment would turn this into a request on the policy itself."""
        path = self._policy(policy_id, f"/tags/{tag_key_segment(require_tag_key(key))}")
        await self._call("DELETE", path, "delete_policy_tag", ok=(204,))

    async def list_project_policy_tags(self) -> list[TagValues]:
        """Every tag key used on any policy of the project, with its distinct values (§3.12)."""
        body = await self._call("GET", self._v2("/backuppolicy/tags"), "list_project_policy_tags")
        return decode(_TAG_VALUES, (body or {}).get("tags", []), operation="vbs.list_project_policy_tags")

    async def list_policy_tags(self, policy_id: str) -> list[Tag]:
        body = await self._call("GET", self._policy(policy_id, "/tags"), "list_policy_tags")
        return decode(_TAGS, (body or {}).get("tags", []), operation="vbs.list_policy_tags")

    async def batch_policy_tags(
        self,
        policy_id: str,
        action: TagAction | str,
        tags: Sequence[BatchTag | Tag] | Mapping[str, str | None],
    ) -> None:
        """Upsert (`create`/`update`) or remove (`delete`) several tags at once (§3.14)."""
        if isinstance(tags, Mapping):
            items = [BatchTag(key=k, value=v) for k, v in tags.items()]
        else:
            items = [BatchTag(key=t.key, value=t.value) for t in tags]
        request = BatchTagsRequest(action=TagAction(action), tags=items)
        path = self._policy(policy_id, "/tags/action")
        await self._call("POST", path, "batch_policy_tags", ok=(204,), json=request.to_body())

    async def query_policies_by_tags(self, query: TagQuery) -> TagQueryResult:
        """Policies by tag: `action="filter"` lists them, `"count"` only counts (§3.15)."""
        path = self._v2("/backuppolicy/resource_instances/action")
        # a read sent as POST: safe to retry, so the session may
        body = await self._call("POST", path, "query_policies_by_tags", json=query.to_body(), idempotent=True)
        return decode(TagQueryResult, body, operation="vbs.query_policies_by_tags")
