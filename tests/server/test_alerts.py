"""Alerts: `vbs-backup alerts setup` creates two automations (and leaves them alone when run again with
the same targets): failed runs, and no Completed nightly-backup within 26 h. A run that fails makes the
server post to the webhook, naming the failed disk with its reason and linking to the run; the run logs
nothing about an e-mail hook when no SMTP is configured. And the e-mail hook for servers that cannot send
e-mail, against a small SMTP receiver. The proactive automation firing, and input errors paging nobody:
test_alerts_nightly.py."""

from __future__ import annotations

import email
import email.policy
import socketserver
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace

import pytest
from prefect.settings import PREFECT_UI_URL, temporary_settings

from vbs_backup.deployments.alerts import (
    AUTOMATION_NAME,
    FAILURE_EVENTS,
    LOST_AUTOMATION_NAME,
    NIGHTLY_AUTOMATION_NAME,
)
from vbs_backup.deployments.catalog import ALL_DEPLOYMENTS
from vbs_backup.flows.hooks import email_on_failure

from .conftest import DB_01_DATA, SERVED_PLAN, clean_env, state_time, vbs_backup_command, wait_until

TOKEN = "s3cr3t-t0ken"  # in the webhook's path, as real webhook URLs carry theirs


def alerts_setup(prefect_server, url: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*vbs_backup_command(), "alerts", "setup", "--webhook", url, *options],
        env=clean_env(**prefect_server.env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def automations_named(prefect_server, name: str) -> list[dict]:
    response = prefect_server.api.post(
        "/automations/filter", json={"automations": {"name": {"any_": [name]}}}
    )
    response.raise_for_status()
    return response.json()


def delete_automations(prefect_server, *names: str) -> None:
    for name in names:
        for automation in automations_named(prefect_server, name):
            prefect_server.api.delete(f"/automations/{automation['id']}").raise_for_status()


def flow_run_logs(prefect_server, flow_run_id: str) -> list[str]:
    response = prefect_server.api.post(
        "/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    )
    response.raise_for_status()
    return [entry["message"] for entry in response.json()]


@pytest.fixture(scope="module")
def alerts(prefect_server, webhook):
    """Alerts set up twice on a server without them (other modules may have set some up), as an operator
    re-running the command would."""
    delete_automations(prefect_server, AUTOMATION_NAME, NIGHTLY_AUTOMATION_NAME, LOST_AUTOMATION_NAME)
    url = f"{webhook.url}/hooks/{TOKEN}"
    first, second = alerts_setup(prefect_server, url), alerts_setup(prefect_server, url)
    for result in (first, second):
        assert result.returncode == 0, result.stderr
    return first, second


@pytest.mark.server
def test_alerts_setup_is_idempotent_and_keeps_the_webhook_url_secret(prefect_server, alerts):
    first, second = alerts
    assert first.stdout.count("automation created") == 3, first.stdout
    assert second.stdout.count("automation unchanged") == 3, second.stdout  # a window is not restarted
    assert all(TOKEN not in r.stdout + r.stderr for r in alerts)

    [automation] = automations_named(prefect_server, AUTOMATION_NAME)
    trigger = automation["trigger"]
    assert set(trigger["expect"]) == set(FAILURE_EVENTS)
    # The product's tag: the UI reads it as "When any flow run with the tag vbs-backup enters ...".
    assert trigger["match_related"] == {
        "prefect.resource.role": "tag",
        "prefect.resource.id": "prefect.tag.vbs-backup",
    }
    assert all(spec.name in automation["description"] for spec in ALL_DEPLOYMENTS)
    assert "InvalidInput" in automation["description"] and TOKEN not in automation["description"]
    assert [a["type"] for a in automation["actions"]] == ["send-notification"]
    block = prefect_server.api.get(f"/block_documents/{automation['actions'][0]['block_document_id']}")
    assert block.status_code == 200 and TOKEN not in block.text  # stored as a secret, shown obfuscated

    [nightly] = automations_named(prefect_server, NIGHTLY_AUTOMATION_NAME)
    trigger = nightly["trigger"]
    assert trigger["posture"] == "Proactive" and trigger["threshold"] == 1 and trigger["for_each"] == []
    assert trigger["expect"] == trigger["after"] == ["prefect.flow-run.Completed"]
    assert trigger["match_related"] == {
        "prefect.resource.role": "deployment",
        "prefect.resource.name": "nightly-backup",
    }
    assert timedelta(seconds=trigger["within"]) == timedelta(hours=26)
    assert "26 h" in nightly["description"] and "vbs-backup serve" in nightly["description"]
    # The same notification blocks.
    assert [a["block_document_id"] for a in nightly["actions"]] == [
        a["block_document_id"] for a in automation["actions"]
    ]

    # A run of the product whose heartbeats stop (its worker died) is marked Crashed, one window per run;
    # the Crashed state is what pages (the first automation). Fired for real in test_estate_pool.py.
    [lost] = automations_named(prefect_server, LOST_AUTOMATION_NAME)
    trigger = lost["trigger"]
    assert trigger["posture"] == "Proactive" and trigger["for_each"] == ["prefect.resource.id"]
    assert trigger["after"] == ["prefect.flow-run.heartbeat"]
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Crashed"} <= set(
        trigger["expect"]
    )
    assert trigger["match_related"] == automation["trigger"]["match_related"]  # the product's tag
    assert timedelta(seconds=trigger["within"]) == timedelta(minutes=10)
    assert [(a["type"], a["state"]) for a in lost["actions"]] == [("change-flow-run-state", "CRASHED")]


@pytest.mark.server
def test_a_failed_run_posts_an_alert_with_the_reason_and_a_link_and_logs_no_mail_hook(
    prefect_server, served, cloud, alerts, webhook, timings
):
    cloud.control("POST", "/job_faults", json={"mode": "fail", "volume_id": DB_01_DATA})
    try:
        # A one-minute slot: a real new backup of every disk, whatever ran before in this session.
        flow_run = prefect_server.run("nightly-backup", {"plan": {**SERVED_PLAN, "slot_minutes": 1}})
        final = prefect_server.wait_final(flow_run["id"])
    finally:
        cloud.control("DELETE", "/job_faults")
    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert "db-01 /dev/vdb" in message and "VolumeBackup.0064" in message

    delivery = webhook.wait_for(lambda d: flow_run["id"] in d.body.get("body", ""), timeout=60)
    timings["webhook_after_failure_s"] = round(delivery.received_at - state_time(final["state"]), 2)

    assert delivery.path == f"/hooks/{TOKEN}"
    body = delivery.body["body"]
    assert f"Message: {message}\n" in body  # the whole message: every failed disk and its reason
    assert "Deployment: nightly-backup" in body
    assert f"Flow run: {final['name']} ({flow_run['id']})" in body
    assert f"{prefect_server.ui_url}/runs/flow-run/{flow_run['id']}" in body
    assert delivery.body["subject"] == f"vbs-backup: {final['name']} (nightly-backup) is Failed"

    # `serve` runs without VBS_BACKUP_SMTP_HOST: the flows carry no e-mail hook, so no hook line is logged.
    logs = wait_until(
        "the run's final log line",
        lambda: (
            (lines := flow_run_logs(prefect_server, flow_run["id"]))
            and any("Finished in state" in line for line in lines)
            and lines
        ),
        timeout=30,
    )
    assert not [line for line in logs if "email_on_failure" in line or "Running hook" in line]


# ------------------------------------------------------------------------------------------ e-mail hook


class _SmtpReceiver(socketserver.ThreadingTCPServer):
    """Just enough SMTP for smtplib: greets, accepts every command, collects each message's DATA."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.messages: list[str] = []
        super().__init__(("127.0.0.1", 0), _SmtpSession)


class _SmtpSession(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"220 localhost ESMTP\r\n")
        data: list[str] | None = None
        for raw in self.rfile:
            line = raw.decode().rstrip("\r\n")
            if data is not None:
                if line == ".":
                    self.server.messages.append("\n".join(data))  # type: ignore[attr-defined]
                    data = None
                    self.wfile.write(b"250 queued\r\n")
                else:
                    data.append(line)
                continue
            verb = line[:4].upper()
            if verb == "DATA":
                data = []
                self.wfile.write(b"354 end with .\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp() -> Iterator[_SmtpReceiver]:
    receiver = _SmtpReceiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()


def failed_run():
    flow = SimpleNamespace(name="nightly-backup")
    flow_run = SimpleNamespace(name="nightly 2026-11-30", id=uuid.uuid4(), deployment_id=uuid.uuid4())
    state = SimpleNamespace(name="Failed", message="4 of 5 disks backed up; FAILED: db-01 /dev/vdb (failed)")
    return flow, flow_run, state


def test_the_email_hook_sends_the_failure_with_a_link(smtp, monkeypatch):
    monkeypatch.setenv("VBS_BACKUP_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("VBS_BACKUP_SMTP_PORT", str(smtp.server_address[1]))
    monkeypatch.setenv("VBS_BACKUP_SMTP_TO", "ops@example.com, oncall@example.com")
    flow, flow_run, state = failed_run()

    with temporary_settings({PREFECT_UI_URL: "http://prefect.example:4200"}):
        email_on_failure(flow, flow_run, state)

    [raw] = smtp.messages
    message = email.message_from_string(raw, policy=email.policy.default)
    # The automation's subject and body (vbs_backup.notify.SUBJECT, BODY), rendered by the hook.
    assert message["Subject"] == "vbs-backup: nightly 2026-11-30 (nightly-backup) is Failed"
    assert message["To"] == "ops@example.com, oncall@example.com"
    text = message.get_content()
    assert f"Message: {state.message}\nDeployment: nightly-backup\n" in text
    assert f"Flow run: nightly 2026-11-30 ({flow_run.id})" in text
    assert f"http://prefect.example:4200/runs/flow-run/{flow_run.id}" in text


def test_the_email_hook_does_nothing_without_smtp_and_never_raises(smtp, monkeypatch, caplog):
    monkeypatch.delenv("VBS_BACKUP_SMTP_HOST", raising=False)
    email_on_failure(*failed_run())
    assert smtp.messages == []

    # A relay that refuses the login: logged without the password, and the hook does not raise.
    monkeypatch.setenv("VBS_BACKUP_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("VBS_BACKUP_SMTP_PORT", "1")  # nothing listens there
    monkeypatch.setenv("VBS_BACKUP_SMTP_TO", "ops@example.com")
    monkeypatch.setenv("VBS_BACKUP_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("VBS_BACKUP_SMTP_USERNAME", "mailer")
    email_on_failure(*failed_run())
    assert "failure e-mail not sent" in caplog.text and "hunter2" not in caplog.text
