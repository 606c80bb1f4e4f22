"""The one request path of the client: every call to IAM, ECS, EVS and VBS goes through `CloudSession`.

INTERFACE STUB written by the lead; the client-core engineer implements the bodies and may add private
helpers, but keeps these public names and signatures (the facades in vbs.py/ecs.py/evs.py/iam.py call them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from enum import StrEnum
from typing import Any

import httpx


class Service(StrEnum):
    IAM = "iam"
    ECS = "ecs"
    EVS = "evs"
    VBS = "vbs"


class CloudSession:
    """Policy (endpoints, auth, retries, timeouts, logging) over one `httpx.AsyncClient`.

    `project_id` is the project every project-scoped path uses. `transport` is the test seam
    (`httpx.ASGITransport(app)`); by default a real socket is used.
    """

    project_id: str

    async def request(
        self,
        service: Service,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        operation: str | None = None,
    ) -> httpx.Response:
        """Send one API call to `service`'s base URL + `path` (a path that starts with `/`, e.g.
        `/v2/{project_id}/cloudbackups` already formatted). Returns the response when its status is in
        `ok`, else raises the matching `CloudError` subclass (see errors.py). `idempotent` defaults to
        True for GET/HEAD/PUT/DELETE/OPTIONS and False for POST; only idempotent calls are retried after
        a transport error or a 5xx; 429 (throttled before the operation ran) is retried for every method.
        `operation` names the API operation for logs (e.g. "vbs.create_backup")."""
        raise NotImplementedError

    async def json(
        self,
        service: Service,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        operation: str | None = None,
    ) -> Any:
        """`request(...)` then the decoded JSON body (None for an empty body)."""
        raise NotImplementedError

    def paginate(
        self,
        service: Service,
        path: str,
        *,
        items_key: str,
        links_key: str | None = None,
        params: Mapping[str, Any] | None = None,
        page_size: int | None = None,
        style: str = "marker",
        operation: str | None = None,
    ) -> AsyncIterator[Any]:
        """Yield every item of a listed collection (raw dicts) across pages.

        style="marker": send `limit`=page_size and `marker`=id of the last item; stop when a page is shorter
        than the limit or the response has no `links_key` next link. style="offset": `limit`/`offset`.
        When the body carries a next link under `links_key` (`[{"href": ..., "rel": "next"}]`), its `marker`
        query value is used (the URL itself is not trusted: the documented example lacks the /v2 segment).
        """
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> CloudSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
