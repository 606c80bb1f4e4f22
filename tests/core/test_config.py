"""Settings from the environment, and the backup plan: validation messages, YAML loading, backup names."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from tests.environment import without_machine_settings
from vbs_backup.cloud.endpoints import CloudName
from vbs_backup.ledger import make_engine
from vbs_backup.plan import BackupPlan, PlanError, RetentionRules, ServerSelection, load_plan, validate_plan
from vbs_backup.settings import ConfigError, Settings, redact_url

SERVER_ID = "3f1c2b7e-8d4a-4c55-9a0e-2b6f1d9c7a10"
PROJECT_ID = "17fbda95add24720a4038ba4b1c705ed"
SLOT = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)
PARIS_PLAN = {"schedule_timezone": "Europe/Paris"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return without_machine_settings(monkeypatch, tmp_path)


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
    monkeypatch.setenv("VBS_BACKUP_DATABASE_POOL_SIZE", "6")
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
    assert settings.database_pool_size == 6
    # What a run's ledger engine keeps open on PostgreSQL: that many, a third more in a burst.
    pool = make_engine(settings.database_url, pool_size=settings.database_pool_size).pool
    assert (pool.size(), pool._max_overflow) == (6, 2)  # type: ignore[attr-defined]


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
        ("VBS_BACKUP_DATABASE_POOL_SIZE", "0", "database_pool_size"),
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


def test_retention_counts_in_the_schedule_timezone_unless_it_names_one() -> None:
    paris = make_plan(**PARIS_PLAN)
    assert paris.retention.timezone is None and paris.retention.effective_timezone == "Europe/Paris"
    assert paris.retention.tz == ZoneInfo("Europe/Paris")
    assert make_plan().retention.tz == ZoneInfo("UTC")  # the shared default rules were not changed
    given = make_plan(retention={"keep_daily": 3}, **PARIS_PLAN)
    assert given.retention.tz == ZoneInfo("Europe/Paris")
    own = make_plan(retention={"keep_daily": 3, "timezone": "Asia/Tokyo"}, **PARIS_PLAN)
    assert own.retention.tz == ZoneInfo("Asia/Tokyo")
    python = BackupPlan(
        selection=ServerSelection(tags={"a": "b"}),
        retention=RetentionRules(keep_weekly=2),
        schedule_timezone="America/New_York",
    )
    assert python.retention.tz == ZoneInfo("America/New_York")
    # What is written stays "the schedule's": a dump, its round trip, the deployment parameters.
    assert paris.model_dump(exclude_defaults=True) == {
        "selection": {"name_patterns": ["web-*"]},
        **PARIS_PLAN,
    }
    again = BackupPlan.model_validate(paris.model_dump(mode="json"))
    assert again == paris and again.retention.tz == ZoneInfo("Europe/Paris")
    moved = BackupPlan.model_validate({**paris.model_dump(mode="json"), "schedule_timezone": "Asia/Tokyo"})
    assert moved.retention.tz == ZoneInfo("Asia/Tokyo")


def test_every_plan_field_has_a_title_and_description() -> None:
    for model in (BackupPlan, ServerSelection, RetentionRules):
        for name, field in model.model_fields.items():
            assert field.title, f"{model.__name__}.{name} has no title"
            assert field.title != name and "_" not in field.title, f"{model.__name__}.{name}: raw title"
            assert field.description, f"{model.__name__}.{name} has no description"
        assert " " in (model.model_config.get("title") or ""), f"{model.__name__} has no human title"
    schema = BackupPlan.model_json_schema()
    assert schema["properties"]["disk_deadline_minutes"]["maximum"] == 1440
    assert "default" in schema["properties"]["retention"]


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every property of a schema and of its definitions, as `Model.field`."""
    found = {f"{schema['title']}.{k}": v for k, v in schema.get("properties", {}).items()}
    for definitions in (schema.get("$defs", {}), schema.get("definitions", {})):
        for model in definitions.values():
            found |= {f"{model['title']}.{k}": v for k, v in model.get("properties", {}).items()}
    return found


OPTIONAL_NUMBERS = {
    "Backup plan.full_backup_every_days": "integer",
    **{f"Retention rules.{k}": "integer" for k in ("keep_last", "keep_within_days", "keep_daily")},
    **{f"Retention rules.{k}": "integer" for k in ("keep_weekly", "keep_monthly", "keep_yearly")},
    "Retention rules.timezone": "string",
}


