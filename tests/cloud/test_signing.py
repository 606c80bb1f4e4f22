"""SDK-HMAC-SHA256 signing (reference §5c): the published test vector, encoding corner cases, and a
cross-check against Huawei's own signer (huaweicloudsdkcore, a test dependency) on generated requests."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vbs_backup.cloud.auth import AkSkAuth
from vbs_backup.cloud.signing import (
    EMPTY_SHA256,
    authorization_header,
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    format_sdk_date,
    payload_hash,
    sign,
    sign_request,
    signed_headers,
    string_to_sign,
)
from vbs_backup.cloud.vbs_policies import tag_key_segment

# The §5c vector (Huawei signing guide).
AK = "QTWAOYTTINDUT2QVKYUC"
SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
VECTOR_PATH = "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
VECTOR_QUERY = [("limit", "2"), ("marker", "13551d6b-755d-4757-b956-536f674975c0")]
VECTOR_HEADERS = {
    "Host": "service.region.example.com",
    "Content-Type": "application/json",
    "X-Sdk-Date": "20191115T033655Z",
}
VECTOR_HASH = "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
VECTOR_SIGNATURE = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
VECTOR_NOW = datetime(2019, 11, 15, 3, 36, 55, tzinfo=UTC)
VECTOR_AUTHORIZATION = (
    f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;x-sdk-date, Signature={VECTOR_SIGNATURE}"
)
PID = "17fbda95add24720a4038ba4b1c705ed"


def _authorization_parts(value: str) -> dict[str, str]:
    algorithm, _, rest = value.partition(" ")
    assert algorithm == "SDK-HMAC-SHA256"
    return dict(part.split("=", 1) for part in rest.split(", "))


# -- the published vector ----------------------------------------------------------------------------------


def test_vector_canonical_request_hash_and_signature_from_the_pure_functions():
    signed = ["content-type", "host", "x-sdk-date"]
    canonical = canonical_request("GET", VECTOR_PATH, VECTOR_QUERY, VECTOR_HEADERS, signed, b"")
    assert canonical == (
        "GET\n"
        "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\n"
        "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n"
        "content-type:application/json\nhost:service.region.example.com\nx-sdk-date:20191115T033655Z\n"
        "\n"
        "content-type;host;x-sdk-date\n"
        f"{EMPTY_SHA256}"
    )
    assert hashlib.sha256(canonical.encode()).hexdigest() == VECTOR_HASH
    to_sign = string_to_sign(canonical, "20191115T033655Z")
    assert to_sign == f"SDK-HMAC-SHA256\n20191115T033655Z\n{VECTOR_HASH}"
    assert sign(to_sign, SK) == VECTOR_SIGNATURE
    assert authorization_header(AK, signed_headers(signed), VECTOR_SIGNATURE) == VECTOR_AUTHORIZATION


def test_vector_through_sign_request_on_an_httpx_request():
    request = httpx.Request(
        "GET",
        "https://service.region.example.com" + VECTOR_PATH,
        params=VECTOR_QUERY,
        headers={"Content-Type": "application/json"},
    )
    sign_request(request, AK, SK, VECTOR_NOW)
    assert request.headers["X-Sdk-Date"] == "20191115T033655Z"
    assert request.headers["Authorization"] == VECTOR_AUTHORIZATION
    # the trailing slash is for signing only
    assert (
        request.url.raw_path
        == (VECTOR_PATH + "?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0").encode()
    )


def test_sdk_date_is_utc_whatever_the_zone_of_now():
    paris_summer = timezone(timedelta(hours=2))
    assert format_sdk_date(datetime(2019, 11, 15, 5, 36, 55, tzinfo=paris_summer)) == "20191115T033655Z"


# -- canonical URI -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/pid/cloudbackups", "/v2/pid/cloudbackups/"),
        ("/v2/pid/cloudbackups/", "/v2/pid/cloudbackups/"),
        ("/", "/"),
        # tag keys in paths (§3.11): a space, `#`, unicode, and a `~` that stays as is
        ("/v2/pid/backuppolicy/p1/tags/env key", "/v2/pid/backuppolicy/p1/tags/env%20key/"),
        ("/v2/pid/backuppolicy/p1/tags/a#b", "/v2/pid/backuppolicy/p1/tags/a%23b/"),
        ("/v2/pid/backuppolicy/p1/tags/é~x", "/v2/pid/backuppolicy/p1/tags/%C3%A9~x/"),
        # an already-encoded segment signs like its raw form (decoded first, as Huawei's SDK does)
        ("/v2/pid/backuppolicy/p1/tags/a%23b", "/v2/pid/backuppolicy/p1/tags/a%23b/"),
        ("/v2/pid/x/a+b=c", "/v2/pid/x/a%2Bb%3Dc/"),
    ],
)
def test_canonical_uri_encodes_each_segment_and_ends_with_a_slash(path, expected):
    assert canonical_uri(path) == expected


def test_path_segment_needing_encoding_is_signed_encoded_and_sent_without_the_slash():
    # a tag key "a b#" percent-encoded by the facade (an unencoded `#` would start a fragment)
    request = httpx.Request(
        "DELETE", f"https://vbs.eu-de.otc.t-systems.com/v2/{PID}/backuppolicy/p1/tags/a%20b%23"
    )
    sign_request(request, AK, SK, VECTOR_NOW)
    assert request.url.raw_path == f"/v2/{PID}/backuppolicy/p1/tags/a%20b%23".encode()
    canonical = canonical_request(
        "DELETE", request.url.path, [], request.headers, ["host", "x-sdk-date"], b""
    ).splitlines()
    assert canonical[1] == f"/v2/{PID}/backuppolicy/p1/tags/a%20b%23/"
    expected = sign(string_to_sign("\n".join(canonical), "20191115T033655Z"), SK)
    assert _authorization_parts(request.headers["Authorization"])["Signature"] == expected


# -- canonical query ---------------------------------------------------------------------------------------


def test_canonical_query_sorts_by_name_then_value_and_encodes_rfc3986():
    params = [
        ("name", "web 01"),
        ("status", "available"),
        ("tag", "z"),
        ("tag", "a"),
        ("Zeta", "1"),  # upper case sorts before lower case (byte order)
        ("city", "Zürich"),
        ("expr", "a+b=c&d"),
        ("empty", ""),
    ]
    assert canonical_query(params) == (
        "Zeta=1&city=Z%C3%BCrich&empty=&expr=a%2Bb%3Dc%26d&name=web%2001&status=available&tag=a&tag=z"
    )


def test_canonical_query_of_no_parameters_is_empty():
    assert canonical_query([]) == ""


def test_query_is_sent_in_the_encoding_that_was_signed_with_order_kept():
    request = httpx.Request(
        "GET",
        f"https://evs.eu-de.otc.t-systems.com/v2/{PID}/cloudvolumes/detail",
        params=[("name", "web 01"), ("tags", "b"), ("tags", "a"), ("city", "Zürich"), ("x", "1+1")],
    )
    sign_request(request, AK, SK, VECTOR_NOW)
    # spaces as %20 (not "+"), "+" as %2B: the bytes on the wire decode to exactly the signed values
    assert request.url.query == b"name=web%2001&tags=b&tags=a&city=Z%C3%BCrich&x=1%2B1"
    assert list(request.url.params.multi_items()) == [
        ("name", "web 01"),
        ("tags", "b"),
        ("tags", "a"),
        ("city", "Zürich"),
        ("x", "1+1"),
    ]
    canonical = canonical_request(
        "GET",
        request.url.path,
        request.url.params.multi_items(),
        request.headers,
        ["host", "x-sdk-date"],
        b"",
    )
    assert canonical.splitlines()[2] == "city=Z%C3%BCrich&name=web%2001&tags=a&tags=b&x=1%2B1"
    expected = sign(string_to_sign(canonical, "20191115T033655Z"), SK)
    assert _authorization_parts(request.headers["Authorization"])["Signature"] == expected


# -- headers and payload -----------------------------------------------------------------------------------


def test_canonical_headers_lowercase_sorted_trimmed_and_end_with_newline():
    headers = {"X-Sdk-Date": " 20191115T033655Z ", "Host": "h.example.com:8443", "Accept": "x"}
    assert canonical_headers(headers, ["x-sdk-date", "host"]) == (
        "host:h.example.com:8443\nx-sdk-date:20191115T033655Z\n"
    )


def test_payload_hash_uses_the_content_sha256_header_when_present():
    assert payload_hash(b"") == EMPTY_SHA256
    assert payload_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert payload_hash(b"abc", {"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}) == "UNSIGNED-PAYLOAD"


def test_post_with_json_body_signs_body_content_type_and_project_id():
    body = {"backup": {"volume_id": "5024a06e-6990-4f12-9dcc-8fe26b01a710", "name": "web01-data"}}
    request = httpx.Request("POST", f"https://vbs.eu-de.otc.t-systems.com/v2/{PID}/cloudbackups", json=body)
    flow = AkSkAuth(AK, SK, PID, clock=lambda: VECTOR_NOW).sync_auth_flow(request)
    signed_request = next(flow)

    parts = _authorization_parts(signed_request.headers["Authorization"])
    assert parts["Access"] == AK
    assert parts["SignedHeaders"] == "content-type;host;x-project-id;x-sdk-date"
    assert signed_request.headers["X-Project-Id"] == PID
    canonical = canonical_request(
        "POST",
        f"/v2/{PID}/cloudbackups",
        [],
        {
            "content-type": "application/json",
            "host": "vbs.eu-de.otc.t-systems.com",
            "x-project-id": PID,
            "x-sdk-date": "20191115T033655Z",
        },
        ["content-type", "host", "x-project-id", "x-sdk-date"],
        signed_request.content,
    )
    assert canonical.endswith(hashlib.sha256(signed_request.content).hexdigest())
    assert json.loads(signed_request.content) == body
    assert parts["Signature"] == sign(string_to_sign(canonical, "20191115T033655Z"), SK)


def test_a_different_body_gives_a_different_signature():
    def signature(body: dict) -> str:
        request = httpx.Request(
            "POST", f"https://vbs.eu-de.otc.t-systems.com/v2/{PID}/cloudbackups", json=body
        )
        sign_request(request, AK, SK, VECTOR_NOW)
        return _authorization_parts(request.headers["Authorization"])["Signature"]

    assert signature({"backup": {"name": "a"}}) != signature({"backup": {"name": "b"}})


def test_host_with_port_is_signed_with_the_port():
    request = httpx.Request("GET", f"http://127.0.0.1:8765/v2/{PID}/backups")
    sign_request(request, AK, SK, VECTOR_NOW)
    canonical = canonical_request(
        "GET", f"/v2/{PID}/backups", [], request.headers, ["host", "x-sdk-date"], b""
    )
    assert "host:127.0.0.1:8765\n" in canonical
    assert _authorization_parts(request.headers["Authorization"])["Signature"] == sign(
        string_to_sign(canonical, "20191115T033655Z"), SK
    )


def test_aksk_auth_repr_hides_the_secret_key():
    auth = AkSkAuth(AK, SK, PID)
    assert SK not in repr(auth)
    assert AK not in repr(auth)  # only a prefix of the AK is shown
    assert SK not in str(vars(auth))


# -- cross-check against Huawei's SDK signer ---------------------------------------------------------------

segment = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="/%?#"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))  # URL dot-segments are collapsed by httpx; ids never are dots
query_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    segments=st.lists(segment, min_size=1, max_size=4),
    query=st.lists(st.tuples(query_text.filter(bool), query_text), max_size=5),
    body=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)),
)
def test_signature_matches_huaweicloudsdkcore(method, segments, query, body):
    sdk_signer = pytest.importorskip("huaweicloudsdkcore.signer.signer")
    sdk_request_mod = pytest.importorskip("huaweicloudsdkcore.sdk_request")
    sdk_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials")

    path = f"/v2/{PID}/" + "/".join(segments)
    request = httpx.Request(
        method,
        httpx.URL("https://vbs.eu-de.otc.t-systems.com").copy_with(path=path),
        params=query,
        json=body,
        headers={"Content-Type": "application/json"},
    )
    AkSkAuth(AK, SK, PID, clock=lambda: VECTOR_NOW).sync_auth_flow(request).send(None)

    signed = ["Content-Type", "Host", "X-Project-Id", "X-Sdk-Date"]
    theirs = sdk_request_mod.SdkRequest(
        method=method,
        schema="https",
        host="vbs.eu-de.otc.t-systems.com",
        resource_path=path,
        query_params=list(query),
        header_params={name: request.headers[name] for name in signed},
        body=request.content or None,
    )
    sdk_signer.Signer(sdk_credentials.BasicCredentials(AK, SK)).sign(theirs)
    assert request.headers["Authorization"] == theirs.header_params["Authorization"]


# -- paths with percent signs: signed as they are sent, decoded once -----------------------------------------

POLICY = "5f0c3e2a-9b1d-4c7e-8a6f-2d4b1e0c9a87"


def _sdk_authorization(method: str, wire_path: str, query, headers, body: bytes | None) -> str:
    """What Huawei's own signer (huaweicloudsdkcore) puts in `Authorization` for this request; its
    `resource_path` is the path as the SDK sends it, i.e. already percent-encoded."""
    sdk_signer = pytest.importorskip("huaweicloudsdkcore.signer.signer")
    sdk_request_mod = pytest.importorskip("huaweicloudsdkcore.sdk_request")
    sdk_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials")
    theirs = sdk_request_mod.SdkRequest(
        method=method,
        schema="https",
        host="vbs.eu-de.otc.t-systems.com",
        resource_path=wire_path,
        query_params=list(query),
        header_params=headers,
        body=body,
    )
    sdk_signer.Signer(sdk_credentials.BasicCredentials(AK, SK)).sign(theirs)
    return theirs.header_params["Authorization"]


def _ours(method: str, wire_path: str, query=(), body=None) -> httpx.Request:
    request = httpx.Request(
        method,
        "https://vbs.eu-de.otc.t-systems.com" + wire_path,
        params=list(query),
        json=body,
        headers={"Content-Type": "application/json"},
    )
    AkSkAuth(AK, SK, PID, clock=lambda: VECTOR_NOW).sync_auth_flow(request).send(None)
    assert request.url.raw_path.split(b"?")[0] == wire_path.encode()  # sent exactly as built
    return request


@pytest.mark.parametrize("key", ["a%41", "%2541", "100%", "%zz", "a%2Fb", "é%C3%A9", "a b#%20"])
def test_a_tag_key_with_percent_signs_is_signed_as_sent_like_the_sdk_does(key):
    # the key `a%41` travels as `a%2541`: signed decoded once (`a%2541`), never twice (`aA`)
    wire_path = f"/v2/{PID}/backuppolicy/{POLICY}/tags/{tag_key_segment(key)}"
    request = _ours("DELETE", wire_path)

    signed = ["Content-Type", "Host", "X-Project-Id", "X-Sdk-Date"]
    theirs = _sdk_authorization("DELETE", wire_path, [], {n: request.headers[n] for n in signed}, None)
    assert request.headers["Authorization"] == theirs


def test_the_canonical_uri_of_a_double_encoded_segment_keeps_one_level_of_encoding():
    request = _ours("DELETE", f"/v2/{PID}/backuppolicy/{POLICY}/tags/a%2541")
    canonical = canonical_request(
        "DELETE",
        f"/v2/{PID}/backuppolicy/{POLICY}/tags/a%2541",
        [],
        request.headers,
        ["content-type", "host", "x-project-id", "x-sdk-date"],
        b"",
    )
    assert canonical.splitlines()[1] == f"/v2/{PID}/backuppolicy/{POLICY}/tags/a%2541/"
    assert _authorization_parts(request.headers["Authorization"])["Signature"] == sign(
        string_to_sign(canonical, "20191115T033655Z"), SK
    )


# Any text but `/` (a segment is one tag key or id: `/` is refused in tag keys) and the dot segments, rich
# in text that itself looks percent-encoded (`%41`, `%2541`, a lone `%`), which is what goes wrong when a
# signer decodes the path twice.
encoded_segment = (
    st.lists(
        st.one_of(
            st.sampled_from(["%", "%41", "%25", "%2F", "%2e", "%zz", "%C3%A9", "A", "."]),
            st.text(
                alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="/"),
                min_size=1,
                max_size=4,
            ),
        ),
        min_size=1,
        max_size=4,
    )
    .map("".join)
    .filter(lambda s: s not in (".", ".."))
)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    segments=st.lists(encoded_segment, min_size=1, max_size=4),
    query=st.lists(st.tuples(query_text.filter(bool), query_text), max_size=3),
    body=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2)),
)
def test_signature_matches_huaweicloudsdkcore_on_percent_encoded_paths(method, segments, query, body):
    wire_path = f"/v2/{PID}/" + "/".join(quote(s, safe="") for s in segments)
    request = _ours(method, wire_path, query, body)

    signed = ["Content-Type", "Host", "X-Project-Id", "X-Sdk-Date"]
    theirs = _sdk_authorization(
        method, wire_path, query, {n: request.headers[n] for n in signed}, request.content or None
    )
    assert request.headers["Authorization"] == theirs
