"""Wire models of IAM password authentication (`POST /v3/auth/tokens`, reference §5b).

Owned here: the request body (the password is a `SecretStr`: it never shows in a repr or a dump that is
not the wire body) and `Token` (its value, from the `X-Subject-Token` header, is a `SecretStr` too).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, SecretStr, model_validator

from .common import OptionalUtcDateTime, UtcDateTime, WireModel

__all__ = ["CatalogEndpoint", "CatalogEntry", "CreateTokenRequest", "NamedRef", "Token", "TokenProject"]


class CreateTokenRequest(WireModel):
    """A project-scoped password token request; the project by id or by name (exactly one)."""

    user_name: str
    password: SecretStr
    domain_name: str
    project_id: str | None = None
    project_name: str | None = None

    @model_validator(mode="after")
    def _one_project(self) -> Self:
        if (self.project_id is None) == (self.project_name is None):
            raise ValueError("give exactly one of project_id or project_name (VBS needs a project token)")
        return self

    def to_body(self) -> dict[str, Any]:
        project = {"id": self.project_id} if self.project_id else {"name": self.project_name}
        return {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.user_name,
                            "password": self.password.get_secret_value(),
                            "domain": {"name": self.domain_name},
                        }
                    },
                },
                "scope": {"project": project},
            }
        }


class NamedRef(WireModel):
    id: str | None = None
    name: str | None = None


class TokenProject(WireModel):
    id: str
    name: str | None = None
    domain: NamedRef | None = None


class CatalogEndpoint(WireModel):
    url: str
    interface: str | None = None  # public / internal / admin
    region: str | None = None
    region_id: str | None = None
    id: str | None = None


class CatalogEntry(WireModel):
    type: str  # OTC's catalog type for VBS is "vbsv2"
    name: str | None = None
    id: str | None = None
    endpoints: list[CatalogEndpoint] = []


class Token(WireModel):
    """A token: `value` is the `X-Subject-Token` header, the rest is the body's `token` object."""

    value: SecretStr
    expires_at: UtcDateTime
    issued_at: OptionalUtcDateTime = None
    methods: list[str] = []
    user: NamedRef | None = None
    project: TokenProject | None = None
    roles: list[NamedRef] = []
    catalog: list[CatalogEntry] = Field(default_factory=list)

    def endpoint(
        self, service_type: str, *, interface: str = "public", region: str | None = None
    ) -> str | None:
        """The catalog URL of `service_type` (e.g. "vbsv2", "volumev2", "compute"), or None."""
        for entry in self.catalog:
            if entry.type != service_type:
                continue
            for ep in entry.endpoints:
                if ep.interface in (interface, None) and (
                    region is None or region in (ep.region, ep.region_id)
                ):
                    return ep.url
        return None
