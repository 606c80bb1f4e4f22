"""Settings from the environment, and the backup plan: validation messages, YAML loading, backup names."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from vbs_backup.config import (
    BackupPlan,
    CloudName,
    ConfigError,
    PlanError,
    ServerSelection,
    Settings,
    load_plan,
    redact_url,
    validate_plan,
)
from vbs_backup.retention import RetentionRules

SERVER_ID = "3f1c2b7e-8d4a-4c55-9a0e-2b6f1d9c7a10"
PROJECT_ID = "17fbda95add24720a4038ba4b1c705ed"
SLOT = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No VBS_BACKUP_* variable and no .env file from the machine leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("VBS_BACKUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_plan(**overrides: object) -> BackupPlan:
    data: dict[str, object] = {"selection": {"name_patterns": ["web-*"]}}
    data.update(overrides)
    return BackupPlan.model_validate(data)


# ------------------------------------------------------------------------------------------- settings


def test_settings_defaults() -> None:
    settings = Settings()
    assert settings.cloud is CloudName.huaweicloud
    assert settings.region == "eu-west-0"
    assert settings.request_timeout == 30
    assert settings.max_requests_per_second == 10
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("ledger.sqlite")


def test_default_database_is_not_created_by_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setattr("platformdirs.user_data_dir", lambda *a, **k: str(data_dir))
    settings = Settings()
    assert settings.database_url == f"sqlite:///{data_dir / 'ledger.sqlite'}"
    assert not data_dir.exists()


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VBS_BACKUP_CLOUD", "OTC")
    monkeypatch.setenv("VBS_BACKUP_REGION", "eu-de")
    monkeypatch.setenv("VBS_BACKUP_PROJECT_ID", PROJECT_ID)
    monkeypatch.setenv("VBS_BACKUP_AK", "AKEXAMPLE")
    monkeypatch.setenv("VBS_BACKUP_SK", "sk-very-secret")
    monkeypatch.setenv("VBS_BACKUP_ENDPOINT", "http://127.0.0.1:8999/")
    monkeypatch.setenv("VBS_BACKUP_DATABASE_URL", "postgresql://vbs:pw@db.example/ledger")
    monkeypatch.setenv("VBS_BACKUP_REQUEST_TIMEOUT", "5.5")
    monkeypatch.setenv("VBS_BACKUP_MAX_REQUESTS_PER_SECOND", "2")
    settings = Settings()
    assert settings.cloud is CloudName.otc
    assert settings.region == "eu-de"
    assert settings.project_id == PROJECT_ID
    assert settings.ak == "AKEXAMPLE"
    assert settings.sk is not None and settings.sk.get_secret_value() == "sk-very-secret"
    assert settings.endpoint == "http://127.0.0.1:8999"
    assert settings.database_url == "postgresql://vbs:pw@db.example/ledger"
    assert settings.request_timeout == 5.5
    assert settings.max_requests_per_second == 2


def test_settings_read_dotenv_file(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "VBS_BACKUP_USERNAME=alice\nVBS_BACKUP_PASSWORD=hunter2\nVBS_BACKUP_DOMAIN=acme\n"
        "VBS_BACKUP_CLOUD=flexibleengine\n"
    )
    settings = Settings()
    assert settings.cloud is CloudName.flexibleengine
    assert settings.username == "alice"
    assert settings.credentials_mode() == "token"


def test_environment_wins_over_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("VBS_BACKUP_REGION=eu-de\n")
    monkeypatch.setenv("VBS_BACKUP_REGION", "eu-west-0")
    assert Settings().region == "eu-west-0"


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VBS_BACKUP_AK", "")
    monkeypatch.setenv("VBS_BACKUP_SK", "  ")
    settings = Settings()
    assert settings.ak is None
    assert settings.sk is None


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("VBS_BACKUP_PROJECT_ID", "17FBDA95ADD24720A4038BA4B1C705ED", "project_id"),
        ("VBS_BACKUP_PROJECT_ID", "not-a-project", "project_id"),
        ("VBS_BACKUP_ENDPOINT", "ftp://127.0.0.1", "endpoint"),
        ("VBS_BACKUP_ENDPOINT", "localhost:8000", "endpoint"),
        ("VBS_BACKUP_CLOUD", "aws", "cloud"),
        ("VBS_BACKUP_REGION", "EU West", "region"),
        ("VBS_BACKUP_REQUEST_TIMEOUT", "0", "request_timeout"),
        ("VBS_BACKUP_MAX_REQUESTS_PER_SECOND", "-1", "max_requests_per_second"),
        ("VBS_BACKUP_DATABASE_URL", "ledger.sqlite", "database_url"),
    ],
)
def test_bad_settings_name_the_field(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [err["loc"] for err in info.value.errors()] == [(field,)]
    assert field in str(info.value)


def test_settings_errors_do_not_echo_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VBS_BACKUP_DATABASE_URL", "no-scheme-but-s3cret-password")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "s3cret" not in str(info.value)


def test_secrets_never_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VBS_BACKUP_AK", "AKEXAMPLE")
    monkeypatch.setenv("VBS_BACKUP_SK", "sk-very-secret")
    monkeypatch.setenv("VBS_BACKUP_USERNAME", "alice")
    monkeypatch.setenv("VBS_BACKUP_PASSWORD", "hunter2-password")
    monkeypatch.setenv("VBS_BACKUP_DOMAIN", "acme")
    monkeypatch.setenv("VBS_BACKUP_DATABASE_URL", "postgresql://vbs:db-pass-123@db.example:5432/ledger")
    settings = Settings()
    for text in (repr(settings), str(settings), f"{settings}", repr(settings.sk), str(settings.password)):
        assert "sk-very-secret" not in text
        assert "hunter2-password" not in text
        assert "db-pass-123" not in text
    assert "AKEXAMPLE" in repr(settings)  # the access key is an identifier, not a secret
    assert "db.example" in repr(settings)


def test_database_url_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VBS_BACKUP_DATABASE_URL", "postgresql://vbs:db-pass-123@db.example:5432/ledger")
    assert Settings().database_url_redacted() == "postgresql://vbs:***@db.example:5432/ledger"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////var/lib/vbs/ledger.sqlite", "sqlite:////var/lib/vbs/ledger.sqlite"),
        ("sqlite:///relative.sqlite", "sqlite:///relative.sqlite"),
        ("postgresql://postgres@127.0.0.1/test", "postgresql://postgres@127.0.0.1/test"),
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql+psycopg://u:p%40ss@h:5432/db?sslmode=require",
            "postgresql+psycopg://u:***@h:5432/db?sslmode=require",
        ),
        # An unescaped "@" in the password: hide too much rather than too little.
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_credentials_mode_aksk_wins_when_both_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AK": "a", "SK": "s", "USERNAME": "u", "PASSWORD": "p", "DOMAIN": "d"}.items():
        monkeypatch.setenv(f"VBS_BACKUP_{name}", value)
    assert Settings().credentials_mode() == "aksk"


def test_credentials_mode_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AK": "a", "USERNAME": "u", "PASSWORD": "p", "DOMAIN": "d"}.items():
        monkeypatch.setenv(f"VBS_BACKUP_{name}", value)
    assert Settings().credentials_mode() == "token"


def test_credentials_mode_names_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VBS_BACKUP_SK", "sk-very-secret")
    monkeypatch.setenv("VBS_BACKUP_USERNAME", "alice")
    with pytest.raises(ConfigError) as info:
        Settings().credentials_mode()
    message = str(info.value)
    assert "missing: VBS_BACKUP_AK)" in message
    assert "missing: VBS_BACKUP_PASSWORD, VBS_BACKUP_DOMAIN)" in message
    assert "sk-very-secret" not in message
    assert isinstance(info.value, ValueError)


def test_credentials_mode_with_nothing_set() -> None:
    with pytest.raises(ConfigError, match="VBS_BACKUP_AK, VBS_BACKUP_SK"):
        Settings().credentials_mode()


# ------------------------------------------------------------------------------------------- the plan


def test_plan_defaults() -> None:
    plan = make_plan()
    assert plan.name == "nightly"
    assert plan.include_system_disk is True
    assert plan.name_prefix == "vbsb"
    assert plan.backup_tags() == {"managed-by": "vbs-backup"}
    assert (plan.disk_deadline_minutes, plan.max_concurrent_servers, plan.max_concurrent_jobs) == (
        60,
        50,
        200,
    )
    assert plan.full_backup_every_days is None
    assert plan.dry_run is False
    assert plan.schedule_timezone == "UTC"
    assert isinstance(plan.retention, RetentionRules)
    assert plan.retention.keep_daily == 7


def test_every_plan_field_has_a_title_and_description() -> None:
    for model in (BackupPlan, ServerSelection):
        for name, field in model.model_fields.items():
            assert field.title, f"{model.__name__}.{name} has no title"
            assert field.description, f"{model.__name__}.{name} has no description"
    schema = BackupPlan.model_json_schema()
    assert schema["properties"]["disk_deadline_minutes"]["maximum"] == 1440
    assert "default" in schema["properties"]["retention"]


def test_selection_needs_something() -> None:
    with pytest.raises(ValidationError) as info:
        ServerSelection(exclude_ids=[SERVER_ID])
    message = str(info.value)
    for field in ("ids", "name_patterns", "tags"):
        assert field in message


def test_selection_normalizes_server_ids() -> None:
    selection = ServerSelection(ids=[SERVER_ID.upper()])
    assert selection.ids == [SERVER_ID]


def test_selection_matches() -> None:
    selection = ServerSelection(
        ids=[SERVER_ID],
        name_patterns=["web-*"],
        tags={"env": "prod", "tier": "db"},
        exclude_name_patterns=["web-test*"],
    )
    other = "00000000-0000-4000-8000-000000000000"
    assert selection.matches(server_id=SERVER_ID.upper(), name="anything")
    assert selection.matches(server_id=other, name="web-01")
    assert not selection.matches(server_id=other, name="WEB-01")  # globs are case-sensitive
    assert not selection.matches(server_id=other, name="web-test-1")
    assert selection.matches(server_id=other, name="db-1", tags={"env": "prod", "tier": "db", "x": "y"})
    assert not selection.matches(server_id=other, name="db-1", tags={"env": "prod"})
    assert not ServerSelection(ids=[SERVER_ID], exclude_ids=[SERVER_ID]).matches(
        server_id=SERVER_ID, name="a"
    )


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        ({"selection": {"ids": ["web01"]}}, "selection.ids.0", "not a server id"),
        (
            {"selection": {"ids": [SERVER_ID], "exclude_ids": ["x"]}},
            "selection.exclude_ids.0",
            "not a server id",
        ),
        ({"selection": {}}, "selection", "ids, name_patterns or tags"),
        ({"selection": {"name_patterns": [""]}}, "selection.name_patterns.0", "empty"),
        ({"selection": {"names": ["web"]}}, "selection.names", "Extra inputs"),
        ({"name": "nightly run"}, "name", "letters, digits"),
        ({"name": "x" * 33}, "name", "at most 32"),
        ({"name_prefix": "autobackup"}, "name_prefix", "auto"),
        ({"name_prefix": "Auto-x"}, "name_prefix", "auto"),
        ({"name_prefix": "vbs.b"}, "name_prefix", "letters, digits"),
        ({"name_prefix": "p" * 21}, "name_prefix", "at most 20"),
        ({"tag_key": "owner/team"}, "tag_key", "'/'"),
        ({"tag_key": ""}, "tag_key", "at least 1"),
        ({"tag_key": "k" * 37}, "tag_key", "at most 36"),
        ({"tag_value": "a=b"}, "tag_value", "'='"),
        ({"tag_value": "v" * 44}, "tag_value", "at most 43"),
        ({"disk_deadline_minutes": 0}, "disk_deadline_minutes", "greater than or equal to 1"),
        ({"disk_deadline_minutes": 1441}, "disk_deadline_minutes", "less than or equal to 1440"),
        ({"max_concurrent_servers": 1001}, "max_concurrent_servers", "less than or equal to 1000"),
        ({"max_concurrent_jobs": 0}, "max_concurrent_jobs", "greater than or equal to 1"),
        ({"full_backup_every_days": 0}, "full_backup_every_days", "greater than or equal to 1"),
        ({"schedule_timezone": "Mars/Olympus"}, "schedule_timezone", "IANA"),
        ({"schedule_timezone": "Europe"}, "schedule_timezone", "IANA"),
        ({"retention": {"keep_daily": 0}}, "retention.keep_daily", "greater than or equal to 1"),
        ({"retention": {}}, "retention", "keeps nothing"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
    ],
)
def test_plan_errors_name_the_field(overrides: dict[str, object], path: str, fragment: str) -> None:
    data: dict[str, object] = {"selection": {"name_patterns": ["web-*"]}}
    data.update(overrides)
    with pytest.raises(PlanError) as info:
        validate_plan(data, source="in test.yaml")
    problems = info.value.problems
    assert any(p.startswith(f"{path}: ") and fragment in p for p in problems), problems
    assert "test.yaml" in str(info.value)
    assert "Value error" not in str(info.value)


def test_plan_error_lists_every_problem() -> None:
    with pytest.raises(PlanError) as info:
        validate_plan({"selection": {"ids": ["a", "b"]}, "name_prefix": "auto", "max_concurrent_jobs": 0})
    paths = sorted(p.split(":")[0] for p in info.value.problems)
    assert paths == ["max_concurrent_jobs", "name_prefix", "selection.ids.0", "selection.ids.1"]
    assert isinstance(info.value, ValueError)


def test_plan_is_frozen() -> None:
    plan = make_plan()
    with pytest.raises(ValidationError):
        plan.dry_run = True  # type: ignore[misc]


# ------------------------------------------------------------------------------------------- YAML


def test_load_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: weekly-db
            selection:
              ids: ["{SERVER_ID}"]
              tags: {{env: prod}}
              exclude_name_patterns: ["*-scratch"]
            include_system_disk: false
            retention:
              keep_last: 3
              keep_monthly: 12
              min_successful: 3
              timezone: Europe/Paris
            schedule_timezone: Europe/Paris
            full_backup_every_days: 30
            """
        )
    )
    plan = load_plan(path)
    assert plan.name == "weekly-db"
    assert plan.selection.ids == [SERVER_ID]
    assert plan.selection.tags == {"env": "prod"}
    assert plan.include_system_disk is False
    assert plan.retention.keep_monthly == 12
    assert plan.full_backup_every_days == 30


