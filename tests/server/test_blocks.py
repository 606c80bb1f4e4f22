"""Credentials blocks: what a block turns into and how its form reads (no server needed); the flows'
`credentials` parameter, a typed block parameter; `vbs-backup blocks register`, which saves one way to sign
in; and on the real server a run whose `credentials` parameter references a registered block."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from tests.environment import without_machine_settings
from vbs_backup.cloud.endpoints import CloudName
from vbs_backup.deployments.blocks import block_from_settings
from vbs_backup.settings import Settings
from vbs_backup.tasks.credentials import SERVICE_ENDPOINT_FIELDS, VbsCredentials

from .conftest import REPO, WEB_01, Child, clean_env, vbs_backup_command, wait_until


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


@pytest.mark.parametrize("field", SERVICE_ENDPOINT_FIELDS)
def test_a_block_carries_each_per_service_endpoint_into_the_settings(field):
    block = VbsCredentials(
        project_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ak="AK",
        sk=SecretStr("sk"),
        **{field: "https://svc.example"},
    )

    settings = block.settings()

    assert getattr(settings, field) == "https://svc.example"
    assert [name for name in ENDPOINT_FIELDS if getattr(settings, name) is not None] == [field]


def test_a_block_from_settings_keeps_the_secrets_secret():
    settings = Settings(
        project_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0", ak="AK1", sk="sk-value", endpoint="https://x:1"
    )
    block = block_from_settings(settings)
    assert block.sk is not None and block.sk.get_secret_value() == "sk-value"
    assert (block.ak, block.endpoint) == ("AK1", "https://x:1")
    assert "sk-value" not in repr(block)


def test_a_block_from_settings_holds_only_the_way_to_sign_in_it_is_told():
    settings = Settings(
        project_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ak="AK1",
        sk="sk-value",
        username="ops",
        password="pw-value",
        domain="acme",
    )

    aksk = block_from_settings(settings, auth="aksk")
    token = block_from_settings(settings, auth="token")

    assert (aksk.ak, aksk.username, aksk.password, aksk.domain) == ("AK1", None, None, None)
    assert aksk.sk is not None and aksk.settings().credentials_mode() == "aksk"
    assert (token.ak, token.sk, token.username, token.domain) == (None, None, "ops", "acme")
    assert token.password is not None and token.settings().credentials_mode() == "token"


# ------------------------------------------------------------------------------ where the block lives


def test_the_block_lives_in_the_tasks_layer_where_the_flows_runs_load_it():
    # Where Prefect's block page says to import it from (the block type's code example, below).
    assert VbsCredentials.__module__ == "vbs_backup.tasks.credentials"


def test_the_flows_and_their_credentials_load_without_the_deployments_layer():
    # At run time too (lint-imports checks the imports the code states; this checks what a run loads).
    code = (
        "import importlib, pkgutil, sys\n"
        "import vbs_backup.flows, vbs_backup.tasks.runtime\n"
        "for module in pkgutil.iter_modules(vbs_backup.flows.__path__):\n"
        "    importlib.import_module('vbs_backup.flows.' + module.name)\n"
        "print('vbs_backup.flows.nightly' in sys.modules)\n"
        "print(sorted(m for m in sys.modules if m.startswith('vbs_backup.deployments')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-2:] == ["True", "[]"]


# ------------------------------------------------------------------------------ the block's page and form


def test_the_block_form_labels_the_cloud_field_cloud_with_its_three_choices():
    schema = VbsCredentials.model_json_schema()

    cloud = schema["properties"]["cloud"]
    assert cloud["title"] == "Cloud"
    assert cloud["enum"] == [c.value for c in CloudName] == ["huaweicloud", "flexibleengine", "otc"]
    assert "$ref" not in json.dumps(cloud) and "CloudName" not in json.dumps(schema)
    # Blocks saved with the enum keep loading; the value still reaches the settings as the enum.
    block = VbsCredentials(cloud="otc", project_id=PROJECT, ak="AK", sk=SecretStr("sk"))
    assert block.cloud is CloudName.otc and block.settings().cloud is CloudName.otc
    with pytest.raises(ValidationError):
        VbsCredentials(cloud="aws")


def _python_of(code_example: str) -> str:
    # What the UI shows on the block's page: the first python block of the example (ui's BlockTypeSnippet).
    match = re.search(r"```python([\s\S]*?)```", code_example)
    assert match, code_example
    return match.group(1)


def test_the_block_type_has_a_description_a_logo_and_an_example_of_this_product():
    block_type = VbsCredentials._to_block_type()
    assert block_type.name == "VBS Credentials" and block_type.slug == "vbs-credentials"
    assert block_type.logo_url is not None and str(block_type.logo_url).startswith("https://")
    assert "credentials" in (block_type.description or "") and "blocks register" in block_type.description

    example = _python_of(block_type.code_example or "")
    # Loads it from the module the package installs (not deployments.blocks), under the block's name.
    assert (
        "from vbs_backup.tasks.credentials import VbsCredentials" in example and "deployments" not in example
    )
    # The page puts the block's name in place of the first BLOCK_NAME only.
    shown = example.replace("BLOCK_NAME", "vbs-prod", 1)
    assert 'VbsCredentials.load("vbs-prod")' in shown and "BLOCK_NAME" not in shown
    assert "`credentials` parameter" in example and "vbs-backup blocks register NAME --ak" in example
    exec("from vbs_backup.tasks.credentials import VbsCredentials", {})  # the import it shows works
    # The flow call it shows names the flow's real parameters.
    from vbs_backup.flows.server import backup_server

    call = re.search(r"backup_server\((.*)\)", example)
    assert call is not None
    keywords = re.findall(r"(\w+)=", call.group(1))
    assert set(keywords) <= set(inspect.signature(backup_server.fn).parameters), keywords


def credentials_block_definition(schema: dict[str, Any]) -> dict[str, Any]:
    """The block definition a parameter schema's `credentials` property is, asserting its shape: the block
    or nothing (null, the default: the worker's environment; without the null branch the UI starts the
    field at null and refuses its own value, so no run could start without a block), and no string (a
    block's name is accepted from Python callers, never offered, nor accepted, by the form)."""
    credentials = schema["properties"]["credentials"]
    assert set(credentials) - {"description", "title", "position"} == {"anyOf", "default"}, credentials
    assert credentials["default"] is None and "credentials" not in schema.get("required", [])
    block, null = credentials["anyOf"]
    assert null == {"type": "null"}
    return schema["definitions"][block["$ref"].rsplit("/", 1)[-1]]


def test_every_flow_s_credentials_parameter_is_an_optional_vbs_credentials_block():
    from prefect.utilities.callables import parameter_schema

    from vbs_backup.deployments.catalog import CATALOG

    for spec in CATALOG:
        definition = credentials_block_definition(parameter_schema(spec.load_flow().fn).model_dump())
        assert definition["block_type_slug"] == "vbs-credentials", spec.name


def test_the_credentials_parameter_takes_a_block_a_name_or_nothing_from_python_callers():
    from vbs_backup.flows.policies import policy_audit

    block = VbsCredentials(project_id=PROJECT, ak="AK", sk=SecretStr("sk"))
    assert policy_audit.validate_parameters({"credentials": block})["credentials"] is block
    assert policy_audit.validate_parameters({"credentials": "vbs-prod"})["credentials"] == "vbs-prod"
    assert policy_audit.validate_parameters({"credentials": None})["credentials"] is None


def test_a_reference_to_a_block_passes_both_of_the_server_s_parameter_checks_and_a_name_neither():
    # The server checks a deployment's default parameters against the plain schema, "required" ignored,
    # and a flow run's against "the block or a reference, exactly one of them": a reference must pass the
    # first and must not also pass for a block in the second.
    from prefect._internal.schemas.validators import validate_values_conform_to_schema
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError as SchemaError
    from prefect.utilities.schema_tools.validation import validate

    from vbs_backup.flows.policies import policy_audit

    schema = parameter_schema(policy_audit.fn).model_dump()

    def deployment_check(value: Any) -> None:
        validate_values_conform_to_schema({"credentials": value}, schema, ignore_required=True)

    def run_check(value: Any) -> None:
        validate({"credentials": value}, schema, raise_on_error=True)

    for value in (
        {"$ref": {"block_document_id": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"}},
        {"$ref": {"block_document_slug": "vbs-credentials/vbs-prod"}},
        {"cloud": "otc", "region": "eu-de", "ak": "AK"},  # a block's values (what a template gives)
    ):
        deployment_check(value)
        run_check(value)
    # No block: null (the default) or the parameter left out.
    deployment_check(None)
    run_check(None)
    # A name is refused (the form never offers one), as are a block's values that do not validate.
    for value in ("vbs-prod", {"region": "eu-de", "cloud": "aws"}):
        with pytest.raises(ValueError, match="credentials"):
            deployment_check(value)
        with pytest.raises(SchemaError, match="credentials"):
            run_check(value)


# ------------------------------------------------------------------------------ a block is self-contained

PROJECT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ENDPOINT_FIELDS = ("endpoint", *SERVICE_ENDPOINT_FIELDS)


@pytest.fixture
def no_vbs_env(monkeypatch, tmp_path):
    return without_machine_settings(monkeypatch, tmp_path)


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
    from vbs_backup.tasks.runtime import load_settings

    (no_vbs_env / ".env").write_text("VBS_BACKUP_IAM_ENDPOINT=http://127.0.0.9:8666\nVBS_BACKUP_AK=DOTENV\n")
    monkeypatch.setenv("VBS_BACKUP_AK", "ENV-AK")

    settings = load_settings()

    assert settings.iam_endpoint is None
    assert settings.ak == "ENV-AK"


def test_a_flow_run_with_a_block_takes_the_block_s_connection_and_a_blank_name_is_no_block(
    no_vbs_env, monkeypatch
):
    from vbs_backup.tasks.runtime import load_settings

    monkeypatch.setenv("VBS_BACKUP_AK", "ENV-AK")
    block = VbsCredentials(project_id=PROJECT, username="ops", password=SecretStr("pw"), domain="acme")

    settings = load_settings(block)

    assert (settings.ak, settings.username, settings.project_id) == (None, "ops", PROJECT)
    assert load_settings(None).ak == "ENV-AK"
    assert load_settings("  ").ak == "ENV-AK"


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


def _register_without_a_server(args: list[str], **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`vbs-backup blocks register ...` with a Prefect API that records every request (and answers none)."""
    api = _ApiRecorder()
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        full_env = clean_env(PREFECT_API_URL=f"http://127.0.0.1:{api.server_address[1]}/api", **env)
        command = [*vbs_backup_command(), "blocks", "register", *args]
        result = subprocess.run(
            command, env=full_env, capture_output=True, text=True, timeout=120, check=False
        )
    finally:
        api.shutdown()
        api.server_close()
    return result, api.requests


BOTH_METHODS = {
    "VBS_BACKUP_PROJECT_ID": PROJECT,
    "VBS_BACKUP_AK": "ENV-AK",
    "VBS_BACKUP_SK": "the-sk",
    "VBS_BACKUP_USERNAME": "ops",
    "VBS_BACKUP_PASSWORD": "the-pw",
    "VBS_BACKUP_DOMAIN": "acme",
}


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--ak", "AK", "--username", "ops"], {}, "not both"),
        (["--ak", "AK", "--domain", "acme"], {}, "not both"),
        ([], BOTH_METHODS, "both VBS_BACKUP_AK and VBS_BACKUP_USERNAME"),
        ([], {"VBS_BACKUP_PROJECT_ID": PROJECT, "VBS_BACKUP_SK": "the-sk"}, "no way to sign in"),
        (
            ["--ak", "AK"],
            {"VBS_BACKUP_PROJECT_ID": PROJECT, "VBS_BACKUP_PASSWORD": "the-pw"},
            "VBS_BACKUP_SK",
        ),
        (
            ["--username", "ops"],
            {"VBS_BACKUP_PROJECT_ID": PROJECT, "VBS_BACKUP_SK": "the-sk", "VBS_BACKUP_PASSWORD": "the-pw"},
            "VBS_BACKUP_DOMAIN",
        ),
    ],
    ids=[
        "ak-and-user",
        "ak-and-domain",
        "env-has-both",
        "env-has-neither",
        "ak-without-sk",
        "user-no-domain",
    ],
)
def test_blocks_register_refuses_an_ambiguous_or_incomplete_way_to_sign_in_in_one_line(args, env, expected):
    result, requests = _register_without_a_server(["ambiguous", *args], **env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("not saved: ") and expected in result.stderr
    assert "the-sk" not in result.stderr and "the-pw" not in result.stderr
    assert requests == []  # nothing reached the Prefect server


# ------------------------------------------------------------------------------ on the real server


def _child_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run product code that talks to the Prefect server in its own process (this one never does)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _block_document(prefect_server, name: str) -> dict[str, Any]:
    response = prefect_server.api.get(
        f"/block_types/slug/vbs-credentials/block_documents/name/{name}", params={"include_secrets": False}
    )
    response.raise_for_status()
    return response.json()


def _register(prefect_server, cloud, name: str, *args: str) -> subprocess.CompletedProcess:
    """`vbs-backup blocks register NAME ...` with BOTH ways to sign in in its environment (as on a machine
    set up for both): the options choose, and the block must hold only the chosen one."""
    env = clean_env(
        **prefect_server.env,
        VBS_BACKUP_ENDPOINT=cloud.env["VBS_BACKUP_ENDPOINT"],
        VBS_BACKUP_PROJECT_ID=cloud.env["VBS_BACKUP_PROJECT_ID"],
        VBS_BACKUP_AK=cloud.env["VBS_BACKUP_AK"],
        VBS_BACKUP_SK=cloud.env["VBS_BACKUP_SK"],
        **cloud.user,
    )
    args_ = [*vbs_backup_command(), "blocks", "register", name, *args]
    return subprocess.run(args_, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def user_block(prefect_server, cloud) -> dict[str, Any]:
    """The block `emulator-user`: the emulator's IAM user, registered with --username/--domain and checked;
    the served flows only have AK/SK, so a run that asks IAM for a token can only have it from the block."""
    result = _register(
        prefect_server,
        cloud,
        "emulator-user",
        "--username",
        cloud.user["VBS_BACKUP_USERNAME"],
        "--domain",
        cloud.user["VBS_BACKUP_DOMAIN"],
        "--check",
    )
    assert result.returncode == 0, result.stderr
    assert "IAM user" in result.stdout
    for secret in (cloud.user["VBS_BACKUP_PASSWORD"], cloud.env["VBS_BACKUP_SK"]):
        assert secret not in result.stdout + result.stderr
    return _block_document(prefect_server, "emulator-user")


@pytest.mark.server
def test_register_with_an_iam_user_saves_nothing_of_the_ak_sk(prefect_server, cloud, user_block):
    data = user_block["data"]
    assert (data["username"], data["domain"]) == (
        cloud.user["VBS_BACKUP_USERNAME"],
        cloud.user["VBS_BACKUP_DOMAIN"],
    )
    assert data["password"] == "********"  # saved, and secret
    assert (data["ak"], data["sk"]) == (None, None)


@pytest.mark.server
def test_register_with_ak_saves_nothing_of_the_iam_user(prefect_server, cloud):
    result = _register(prefect_server, cloud, "emulator-aksk", "--ak", cloud.env["VBS_BACKUP_AK"], "--check")

    assert result.returncode == 0, result.stderr
    assert "AK/SK" in result.stdout
    data = _block_document(prefect_server, "emulator-aksk")["data"]
    assert (data["ak"], data["sk"]) == (cloud.env["VBS_BACKUP_AK"], "********")
    assert (data["username"], data["password"], data["domain"]) == (None, None, None)


@pytest.mark.server
def test_the_run_form_of_every_deployment_offers_the_vbs_credentials_block_selector(prefect_server, served):
    from vbs_backup.deployments.catalog import CATALOG

    for spec in CATALOG:
        # What the UI gets for the form: the deployment's parameter schema, as the server stores it.
        schema = prefect_server.deployment(spec.name)["parameter_openapi_schema"]
        # The UI's schema form reads `block_type_slug` (its `blockTypeSlug`) to show the block selector.
        assert credentials_block_definition(schema)["block_type_slug"] == "vbs-credentials", spec.name


@pytest.mark.server
def test_a_run_whose_credentials_reference_a_registered_block_signs_in_with_it(
    prefect_server, served, cloud, user_block
):
    cloud.control("DELETE", "/job_faults")
    cloud.control("DELETE", "/requests")
    reference = {"$ref": {"block_document_id": user_block["id"]}}  # what the form's block selector sends

    flow_run = prefect_server.run("backup-server", {"server": WEB_01, "credentials": reference})
    final = prefect_server.wait_final(flow_run["id"])

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    operations = [entry["operation"] for entry in cloud.control("GET", "/requests").json()]
    assert "iam.create_token" in operations
    assert final["parameters"]["credentials"] == reference  # the run records the reference, not the secrets
    assert cloud.user["VBS_BACKUP_PASSWORD"] not in json.dumps(final)


@pytest.mark.server
def test_the_server_refuses_a_name_where_the_block_belongs(prefect_server, served, user_block):
    # One line from the server, before any run (no traceback, no alert): a block's name belongs in the
    # form's selector (no block is said by null, the form's None, or by leaving the parameter out).
    value = "emulator-user"
    deployment = prefect_server.deployment("backup-server")
    runs_of_it = {"deployments": {"id": {"any_": [deployment["id"]]}}}
    before = prefect_server.api.post("/flow_runs/count", json=runs_of_it).json()

    response = prefect_server.create_flow_run(
        deployment["id"], {"parameters": {"server": WEB_01, "credentials": value}}
    )

    assert response.status_code == 409, response.text
    assert "credentials" in response.json()["detail"]
    assert prefect_server.api.post("/flow_runs/count", json=runs_of_it).json() == before


@pytest.mark.server
def test_a_block_name_loads_for_python_callers_and_an_unknown_one_fails_in_one_line(
    prefect_server, user_block
):
    code = textwrap.dedent(
        """
        from vbs_backup.tasks.runtime import load_settings
        from vbs_backup.settings import ConfigError
        print(load_settings("emulator-user").credentials_mode())
        try:
            load_settings("no-such-block")
        except ConfigError as exc:
            print("ConfigError:", exc)
        """
    )
    result = _child_python(code, clean_env(**prefect_server.env))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-2:] == [
        "token",
        "ConfigError: no VBS credentials block named 'no-such-block' on the Prefect server",
    ]


@pytest.mark.server
def test_serve_credentials_name_gives_every_deployment_a_reference_to_the_block(prefect_server, user_block):
    code = textwrap.dedent(
        """
        import json
        from vbs_backup.deployments.serve import build_deployments
        from vbs_backup.settings import ConfigError
        deployments = build_deployments(credentials="emulator-user")
        print(json.dumps({d.name: d.parameters["credentials"] for d in deployments}))
        try:
            build_deployments(credentials="no-such-block")
        except ConfigError as exc:
            print("ConfigError:", exc)
        """
    )
    result = _child_python(code, clean_env(**prefect_server.env))

    assert result.returncode == 0, result.stderr
    *_, references, refusal = result.stdout.strip().splitlines()
    from vbs_backup.deployments.catalog import CATALOG

    assert json.loads(references) == {
        spec.name: {"$ref": {"block_document_id": user_block["id"]}} for spec in CATALOG
    }
    assert refusal == (
        "ConfigError: no VBS credentials block named 'no-such-block' on the Prefect server "
        "(`vbs-backup blocks register no-such-block` saves one)"
    )


@pytest.mark.server
def test_a_deployment_served_with_credentials_name_runs_with_the_block(
    prefect_server, cloud, ledger_url, user_block, tmp_path
):
    # `vbs-backup serve --credentials NAME`, for one deployment of the catalog under another name (the
    # session's `served` process serves the catalog's own): its default parameters hold the block's reference,
    # and a run started with no parameters (Quick run) signs in with the block.
    code = textwrap.dedent(
        """
        from dataclasses import replace
        from prefect import serve
        from vbs_backup.deployments.catalog import by_name
        spec = replace(by_name("policy-audit"), name="policy-audit-with-block", cron=None)
        serve(spec.to_deployment(credentials="emulator-user"))
        """
    )
    env = clean_env(
        **prefect_server.env,
        **cloud.env,
        VBS_BACKUP_DATABASE_URL=ledger_url,
        PREFECT_RUNNER_POLL_FREQUENCY="1",
    )
    child = Child.start(
        "serve-with-block", [sys.executable, "-c", code], env=env, cwd=tmp_path, logs=tmp_path
    )
    try:

        def deployment() -> dict[str, Any] | None:
            response = prefect_server.api.get("/deployments/name/policy-audit/policy-audit-with-block")
            return response.json() if response.status_code == 200 else None

        served_with_block = wait_until(
            "the deployment served with a block", deployment, timeout=90, child=child
        )
        reference = {"$ref": {"block_document_id": user_block["id"]}}
        assert served_with_block["parameters"]["credentials"] == reference
        cloud.control("DELETE", "/requests")

        response = prefect_server.create_flow_run(served_with_block["id"], {"state": {"type": "SCHEDULED"}})
        response.raise_for_status()
        final = prefect_server.wait_final(response.json()["id"])
    finally:
        child.stop()

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert final["parameters"]["credentials"] == reference
    operations = [entry["operation"] for entry in cloud.control("GET", "/requests").json()]
    assert "iam.create_token" in operations
