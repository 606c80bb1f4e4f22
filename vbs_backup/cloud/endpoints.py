"""Where each service lives: base URLs (scheme + host[:port], no path) for IAM, ECS, EVS and VBS.

Host patterns are those of reference §5d: `{service}.{region}.{domain}` with the cloud's domain. Every
path the client sends already carries its version (`/v2/{pid}/...`, `/v1/{pid}/jobs/...`, `/v3/auth/...`),
so a base URL is only scheme and host. `override` points every service at one URL (the emulator); a
per-service URL wins over it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = ["CloudName", "Endpoints", "Service"]


class Service(StrEnum):
    IAM = "iam"
    ECS = "ecs"
    EVS = "evs"
    VBS = "vbs"


class CloudName(StrEnum):
    """Clouds that run the VBS API (the settings' `cloud` field takes one)."""

    huaweicloud = "huaweicloud"
    flexibleengine = "flexibleengine"
    otc = "otc"


# §5d. Huawei also serves a global `iam.myhuaweicloud.com`; the regional IAM host is used because it is
# documented for every cloud and keeps all traffic in one region.
_DOMAINS = {
    CloudName.huaweicloud: "myhuaweicloud.com",
    CloudName.flexibleengine: "prod-cloud-ocb.orange-business.com",
    CloudName.otc: "otc.t-systems.com",
}

_REGION = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _check_base_url(url: str, what: str) -> str:
    """`url` without a trailing slash, or a ConfigurationError saying what is wrong with it."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{what} endpoint is empty")
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigurationError(f"{what} endpoint is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(f"{what} endpoint must start with http:// or https://")
    if not parts.hostname:
        raise ConfigurationError(f"{what} endpoint has no host name")
    if "@" in parts.netloc:
        # never echo it: user info in a URL is usually a password
        raise ConfigurationError(f"{what} endpoint must not contain user info (user:password@)")
    if parts.path or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{what} endpoint must be scheme://host[:port] only, without a path "
            f"(the client adds /v1, /v2 and the project id itself): {url}"
        )
    return url


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the four services, e.g. `https://vbs.eu-de.otc.t-systems.com`."""

    iam: str
    ecs: str
    evs: str
    vbs: str

    def __post_init__(self) -> None:
        for service in Service:
            object.__setattr__(
                self, service.value, _check_base_url(getattr(self, service.value), service.value)
            )

    def url(self, service: Service | str) -> str:
        return str(getattr(self, Service(service).value))

    @classmethod
    def for_cloud(
        cls,
        cloud: CloudName | str,
        region: str,
        *,
        override: str | None = None,
        iam: str | None = None,
        ecs: str | None = None,
        evs: str | None = None,
        vbs: str | None = None,
    ) -> Endpoints:
        """The documented hosts of `cloud` in `region`, `override` for all of them, per-service URLs first."""
        try:
            cloud = CloudName(str(cloud).strip().lower())
        except ValueError:
            known = ", ".join(c.value for c in CloudName)
            raise ConfigurationError(f"unknown cloud {cloud!r}; expected one of {known}") from None
        given = {"iam": iam, "ecs": ecs, "evs": evs, "vbs": vbs}
        needs_region = override is None and not all(given.values())
        if needs_region and (not isinstance(region, str) or not _REGION.match(region)):
            raise ConfigurationError(
                f"region {region!r} must look like eu-west-0 (lowercase, digits, dashes)"
            )
        urls = {}
        for name, explicit in given.items():
            if explicit is not None:
                urls[name] = explicit
            elif override is not None:
                urls[name] = override
            else:
                urls[name] = f"https://{name}.{region}.{_DOMAINS[cloud]}"
        return cls(**urls)
