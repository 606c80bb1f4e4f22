"""The control API refuses what a web page could send it (CSRF) or route to it (DNS rebinding), over a socket.

A page on another site can make a browser send "simple" requests (text/plain, form, or no body) to the
emulator on 127.0.0.1, and a rebound DNS name can make the page same-origin with it (then the Host header
names the attacker's domain). The control API therefore answers only loopback Host names (and the host it was
explicitly bound to), and changes state only for a JSON body (or no body) without a browser's `Origin`.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from vbs_backup.emulator.app import create_app
from vbs_backup.emulator.server import EmulatorServer

VBS_BACKUP = Path(sys.executable).parent / "vbs-backup"


def settings(emulator) -> dict:
    return emulator.control("GET", "/settings").json()


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


# CSRF: what a cross-site page can send ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_a_body_that_is_not_declared_json_is_refused_and_changes_nothing(emulator, content_type):
    before = settings(emulator)
    response = emulator.client.post(
        "/_emulator/settings", content=b'{"job_mode": "time"}', headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert error_code(response) == "Emulator.UnsupportedMediaType"
    assert "application/json" in response.json()["error"]["message"]
    assert settings(emulator) == before


def test_a_text_plain_reset_does_not_reset(emulator, emulator_server):
    emulator.control("POST", "/rate_limit", json={"rate": 5, "burst": 5}).raise_for_status()
    emulator.control("POST", "/clock/advance", json={"seconds": 3600}).raise_for_status()
    before = emulator.control("GET", "/state").json()
    response = emulator.client.post("/_emulator/reset", content=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert emulator.control("GET", "/state").json() == before
    assert emulator_server.app.state.rate_limiter.describe() == {"rate": 5, "burst": 5}
    emulator.control("POST", "/reset").raise_for_status()  # no rate limit for the tests that follow


def test_a_body_less_browser_request_is_refused_and_changes_nothing(emulator):
    # fetch(url, {method: "POST", mode: "no-cors"}) sends no body and no Content-Type, but always an Origin
    emulator.control("POST", "/clock/advance", json={"seconds": 3600}).raise_for_status()
    before = emulator.control("GET", "/state").json()
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = emulator.client.post("/_emulator/reset", headers=headers)
        assert response.status_code == 403, headers
        assert error_code(response) == "Emulator.Forbidden"
        response = emulator.client.delete("/_emulator/requests", headers=headers)
        assert response.status_code == 403, headers
    assert emulator.control("GET", "/state").json() == before


def test_a_json_body_from_a_browser_is_refused_too(emulator):
    before = settings(emulator)
    response = emulator.client.post(
        "/_emulator/settings", json={"job_mode": "time"}, headers={"Origin": "http://127.0.0.1:4200"}
    )
    assert response.status_code == 403
    assert settings(emulator) == before


# DNS rebinding: the Host header ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil.example:80", ""]
)
def test_a_foreign_host_is_refused_for_reads_and_writes(emulator, host):
    before = emulator.control("GET", "/state").json()
    read = emulator.client.get("/_emulator/state", headers={"Host": host})
    assert read.status_code == 421
    assert error_code(read) == "Emulator.MisdirectedRequest"
    write = emulator.client.post("/_emulator/settings", json={"job_mode": "time"}, headers={"Host": host})
    assert write.status_code == 421
    assert emulator.control("GET", "/state").json() == before


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LocalHost:1234", "[::1]", "[::1]:8080"])
def test_loopback_hosts_with_any_port_are_accepted(emulator, host):
    response = emulator.client.post("/_emulator/settings", json={"job_mode": "time"}, headers={"Host": host})
    assert response.status_code == 200
    assert settings(emulator)["job_mode"] == "time"


def test_the_cloud_api_answers_any_host_it_is_signed_for(emulator):
    # Documented choice: every cloud call is authenticated (AK/SK or token), so the cloud API is not guarded.
    response = emulator.call(
        "GET", f"/v1/{emulator.project_id}/cloudservers/detail", headers={"Host": "emulator.internal:9"}
    )
    assert response.status_code == 200


def test_the_host_the_emulator_was_bound_to_is_accepted(fleet_path):
    app = create_app(fleet=fleet_path, hosts=["Emulator.Internal"])
    with EmulatorServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        ok = client.post("/_emulator/reset", json={}, headers={"Host": "emulator.internal:8080"})
        assert ok.status_code == 400  # past the guard: `{}` is not a fleet
        assert client.get("/_emulator/state", headers={"Host": "emulator.internal"}).status_code == 200
        assert client.get("/_emulator/state", headers={"Host": "other.internal"}).status_code == 421


# Normal use still works -----------------------------------------------------------------------------------


def test_normal_control_calls_still_work(emulator):
    assert emulator.control("POST", "/settings", json={"job_mode": "time"}).status_code == 200
    assert settings(emulator)["job_mode"] == "time"
    charset = emulator.client.post(
        "/_emulator/rate_limit",
        content=b'{"rate": null}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 200
    assert emulator.control("DELETE", "/requests").status_code == 200  # no body, no Content-Type
    assert emulator.control("DELETE", "/job_faults").status_code == 200
    assert emulator.control("POST", "/reset").json() == {"projects": [emulator.project_id]}
    assert emulator.client.get("/_emulator/state").status_code == 200


# Binding beyond loopback ----------------------------------------------------------------------------------


def test_binding_beyond_loopback_logs_one_warning(fleet_path, caplog):
    caplog.set_level(logging.WARNING, logger="vbs_backup.emulator.server")
    with EmulatorServer(create_app(fleet=fleet_path), host="127.0.0.1"):
        pass
    assert caplog.records == []
    with EmulatorServer(create_app(fleet=fleet_path), host="0.0.0.0"):
        pass
    warnings = [r for r in caplog.records if r.name == "vbs_backup.emulator.server"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "0.0.0.0" in warnings[0].getMessage() and "loopback" in warnings[0].getMessage()


def test_the_emulator_command_warns_once_and_serves_its_printed_url(fleet_path):
    process = subprocess.Popen(
        [str(VBS_BACKUP), "emulator", "--fleet", str(fleet_path), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        ready = lines.get(timeout=30)
        assert ready.startswith("emulator ready at http://0.0.0.0:")
        url = ready.split()[-1]
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/_emulator/reset", json=None).status_code == 200  # Host 0.0.0.0:port
            assert client.get("/_emulator/state", headers={"Host": "evil.example"}).status_code == 421
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    warnings = [line for line in stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, stderr
    assert "0.0.0.0" in warnings[0]
