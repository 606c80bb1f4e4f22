"""Credentials blocks: what a block turns into (no server needed), and on the real server a block registered
by `vbs-backup blocks register` that a run names in its `credentials` parameter."""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr, ValidationError

from deployments.blocks import SERVICE_ENDPOINT_FIELDS, VbsCredentials, block_from_settings
from vbs_backup.config import ConfigError, Settings

from .conftest import WEB_01, clean_env, vbs_backup_command


def test_a_block_gives_its_own_connection_and_the_environment_s_ledger(monkeypatch):
    monkeypatch.setenv("VBS_BACKUP_AK", "ENV-AK")  # must not leak into a block that uses an IAM user
    monkeypatch.setenv("VBS_BACKUP_SK", "env-sk")
    monkeypatch.setenv("VBS_BACKUP_DATABASE_URL", "sqlite:////tmp/ledger-from-env.sqlite")
    block = VbsCredentials(
        cloud="otc",
        region="eu-de",
        project_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        username="ops",
        password=SecretStr("pw-in-block"),
        domain="acme",
    )

    settings = block.settings()

    assert (settings.cloud, settings.region, settings.username, settings.domain) == (
        "otc",
        "eu-de",
        "ops",
        "acme",
    )
    assert settings.ak is None and settings.sk is None
    assert settings.credentials_mode() == "token"
    assert settings.password is not None and settings.password.get_secret_value() == "pw-in-block"
    assert settings.database_url == "sqlite:////tmp/ledger-from-env.sqlite"
    assert "pw-in-block" not in repr(block) + repr(settings)