def test_optional_fields_are_plain_in_the_form() -> None:
    """Prefect's run form labels `anyOf [integer, null]` "Property is type None": an optional number is a
    plain number there, not required and with no default; its constraints stay."""
    properties = _properties(BackupPlan.model_json_schema())
    for where, prop in properties.items():
        assert {"type": "null"} not in prop.get("anyOf", []), f"{where} has a null branch"
        assert "default" not in prop or prop["default"] is not None, f"{where} defaults to null"
    for where, kind in OPTIONAL_NUMBERS.items():
        assert properties[where]["type"] == kind, where
        assert "default" not in properties[where], where
    assert properties["Backup plan.full_backup_every_days"]["minimum"] == 1
    assert properties["Retention rules.keep_last"]["title"] == "Keep last"
    # The default retention the form starts from has no nulls either.
    default = properties["Backup plan.retention"]["default"]
    assert default["keep_daily"] == 7 and None not in default.values() and "timezone" not in default


def test_optional_fields_still_accept_none() -> None:
    plan = make_plan(
        full_backup_every_days=None, retention={"keep_last": None, "keep_daily": 3, "timezone": None}
    )
    assert plan.full_backup_every_days is None and plan.retention.keep_last is None
    with pytest.raises(PlanError, match="full_backup_every_days"):
        validate_plan({"selection": {"tags": {"a": "b"}}, "full_backup_every_days": 0})


