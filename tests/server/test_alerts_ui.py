"""The automations `vbs-backup alerts setup` creates, as an operator sees them on the Prefect UI's
Automations page (Debian's chromium driven by Playwright): the failed-runs card reads as Prefect's "Flow run
state" trigger ("When any flow run with the tag vbs-backup enters TimedOut Failed Crashed"), both cards say
in their description what they watch and where they send. Screenshot: test-artifacts/ui-automations.png."""

from __future__ import annotations

import pytest

from vbs_backup.deployments.alerts import AUTOMATION_NAME, LOST_AUTOMATION_NAME, NIGHTLY_AUTOMATION_NAME

from .conftest import ARTIFACTS
from .test_alerts import alerts_setup, automations_named, delete_automations

pytestmark = pytest.mark.server


@pytest.fixture
def set_up(prefect_server, webhook):
    delete_automations(prefect_server, AUTOMATION_NAME, NIGHTLY_AUTOMATION_NAME, LOST_AUTOMATION_NAME)
    result = alerts_setup(prefect_server, f"{webhook.url}/ui")
    assert result.returncode == 0, result.stderr
    yield
    delete_automations(prefect_server, AUTOMATION_NAME, NIGHTLY_AUTOMATION_NAME, LOST_AUTOMATION_NAME)


def test_the_automations_page_says_what_each_alert_watches_and_where_it_sends(prefect_server, set_up, page):
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{prefect_server.ui_url}/automations")
    cards = page.locator(".automation-card")
    # The lost-runs card names the failed-runs automation in its description (what pages after it).
    failures = cards.filter(has_text=AUTOMATION_NAME).filter(has_not_text=LOST_AUTOMATION_NAME)
    nightly = cards.filter(has_text=NIGHTLY_AUTOMATION_NAME)
    lost = cards.filter(has_text=LOST_AUTOMATION_NAME)
    try:
        failures.get_by_text("When any flow run").wait_for()
        nightly.get_by_text("A custom trigger").wait_for()
        page.screenshot(path=str(ARTIFACTS / "ui-automations.png"), full_page=True)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "ui-automations-failed.png"), full_page=True)
        raise

    assert failures.locator(".automation-trigger-description-flow-run-state").count() == 1
    trigger = " ".join(failures.locator(".automation-trigger-description").inner_text().split())
    # The states in the server's order (a set: it varies from one server start to the next).
    assert trigger.startswith("When any flow run with the tag vbs-backup enters ")
    assert sorted(trigger.split(" enters ")[1].split()) == ["Crashed", "Failed", "TimedOut"]
    text = failures.inner_text()
    assert (
        "nightly-backup, backup-server" in text and "webhook (127.0.0.1)" in text and "InvalidInput" in text
    )
    text = nightly.inner_text()
    assert "no run of the deployment nightly-backup has ended Completed for 26 h" in text
    assert "`vbs-backup serve`" in text and "webhook (127.0.0.1)" in text
    # Prefect's card reads the heartbeat trigger as "... stays in heartbeat for 10 minutes"; the
    # description says what it does.
    text = " ".join(lost.inner_text().split())
    assert "Marks Crashed a run of a deployment tagged vbs-backup that sent no heartbeat for 10 min" in text

    # The detail page too, for the record.
    [automation] = automations_named(prefect_server, AUTOMATION_NAME)
    page.goto(f"{prefect_server.ui_url}/automations/automation/{automation['id']}")
    page.get_by_text("When any flow run").wait_for()
    page.screenshot(path=str(ARTIFACTS / "ui-automation-failed-runs.png"), full_page=True)
