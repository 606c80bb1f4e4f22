"""Async httpx client for the VBS, EVS, ECS and IAM APIs of Huawei Cloud, Flexible Engine and OTC.

    async with CloudClient.connect(cloud="otc", region="eu-de", project_id=pid, ak=ak, sk=sk) as cloud:
        job_id = await cloud.vbs.create_backup(...)

Layers: `session.CloudSession` is the one request path (auth, retries, rate limit, logs, errors);
`auth`, `signing`, `retry`, `ratelimit`, `endpoints`, `errors` are its parts; the facades `IamApi`,
`EcsApi`, `EvsApi`, `VbsApi` (one module per service) turn API operations into session calls. The facades
are loaded on first access so that this package imports even where they are absent.

Importing this package installs `vbs_backup.redaction`: from then on no log record of the process (ours,
httpx's, httpcore's at DEBUG, Prefect's) carries a token header, a signature or a registered secret.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..redaction import install as _install_redaction
from .auth import AkSkAuth, TokenAuth
from .client import CloudClient
from .endpoints import CloudName, Endpoints, Service
from .errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    CloudError,
    ConfigurationError,
    ConflictError,
    InvalidResponseError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    ThrottledError,
    TransportError,
    raise_from_response,
)
from .ratelimit import RateLimiter
from .retry import RetryPolicy
from .session import CloudSession

# Here, the one place every user of the client goes through (flows, tasks, plain scripts, the CLI).
_install_redaction()

_FACADES = {"IamApi": ".iam", "EcsApi": ".ecs", "EvsApi": ".evs", "VbsApi": ".vbs"}

__all__ = [
    "AkSkAuth",
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "CloudClient",
    "CloudError",
    "CloudName",
    "CloudSession",
    "ConfigurationError",
    "ConflictError",
    "EcsApi",
    "Endpoints",
    "EvsApi",
    "IamApi",
    "InvalidResponseError",
    "JobFailedError",
    "JobTimeoutError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimiter",
    "RetryPolicy",
    "ServerError",
    "Service",
    "ThrottledError",
    "TokenAuth",
    "TransportError",
    "VbsApi",
    "raise_from_response",
]


def __getattr__(name: str) -> Any:
    # Lazy, not try/except: a real error inside a facade module surfaces instead of being swallowed.
    if name in _FACADES:
        return getattr(importlib.import_module(_FACADES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
