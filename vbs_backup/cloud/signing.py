"""AK/SK request signing, "SDK-HMAC-SHA256" (reference §5c), as small pure functions.

    CanonicalRequest = METHOD \\n canonical_uri \\n canonical_query \\n canonical_headers \\n signed_headers
                       \\n payload_hash
    StringToSign     = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(SK, StringToSign))
    Authorization    = "SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<signed>, Signature=<signature>"

The published test vector of §5c is reproduced in tests/cloud/test_signing.py. `sign_request` applies
the algorithm to a finished `httpx.Request`; `auth.AkSkAuth` calls it from its auth flow. Nothing here logs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import httpx

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
CONTENT_SHA256_HEADER = "X-Sdk-Content-Sha256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# The headers we sign when present (§5c step 2). `host` and `x-sdk-date` are always there.
SIGNED_IF_PRESENT = ("content-type", "host", "x-project-id", "x-sdk-date")


def encode(text: str) -> str:
    """RFC 3986 percent-encoding: keep `A-Z a-z 0-9 - _ . ~`, everything else as UTF-8 `%XX` (upper hex)."""
    return quote(text, safe="-_.~")


def canonical_uri(path: str) -> str:
    """The path as sent on the wire (percent-encoded), each segment decoded ONCE then RFC 3986-encoded,
    always ending in `/` (for signing only: the request itself is sent without the added slash). Decoding
    once makes the wire form and its raw form sign the same, as Huawei's SDK signer and the gateway do;
    a segment `%2541` (the text `%41`) signs as `%2541`. Pass `httpx.URL.raw_path`, never `URL.path`,
    which is already decoded: decoding that again would sign `A`."""
    segments = [encode(unquote(segment)) for segment in path.split("/")]
    uri = "/".join(segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """`enc(name)=enc(value)` pairs sorted by name, then by value for a repeated name, joined by `&`."""
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in sorted(params))


def canonical_headers(headers: Mapping[str, str], signed: Iterable[str]) -> str:
    """`name:trimmed value\\n` for each signed header (lower-case names, in sorted order). Ends with `\\n`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return "".join(f"{name}:{lowered[name].strip()}\n" for name in sorted(signed))


def signed_headers(names: Iterable[str]) -> str:
    """Lower-cased header names, sorted, joined by `;`."""
    return ";".join(sorted(n.lower() for n in names))


def payload_hash(body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """Hex SHA-256 of the raw body, unless `X-Sdk-Content-Sha256` (e.g. `UNSIGNED-PAYLOAD`) says otherwise."""
    if headers is not None:
        for name, value in headers.items():
            if name.lower() == CONTENT_SHA256_HEADER.lower():
                return value
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed: Iterable[str],
    body: bytes,
) -> str:
    signed = sorted(n.lower() for n in signed)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers(headers, signed),
            signed_headers(signed),
            payload_hash(body, headers),
        ]
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    return f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def sign(text: str, sk: str) -> str:
    """Hex HMAC-SHA256 of `text` keyed with the SK (UTF-8)."""
    return hmac.new(sk.encode(), text.encode(), hashlib.sha256).hexdigest()


def authorization_header(ak: str, signed: str, signature: str) -> str:
    return f"{ALGORITHM} Access={ak}, SignedHeaders={signed}, Signature={signature}"


def format_sdk_date(now: datetime) -> str:
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return now.strftime(DATE_FORMAT)


def sign_request(request: httpx.Request, ak: str, sk: str, now: datetime | None = None) -> httpx.Request:
    """Sign `request` in place (and return it): set `X-Sdk-Date` and `Authorization`.

    Signed set: `host`, `x-sdk-date`, plus `content-type` and `x-project-id` when present. The body must
    already be read (`AkSkAuth.requires_request_body`). The query string is rewritten in the canonical
    RFC 3986 encoding (order kept) so that the bytes on the wire decode to exactly what was signed:
    httpx would send a space as `+`, which a gateway may or may not read as a space.
    """
    pairs = list(request.url.params.multi_items())
    if pairs:
        wire_query = "&".join(f"{encode(k)}={encode(v)}" for k, v in pairs)
        request.url = request.url.copy_with(query=wire_query.encode("ascii"))
    sdk_date = format_sdk_date(now or datetime.now(UTC))
    request.headers[DATE_HEADER] = sdk_date
    if "host" not in request.headers:
        request.headers["Host"] = request.url.netloc.decode("ascii")
    present = [name for name in SIGNED_IF_PRESENT if name in request.headers]
    names = signed_headers(present)
    # The path exactly as it goes on the wire (its query is rebuilt above and signed from `pairs`).
    wire_path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
    canonical = canonical_request(request.method, wire_path, pairs, request.headers, present, request.content)
    signature = sign(string_to_sign(canonical, sdk_date), sk)
    request.headers["Authorization"] = authorization_header(ak, names, signature)
    return request
