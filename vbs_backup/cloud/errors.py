"""Every error the cloud client raises, and the one place that turns an HTTP error response into one.

Our exception hierarchy (modelled on httpx's `_exceptions.py`):

* CloudError
  + TransportError - the request did not get a complete HTTP answer (connect failure, timeout, dropped
  |                  connection); wraps the httpx error (chained with `from`); `may_have_reached_server`
  |                  says whether the operation may have run anyway
  + ApiError - the cloud answered with an unexpected status; carries http_status, code, message,
  | |          request_id, method, url (query kept, secrets removed) and operation
  | + BadRequestError        400
  | + AuthenticationError    401
  | + PermissionDeniedError  403
  | + NotFoundError          404
  | + ConflictError          409
  | + ThrottledError         429 (`retry_after` seconds or None)
  | + ServerError            5xx
  + InvalidResponseError - a success status with a body we cannot read (not JSON, wrong shape)
  + JobFailedError - an asynchronous VBS job ended in FAIL (job_id, error_code, fail_reason)
  + JobTimeoutError - a job did not finish before its deadline
  + ConfigurationError - bad endpoints, credentials or ids, found before any request is sent

`raise_from_response` understands the four error body shapes of reference §5e (VBS cloud, Cinder fault,
API gateway, Keystone) and bodies that are not JSON at all. No exception text ever holds a secret: the
request headers and bodies are never read here, and the URL is passed through `safe_url`.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "CloudError",
    "ConfigurationError",
    "ConflictError",
    "InvalidResponseError",
    "JobFailedError",
    "JobTimeoutError",
    "NotFoundError",
    "PermissionDeniedError",
    "ServerError",
    "ThrottledError",
    "TransportError",
    "error_from_response",
    "parse_error_body",
    "parse_retry_after",
    "raise_from_response",
    "safe_url",
]


class CloudError(Exception):
    """Base of every error raised by `vbs_backup.cloud`."""


class ConfigurationError(CloudError):
    """Wrong or missing configuration (endpoints, credentials, project id), detected before any request."""


class InvalidResponseError(CloudError):
    """The cloud answered with a success status but a body we cannot use."""


class TransportError(CloudError):
    """No complete HTTP response arrived. `may_have_reached_server` is False only when the connection was
    never established (connect error / connect timeout / pool timeout): then the operation certainly did not
    run and can be re-sent whatever it is."""

    def __init__(
        self,
        message: str,
        *,
        may_have_reached_server: bool,
        method: str | None = None,
        url: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.may_have_reached_server = may_have_reached_server
        self.method = method
        self.url = url
        self.operation = operation

    @classmethod
    def from_httpx(
        cls, exc: httpx.TransportError, *, method: str, url: str | httpx.URL, operation: str | None
    ) -> TransportError:
        """Translate an httpx transport error; the caller chains it (`raise err from exc`)."""
        reached = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        shown = safe_url(url)
        detail = str(exc) or type(exc).__name__
        return cls(
            f"{_label(operation)} failed: {type(exc).__name__}: {detail} {method} {shown}",
            may_have_reached_server=reached,
            method=method,
            url=shown,
            operation=operation,
        )


class ApiError(CloudError):
    """The cloud answered with a status the operation does not expect."""

    def __init__(
        self,
        *,
        http_status: int,
        code: str | None,
        message: str,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.http_status = http_status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.method = method
        self.url = url
        self.operation = operation
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [f"{_label(self.operation)} failed: {self.http_status}"]
        if self.code:
            parts.append(self.code)
        if self.message:
            parts.append(self.message)
        if self.request_id:
            parts.append(f"(request {self.request_id})")
        if self.method and self.url:
            parts.append(f"{self.method} {self.url}")
        return " ".join(parts)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(http_status={self.http_status}, code={self.code!r}, message={self.message!r})"


class BadRequestError(ApiError):
    """400: the request was rejected by validation (VBS codes such as VolumeBackup.0012)."""


class AuthenticationError(ApiError):
    """401: missing, wrong or expired credentials (APIGW.0301, IAM.0062, ...)."""


class PermissionDeniedError(ApiError):
    """403: authenticated, but not allowed."""


class NotFoundError(ApiError):
    """404: unknown resource (itemNotFound, common.0011) or unknown path (APIGW.0101)."""


class ConflictError(ApiError):
    """409: the resource is busy or in the wrong state."""


class ThrottledError(ApiError):
    """429: the gateway refused the call before it ran (APIGW.0308). `retry_after` in seconds, or None."""

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)


class ServerError(ApiError):
    """5xx: the service failed; the operation may or may not have run."""


class JobFailedError(CloudError):
    """A VBS job ended with status FAIL."""

    def __init__(self, job_id: str, error_code: str | None, fail_reason: str | None) -> None:
        self.job_id = job_id
        self.error_code = error_code
        self.fail_reason = fail_reason
        super().__init__(f"job {job_id} failed: {error_code or 'no error code'} {fail_reason or ''}".rstrip())


class JobTimeoutError(CloudError):
    """A job was still running when its deadline passed (it may still finish in the cloud)."""

    def __init__(self, job_id: str, timeout: float, last_status: str | None = None) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.last_status = last_status
        status = f" (last status {last_status})" if last_status else ""
        super().__init__(f"job {job_id} did not finish within {timeout:g} s{status}")


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: ThrottledError,
}

# Query parameters whose values must never be shown (none of our APIs send them, but a URL may be
# handed to us by a caller); compared in lower case.
_SECRET_PARAMS = {"password", "token", "x-auth-token", "sk", "secret", "signature", "access_token"}
_MAX_TEXT = 300  # a proxy's HTML error page is not worth more than this in an exception message
# The gateway answers a wrong AK/SK signature with its whole canonical request (and sometimes the string
# it signed) in the message, for a client to diff with its own: no use to an operator, so it is cut off
# and replaced by what to check.
_SIGNATURE_DUMP = re.compile(
    r"[\s,;:]*\b(?:canonical_?request|string_?to_?sign)\b.*", re.IGNORECASE | re.DOTALL
)
SIGNATURE_HINT = "check the AK/SK pair and the machine's clock"


def safe_url(url: str | httpx.URL) -> str:
    """`url` without user info and with the values of secret-looking query parameters replaced by `***`."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (it is either a number of seconds or an HTTP date); None when absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


