"""On the session's real Prefect server, through `vbs-backup alerts setup` as an operator runs it:

* the proactive automation "no Completed nightly-backup within the window" fires when no nightly runs,
  saying what is wrong and what to check; a Completed nightly-backup run keeps it quiet for a whole window
  from that run (the window restarts at each Completed run, see deployments/alerts.py);
* a run that ends in a Failed-type state named InvalidInput (a form's typo) pages nobody, while a Failed
  one does: Prefect emits `prefect.flow-run.InvalidInput`, which the failed-runs automation does not
  expect;
* `--deployment` without nightly-backup removes the nightly watch.

Windows of seconds instead of 26 h (Prefect's minimum is 10 s; its triggers service evaluates proactive
triggers every 5 s). No fixed sleeps: every wait is on the webhook or the API, bounded. The webhook
receiver is shared by the session: deliveries are matched on this module's subjects and runs, and the
automations this module changed are deleted at its end, so that no proactive alert goes on firing.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from vbs_backup.deployments.alerts import AUTOMATION_NAME, NIGHTLY_AUTOMATION_NAME, duration_text

from .conftest import SERVED_PLAN, state_time, wait_until
from .test_alerts import alerts_setup, automations_named, delete_automations

pytestmark = pytest.mark.server

SLACK = 6  # seconds: the triggers service's 5 s evaluation period, plus the action's delivery


def nightly_subject(window: float) -> str:
    return f"vbs-backup: no Completed run of nightly-backup in {duration_text(timedelta(seconds=window))}"


@pytest.fixture(scope="module")
def own_automations(prefect_server):
    """Whatever this module sets up is deleted when it ends."""
    yield
    delete_automations(prefect_server, AUTOMATION_NAME, NIGHTLY_AUTOMATION_NAME)


def setup_window(prefect_server, url: str, window: float) -> tuple[float, str]:
    """`alerts setup --nightly-within-hours <window in hours>`: (the time the command started, stdout)."""
    started = time.time()
    result = alerts_setup(prefect_server, url, "--nightly-within-hours", repr(window / 3600))
    assert result.returncode == 0, result.stderr
    return started, result.stdout


def test_no_completed_nightly_within_the_window_sends_the_proactive_alert(
    prefect_server, webhook, own_automations
):
    window = 12.0
    url = f"{webhook.url}/nightly-fires"
    started, stdout = setup_window(prefect_server, url, window)
    assert "no Completed run of nightly-backup for 12 s" in stdout and "window starts now" in stdout
    [automation] = automations_named(prefect_server, NIGHTLY_AUTOMATION_NAME)

    # No nightly runs. The window opens at the server's first evaluation after the update; the alert
    # comes when it closes.
    delivery = webhook.wait_for(
        lambda d: (
            d.path == "/nightly-fires"
            and d.body.get("subject") == nightly_subject(window)
            and d.received_at > started
        ),
        timeout=window + 3 * SLACK + 30,
    )
    assert delivery.received_at >= started + window
    body = delivery.body["body"]
    assert "No run of the deployment nightly-backup has ended Completed for 12 s" in body
    assert "is `vbs-backup serve` running" in body
    assert "is the deployment nightly-backup paused" in body
    assert f"{prefect_server.ui_url}/automations/automation/{automation['id']}" in body


def test_a_completed_nightly_keeps_the_proactive_alert_quiet_for_a_window(
    prefect_server, served, cloud, webhook, own_automations, timings
):
    window = 30.0
    url = f"{webhook.url}/nightly-quiet"
    cloud.control("DELETE", "/job_faults")
    started, stdout = setup_window(prefect_server, url, window)
    set_up = time.time()
    assert "no Completed run of nightly-backup for 30 s" in stdout

    # Completed nightly-backup runs, until one completes well after the window opened (at most 5.5 s
    # after the setup): a window from the setup would then have fired before the one from that run.
    completed = None
    for _attempt in range(4):
        flow_run = prefect_server.run("nightly-backup", {"plan": {**SERVED_PLAN, "slot_minutes": 1}})
        final = prefect_server.wait_final(flow_run["id"])
        assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
        completed = state_time(final["state"])
        if completed - set_up >= 2 * SLACK + 1:
            break
    assert completed is not None and completed - set_up >= 2 * SLACK + 1
    timings["nightly_quiet_completed_after_setup_s"] = round(completed - set_up, 1)

    delivery = webhook.wait_for(
        lambda d: (
            d.path == "/nightly-quiet"
            and d.body.get("subject") == nightly_subject(window)
            and d.received_at > started
        ),
        timeout=completed + window + 2 * SLACK + 30 - time.time(),
    )
    # Quiet for a whole window after the last Completed run, then the alert.
    assert delivery.received_at >= completed + window - 0.2, (delivery.received_at - completed, window)
    timings["nightly_alert_after_last_completed_s"] = round(delivery.received_at - completed, 1)


def test_an_input_error_pages_nobody_while_a_failed_run_does(
    prefect_server, served, webhook, own_automations
):
    """Two runs of backup-server ended through the API, as the flows end them: one in a Failed-type state
    named InvalidInput (a person's typo in the form), one plainly Failed."""
    url = f"{webhook.url}/input-errors"
    result = alerts_setup(prefect_server, url, "--nightly-within-hours", "0")
    assert result.returncode == 0, result.stderr
    [automation] = automations_named(prefect_server, AUTOMATION_NAME)
    deployment = prefect_server.deployment("backup-server")

    def ended(name: str, state_name: str) -> dict:
        # A run of the deployment (its parameters do not matter here), Pending: the served runner only
        # picks Scheduled runs, so this run is ours alone.
        run = prefect_server.post(
            "/flow_runs/",
            {
                "name": name,
                "flow_id": deployment["flow_id"],
                "deployment_id": deployment["id"],
                "state": {"type": "PENDING"},
            },
        )
        run.raise_for_status()
        state = {"type": "FAILED", "name": state_name, "message": f"server 'db-0l' not found ({state_name})"}
        answer = prefect_server.post(
            f"/flow_runs/{run.json()['id']}/set_state", {"state": state, "force": True}
        )
        answer.raise_for_status()
        assert answer.json()["status"] == "ACCEPT"
        return run.json()

    typo = ended("backup db-0l (typo)", "InvalidInput")
    failed = ended("backup db-01 (failed)", "Failed")

    delivery = webhook.wait_for(lambda d: failed["id"] in d.body.get("body", ""), timeout=60)
    assert delivery.path == "/input-errors"
    assert delivery.body["subject"] == "vbs-backup: backup db-01 (failed) (backup-server) is Failed"
    assert "Message: server 'db-0l' not found (Failed)\n" in delivery.body["body"]

    # The InvalidInput event reached the server (before the Failed one), and the automation did not act
    # on it: it acted on the Failed event only.
    def events(filter_: dict) -> list[dict]:
        response = prefect_server.api.post("/events/filter", json={"filter": filter_, "limit": 50})
        response.raise_for_status()
        return response.json()["events"]

    def state_event(state: str, flow_run_id: str) -> dict:
        [event] = wait_until(
            f"the {state} event",
            lambda: events(
                {
                    "event": {"name": [f"prefect.flow-run.{state}"]},
                    "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                }
            ),
            timeout=30,
        )
        return event

    invalid_event = state_event("InvalidInput", typo["id"])
    failed_event = state_event("Failed", failed["id"])

    def triggering_events() -> set[str]:
        acted = events(
            {
                "event": {"name": ["prefect.automation.action.triggered"]},
                "resource": {"id": [f"prefect.automation.{automation['id']}"]},
            }
        )
        return {
            r["prefect.resource.id"].removeprefix("prefect.event.")
            for e in acted
            for r in e["related"]
            if r.get("prefect.resource.role") == "triggering-event"
        }

    acted_on = wait_until(
        "the automation's action event",
        lambda: failed_event["id"] in (t := triggering_events()) and t,
        timeout=30,
    )
    assert invalid_event["id"] not in acted_on
    assert not [d for d in webhook.deliveries if typo["id"] in d.body.get("body", "")]


def test_setup_without_nightly_backup_among_the_deployments_removes_the_nightly_watch(
    prefect_server, webhook, own_automations
):
    url = f"{webhook.url}/subset"
    setup_window(prefect_server, url, 3600)
    assert automations_named(prefect_server, NIGHTLY_AUTOMATION_NAME)

    result = alerts_setup(
        prefect_server, url, "--deployment", "backup-server", "--deployment", "restore-disk"
    )
    assert result.returncode == 0, result.stderr
    assert "a run of backup-server, restore-disk that ends Failed" in result.stdout
    assert f"automation deleted '{NIGHTLY_AUTOMATION_NAME}'" in result.stdout
    assert automations_named(prefect_server, NIGHTLY_AUTOMATION_NAME) == []
    [automation] = automations_named(prefect_server, AUTOMATION_NAME)
    assert automation["trigger"]["match_related"] == {
        "prefect.resource.role": "deployment",
        "prefect.resource.name": ["backup-server", "restore-disk"],
    }
    assert "a run of backup-server, restore-disk ends" in automation["description"]
