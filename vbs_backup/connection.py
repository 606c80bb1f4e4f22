"""A cloud client built from `Settings` (environment / .env), with one clear error when credentials or
the project id are missing."""

from __future__ import annotations

from .cloud import CloudClient, Endpoints
from .cloud.ratelimit import RequestBudget
from .redaction import install, register_secret
from .settings import ConfigError, Settings


def connect(settings: Settings, *, shared_budget: RequestBudget | None = None) -> CloudClient:
    """A client for `settings`. `shared_budget`: the account's request budget shared with other processes
    (`cloud.ratelimit.RequestBudget`; a Prefect run passes `vbs_backup.tasks.budget.AccountBudget`), taken
    once per request on top of the client's own rate limit (`max_requests_per_second`)."""
    settings.credentials_mode()  # ConfigError naming the missing variables, never their values
    if not settings.project_id:
        raise ConfigError("VBS_BACKUP_PROJECT_ID is not set (the 32-hex id of the project to back up)")
    # Whatever logs what from here on, these values come out as ***.
    install()
    for secret in (settings.sk, settings.password):
        if secret is not None:
            register_secret(secret.get_secret_value())
    endpoints = Endpoints.for_cloud(
        str(settings.cloud),
        settings.region,
        override=settings.endpoint,
        iam=settings.iam_endpoint,
        ecs=settings.ecs_endpoint,
        evs=settings.evs_endpoint,
        vbs=settings.vbs_endpoint,
    )
    return CloudClient.connect(
        cloud=str(settings.cloud),
        region=settings.region,
        project_id=settings.project_id,
        ak=settings.ak,
        sk=settings.sk.get_secret_value() if settings.sk else None,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        domain=settings.domain,
        endpoints=endpoints,
        timeout=settings.request_timeout,
        max_requests_per_second=settings.max_requests_per_second,
        shared_budget=shared_budget,
    )
