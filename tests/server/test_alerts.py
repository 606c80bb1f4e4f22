"""Alerts: `vbs-backup alerts setup` creates one automation (and updates it when run again); a run that
fails makes the server post to the webhook, naming the failed disk and linking to the run. And the e-mail
hook for servers that cannot send e-mail, against a small SMTP receiver."""

from __future__ import annotations

import email
import email.policy
import socketserver
import subprocess
import threading
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from prefect.settings import PREFECT_UI_URL, temporary_settings

from deployments.alerts import AUTOMATION_NAME, FAILURE_EVENTS, email_on_failure

from .conftest import DB_01_DATA, SERVED_PLAN, clean_env, state_time, vbs_backup_command

TOKEN = "s3cr3t-t0ken"  # in the webhook's path, as real webhook URLs carry theirs


def alerts_setup(prefect_server, url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*vbs_backup_command(), "alerts", "setup", "--webhook", url],
        env=clean_env(**prefect_server.env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def alerts(prefect_server, webhook):
    """Alerts set up twice, as an operator re-running the command would."""
    url = f"{webhook.url}/hooks/{TOKEN}"
    first, second = alerts_setup(prefect_server, url), alerts_setup(prefect_server, url)
    for result in (first, second):
        assert result.returncode == 0, result.stderr
    return first, second


@pytest.mark.server
def test_alerts_setup_is_idempotent_and_keeps_the_webhook_url_secret(prefect_server, alerts):
    first, second = alerts
    assert "automation created" in first.stdout and "automation updated" in second.stdout
    assert all(TOKEN not in r.stdout + r.stderr for r in alerts)

    found = prefect_server.api.post(
        "/automations/filter", json={"automations": {"name": {"any_": [AUTOMATION_NAME]}}}
    ).json()
    assert len(found) == 1
    automation = found[0]
    assert set(automation["trigger"]["expect"]) == set(FAILURE_EVENTS)
    assert [a["type"] for a in automation["actions"]] == ["send-notification"]
    block = prefect_server.api.get(f"/block_documents/{automation['actions'][0]['block_document_id']}")
    assert block.status_code == 200 and TOKEN not in block.text  # stored as a secret, shown obfuscated


@pytest.mark.server
def test_a_failed_run_posts_an_alert_naming_the_failed_disk_and_linking_to_the_run(
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
    assert "db-01 /dev/vdb" in final["state"]["message"]

    delivery = webhook.wait_for(lambda d: flow_run["id"] in d.body.get("body", ""), timeout=60)
    timings["webhook_after_failure_s"] = round(delivery.received_at - state_time(final["state"]), 2)

    assert delivery.path == f"/hooks/{TOKEN}"
    body = delivery.body["body"]
    assert "Deployment: nightly-backup" in body
    assert f"Flow run: {flow_run['name']}" in body
    assert "FAILED: db-01 /dev/vdb (failed: VolumeBackup.0064)" in body
    assert f"{prefect_server.ui_url}/runs/flow-run/{flow_run['id']}" in body
    assert "Failed" in delivery.body["subject"] and "nightly-backup" in delivery.body["subject"]


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
    flow_run = SimpleNamespace(name="brave-otter", id=uuid.uuid4())
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
    assert message["Subject"] == "vbs-backup: nightly-backup run brave-otter is Failed"
    assert message["To"] == "ops@example.com, oncall@example.com"
    text = message.get_content()
    assert "FAILED: db-01 /dev/vdb" in text
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
