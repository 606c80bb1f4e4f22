"""Async httpx client for the VBS, EVS, ECS and IAM APIs of Huawei Cloud, Flexible Engine and OTC.

    async with CloudClient.connect(cloud="otc", region="eu-de", project_id=pid, ak=ak, sk=sk) as cloud:
        job_id = await cloud.vbs.create_backup(...)

Layers: `session.CloudSession` is the one request path (auth, retries, rate limit, logs, errors);
`auth`, `signing`, `retry`, `ratelimit`, `endpoints`, `errors` are its parts; the facades `IamApi`,
`EcsApi`, `EvsApi`, `VbsApi` (one module per service: `from vbs_backup.cloud.vbs import VbsApi`) turn API
operations into session calls. They are not imported here: `CloudClient` loads each on first use, so that
importing the client does not load every response model.

Importing this package installs `vbs_backup.redaction`: from then on no log record of the process (ours,
httpx's, httpcore's at DEBUG, Prefect's) carries a token header, a signature or a registered secret.
"""

from __future__ import annotations

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
    "Endpoints",
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
    "raise_from_response",
]
