"""Who is calling: AK/SK request signatures ("SDK-HMAC-SHA256", reference §5c) and IAM tokens (§5b).

This is the emulator's own implementation of the signing algorithm, written from the reference and never
shared with the client (`vbs_backup.cloud`): the wire is the contract, so a bug in one side shows up as a
401 instead of hiding in shared code. The published test vector of §5c is its acceptance test.

The signature helpers are small pure functions (canonical URI, query, headers, request, string to sign,
signature) so each can be checked alone; `verify_aksk` and `verify_token` apply them to one request and
raise the gateway's 401 (`APIGW.0301`) with the documented messages. Nothing here logs, and no error
message contains an SK, a token or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from .errors import GatewayError
from .state import CloudState, Project, Token, User

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_PAYLOAD_HASH = hashlib.sha256(b"").hexdigest()
AUTH_FAILED = "APIGW.0301"  # 401 "Incorrect IAM authentication information: ..."
NOT_AUTHORIZED = "APIGW.0302"  # 403 "The IAM user is not authorized to access the API" (project mismatch)


# Signing algorithm -----------------------------------------------------------------------------------------


def encode(value: str) -> str:
    """RFC 3986 encoding: keep `A-Z a-z 0-9 - _ . ~`, percent-encode the rest with upper-case hex."""
    return quote(value, safe="~")


def canonical_uri(raw_path: str) -> str:
    """Each path segment decoded then re-encoded, always ending with `/` (added for signing only)."""
    uri = "/".join(encode(unquote(segment)) for segment in raw_path.split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(raw_query: str) -> str:
    """Parameters sorted by name then value, each `enc(name)=enc(value)`, joined by `&`.

    The raw query is split on `&` and `=` and each part is percent-decoded without turning `+` into a
    space: the Huawei signers send an RFC 3986 query (spaces as `%20`), so a literal `+` is a plus sign.
    """
    pairs: list[tuple[str, str]] = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((encode(unquote(name)), encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_headers(headers: Mapping[str, str], signed_headers: list[str]) -> str:
    """`name:trimmed value\\n` per signed header (lower-case names, sorted); a missing header is empty."""
    lowered = {name.lower(): value for name, value in headers.items()}
    return "".join(f"{name}:{lowered.get(name, '').strip()}\n" for name in sorted(signed_headers))


def payload_hash(body: bytes, headers: Mapping[str, str]) -> str:
    """Hex SHA-256 of the body, or the `X-Sdk-Content-Sha256` header (`UNSIGNED-PAYLOAD`) when present."""
    for name, value in headers.items():
        if name.lower() == "x-sdk-content-sha256":
            return value
    return hashlib.sha256(body).hexdigest() if body else EMPTY_PAYLOAD_HASH


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    body: bytes,
) -> str:
    signed = sorted(name.lower() for name in signed_headers)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query),
            canonical_headers(headers, signed),
            ";".join(signed),
            payload_hash(body, headers),
        ]
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    return f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(sk: str, to_sign: str) -> str:
    return hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def authorization_header(ak: str, signed_headers: list[str], sig: str) -> str:
    signed = ";".join(sorted(name.lower() for name in signed_headers))
    return f"{ALGORITHM} Access={ak}, SignedHeaders={signed}, Signature={sig}"


@dataclass(frozen=True)
class Authorization:
    access: str
    signed_headers: list[str]
    signature: str

    def __repr__(self) -> str:  # the signature is a credential for the next 15 minutes
        return f"Authorization(access={self.access!r}, signed_headers={self.signed_headers!r})"


def parse_authorization(value: str) -> Authorization:
    """Parse `SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...` (order of parts is free)."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _auth_error(f"unsupported authorization algorithm, expected {ALGORITHM}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key.strip()] = val.strip()
    missing = [key for key in ("Access", "SignedHeaders", "Signature") if not parts.get(key)]
    if missing:
        raise _auth_error(f"Authorization header lacks {', '.join(missing)}")
    signed = [name.strip().lower() for name in parts["SignedHeaders"].split(";") if name.strip()]
    return Authorization(parts["Access"], signed, parts["Signature"])


# Verification ----------------------------------------------------------------------------------------------


