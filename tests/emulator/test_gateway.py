"""The gateway over a real socket: routing, request ids, authentication, rate limit, faults, control API."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from vbs_backup.emulator import auth
from vbs_backup.emulator.app import create_app
from vbs_backup.emulator.faults import FaultInjector, FaultRule, RateLimiter

SERVER_ID = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
SCRATCH_ID = "9d3a7b6c-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def servers_path(emulator) -> str:
    return f"/v1/{emulator.project_id}/cloudservers/detail"


def volume_path(emulator, volume_id: str = SCRATCH_ID) -> str:
    return f"/v2/{emulator.project_id}/cloudvolumes/{volume_id}"


def new_volume(name: str) -> dict:
    return {"volume": {"name": name, "size": 20, "volume_type": "SAS", "availability_zone": "eu-west-0a"}}


def volume_names(emulator) -> set[str]:
    with emulator.state.locked():
        return {v.name for v in emulator.state.projects[emulator.project_id].volumes.values()}


# Signature algorithm (pure) --------------------------------------------------------------------------------


def test_signature_matches_the_published_test_vector():
    headers = {
        "Host": "service.region.example.com",
        "Content-Type": "application/json",
        "X-Sdk-Date": "20191115T033655Z",
    }
    canonical = auth.canonical_request(
        "GET",
        "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
        "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
        headers,
        ["content-type", "host", "x-sdk-date"],
        b"",
    )
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    )
    sig = auth.signature(
        "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", auth.string_to_sign(canonical, "20191115T033655Z")
    )
    assert sig == "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"


def test_canonical_parts_follow_rfc3986_and_sorting():
    assert auth.canonical_uri("/v1/a b/c%2Fd") == "/v1/a%20b/c%2Fd/"
    assert auth.canonical_uri("/v1/x/") == "/v1/x/"
    assert (
        auth.canonical_query("b=2&a=2&a=1&name=web%2001&t=a~b&flag")
        == "a=1&a=2&b=2&flag=&name=web%2001&t=a~b"
    )
    assert auth.canonical_query("") == ""
    assert auth.payload_hash(b"", {}) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert auth.payload_hash(b"{}", {"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}) == "UNSIGNED-PAYLOAD"


def test_authorization_header_parses_in_any_order_and_hides_the_signature():
    parsed = auth.parse_authorization(
        "SDK-HMAC-SHA256 Signature=abc, Access=AK1, SignedHeaders=host;x-sdk-date"
    )
    assert (parsed.access, parsed.signed_headers, parsed.signature) == ("AK1", ["host", "x-sdk-date"], "abc")
    assert "abc" not in repr(parsed)


# Routing and request ids -----------------------------------------------------------------------------------


def test_unknown_path_gets_the_gateway_404(emulator):
    response = emulator.call("GET", "/v2/nothing/here")
    assert response.status_code == 404
    body = response.json()
    assert body["error_code"] == "APIGW.0101"
    assert body["error_msg"] == "The API does not exist or has not been published in the environment"
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    assert response.headers["X-Request-Id"] == body["request_id"]


def test_a_method_the_path_does_not_offer_is_an_unpublished_api(emulator):
    response = emulator.call("PUT", f"/v2/{emulator.project_id}/cloudvolumes/detail")
    assert response.status_code == 404
    assert response.json()["error_code"] == "APIGW.0101"


def test_every_response_carries_a_distinct_request_id(emulator):
    ids = {
        emulator.call("GET", servers_path(emulator)).headers["X-Request-Id"],
        emulator.call("GET", servers_path(emulator), signed=False).headers["X-Request-Id"],
        emulator.control("GET", "/clock").headers["X-Request-Id"],
    }
    assert len(ids) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


# Authentication --------------------------------------------------------------------------------------------


def assert_auth_error(response: httpx.Response, status: int = 401, code: str = "APIGW.0301") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body["error_msg"]


def test_request_without_credentials_is_rejected(emulator):
    message = assert_auth_error(emulator.call("GET", servers_path(emulator), signed=False))
    assert message.startswith("Incorrect IAM authentication information")


def test_wrong_signature_is_rejected_with_the_canonical_request_echoed(emulator):
    response = emulator.call("GET", servers_path(emulator), params={"limit": 5}, sk="not-the-secret")
    message = assert_auth_error(response)
    assert "verify aksk signature fail" in message
    assert f"GET|/v1/{emulator.project_id}/cloudservers/detail/|limit=5|" in message
    assert emulator.sk not in message and "not-the-secret" not in message


def test_unknown_access_key_is_named(emulator):
    message = assert_auth_error(emulator.call("GET", servers_path(emulator), ak="NOSUCHAK"))
    assert message == "Incorrect IAM authentication information: ak NOSUCHAK not exist"


@pytest.mark.parametrize("skew_minutes", [-20, 20])
def test_sdk_date_more_than_15_minutes_off_is_expired(emulator, skew_minutes):
    date = (datetime.now(UTC) + timedelta(minutes=skew_minutes)).strftime(auth.DATE_FORMAT)
    message = assert_auth_error(emulator.call("GET", servers_path(emulator), sdk_date=date))
    assert "signature expired" in message


def test_sdk_date_within_the_window_is_accepted(emulator):
    date = (datetime.now(UTC) - timedelta(minutes=10)).strftime(auth.DATE_FORMAT)
    assert emulator.call("GET", servers_path(emulator), sdk_date=date).status_code == 200


def test_real_time_and_emulator_time_signatures_both_work_after_a_clock_jump(emulator):
    emulator.control("POST", "/clock/advance", json={"seconds": 3 * 86400})
    assert emulator.call("GET", servers_path(emulator)).status_code == 200
    emulator_date = emulator.state.now().strftime(auth.DATE_FORMAT)
    assert emulator.call("GET", servers_path(emulator), sdk_date=emulator_date).status_code == 200


def test_signed_headers_must_include_host_and_sdk_date(emulator):
    date = datetime.now(UTC).strftime(auth.DATE_FORMAT)
    headers = {
        "X-Sdk-Date": date,
        "Authorization": f"SDK-HMAC-SHA256 Access={emulator.ak}, SignedHeaders=x-sdk-date, Signature=00",
    }
    message = assert_auth_error(emulator.call("GET", servers_path(emulator), headers=headers, signed=False))
    assert "host and x-sdk-date" in message


def test_a_query_changed_after_signing_fails_verification(emulator, signer):
    with httpx.Client(base_url=emulator.url) as client:
        request = client.build_request("GET", servers_path(emulator), params={"limit": 1})
        signer(request, emulator.ak, emulator.sk)
        tampered = client.build_request(
            "GET", servers_path(emulator), params={"limit": 2}, headers=request.headers
        )
        response = client.send(tampered)
    assert "verify aksk signature fail" in assert_auth_error(response)


def test_signed_query_with_spaces_and_reserved_characters_is_accepted(emulator):
    response = emulator.call(
        "GET", servers_path(emulator), params={"name": "web 0", "tags": "backup=nightly"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 0  # no server name contains "web 0"


def test_signed_post_body_is_covered(emulator):
    response = emulator.call(
        "POST", f"/v2/{emulator.project_id}/cloudvolumes", json=new_volume("signed-body")
    )
    assert response.status_code == 200
    assert "signed-body" in volume_names(emulator)


def test_access_key_of_another_project_is_forbidden(emulator, other_project):
    response = other_project.call(
        "GET", servers_path(emulator), headers={"X-Project-Id": other_project.project_id}
    )
    assert "not authorized" in assert_auth_error(response, 403, "APIGW.0302")
    mismatch = emulator.call(
        "GET", servers_path(emulator), headers={"X-Project-Id": other_project.project_id}
    )
    assert_auth_error(mismatch, 403, "APIGW.0302")


def test_token_is_accepted_for_its_own_project_only(emulator, other_project):
    token = other_project.token()
    own = other_project.call("GET", f"/v2/{other_project.project_id}/cloudvolumes/detail", token=token)
    assert own.status_code == 200
    assert [v["name"] for v in own.json()["volumes"]] == ["other-spare"]
    assert_auth_error(emulator.call("GET", servers_path(emulator), token=token), 403, "APIGW.0302")


def test_unknown_token_is_rejected(emulator):
    assert "verify token fail" in assert_auth_error(
        emulator.call("GET", servers_path(emulator), token="MIIforged")
    )


# Rate limit ------------------------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(emulator):
    assert emulator.control("POST", "/rate_limit", json={"rate": 0.01, "burst": 2}).status_code == 200
    assert [emulator.call("GET", servers_path(emulator)).status_code for _ in range(2)] == [200, 200]
    throttled = emulator.call("GET", servers_path(emulator))
    message = assert_auth_error(throttled, 429, "APIGW.0308")
    assert message == (
        "The throttling threshold has been reached: policy user over ratelimit,limit:0.01,time:1 second"
    )
    assert int(throttled.headers["Retry-After"]) >= 1
    emulator.control("POST", "/rate_limit", json={"rate": None})
    assert emulator.call("GET", servers_path(emulator)).status_code == 200


def test_token_bucket_refills_at_the_configured_rate():
    now = [100.0]
    limiter = RateLimiter(monotonic=lambda: now[0])
    assert limiter.acquire() is None  # no limit configured
    limiter.configure(rate=2, burst=3)
    assert [limiter.acquire() for _ in range(3)] == [None, None, None]
    assert limiter.acquire() == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.acquire() is None
    now[0] += 10  # refill is capped at the burst
    assert [limiter.acquire() is None for _ in range(4)] == [True, True, True, False]
    assert limiter.throttled(0.2).headers() == {"Retry-After": "1"}
    assert "limit:2,time:1 second" in limiter.throttled(0.2).message


# Faults ----------------------------------------------------------------------------------------------------


def test_error_fault_fires_count_times_then_retires(emulator):
    rule = {"operation": "evs.get_volume", "kind": "error", "status": 503, "count": 2}
    assert emulator.control("POST", "/faults", json=rule).status_code == 200
    responses = [emulator.call("GET", volume_path(emulator)) for _ in range(3)]
    assert [r.status_code for r in responses] == [503, 503, 200]
    assert responses[0].json() == {"error": {"code": "VolumeBackup.0900", "message": "service unavailable"}}
    assert emulator.control("GET", "/faults").json() == []
    log = emulator.control("GET", "/requests").json()
    assert [(e["operation"], e["status"]) for e in log] == [("evs.get_volume", 503)] * 2 + [
        ("evs.get_volume", 200)
    ]


def test_error_fault_takes_the_gateway_shape_for_apigw_codes_and_ignores_other_operations(emulator):
    rule = {"operation": "evs.get_volume", "status": 500, "code": "APIGW.0201", "message": "backend timeout"}
    emulator.control("POST", "/faults", json=rule)
    assert emulator.call("GET", servers_path(emulator)).status_code == 200
    response = emulator.call("GET", volume_path(emulator))
    assert response.status_code == 500
    assert response.json()["error_code"] == "APIGW.0201"
    assert response.json()["error_msg"] == "backend timeout"


def test_faults_are_checked_after_authentication(emulator):
    emulator.control("POST", "/faults", json={"operation": "*", "kind": "error"})
    assert emulator.call("GET", servers_path(emulator), ak="NOSUCHAK").status_code == 401
    assert emulator.call("GET", servers_path(emulator)).status_code == 503


def test_drop_before_loses_the_request_and_the_operation_does_not_run(emulator):
    emulator.control(
        "POST", "/faults", json={"operation": "evs.create_volume", "kind": "drop_before", "count": 1}
    )
    with pytest.raises(httpx.TransportError):
        emulator.call("POST", f"/v2/{emulator.project_id}/cloudvolumes", json=new_volume("dropped-before"))
    assert "dropped-before" not in volume_names(emulator)
    assert emulator.control("GET", "/requests").json()[-1]["status"] == 0
    assert emulator.call("GET", servers_path(emulator)).status_code == 200  # the server is still fine


def test_drop_after_runs_the_operation_but_loses_the_response(emulator):
    emulator.control(
        "POST", "/faults", json={"operation": "evs.create_volume", "kind": "drop_after", "count": 1}
    )
    with pytest.raises(httpx.TransportError):
        emulator.call("POST", f"/v2/{emulator.project_id}/cloudvolumes", json=new_volume("dropped-after"))
    assert "dropped-after" in volume_names(emulator)
    last = emulator.control("GET", "/requests").json()[-1]
    assert (last["operation"], last["status"]) == ("evs.create_volume", 200)


def test_latency_fault_delays_the_answer_past_a_client_timeout(emulator):
    emulator.control(
        "POST", "/faults", json={"operation": "ecs.list_servers", "kind": "latency", "latency": 1}
    )
    with pytest.raises(httpx.ReadTimeout):
        emulator.call("GET", servers_path(emulator), timeout=0.2)


def test_probabilistic_faults_repeat_with_the_same_seed(emulator):
    rule = {"operation": "evs.get_volume", "probability": 0.5, "seed": 7}

    def run() -> list[int]:
        emulator.control("DELETE", "/faults")
        emulator.control("POST", "/faults", json=rule)
        return [emulator.call("GET", volume_path(emulator)).status_code for _ in range(16)]

    first = run()
    assert run() == first
    assert {200, 503} == set(first)


def test_fault_injector_picks_one_rule_per_request():
    injector = FaultInjector()
    injector.add(FaultRule(operation="vbs.get_job", kind="latency", latency=1, count=1))
    injector.add(FaultRule(operation="*", kind="error"))
    assert injector.pick("vbs.get_job").kind == "latency"
    assert injector.pick("vbs.get_job").kind == "error"
    assert injector.pick(None).kind == "error"
    with pytest.raises(ValueError):
        FaultRule.from_dict({"kind": "explode"})
    with pytest.raises(ValueError):
        FaultRule.from_dict({"kind": "error", "colour": "red"})


def test_error_shapes_follow_the_operation_family():
    rule = FaultRule(status=400, message="nope")
    assert rule.error("vbs.get_backup").body("r") == {"badRequest": {"code": 400, "message": "nope"}}
    assert rule.error("iam.create_token").body("r") == {
        "error": {"code": 400, "message": "nope", "title": "Bad Request"}
    }
    assert rule.error("vbs.create_backup").body("r") == {
        "error": {"code": "VolumeBackup.0900", "message": "nope"}
    }
    assert rule.error("ecs.get_server").body("r")["error"]["code"] == "VolumeBackup.0900"


async def test_in_process_gateway_verifies_signatures_and_drops_like_a_socket(fleet_path, signer):
    app = create_app(fleet=fleet_path)
    app.state.faults.add(FaultRule(operation="iam.create_token", kind="drop_before"))
    project_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://emulator") as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/v3/auth/tokens", json={})
        request = client.build_request("GET", f"/v1/{project_id}/cloudservers/detail", params={"name": "db"})
        signed = await client.send(signer(request, "EXAMPLEAK0000000001", "example-secret-1"))
        missing = await client.get("/nowhere")
    assert [s["name"] for s in signed.json()["servers"]] == ["db-01"]
    assert missing.json()["error_code"] == "APIGW.0101"


# Control API -----------------------------------------------------------------------------------------------


def test_state_summary_lists_servers_volumes_and_statuses(emulator):
    summary = emulator.control("GET", "/state").json()
    project = summary["projects"][emulator.project_id]
    assert {s["name"] for s in project["servers"]} == {"web-01", "db-01"}
    statuses = {v["name"]: v["status"] for v in project["volumes"]}
    assert statuses["scratch-01"] == "available"
    assert statuses["web-01-data"] == "in-use"
    assert summary["settings"]["job_mode"] == "polls"
    assert project["backups"] == [] and project["jobs"] == []


def test_request_log_can_be_read_and_cleared(emulator):
    before = time.time()
    emulator.call("GET", servers_path(emulator))
    (entry,) = emulator.control("GET", "/requests").json()
    assert before <= entry.pop("at") <= time.time()
    assert entry == {
        "operation": "ecs.list_servers",
        "method": "GET",
        "path": servers_path(emulator),
        "status": 200,
        "project_id": emulator.project_id,
        "account": emulator.project_id,  # the example fleet names no account: each project is its own
    }
    emulator.control("DELETE", "/requests")
    assert emulator.control("GET", "/requests").json() == []


def test_clock_advances_on_request(emulator):
    before = datetime.fromisoformat(emulator.control("GET", "/clock").json()["now"])
    after = datetime.fromisoformat(
        emulator.control("POST", "/clock/advance", json={"seconds": 90}).json()["now"]
    )
    assert after - before == timedelta(seconds=90)
    assert emulator.control("POST", "/clock/advance", json={"seconds": -1}).status_code == 400


def test_settings_update_is_partial_and_validated(emulator):
    updated = emulator.control("POST", "/settings", json={"polls_to_finish": 5}).json()
    assert (updated["polls_to_finish"], updated["job_mode"]) == (5, "polls")
    bad = emulator.control("POST", "/settings", json={"job_mode": "never"})
    assert bad.status_code == 400 and "job_mode" in bad.json()["error"]["message"]
    unknown = emulator.control("POST", "/settings", json={"warp": 9})
    assert unknown.status_code == 400 and "warp" in unknown.json()["error"]["message"]


def test_job_faults_are_queued_and_cleared(emulator):
    fault = {"mode": "fail", "job_type": "bksCreateBackup", "count": 2}
    assert emulator.control("POST", "/job_faults", json=fault).status_code == 200
    assert [f.mode for f in emulator.state.job_faults] == ["fail"]
    assert emulator.control("POST", "/job_faults", json={"mode": "sometimes"}).status_code == 400
    emulator.control("DELETE", "/job_faults")
    assert emulator.state.job_faults == []


def test_reset_without_body_reloads_the_started_fleet_and_clears_everything(emulator):
    emulator.call("POST", f"/v2/{emulator.project_id}/cloudvolumes", json=new_volume("to-be-forgotten"))
    emulator.control("POST", "/faults", json={"operation": "*", "kind": "error", "count": 100})
    emulator.control("POST", "/rate_limit", json={"rate": 0.01, "burst": 1})
    emulator.control("POST", "/clock/advance", json={"seconds": 86400 * 30})
    assert emulator.control("POST", "/reset").json() == {"projects": [emulator.project_id]}
    assert "to-be-forgotten" not in volume_names(emulator)
    assert emulator.control("GET", "/faults").json() == []
    assert emulator.state.settings.job_mode == "time"  # the started fleet has no settings
    assert abs(emulator.state.now() - datetime.now(UTC)) < timedelta(minutes=1)
    assert [emulator.call("GET", servers_path(emulator)).status_code for _ in range(3)] == [200] * 3


def test_adding_a_fleet_twice_conflicts_and_a_bad_fleet_names_the_field(emulator, other_project):
    again = emulator.control(
        "POST", "/fleet", json={"projects": [{"id": other_project.project_id, "name": "x"}]}
    )
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]["message"]
    bad = emulator.control("POST", "/reset", json={"projects": [{"id": "not-hex", "name": "x"}]})
    assert bad.status_code == 400
    assert "projects.0.id" in bad.json()["error"]["message"]
