"""Credentials blocks: what a block turns into (no server needed), and on the real server a block registered
by `vbs-backup blocks register` that a run names in its `credentials` parameter."""

from __future__ import annotations

import subprocess

import pytest
from pydantic import SecretStr

from deployments.blocks import VbsCredentials, block_from_settings
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
        project_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0", ak="AK1", sk="sk-value", endpoint="http://x:1"
    )
    block = block_from_settings(settings)
    assert block.sk is not None and block.sk.get_secret_value() == "sk-value"
    assert (block.ak, block.endpoint) == ("AK1", "http://x:1")
    assert "sk-value" not in repr(block)


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