def _auth_error(detail: str) -> GatewayError:
    return GatewayError(401, AUTH_FAILED, f"Incorrect IAM authentication information: {detail}")


def find_access_key(state: CloudState, ak: str) -> tuple[Project, str] | None:
    for project in state.projects.values():
        sk = project.access_keys.get(ak)
        if sk is not None:
            return project, sk
    return None


def verify_aksk(
    state: CloudState,
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    real_now: datetime,
) -> Project:
    """The project owning the request's AK, or a 401 `APIGW.0301` naming what is wrong.

    The `X-Sdk-Date` must be within `settings.signature_window_seconds` of the gateway's time. Which time?
    The real gateway compares with its real clock, and clients sign with theirs; the emulator's clock may
    stand still (ManualClock) or run faster (ScaledClock). So a date is accepted when it is close to
    either the real time (`real_now`) or the emulator clock: a client signing with real time keeps working
    after tests or demos move the emulator clock forward, and a stale or future date is still rejected.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    auth = parse_authorization(lowered.get("authorization", ""))
    if "host" not in auth.signed_headers or "x-sdk-date" not in auth.signed_headers:
        raise _auth_error("SignedHeaders must include host and x-sdk-date")
    found = find_access_key(state, auth.access)
    if found is None:
        raise _auth_error(f"ak {auth.access} not exist")
    project, sk = found
    sdk_date = lowered.get("x-sdk-date", "")
    try:
        signed_at = datetime.strptime(sdk_date, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _auth_error(f"x-sdk-date {sdk_date!r} is not in the format YYYYMMDDTHHMMSSZ") from None
    window = timedelta(seconds=state.settings.signature_window_seconds)
    if all(abs(signed_at - reference) > window for reference in (real_now, state.now())):
        raise _auth_error(
            f"signature expired, x-sdk-date {sdk_date} is more than "
            f"{state.settings.signature_window_seconds // 60} minutes away from the server time"
        )
    canonical = canonical_request(method, raw_path, raw_query, headers, auth.signed_headers, body)
    expected = signature(sk, string_to_sign(canonical, sdk_date))
    if not hmac.compare_digest(expected, auth.signature.lower()):
        # As APIG does, echo the server's canonical request (newlines as "|") so a client can diff its own.
        raise _auth_error(f"verify aksk signature fail, canonicalRequest: {canonical.replace(chr(10), '|')}")
    return project


def check_project(caller: Project, path_project_id: str | None, header_project_id: str | None) -> None:
    """A caller may only use its own project, named in the path and/or in `X-Project-Id`."""
    for named in (path_project_id, header_project_id):
        if named is not None and named != caller.id:
            raise GatewayError(
                403,
                NOT_AUTHORIZED,
                f"The IAM user is not authorized to access the API: project {named} is not in scope "
                f"of the credentials (project {caller.id})",
            )


# Tokens ----------------------------------------------------------------------------------------------------


def find_user(project: Project, name: str, domain: str) -> User | None:
    for user in project.users:
        if user.name == name and user.domain == domain:
            return user
    return None


def issue_token(state: CloudState, project: Project, user: User) -> Token:
    """A new project-scoped token; issuing one never revokes the others (reference §5b)."""
    now = state.now()
    # Real tokens are long opaque strings starting with "MII"; only their value matters to callers.
    token = Token(
        value="MII" + secrets.token_urlsafe(96),
        project_id=project.id,
        user=user.name,
        domain=user.domain,
        issued_at=now,
        expires_at=now + timedelta(seconds=state.settings.token_ttl_seconds),
    )
    state.tokens[token.value] = token
    return token


def verify_token(state: CloudState, value: str) -> Project:
    """The project of a valid, unexpired token issued by this emulator, or a 401 `APIGW.0301`."""
    token = state.tokens.get(value)
    if token is None:
        raise _auth_error("verify token fail, the token was not issued by this IAM")
    if state.now() >= token.expires_at:
        raise _auth_error("the token expired")
    project = state.project(token.project_id)
    if project is None:  # the fleet was reset after the token was issued
        raise _auth_error("verify token fail, the token's project no longer exists")
    return project
