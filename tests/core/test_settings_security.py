"""Settings as a gate for secrets: endpoints without user info, plain http:// only to this machine, and a
connection given explicitly (a credentials block) owing nothing to the environment or a `.env` file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.environment import without_machine_settings
from vbs_backup.settings import CONNECTION_FIELDS, ConfigError, Settings, check_endpoint

PROJECT_ID = "17fbda95add24720a4038ba4b1c705ed"
ENDPOINT_FIELDS = ("endpoint", "iam_endpoint", "ecs_endpoint", "evs_endpoint", "vbs_endpoint")
SECRET = "s3cret-in-url"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return without_machine_settings(monkeypatch, tmp_path)


def only_error(info: pytest.ExceptionInfo[ValidationError]) -> tuple[tuple, str]:
    [error] = info.value.errors()
    return error["loc"], error["msg"]


# ------------------------------------------------------------------------------------------- user info


@pytest.mark.parametrize("field", ENDPOINT_FIELDS)
@pytest.mark.parametrize(
    "url",
    [f"https://ops:{SECRET}@vbs.example.com", f"http://ops:{SECRET}@127.0.0.1:8700", f"https://{SECRET}@h"],
)
def test_user_info_in_an_endpoint_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, field: str, url: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**{field: url})
    loc, message = only_error(info)
    assert loc == (field,) and "user info" in message
    assert SECRET not in str(info.value)

    monkeypatch.setenv(f"VBS_BACKUP_{field.upper()}", url)  # the same from the environment
    with pytest.raises(ValidationError) as info:
        Settings()
    assert only_error(info)[0] == (field,) and SECRET not in str(info.value)


def test_user_info_is_refused_even_where_plain_http_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS", "true")
    with pytest.raises(ValidationError, match="user info") as info:
        Settings(endpoint=f"http://ops:{SECRET}@vbs.example.com")
    assert SECRET not in str(info.value)
    with pytest.raises(ValueError, match="user info") as plain:
        check_endpoint(f"https://ops:{SECRET}@vbs.example.com", allow_insecure=True)
    assert SECRET not in str(plain.value)


# ------------------------------------------------------------------------------------------- plain http


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8700",
        "http://127.3.4.5:1/",
        "http://[::1]:8700",
        "http://localhost:8700",
        "http://LOCALHOST",
        "https://vbs.eu-de.otc.t-systems.com",
        "https://10.1.2.3:8443/",
    ],
)
def test_https_anywhere_and_plain_http_to_this_machine_are_accepted(url: str) -> None:
    settings = Settings(endpoint=url, vbs_endpoint=url)
    assert settings.endpoint == settings.vbs_endpoint == url.rstrip("/")


@pytest.mark.parametrize("field", ENDPOINT_FIELDS)
@pytest.mark.parametrize(
    "url", ["http://vbs.example.com", "http://10.1.2.3:8700", "http://[2001:db8::1]", "http://0.0.0.0:8700"]
)
def test_plain_http_beyond_this_machine_is_refused_with_the_way_out(field: str, url: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**{field: url})
    loc, message = only_error(info)
    assert loc == (field,)
    assert "https://" in message and "VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS=true" in message
    assert url not in str(info.value)


def test_plain_http_beyond_this_machine_when_explicitly_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VBS_BACKUP_IAM_ENDPOINT", "http://iam.lab.example")
    with pytest.raises(ValidationError, match="iam_endpoint"):
        Settings()
    monkeypatch.setenv("VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS", "true")
    assert Settings().iam_endpoint == "http://iam.lab.example"
    assert Settings(allow_insecure_endpoints=False, iam_endpoint="https://iam.lab.example").iam_endpoint


# --------------------------------------------------------------------------------- a block's connection


HOSTILE = {
    "VBS_BACKUP_CLOUD": "otc",
    "VBS_BACKUP_REGION": "eu-de",
    "VBS_BACKUP_PROJECT_ID": "ffffffffffffffffffffffffffffffff",
    "VBS_BACKUP_AK": "ENV-AK",
    "VBS_BACKUP_SK": "env-sk",
    "VBS_BACKUP_USERNAME": "env-user",
    "VBS_BACKUP_PASSWORD": "env-password",
    "VBS_BACKUP_DOMAIN": "env-domain",
    **{f"VBS_BACKUP_{f.upper()}": f"http://127.0.0.9:666/{f}" for f in ENDPOINT_FIELDS},
}


def test_every_connection_field_has_a_hostile_value_here() -> None:
    # The test below covers every field a block governs, and only those.
    assert {f"VBS_BACKUP_{f.upper()}" for f in CONNECTION_FIELDS} == set(HOSTILE)


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_an_explicit_connection_takes_nothing_from_the_environment_or_dotenv(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, where: str
) -> None:
    if where == "environment":
        for name, value in HOSTILE.items():
            monkeypatch.setenv(name, value)
    else:
        (clean_env / ".env").write_text("".join(f"{k}={v}\n" for k, v in HOSTILE.items()))
    assert Settings().iam_endpoint == "http://127.0.0.9:666/iam_endpoint"  # what a Settings() would take
    monkeypatch.setenv("VBS_BACKUP_DATABASE_URL", "sqlite:////tmp/worker-ledger.sqlite")
    monkeypatch.setenv("VBS_BACKUP_REQUEST_TIMEOUT", "7")

    settings = Settings.for_connection(
        {"project_id": PROJECT_ID, "username": "ops", "password": "pw-in-block", "domain": "acme"}
    )

    assert (settings.cloud, settings.region) == ("huaweicloud", "eu-west-0")  # defaults, not the env's
    assert (settings.project_id, settings.username, settings.domain) == (PROJECT_ID, "ops", "acme")
    assert settings.password is not None and settings.password.get_secret_value() == "pw-in-block"
    assert settings.ak is None and settings.sk is None
    assert all(getattr(settings, field) is None for field in ENDPOINT_FIELDS)
    # The worker's own settings still come from its environment.
    assert settings.database_url == "sqlite:////tmp/worker-ledger.sqlite"
    assert settings.request_timeout == 7


def test_an_explicit_connection_ignores_insecure_permission_from_dotenv(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    (clean_env / ".env").write_text("VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS=true\n")
    with pytest.raises(ValidationError, match="VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS"):
        Settings.for_connection({"endpoint": "http://vbs.lab.example"})
    monkeypatch.setenv("VBS_BACKUP_ALLOW_INSECURE_ENDPOINTS", "true")  # the worker's own decision
    assert (
        Settings.for_connection({"endpoint": "http://vbs.lab.example"}).endpoint == "http://vbs.lab.example"
    )


def test_an_explicit_connection_names_only_connection_fields() -> None:
    with pytest.raises(ConfigError, match="database_url"):
        Settings.for_connection({"database_url": "sqlite:////tmp/x.sqlite"})


def test_the_environment_alone_never_reads_dotenv(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    (clean_env / ".env").write_text("VBS_BACKUP_IAM_ENDPOINT=http://127.0.0.9:666\nVBS_BACKUP_AK=DOTENV-AK\n")
    monkeypatch.setenv("VBS_BACKUP_AK", "ENV-AK")
    monkeypatch.setenv("VBS_BACKUP_REGION", "eu-de")

    settings = Settings.from_environment()

    assert settings.iam_endpoint is None
    assert (settings.ak, settings.region) == ("ENV-AK", "eu-de")
