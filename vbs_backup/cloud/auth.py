"""Authentication plug-ins for httpx: AK/SK signing (`AkSkAuth`) and IAM tokens (`TokenAuth`).

Both are `httpx.Auth` objects, so they see each request once it is fully built (body included) and the
session's request code knows nothing about credentials. Neither ever puts a secret (SK, password, token)
in a log line, an exception or a repr.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from .errors import ConfigurationError, InvalidResponseError, raise_from_response
from .signing import sign_request

__all__ = ["AkSkAuth", "TokenAuth"]

log = logging.getLogger("vbs_backup.cloud")

Clock = Callable[[], datetime]
TOKEN_PATH = "/v3/auth/tokens"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _secret(value: str | SecretStr | None, what: str) -> SecretStr:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value:
        raise ConfigurationError(f"{what} is empty")
    return SecretStr(value)


def _masked(ak: str) -> str:
    # An AK identifies the key pair rather than proving anything, but there is no need to print it whole.
    return ak[:4] + "…" if len(ak) > 4 else "…"


class AkSkAuth(httpx.Auth):
    """Signs every request with SDK-HMAC-SHA256 (reference §5c) and adds `X-Project-Id` (§0.2)."""

    requires_request_body = True  # the payload hash is part of the signature

    def __init__(
        self,
        ak: str,
        sk: str | SecretStr,
        project_id: str | None = None,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        if not ak:
            raise ConfigurationError("AK is empty")
        self._ak = ak
        self._sk = _secret(sk, "SK")
        self.project_id = project_id
        self._clock = clock

    @property
    def ak(self) -> str:
        return self._ak

    def __repr__(self) -> str:
        return (
            f"AkSkAuth(ak={_masked(self._ak)!r}, sk=SecretStr('**********'), project_id={self.project_id!r})"
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.project_id and "X-Project-Id" not in request.headers:
            request.headers["X-Project-Id"] = self.project_id
        sign_request(request, self._ak, self._sk.get_secret_value(), self._clock())
        yield request


class TokenAuth(httpx.Auth):
    """A project-scoped IAM token (reference §5b) sent as `X-Auth-Token`.

    The token is fetched on first use through the same client (so the test transport serves it too),
    cached until `expires_at` minus `margin` seconds, and renewed once when a call answers 401 (the token
    may have been revoked: password change, user disabled), after which the call is sent once more.
    Requests to the token URL itself pass through untouched. One fetch at a time: concurrent callers wait
    for the fetch in progress and reuse its token.
    """

    requires_request_body = True  # a call may be re-sent after a renewal: its body must be replayable

    def __init__(
        self,
        *,
        iam_url: str,
        username: str,
        password: str | SecretStr,
        domain: str,
        project_id: str,
        margin: float = 300.0,
        clock: Clock = _utcnow,
    ) -> None:
        missing = [
            n for n, v in (("username", username), ("domain", domain), ("project_id", project_id)) if not v
        ]
        if missing:
            raise ConfigurationError(f"token auth needs {', '.join(missing)}")
        self.iam_url = iam_url.rstrip("/")
        self.username = username
        self.domain = domain
        self.project_id = project_id
        self.margin = timedelta(seconds=margin)
        self._password = _secret(password, "password")
        self._clock = clock
        self._token: SecretStr | None = None
        self._renew_at: datetime | None = None
        self.expires_at: datetime | None = None
        self.fetches = 0  # how many tokens were obtained (tests and benchmarks read it)
        self._alock: asyncio.Lock | None = None
        self._tlock = threading.Lock()

    def __repr__(self) -> str:
        state = "cached" if self._token else "none"
        return (
            f"TokenAuth(iam_url={self.iam_url!r}, username={self.username!r}, domain={self.domain!r}, "
            f"project_id={self.project_id!r}, password=SecretStr('**********'), token={state})"
        )

    # -- pieces shared by the sync and async flows ---------------------------------------------------------

    @staticmethod
    def is_token_request(request: httpx.Request) -> bool:
        return request.url.path.rstrip("/") == TOKEN_PATH

    def token_request(self) -> httpx.Request:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.username,
                            "password": self._password.get_secret_value(),
                            "domain": {"name": self.domain},
                        }
                    },
                },
                "scope": {"project": {"id": self.project_id}},
            }
        }
        # nocatalog: the catalog is large and we know our endpoints already
        return httpx.Request("POST", self.iam_url + TOKEN_PATH, params={"nocatalog": "true"}, json=body)

    def _fresh(self) -> str | None:
        if self._token is None or self._renew_at is None or self._clock() >= self._renew_at:
            return None
        return self._token.get_secret_value()

    def _accept(self, response: httpx.Response, started: float) -> str:
        """Store the token of a (read) token response, or raise the matching error."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        rid = response.headers.get("X-Request-Id", "-")
        log.info("iam.create_token POST %s %s %.0fms %s", TOKEN_PATH, response.status_code, elapsed_ms, rid)
        if response.status_code != 201:  # §5b: 201 Created
            raise_from_response(response, operation="iam.create_token")
        token = str(response.headers.get("X-Subject-Token") or "")
        if not token:
            raise InvalidResponseError("IAM answered 201 without an X-Subject-Token header")
        now = self._clock()
        expires_at = _expires_at(response)
        if expires_at is None:
            # 24 h is the documented lifetime; an unreadable expiry should not mean "fetch every time"
            expires_at = now + timedelta(hours=24)
        self.expires_at = expires_at
        # A skewed clock could put expires_at - margin in the past; renew on 401 rather than on every call.
        self._renew_at = max(expires_at - self.margin, now + timedelta(seconds=60))
        self._token = SecretStr(token)
        self.fetches += 1
        return token

    def _invalidate(self, used: str) -> bool:
        """Forget the token `used` when it is still the current one; False when another caller renewed it."""
        if self._token is not None and self._token.get_secret_value() == used:
            self._token = None
            return True
        return False

    # -- flows ---------------------------------------------------------------------------------------------

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.is_token_request(request):
            yield request
            return
        if self._alock is None:
            self._alock = asyncio.Lock()
        async with self._alock:
            token = self._fresh()
            if token is None:
                started = time.perf_counter()
                response = yield self.token_request()
                await response.aread()
                token = self._accept(response, started)
        request.headers["X-Auth-Token"] = token
        response = yield request
        if response.status_code != 401:
            return
        async with self._alock:
            if self._invalidate(token) or self._fresh() is None:
                started = time.perf_counter()
                renewal = yield self.token_request()
                await renewal.aread()
                token = self._accept(renewal, started)
            else:
                token = self._fresh() or token
        request.headers["X-Auth-Token"] = token
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.is_token_request(request):
            yield request
            return
        with self._tlock:
            token = self._fresh()
            if token is None:
                started = time.perf_counter()
                response = yield self.token_request()
                response.read()
                token = self._accept(response, started)
        request.headers["X-Auth-Token"] = token
        response = yield request
        if response.status_code != 401:
            return
        with self._tlock:
            if self._invalidate(token) or self._fresh() is None:
                started = time.perf_counter()
                renewal = yield self.token_request()
                renewal.read()
                token = self._accept(renewal, started)
            else:
                token = self._fresh() or token
        request.headers["X-Auth-Token"] = token
        yield request


def _expires_at(response: httpx.Response) -> datetime | None:
    try:
        body: Any = response.json()
        raw = body["token"]["expires_at"]
        when = datetime.fromisoformat(str(raw))
    except (ValueError, KeyError, TypeError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