def test_a_block_refuses_per_service_endpoints_the_settings_cannot_carry():
    block = VbsCredentials(project_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0", ak="AK", sk=SecretStr("sk"))
    block.vbs_endpoint = "https://vbs.example.com"
    if "vbs_endpoint" in Settings.model_fields:
        assert block.settings().vbs_endpoint == "https://vbs.example.com"  # type: ignore[attr-defined]
    else:
        with pytest.raises(ConfigError, match="vbs_endpoint"):
            block.settings()


def test_a_block_from_settings_keeps_the_secrets_secret():
    settings = Settings(
        project_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0", ak="AK1", sk="sk-value", endpoint="https://x:1"
    )
    block = block_from_settings(settings)
    assert block.sk is not None and block.sk.get_secret_value() == "sk-value"
    assert (block.ak, block.endpoint) == ("AK1", "https://x:1")
    assert "sk-value" not in repr(block)


# ------------------------------------------------------------------------------ a block is self-contained

PROJECT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ENDPOINT_FIELDS = ("endpoint", *SERVICE_ENDPOINT_FIELDS)


@pytest.fixture
def no_vbs_env(monkeypatch, tmp_path):
    """No VBS_BACKUP_ variable from this machine, and a fresh current directory (for .env files)."""
    for name in list(os.environ):
        if name.startswith("VBS_BACKUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_block_s_credentials_go_only_to_the_block_s_endpoints(no_vbs_env, monkeypatch):
    # The reported case: a .env where the worker runs, and the environment, naming other endpoints.
    (no_vbs_env / ".env").write_text(
        "VBS_BACKUP_IAM_ENDPOINT=http://127.0.0.9:8666\nVBS_BACKUP_PROJECT_ID=ffffffffffffffffffffffffffffffff\n"
    )
    monkeypatch.setenv("VBS_BACKUP_ECS_ENDPOINT", "https://ecs.attacker.example")
    monkeypatch.setenv("VBS_BACKUP_ENDPOINT", "https://all.attacker.example")
    monkeypatch.setenv("VBS_BACKUP_REGION", "eu-de")
    block = VbsCredentials(project_id=PROJECT, username="ops", password=SecretStr("pw"), domain="acme")

    settings = block.settings()

    assert all(getattr(settings, name) is None for name in ENDPOINT_FIELDS)  # the cloud's own hosts
    assert (settings.project_id, settings.region) == (PROJECT, "eu-west-0")

    block.vbs_endpoint = "https://vbs.proxy.example"
    settings = block.settings()
    assert settings.vbs_endpoint == "https://vbs.proxy.example"
    assert (settings.endpoint, settings.iam_endpoint, settings.ecs_endpoint) == (None, None, None)


@pytest.mark.parametrize("field", ENDPOINT_FIELDS)
def test_a_block_refuses_user_info_in_an_endpoint_without_echoing_it(field):
    with pytest.raises(ValidationError) as info:
        VbsCredentials(project_id=PROJECT, **{field: "https://ops:s3cret-pw@vbs.example.com"})
    [error] = info.value.errors()
    assert error["loc"] == (field,) and "user info" in error["msg"]
    assert "s3cret-pw" not in str(info.value)


def test_a_block_s_plain_http_endpoint_needs_the_worker_s_permission(no_vbs_env, monkeypatch):
    block = VbsCredentials(project_id=PROJECT, ak="AK", sk=SecretStr("sk"), endpoint="http://vbs.lab.example")
    with pytest.raises(ValidationError, match="VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS=true"):
        block.settings()
    monkeypatch.setenv("VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS", "true")
    assert block.settings().endpoint == "http://vbs.lab.example"
    # The emulator's loopback address needs no permission.
    monkeypatch.delenv("VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS")
    block.endpoint = "http://127.0.0.1:8700"
    assert block.settings().endpoint == "http://127.0.0.1:8700"


def test_a_flow_run_without_a_block_reads_the_environment_but_no_dotenv(no_vbs_env, monkeypatch):
    from tasks.runtime import load_settings

    (no_vbs_env / ".env").write_text("VBS_BACKUP_IAM_ENDPOINT=http://127.0.0.9:8666\nVBS_BACKUP_AK=DOTENV\n")
    monkeypatch.setenv("VBS_BACKUP_AK", "ENV-AK")

    settings = load_settings()

    assert settings.iam_endpoint is None
    assert settings.ak == "ENV-AK"


class _ApiRecorder(ThreadingHTTPServer):
    """Stands where the Prefect API would be; records every request (nothing should arrive)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one_request(self) -> None:
                self.raw_requestline = self.rfile.readline(65537)
                if self.raw_requestline:
                    recorder.requests.append(self.raw_requestline.decode(errors="replace").strip())
                    self.send_error(503)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.mark.parametrize("option", ["--endpoint", "--iam-endpoint"])
def test_blocks_register_refuses_user_info_before_anything_is_saved(option):
    api = _ApiRecorder()
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        env = clean_env(
            PREFECT_API_URL=f"http://127.0.0.1:{api.server_address[1]}/api",
            VBS_BACKUP_PROJECT_ID=PROJECT,
            VBS_BACKUP_SK="the-sk",
        )
        args = [*vbs_backup_command(), "blocks", "register", "leaky", "--ak", "AK"]
        args += [option, "https://ops:s3cret-pw@vbs.example.com"]
        result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    finally:
        api.shutdown()
        api.server_close()

    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert option.removeprefix("--").replace("-", "_") in output and "user info" in output
    assert "s3cret-pw" not in output and "the-sk" not in output
    assert api.requests == []  # nothing reached the Prefect server


@pytest.mark.server
def test_a_run_that_names_a_registered_block_signs_in_with_it(prefect_server, served, cloud):
    # The block holds the IAM user; the served process only has AK/SK. A token request proves the block.
    env = clean_env(
        **prefect_server.env,
        VBS_BACKUP_ENDPOINT=cloud.env["VBS_BACKUP_ENDPOINT"],
        VBS_BACKUP_PROJECT_ID=cloud.env["VBS_BACKUP_PROJECT_ID"],
        VBS_BACKUP_PASSWORD=cloud.user["VBS_BACKUP_PASSWORD"],
    )
    args = [
        *vbs_backup_command(),
        "blocks",
        "register",
        "emulator-user",
        "--username",
        cloud.user["VBS_BACKUP_USERNAME"],
        "--domain",
        cloud.user["VBS_BACKUP_DOMAIN"],
        "--check",
    ]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "IAM user" in result.stdout
    assert cloud.user["VBS_BACKUP_PASSWORD"] not in result.stdout + result.stderr
    cloud.control("DELETE", "/job_faults")
    cloud.control("DELETE", "/requests")

    flow_run = prefect_server.run("backup-server", {"server_id": WEB_01, "credentials": "emulator-user"})
    final = prefect_server.wait_final(flow_run["id"])

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    operations = [entry["operation"] for entry in cloud.control("GET", "/requests").json()]
    assert "iam.create_token" in operations
