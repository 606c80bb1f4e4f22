"""`CloudClient`: one session plus the four service facades (`iam`, `ecs`, `evs`, `vbs`).

`CloudClient.connect(...)` turns settings-like arguments into endpoints, an auth plug-in, a retry policy
and a rate limiter, and checks them before any request is sent. The facades are imported on first use, so
this module does not depend on them being importable (they live in iam.py/ecs.py/evs.py/vbs.py).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from .auth import AkSkAuth, TokenAuth
from .endpoints import CloudName, Endpoints
from .errors import ConfigurationError
from .ratelimit import RateLimiter, RequestBudget
from .retry import RetryPolicy
from .session import CloudSession

if TYPE_CHECKING:  # pragma: no cover
    from .ecs import EcsApi
    from .evs import EvsApi
    from .iam import IamApi
    from .vbs import VbsApi

__all__ = ["CloudClient"]


def _given(value: str | SecretStr | None) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return bool(value and value.strip())


class CloudClient:
    """The cloud API for one project: `client.vbs.create_backup(...)`, `client.ecs.get_server(...)`.

    Use as an async context manager, or call `close()` when done.
    """

    def __init__(self, session: CloudSession) -> None:
        self.session = session

    def __repr__(self) -> str:
        return f"CloudClient({self.session!r})"

    @cached_property
    def iam(self) -> IamApi:
        from .iam import IamApi

        return IamApi(self.session)

    @cached_property
    def ecs(self) -> EcsApi:
        from .ecs import EcsApi

        return EcsApi(self.session)

    @cached_property
    def evs(self) -> EvsApi:
        from .evs import EvsApi

        return EvsApi(self.session)

    @cached_property
    def vbs(self) -> VbsApi:
        from .vbs import VbsApi

        return VbsApi(self.session)

    @property
    def project_id(self) -> str:
        return self.session.project_id

    @property
    def endpoints(self) -> Endpoints:
        return self.session.endpoints

    @classmethod
    def connect(
        cls,
        *,
        cloud: CloudName | str = "huaweicloud",
        region: str,
        project_id: str,
        ak: str | None = None,
        sk: str | SecretStr | None = None,
        username: str | None = None,
        password: str | SecretStr | None = None,
        domain: str | None = None,
        endpoint: str | None = None,
        endpoints: Endpoints | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | httpx.Timeout = 30,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        max_requests_per_second: float | None = None,
        shared_budget: RequestBudget | None = None,
    ) -> CloudClient:
        """Build a client without sending anything.

        Credentials: AK/SK when `ak` and `sk` are given (they win when both sets are complete), else an
        IAM token for `username`/`password`/`domain`; anything else is a ConfigurationError naming what is
        missing. `endpoint` is one URL for every service (the emulator); `endpoints` replaces the computed
        ones entirely. `timeout` bounds each phase of a request (connect, each read/write) and `deadline`
        each attempt as a whole (default: twice the timeout; a server that drips its answer cannot hold
        a call). `max_requests_per_second` (None = unlimited) bounds our own request rate; the limiter
        lowers it when the gateway answers 429 and climbs back towards it (ratelimit.py), and
        `client.session.rate_report()` says what rate was achieved. `shared_budget` is the account's
        request budget shared with other processes (ratelimit.py's `RequestBudget`), taken once per
        attempt on top of our own limit.
        """
        if endpoints is None:
            endpoints = Endpoints.for_cloud(cloud, region, override=endpoint)
        if _given(ak) and _given(sk):
            auth: httpx.Auth = AkSkAuth(str(ak).strip(), sk, project_id)  # type: ignore[arg-type]
        elif _given(username) and _given(password) and _given(domain):
            auth = TokenAuth(
                iam_url=endpoints.iam,
                username=str(username),
                password=password,  # type: ignore[arg-type]
                domain=str(domain),
                project_id=project_id,
            )
        else:
            missing_aksk = [n for n, v in (("ak", ak), ("sk", sk)) if not _given(v)]
            missing_token = [
                n
                for n, v in (("username", username), ("password", password), ("domain", domain))
                if not _given(v)
            ]
            raise ConfigurationError(
                f"no complete credentials: give ak and sk (missing: {', '.join(missing_aksk)}), "
                f"or username, password and domain (missing: {', '.join(missing_token)})"
            )
        limiter = None
        if max_requests_per_second is not None:
            # Half the rate as burst: after a stall our requests leave spread out instead of in a clump
            # that the gateway's own bucket (typically burst = rate) answers with 429s. The configured rate
            # is a ceiling: the limiter adapts to the gateway's 429s (AIMD, defaults in ratelimit.py).
            limiter = RateLimiter(max_requests_per_second, burst=max(1, int(max_requests_per_second / 2)))
        session = CloudSession(
            endpoints=endpoints,
            project_id=project_id,
            auth=auth,
            retry=retry,
            timeout=timeout,
            deadline=deadline,
            rate_limiter=limiter,
            transport=transport,
            shared_budget=shared_budget,
        )
        return cls(session)

    async def close(self) -> None:
        await self.session.aclose()

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
