"""prefect.yaml's word on credentials, checked with the real `prefect deploy` (Prefect 3.9.1) on a real
server: the reference its comment shows survives `prefect deploy` as a reference (no secret in the
deployment) and a run given it signs in with the block; the block template it warns against puts the
block's secrets in the deployment's parameters."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from .conftest import REPO, clean_env, register_block

pytestmark = pytest.mark.server

BLOCK = "yaml-user"
POOL = "vbs-backup-yaml-test"


def comment_reference(name: str) -> Any:
    """The `credentials:` value prefect.yaml's comment tells an operator to add, for block `name`."""
    text = (REPO / "prefect.yaml").read_text()
    [line] = [m.group(1) for m in re.finditer(r"^#\s+credentials:\s*(\{.*\})\s*$", text, re.MULTILINE)]
    assert "NAME" in line, line
    return yaml.safe_load(line.replace("NAME", name))


def test_the_comment_shows_a_reference_by_name():
    assert comment_reference("vbs-prod") == {"$ref": {"block_document_slug": "vbs-credentials/vbs-prod"}}


@pytest.fixture(scope="module")
def yaml_block(prefect_server, cloud) -> dict[str, Any]:
    return register_block(prefect_server, cloud, BLOCK, iam_user=True)


@pytest.fixture(scope="module")
def deployed(prefect_server, yaml_block, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """`prefect --no-prompt deploy --all` of prefect.yaml's policy-audit entry, twice, under other names,
    without schedules, to a pool of its own (nothing runs them): once with the comment's reference, once
    with the block template `{{ prefect.blocks.vbs-credentials.NAME }}`."""
    response = prefect_server.api.post("/work_pools/", json={"name": POOL, "type": "process"})
    assert response.status_code in (201, 409), response.text
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    [entry] = [d for d in config["deployments"] if d["name"] == "policy-audit"]
    variants = {
        "policy-audit-yaml-reference": comment_reference(BLOCK),
        "policy-audit-yaml-template": "{{ prefect.blocks.vbs-credentials." + BLOCK + " }}",
    }
    config["deployments"] = [
        {
            **entry,
            "name": name,
            "schedules": [],
            "work_pool": {"name": POOL, "work_queue_name": "default", "job_variables": {}},
            "parameters": {**(entry.get("parameters") or {}), "credentials": credentials},
        }
        for name, credentials in variants.items()
    ]
    prefect_file = tmp_path_factory.mktemp("prefect-yaml") / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(config, sort_keys=False))
    # From the project's directory, as prefect.yaml says (its entry points are relative to it).
    args = [
        sys.executable,
        "-m",
        "prefect",
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        str(prefect_file),
    ]
    result = subprocess.run(
        args, cwd=REPO, env=clean_env(**prefect_server.env), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = {}
    for name in variants:
        response = prefect_server.api.get(f"/deployments/name/policy-audit/{name}")
        response.raise_for_status()
        found[name] = response.json()
    return found


def test_prefect_deploy_keeps_the_comment_s_reference_and_no_secret(deployed, yaml_block, cloud):
    deployment = deployed["policy-audit-yaml-reference"]

    assert deployment["parameters"]["credentials"] == comment_reference(BLOCK)
    assert cloud.user["VBS_BACKUP_PASSWORD"] not in json.dumps(deployment)


def test_prefect_deploy_turns_the_block_template_into_the_block_s_secrets(deployed, yaml_block, cloud):
    # Why prefect.yaml says "not {{ prefect.blocks.vbs-credentials.NAME }}": if a later Prefect turns it
    # into a reference instead, this fails, and the comment can say so.
    credentials = deployed["policy-audit-yaml-template"]["parameters"]["credentials"]

    assert "$ref" not in credentials
    assert credentials["password"] == cloud.user["VBS_BACKUP_PASSWORD"]  # in clear, in the deployment


def test_a_run_given_the_comment_s_reference_signs_in_with_the_block(
    prefect_server, served, cloud, yaml_block
):
    # The served policy-audit deployment stands in for a worker's: the parameter travels and is resolved
    # by the same Prefect code (the server's schema check, then the flow engine loading the block).
    cloud.control("DELETE", "/requests")

    flow_run = prefect_server.run("policy-audit", {"credentials": comment_reference(BLOCK)})
    final = prefect_server.wait_final(flow_run["id"])

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    operations = [entry["operation"] for entry in cloud.control("GET", "/requests").json()]
    assert "iam.create_token" in operations
