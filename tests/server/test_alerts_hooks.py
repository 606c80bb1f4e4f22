"""The e-mail hook is on the flows only where SMTP is configured (no "Hook 'email_on_failure' finished
running successfully" line on every failed run otherwise), it skips runs refused for their input, and it
sends the automation's own subject and body, the message whole. No Prefect server needed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from vbs_backup.deployments.alerts import INVALID_INPUT, NIGHTLY_DEPLOYMENT, duration_text, nightly_trigger
from vbs_backup.deployments.catalog import ALL_DEPLOYMENTS
from vbs_backup.flows import hooks
from vbs_backup.flows.hooks import email_on_failure, failure_hooks
from vbs_backup.notify import render_failure

from .conftest import REPO, clean_env

CHECK_HOOKS = """
import json
from vbs_backup.deployments.catalog import ALL_DEPLOYMENTS
print(json.dumps({
    spec.name: [[h.__name__ for h in flow.on_failure_hooks], [h.__name__ for h in flow.on_crashed_hooks]]
    for spec in ALL_DEPLOYMENTS
    for flow in [spec.load_flow()]
}))
"""


def hooks_of_the_flows(**env: str) -> dict[str, list[list[str]]]:
    """Each catalog flow's on_failure and on_crashed hooks, as a process with `env` imports them."""
    result = subprocess.run(
        [sys.executable, "-c", CHECK_HOOKS],
        env=clean_env(**env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_flows_carry_the_email_hook_only_where_smtp_is_configured():
    assert failure_hooks({}) == {} and failure_hooks({"VBS_BACKUP_SMTP_HOST": " "}) == {}
    assert failure_hooks({"VBS_BACKUP_SMTP_HOST": "mail.example"}) == {
        "on_failure": [email_on_failure],
        "on_crashed": [email_on_failure],
    }
    without = hooks_of_the_flows()
    assert set(without) == {spec.name for spec in ALL_DEPLOYMENTS}
    assert all(hooks == [[], []] for hooks in without.values()), without
    with_smtp = hooks_of_the_flows(VBS_BACKUP_SMTP_HOST="mail.example", VBS_BACKUP_SMTP_TO="ops@example.com")
    assert all(hooks == [["email_on_failure"], ["email_on_failure"]] for hooks in with_smtp.values()), (
        with_smtp
    )


def test_every_catalog_deployment_is_named_after_its_flow():
    # The e-mail hook names the deployment after the flow (no API call on the failure path).
    assert all(spec.load_flow().name == spec.name for spec in ALL_DEPLOYMENTS)
    assert NIGHTLY_DEPLOYMENT in {spec.name for spec in ALL_DEPLOYMENTS}


def test_the_input_error_state_name_is_the_one_the_flows_use():
    from vbs_backup.flows.failures import INVALID_INPUT as FLOWS_INVALID_INPUT

    assert INVALID_INPUT == FLOWS_INVALID_INPUT


def failed(state_name: str = "Failed", message: str = "FAILED: db-01 /dev/vdb (failed: VolumeBackup.0064)"):
    flow = SimpleNamespace(name="backup-server")
    flow_run = SimpleNamespace(name="backup db-01", id=uuid.uuid4(), deployment_id=uuid.uuid4())
    return flow, flow_run, SimpleNamespace(name=state_name, message=message)


def test_the_email_hook_skips_input_errors(monkeypatch):
    sent = []
    monkeypatch.setenv("VBS_BACKUP_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("VBS_BACKUP_SMTP_TO", "ops@example.com")
    monkeypatch.setattr(hooks, "send_email", lambda config, email: sent.append(email))

    email_on_failure(*failed(INVALID_INPUT, "server 'db-0l' not found"))
    assert sent == []
    email_on_failure(*failed())
    assert [e["Subject"] for e in sent] == ["vbs-backup: backup db-01 (backup-server) is Failed"]


def test_the_message_is_rendered_whole_with_the_run_deployment_and_link():
    reasons = "; ".join(
        f"db-{i:02} /dev/vdb (failed: VolumeBackup.0064 insufficient capacity)" for i in range(200)
    )
    flow, flow_run, state = failed(message=f"FAILED: {reasons}")
    subject, body = render_failure(
        flow, flow_run, state, deployment="backup-server", ui_url="http://prefect.example:4200"
    )
    assert subject == "vbs-backup: backup db-01 (backup-server) is Failed"
    assert body.splitlines() == [
        f"Message: FAILED: {reasons}",
        "Deployment: backup-server",
        f"Flow run: backup db-01 ({flow_run.id})",
        "State: Failed",
        f"Open the run: http://prefect.example:4200/runs/flow-run/{flow_run.id}",
    ]
    # A run outside any deployment, no message, no UI URL: nothing reads "None".
    subject, body = render_failure(
        flow, flow_run, SimpleNamespace(name="Crashed", message=None), deployment=None, ui_url=None
    )
    assert subject == "vbs-backup: backup db-01 (backup-server) is Crashed"
    assert "None" not in body and "Deployment: (none)" in body and "(no UI URL configured)" in body


def test_the_nightly_window_is_checked_and_written_as_people_write_it():
    assert [duration_text(timedelta(seconds=s)) for s in (12, 93600, 5400, 3725)] == [
        "12 s",
        "26 h",
        "1 h 30 min",
        "1 h 2 min 5 s",
    ]
    with pytest.raises(ValueError, match="at least 10 s"):
        nightly_trigger(timedelta(seconds=9))
    from vbs_backup.deployments.cli import app

    result = CliRunner().invoke(
        app, ["alerts", "setup", "--webhook", "http://127.0.0.1:9/x", "--nightly-within-hours", "0.001"]
    )
    assert result.exit_code == 2 and "at least 10 seconds" in result.output