def _label(operation: str | None) -> str:
    """`vbs.create_backup` -> `VBS create_backup` (the service in capitals reads well in a message)."""
    if not operation:
        return "cloud request"
    service, _, name = operation.partition(".")
    return f"{service.upper()} {name}" if name else operation


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def parse_error_body(response: httpx.Response) -> tuple[str | None, str, str | None]:
    """(code, message, request_id) from any of the four error shapes of reference §5e, or from a non-JSON
    body. The request id comes from the body (gateway shape) or the `X-Request-Id` header."""
    header_rid = response.headers.get("X-Request-Id") or response.headers.get("X-Openstack-Request-Id")
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    code: str | None = None
    message: str | None = None
    rid: str | None = None
    if isinstance(body, dict):
        if "error_code" in body or "error_msg" in body:
            # API gateway: {"error_code": "APIGW.0308", "error_msg": "...", "request_id": "..."}
            code, message = _str_or_none(body.get("error_code")), _str_or_none(body.get("error_msg"))
            rid = _str_or_none(body.get("request_id"))
        elif isinstance(body.get("error"), dict):
            # VBS cloud {"error": {"code": "VolumeBackup.0012", "message"}} and Keystone
            # {"error": {"code": 401, "message", "title"}}: the same key, the code is a string or an int.
            err = body["error"]
            code, message = _str_or_none(err.get("code")), _str_or_none(err.get("message"))
            if message is None:
                message = _str_or_none(err.get("title"))
            rid = _str_or_none(err.get("request_id"))
        elif len(body) == 1 and isinstance(fault := next(iter(body.values())), dict):
            # Cinder fault: {"itemNotFound": {"code": 404, "message"}}. An integer code only repeats the
            # HTTP status, so the fault name is the more useful code; a string code (badRequest with
            # "XXXX") is kept.
            name = next(iter(body))
            raw_code = fault.get("code")
            code = raw_code if isinstance(raw_code, str) and raw_code and not raw_code.isdigit() else name
            message = _str_or_none(fault.get("message"))
        elif "code" in body or "message" in body:
            code, message = _str_or_none(body.get("code")), _str_or_none(body.get("message"))
    if message is None:
        text = response.text.strip() if response.content and not isinstance(body, dict | list) else ""
        message = " ".join(text.split())[:_MAX_TEXT] if text else response.reason_phrase
    return code, _without_signature_dump(message), rid or header_rid


def _without_signature_dump(message: str) -> str:
    """`verify aksk signature fail, canonicalRequest: GET|/v1/...` -> `verify aksk signature fail (check
    the AK/SK pair and the machine's clock)`."""
    trimmed = _SIGNATURE_DUMP.sub("", message)
    if trimmed == message:
        return message
    return f"{trimmed.strip() or 'signature mismatch'} ({SIGNATURE_HINT})"


def error_from_response(response: httpx.Response, *, operation: str | None) -> ApiError:
    """The `ApiError` subclass that matches `response` (which must have been read)."""
    code, message, request_id = parse_error_body(response)
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    method, url = None, None
    with contextlib.suppress(RuntimeError):  # a Response built without a request has neither
        method, url = response.request.method, safe_url(response.request.url)
    kwargs: dict[str, Any] = dict(
        http_status=status,
        code=code,
        message=message,
        request_id=request_id,
        method=method,
        url=url,
        operation=operation,
    )
    if cls is ThrottledError:
        return ThrottledError(retry_after=parse_retry_after(response.headers.get("Retry-After")), **kwargs)
    return cls(**kwargs)


def raise_from_response(response: httpx.Response, *, operation: str | None) -> NoReturn:
    """Raise the `ApiError` subclass matching `response` (status and body, reference §5e)."""
    raise error_from_response(response, operation=operation)
