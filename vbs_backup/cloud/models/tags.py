"""Wire models of backup-policy tags (reference §3.10-§3.15).

Owned here: the batch tag body, the query-by-tag body (whose `limit`/`offset` are JSON strings) and its
answer. Single tags are `common.Tag` / `common.TagValues`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from .common import StrInt, Tag, TagValues, WireModel, WireRequest

__all__ = [
    "BatchTag",
    "BatchTagsRequest",
    "TagAction",
    "TagMatch",
    "TagQuery",
    "TagQueryAction",
    "TagQueryResult",
    "TagResource",
]


class TagAction(StrEnum):
    CREATE = "create"  # create and update both upsert
    UPDATE = "update"
    DELETE = "delete"


class BatchTag(WireModel):
    key: str
    value: str | None = None  # mandatory for create/update, optional for delete


class BatchTagsRequest(WireRequest):
    """`POST /v2/{pid}/backuppolicy/{id}/tags/action` (§3.14)."""

    action: TagAction
    tags: list[BatchTag] = []

    @model_validator(mode="after")
    def _values_for_upserts(self) -> Self:
        if self.action != TagAction.DELETE:
            missing = [tag.key for tag in self.tags if tag.value is None]
            if missing:
                raise ValueError(f"tags {missing} need a value for action {self.action.value!r}")
        return self


class TagQueryAction(StrEnum):
    FILTER = "filter"
    COUNT = "count"


class TagMatch(WireModel):
    key: str = "resource_name"  # the only documented key; fuzzy match on the policy name
    value: str


class TagQuery(WireRequest):
    """`POST /v2/{pid}/backuppolicy/resource_instances/action` (§3.15). `limit` ("1"-"1000") and `offset`
    are ints here and JSON strings on the wire; both only apply to `filter`."""

    action: TagQueryAction = TagQueryAction.FILTER
    tags: list[TagValues] | None = None
    tags_any: list[TagValues] | None = None
    not_tags: list[TagValues] | None = None
    not_tags_any: list[TagValues] | None = None
    matches: list[TagMatch] | None = None
    limit: Annotated[StrInt | None, Field(ge=1, le=1000)] = None
    offset: Annotated[StrInt | None, Field(ge=0)] = None

    @model_validator(mode="after")
    def _paging_only_for_filter(self) -> Self:
        if self.action == TagQueryAction.COUNT and (self.limit is not None or self.offset is not None):
            raise ValueError("limit/offset only apply to action 'filter'")
        return self


class TagResource(WireModel):
    resource_id: str  # the policy id
    resource_name: str | None = None  # the policy name
    resource_detail: Any = None
    tags: list[Tag] = []


class TagQueryResult(WireModel):
    """`filter` -> resources + total_count; `count` -> total_count only (shape unconfirmed, TMS style)."""

    total_count: int = 0
    resources: list[TagResource] = []

    @property
    def policy_ids(self) -> list[str]:
        return [item.resource_id for item in self.resources]
