"""The IAM facade: `IamApi.create_token`, password authentication for a project-scoped token (§5b).

The token value arrives in the `X-Subject-Token` header, not in the body; it and the password are kept in
`SecretStr`s, so neither shows in a repr, a log line or an exception message.
"""

from __future__ import annotations

from pydantic import SecretStr

from .errors import InvalidResponseError
from .models import CreateTokenRequest, Token
from .models.common import decode
from .session import CloudSession, Service

__all__ = ["IamApi"]


class IamApi:
    """`IamApi(session)`: the IAM endpoint (`/v3/...`, no project id in the path)."""

    def __init__(self, session: CloudSession) -> None:
        self.session = session

    async def create_token(
        self,
        *,
        user_name: str,
        password: str | SecretStr,
        domain_name: str,
        project_id: str | None = None,
        project_name: str | None = None,
        nocatalog: bool = False,
    ) -> Token:
        """A token scoped to one project (by id or by name); 201 + `X-Subject-Token`. Lifetime 24 h."""
        request = CreateTokenRequest(
            user_name=user_name,
            password=password if isinstance(password, SecretStr) else SecretStr(password),
            domain_name=domain_name,
            project_id=project_id,
            project_name=project_name,
        )
        response = await self.session.request(
            Service.IAM,
            "POST",
            "/v3/auth/tokens",
            params={"nocatalog": "true"} if nocatalog else None,
            json=request.to_body(),
            ok=(201,),
            operation="iam.create_token",
        )
        value = response.headers.get("X-Subject-Token")
        if not value:
            raise InvalidResponseError("iam.create_token: the answer has no X-Subject-Token header")
        try:
            body = response.json()
        except ValueError as exc:
            raise InvalidResponseError("iam.create_token: the answer body is not JSON") from exc
        token_body = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token_body, dict):
            raise InvalidResponseError("iam.create_token: the answer body has no 'token' object")
        # Decode with a placeholder so that a shape error can never carry the token in its details.
        token = decode(Token, {**token_body, "value": "-"}, operation="iam.create_token")
        return token.model_copy(update={"value": SecretStr(value)})