def test_load_plan_errors_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad-plan.yaml"
    path.write_text("selection:\n  ids: [web01]\nname_prefix: autobk\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(r"selection\.ids\.0: 'web01' is not a server id", message)
    assert "name_prefix: must not start with 'auto'" in message


def test_load_plan_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PlanError, match=re.escape(str(path))) as info:
        load_plan(path)
    assert "cannot read" in str(info.value)


def test_load_plan_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("selection:\n  ids: [unclosed\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid YAML at line" in message


@pytest.mark.parametrize(("text", "kind"), [("", "empty"), ("- a\n- b\n", "a list")])
def test_load_plan_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(PlanError, match=kind):
        load_plan(path)


# ------------------------------------------------------------------------------------------- names

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_backup_name_shape() -> None:
    plan = make_plan()
    assert plan.backup_name("web-01", "/dev/vdb", SLOT) == "vbsb-web-01-vdb-202403050200"
    assert plan.is_own_backup_name("vbsb-web-01-vdb-202403050200")
    assert not plan.is_own_backup_name("autobk_1234")
    assert not plan.is_own_backup_name(None)


def test_backup_name_is_deterministic_and_in_utc() -> None:
    plan = make_plan()
    paris = timezone(timedelta(hours=1))
    same_instant = SLOT.astimezone(paris)
    assert plan.backup_name("web-01", "/dev/vdb", SLOT) == plan.backup_name(
        "web-01", "/dev/vdb", same_instant
    )
    assert plan.backup_name("web-01", "/dev/vdb", SLOT) == make_plan().backup_name("web-01", "/dev/vdb", SLOT)
    # seconds do not change the slot; a different minute does
    assert plan.backup_name("a", "vdb", SLOT + timedelta(seconds=59)) == plan.backup_name("a", "vdb", SLOT)
    assert plan.backup_name("a", "vdb", SLOT + timedelta(minutes=1)) != plan.backup_name("a", "vdb", SLOT)


def test_backup_name_needs_an_aware_slot() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_plan().backup_name("web", "vdb", datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("server", "device", "prefix"),
    [
        ("web 01.example.com", "/dev/vdb", "vbsb"),
        ("x" * 300, "/dev/vdb", "vbsb"),
        ("x" * 300, "/dev/" + "d" * 40, "p" * 20),
        ("数据库服务器", "/dev/vda", "vbsb"),
        ("---", "", "vbsb"),
        ("auto-server", "/dev/xvdb", "b"),
        ("a/b\\c:d", "C:\\disk\\vdc", "vbsb"),
        ("trailing-" + "y" * 60, "vdb", "vbsb"),
    ],
)
def test_backup_name_is_valid_for_vbs(server: str, device: str, prefix: str) -> None:
    name = make_plan(name_prefix=prefix).backup_name(server, device, SLOT)
    assert NAME_RE.match(name), name
    assert len(name) <= 64
    assert not name.lower().startswith("auto")
    assert name.startswith(f"{prefix}-")
    assert name.endswith("-202403050200")
    assert "--" not in name


def test_backup_name_truncates_the_server_only() -> None:
    name = make_plan().backup_name("s" * 100, "/dev/vdb", SLOT)
    assert len(name) == 64
    assert name.endswith("-vdb-202403050200")


def test_backup_name_fallbacks() -> None:
    plan = make_plan()
    assert plan.backup_name("数据库", "", SLOT) == "vbsb-server-disk-202403050200"
