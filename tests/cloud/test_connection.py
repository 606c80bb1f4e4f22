"""Settings to client: credentials checked, per-service endpoints honoured."""

from __future__ import annotations

import pytest

from vbs_backup.connection import connect
from vbs_backup.settings import ConfigError, Settings

PID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def settings(**values) -> Settings:
    return Settings(_env_file=None, project_id=PID, **values)


def test_per_service_endpoints_win_over_the_single_endpoint():
    client = connect(
        settings(ak="AK", sk="SK", endpoint="https://all.local:1", vbs_endpoint="https://vbs.local:2")
    )
    endpoints = client.session.endpoints
    assert (endpoints.vbs, endpoints.ecs, endpoints.evs, endpoints.iam) == (
        "https://vbs.local:2",
        "https://all.local:1",
        "https://all.local:1",
        "https://all.local:1",
    )


def test_documented_hosts_per_cloud_when_nothing_is_overridden():
    client = connect(settings(cloud="otc", region="eu-de", ak="AK", sk="SK"))
    assert client.session.endpoints.vbs == "https://vbs.eu-de.otc.t-systems.com"


def test_incomplete_credentials_name_what_is_missing_and_no_secret(monkeypatch):
    for key in ("VBS_BACKUP_AK", "VBS_BACKUP_SK", "VBS_BACKUP_USERNAME", "VBS_BACKUP_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError) as excinfo:
        connect(settings(username="ops", password="hunter2-secret"))
    assert "DOMAIN" in str(excinfo.value) and "hunter2" not in str(excinfo.value)


def test_a_bad_endpoint_is_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="vbs_endpoint"):
        settings(ak="AK", sk="SK", vbs_endpoint="ftp://nope")
