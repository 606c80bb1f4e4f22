"""Error parsing (the four body shapes of reference §5e and non-JSON bodies), the error tree, and the
configuration errors of endpoint building (§5d)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from vbs_backup.cloud.endpoints import CloudName, Endpoints, Service
from vbs_backup.cloud.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    CloudError,
    ConfigurationError,
    ConflictError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    ThrottledError,
    TransportError,
    error_from_response,
    parse_retry_after,
    raise_from_response,
    safe_url,
)
from vbs_backup.settings import Settings

PID = "17fbda95add24720a4038ba4b1c705ed"
VBS = "https://vbs.eu-de.otc.t-systems.com"


def response(
    status: int,
    body: object = None,
    *,
    text: str | None = None,
    method: str = "GET",
    url: str = f"{VBS}/v2/{PID}/backups",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    request = httpx.Request(method, url)
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


# -- the four shapes ---------------------------------------------------------------------------------------


def test_vbs_cloud_shape_gives_code_message_and_a_readable_text():
    resp = response(
        400,
        {"error": {"message": "disk status is not available", "code": "VolumeBackup.0012"}},
        method="POST",
        url=f"{VBS}/v2/{PID}/cloudbackups",
        headers={"X-Request-Id": "3f2a9c"},
    )
    with pytest.raises(BadRequestError) as info:
        raise_from_response(resp, operation="vbs.create_backup")
    err = info.value
    assert (err.http_status, err.code, err.message, err.request_id) == (
        400,
        "VolumeBackup.0012",
        "disk status is not available",
        "3f2a9c",
    )
    assert (err.method, err.url, err.operation) == (
        "POST",
        f"{VBS}/v2/{PID}/cloudbackups",
        "vbs.create_backup",
    )
    assert str(err) == (
        "VBS create_backup failed: 400 VolumeBackup.0012 disk status is not available (request 3f2a9c) "
        f"POST {VBS}/v2/{PID}/cloudbackups"
    )


def test_cinder_fault_uses_the_fault_name_when_the_code_is_the_status():
    resp = response(
        404,
        {"itemNotFound": {"message": "Backup 592a0c4d could not be found.", "code": 404}},
        method="DELETE",
    )
    err = error_from_response(resp, operation="vbs.delete_backup")
    assert isinstance(err, NotFoundError)
    assert err.code == "itemNotFound"
    assert err.message == "Backup 592a0c4d could not be found."
    assert err.request_id is None


def test_cinder_fault_keeps_a_string_code():
    err = error_from_response(
        response(400, {"badRequest": {"code": "XXXX", "message": "bad"}}), operation=None
    )
    assert isinstance(err, BadRequestError)
    assert (err.code, err.message) == ("XXXX", "bad")


def test_gateway_shape_with_request_id_in_the_body_and_retry_after_header():
    resp = response(
        429,
        {
            "error_code": "APIGW.0308",
            "error_msg": "The throttling threshold has been reached: policy user over ratelimit,"
            "limit:10,time:1 minute",
            "request_id": "a" * 32,
        },
        headers={"Retry-After": "3", "X-Request-Id": "header-id"},
    )
    err = error_from_response(resp, operation="vbs.list_backups")
    assert isinstance(err, ThrottledError)
    assert err.code == "APIGW.0308"
    assert err.request_id == "a" * 32  # the body's id wins over the header's
    assert err.retry_after == 3.0
    assert "throttling threshold" in err.message


def test_gateway_401_on_a_bad_signature():
    resp = response(
        401,
        {
            "error_code": "APIGW.0301",
            "error_msg": "Incorrect IAM authentication information",
            "request_id": "r1",
        },
    )
    err = error_from_response(resp, operation="ecs.get_server")
    assert isinstance(err, AuthenticationError)
    assert str(err).startswith(
        "ECS get_server failed: 401 APIGW.0301 Incorrect IAM authentication information"
    )


def test_keystone_shape_with_an_integer_code():
    resp = response(
        401,
        {"error": {"message": "Unauthorized.", "code": 401, "title": "Unauthorized"}},
        method="POST",
        url="https://iam.eu-de.otc.t-systems.com/v3/auth/tokens?nocatalog=true",
    )
    err = error_from_response(resp, operation="iam.create_token")
    assert isinstance(err, AuthenticationError)
    assert (err.code, err.message) == ("401", "Unauthorized.")
    assert err.url == "https://iam.eu-de.otc.t-systems.com/v3/auth/tokens?nocatalog=true"


def test_error_with_only_a_title_uses_it_as_message():
    err = error_from_response(response(403, {"error": {"code": 403, "title": "Forbidden"}}), operation=None)
    assert isinstance(err, PermissionDeniedError)
    assert err.message == "Forbidden"


# -- bodies that are not one of the shapes -----------------------------------------------------------------


def test_html_body_is_flattened_and_truncated():
    html = "<html><body><h1>502 Bad Gateway</h1>\n\n" + "x" * 1000 + "</body></html>"
    err = error_from_response(response(502, text=html), operation="vbs.get_job")
    assert isinstance(err, ServerError)
    assert err.code is None
    assert err.message.startswith("<html><body><h1>502 Bad Gateway</h1> x")
    assert len(err.message) <= 300


def test_empty_body_falls_back_to_the_reason_phrase():
    err = error_from_response(response(503), operation="vbs.get_job")
    assert isinstance(err, ServerError)
    assert err.message == "Service Unavailable"
    assert str(err) == f"VBS get_job failed: 503 Service Unavailable GET {VBS}/v2/{PID}/backups"


def test_json_of_an_unknown_shape_falls_back_to_the_reason_phrase():
    err = error_from_response(response(500, ["oops"]), operation=None)
    assert err.message == "Internal Server Error"
    assert str(err).startswith("cloud request failed: 500")


def test_request_id_from_the_header_when_the_body_has_none():
    resp = response(
        409, {"error": {"code": "AutoBackup.0225", "message": "busy"}}, headers={"X-Request-Id": "rid"}
    )
    err = error_from_response(resp, operation="vbs.execute_policy")
    assert isinstance(err, ConflictError)
    assert err.request_id == "rid"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (429, ThrottledError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (501, ServerError),
        (405, ApiError),
        (413, ApiError),
    ],
)
def test_status_maps_to_one_class(status, cls):
    err = error_from_response(response(status, {"error": {"code": "X", "message": "m"}}), operation=None)
    assert type(err) is cls
    assert isinstance(err, ApiError) and isinstance(err, CloudError)


def test_response_without_a_request_still_parses():
    err = error_from_response(
        httpx.Response(404, json={"error": {"code": "common.0011"}}), operation="vbs.get_job"
    )
    assert isinstance(err, NotFoundError)
    assert (err.method, err.url, err.code) == (None, None, "common.0011")


# -- secrets and helpers -----------------------------------------------------------------------------------


def test_safe_url_drops_user_info_and_secret_query_values():
    assert safe_url("https://user:pw@host.example/v3/x?token=abc&limit=2&Password=p") == (
        "https://host.example/v3/x?token=%2A%2A%2A&limit=2&Password=%2A%2A%2A"
    )
    assert safe_url(f"{VBS}/v2/{PID}/backups?limit=2&marker=m") == f"{VBS}/v2/{PID}/backups?limit=2&marker=m"


def test_error_text_never_shows_a_secret_from_the_url():
    resp = response(
        400, {"error": {"code": "c", "message": "m"}}, url="https://u:hunter2@h.example/p?token=t0k"
    )
    err = error_from_response(resp, operation=None)
    assert "hunter2" not in str(err) and "t0k" not in str(err)
    assert "hunter2" not in repr(err)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("5", 5.0), (" 2.5 ", 2.5), ("-3", 0.0), ("soon", None)],
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:07 GMT", now=now) == 7.0


def test_transport_error_knows_whether_the_request_may_have_run():
    url = f"{VBS}/v2/{PID}/cloudbackups"
    never = TransportError.from_httpx(
        httpx.ConnectError("connection refused"), method="POST", url=url, operation="vbs.create_backup"
    )
    maybe = TransportError.from_httpx(
        httpx.ReadTimeout("timed out"), method="POST", url=url, operation="vbs.create_backup"
    )
    assert never.may_have_reached_server is False
    assert maybe.may_have_reached_server is True
    assert str(maybe) == f"VBS create_backup failed: ReadTimeout: timed out POST {url}"


def test_job_errors_carry_their_fields():
    failed = JobFailedError("2c9e", "VolumeBackup.0064", "CreateBackup Task-fail")
    assert (failed.job_id, failed.error_code, failed.fail_reason) == (
        "2c9e",
        "VolumeBackup.0064",
        "CreateBackup Task-fail",
    )
    assert str(failed) == "job 2c9e failed: VolumeBackup.0064 CreateBackup Task-fail"
    timed_out = JobTimeoutError("2c9e", 600, last_status="RUNNING")
    assert str(timed_out) == "job 2c9e did not finish within 600 s (last status RUNNING)"
    assert isinstance(failed, CloudError) and isinstance(timed_out, CloudError)


# -- endpoints (ConfigurationError) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cloud", "region", "domain"),
    [
        ("huaweicloud", "eu-west-0", "myhuaweicloud.com"),
        ("flexibleengine", "eu-west-0", "prod-cloud-ocb.orange-business.com"),
        ("otc", "eu-de", "otc.t-systems.com"),
        (CloudName.otc, "eu-nl", "otc.t-systems.com"),
    ],
)
def test_documented_host_patterns(cloud, region, domain):
    endpoints = Endpoints.for_cloud(cloud, region)
    for service in Service:
        assert endpoints.url(service) == f"https://{service.value}.{region}.{domain}"


@pytest.mark.parametrize("cloud", list(CloudName))
def test_config_cloud_name_values_are_accepted(cloud):
    settings = Settings.for_connection({"cloud": cloud.value, "region": "eu-west-0"})
    assert settings.cloud is cloud
    domain = {
        CloudName.huaweicloud: "myhuaweicloud.com",
        CloudName.flexibleengine: "prod-cloud-ocb.orange-business.com",
        CloudName.otc: "otc.t-systems.com",
    }[cloud]
    assert Endpoints.for_cloud(settings.cloud, settings.region).vbs == f"https://vbs.eu-west-0.{domain}"


def test_override_serves_every_service_and_per_service_urls_win():
    endpoints = Endpoints.for_cloud(
        "otc", "eu-de", override="http://127.0.0.1:8765/", iam="https://iam.example"
    )
    assert endpoints == Endpoints(
        iam="https://iam.example",
        ecs="http://127.0.0.1:8765",
        evs="http://127.0.0.1:8765",
        vbs="http://127.0.0.1:8765",
    )


def test_per_service_urls_without_override_fill_in_the_rest_from_the_pattern():
    endpoints = Endpoints.for_cloud("huaweicloud", "eu-west-0", vbs="https://vbs.internal:9443")
    assert endpoints.vbs == "https://vbs.internal:9443"
    assert endpoints.evs == "https://evs.eu-west-0.myhuaweicloud.com"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://files.example", "http:// or https://"),
        ("vbs.eu-de.otc.t-systems.com", "http:// or https://"),
        ("https://", "no host"),
        ("https://vbs.eu-de.otc.t-systems.com/v2/" + PID, "without a path"),
        ("https://h.example?x=1", "without a path"),
        ("http://127.0.0.1:99999", "not a valid URL"),
        ("", "empty"),
    ],
)
def test_bad_urls_are_configuration_errors(url, fragment):
    with pytest.raises(ConfigurationError, match="vbs endpoint") as info:
        Endpoints.for_cloud("otc", "eu-de", vbs=url)
    assert fragment in str(info.value)


def test_user_info_in_an_endpoint_is_refused_without_echoing_it():
    with pytest.raises(ConfigurationError) as info:
        Endpoints.for_cloud("otc", "eu-de", override="https://admin:hunter2@emulator.local")
    assert "hunter2" not in str(info.value)


def test_unknown_cloud_and_bad_region():
    with pytest.raises(ConfigurationError, match="unknown cloud 'aws'"):
        Endpoints.for_cloud("aws", "eu-de")
    with pytest.raises(ConfigurationError, match="region"):
        Endpoints.for_cloud("otc", "EU DE")
    # a region is not needed when every URL is given
    assert Endpoints.for_cloud("otc", "", override="http://localhost:1").ecs == "http://localhost:1"