def test_prefect_accepts_the_form_with_and_without_optional_numbers() -> None:
    """What Prefect's server checks a run's parameters with (jsonschema, after its own preprocessing)
    accepts a plan that leaves the optional numbers out, sets them, or sends them empty (null)."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError as SchemaError
    from prefect.utilities.schema_tools.validation import validate

    def flow(plan: BackupPlan) -> None: ...

    schema = parameter_schema(flow).model_dump()
    properties = _properties(schema)
    assert properties["Backup plan.full_backup_every_days"]["type"] == "integer"
    base = {"selection": {"tags": {"backup": "nightly"}}, "schedule_timezone": "Europe/Paris"}
    for plan in (
        base,
        {**base, "full_backup_every_days": 7, "retention": {"keep_last": 3, "timezone": "UTC"}},
        {**base, "full_backup_every_days": None, "retention": {"keep_last": None, "keep_daily": 2}},
    ):
        validate({"plan": plan}, schema, raise_on_error=True)
        validate({"plan": plan}, schema, raise_on_error=True, ignore_required=True)
    for bad in (
        {"full_backup_every_days": 0},
        {"full_backup_every_days": "x"},
        {"retention": {"keep_last": 0}},
    ):
        with pytest.raises(SchemaError):
            validate({"plan": {**base, **bad}}, schema, raise_on_error=True)


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
    assert plan.backup_name("web-01", "/dev/vdb", SLOT) == "vbsb-web-01-vdb-20240305T0200UTC"
    assert plan.is_own_backup_name("vbsb-web-01-vdb-20240305T0200UTC")
    assert plan.is_own_backup_name("vbsb-web-01-vdb-202403050200")  # names of earlier versions
    assert not plan.is_own_backup_name("autobk_1234")
    assert not plan.is_own_backup_name(None)


def test_backup_name_is_deterministic_whatever_zone_the_slot_is_written_in() -> None:
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


def test_backup_name_reads_in_the_schedule_timezone() -> None:
    plan = make_plan(**PARIS_PLAN)
    night_of_the_29th = plan.schedule_slot(datetime(2026, 11, 29, 1, 0, tzinfo=UTC))  # 02:00 CET
    assert night_of_the_29th == datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    assert plan.backup_name("db-01", "/dev/vdb", night_of_the_29th) == "vbsb-db-01-vdb-20261129T0000CET"
    summer = plan.schedule_slot(datetime(2026, 7, 15, 0, 30, tzinfo=UTC))
    assert plan.backup_name("db-01", "/dev/vdb", summer) == "vbsb-db-01-vdb-20260715T0000CEST"
    # The identity marker is unchanged: UTC, as every existing backup carries it.
    assert plan.identity_marker(night_of_the_29th) == "vbsb1 plan=nightly slot=202611282300"


def test_backup_names_tell_the_repeated_hour_of_an_autumn_night_apart() -> None:
    plan = make_plan(slot_minutes=60, **PARIS_PLAN)
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 2026-10-25 00:00 CEST; 02:00 happens twice
    slots = [plan.schedule_slot(start + timedelta(hours=h)) for h in range(6)]
    names = [plan.backup_name("web-01", "/dev/vdb", s)[len("vbsb-web-01-vdb-") :] for s in slots]
    assert names == [
        "20261025T0000CEST",
        "20261025T0100CEST",
        "20261025T0200CEST",
        "20261025T0200CET",
        "20261025T0300CET",
        "20261025T0400CET",
    ]


@pytest.mark.parametrize(
    "zone",
    [
        "UTC",
        "Europe/Paris",
        "Europe/London",
        "America/New_York",
        "America/Sao_Paulo",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "America/St_Johns",
        "Europe/Moscow",
        "Pacific/Apia",
        "Asia/Kathmandu",
    ],
)
def test_backup_names_are_unique_per_slot_across_every_transition(zone: str) -> None:
    """Every 30-minute slot of years with DST changes, a change of standard offset under one abbreviation
    (Moscow 2011/2014) or a skipped day (Apia 2011): one name per slot, valid for VBS."""
    plan = make_plan(slot_minutes=30, schedule_timezone=zone, name_prefix="p" * 20)
    step, seen = timedelta(hours=6), {}
    for year in (2011, 2014, 2026):
        moment = datetime(year, 1, 1, tzinfo=UTC)
        changes = [moment]  # and every change of offset, found within 6 hours
        while moment.year == year:
            if (moment + step).astimezone(plan.zone).utcoffset() != moment.astimezone(plan.zone).utcoffset():
                changes.append(moment)
            moment += step
        for change in changes:
            for half_hours in range(-60, 72):  # the two days around it, slot by slot
                slot = plan.schedule_slot(change + timedelta(minutes=30 * half_hours))
                name = plan.backup_name("s" * 100, "/dev/" + "d" * 40, slot)
                assert NAME_RE.match(name) and len(name) <= 64, name
                assert seen.setdefault(name, slot) == slot, f"{name} stands for {seen[name]} and {slot}"


def test_backup_name_zone_designators() -> None:
    def stamp(zone: str, at: datetime) -> str:
        plan = make_plan(schedule_timezone=zone, slot_minutes=60)
        return plan.name_stamp(plan.schedule_slot(at))

    assert stamp("Asia/Dubai", datetime(2026, 11, 29, 1, tzinfo=UTC)) == "20261129T0500UTCp04"
    assert stamp("America/Sao_Paulo", datetime(2026, 11, 29, 1, tzinfo=UTC)) == "20261128T2200UTCm03"
    assert stamp("Asia/Kathmandu", datetime(2026, 11, 29, 1, tzinfo=UTC)).endswith("UTCp0545")
    # Moscow left +04 for +03 on 2014-10-26 at 02:00, "MSK" on both sides: the offset tells them apart.
    assert stamp("Europe/Moscow", datetime(2014, 10, 25, 21, tzinfo=UTC)) == "20141026T0100MSKp04"
    assert stamp("Europe/Moscow", datetime(2014, 10, 25, 22, tzinfo=UTC)) == "20141026T0100MSKp03"
    assert stamp("Europe/Moscow", datetime(2014, 10, 25, 23, tzinfo=UTC)) == "20141026T0200MSK"


def test_plan_local_says_which_zone() -> None:
    plan = make_plan(**PARIS_PLAN)
    assert plan.local(datetime(2026, 11, 30, 1, 0, tzinfo=UTC)) == "2026-11-30 02:00 CET"
    assert plan.local(datetime(2026, 7, 15, 0, 0, 7, tzinfo=UTC), seconds=True) == "2026-07-15 02:00:07 CEST"
    assert plan.local(datetime(2026, 11, 30, 1, 0)) == "2026-11-30 02:00 CET"  # naive: UTC
    assert plan.local(datetime(2026, 11, 30, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))) == "2026-11-30 01:00 CET"
    assert make_plan().local(datetime(2026, 11, 30, 1, 0, tzinfo=UTC)) == "2026-11-30 01:00 UTC"
    assert plan.zone == ZoneInfo("Europe/Paris")
    moscow = make_plan(schedule_timezone="Europe/Moscow")
    assert moscow.local(datetime(2014, 10, 25, 21, tzinfo=UTC)) == "2014-10-26 01:00 MSK+04:00"
    assert moscow.local(datetime(2014, 10, 25, 22, tzinfo=UTC)) == "2014-10-26 01:00 MSK+03:00"


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
    assert name.endswith("-20240305T0200UTC")
    assert "--" not in name


def test_backup_name_truncates_the_server_only() -> None:
    name = make_plan().backup_name("s" * 100, "/dev/vdb", SLOT)
    assert len(name) == 64
    assert name.endswith("-vdb-20240305T0200UTC")
    paris = make_plan(**PARIS_PLAN).backup_name("s" * 100, "/dev/vdb", SLOT)
    assert paris == "vbsb-" + "s" * 38 + "-vdb-20240305T0300CET"
    assert len(paris) == 64


def test_backup_name_fallbacks() -> None:
    plan = make_plan()
    assert plan.backup_name("数据库", "", SLOT) == "vbsb-server-disk-20240305T0200UTC"
