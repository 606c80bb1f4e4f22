"""Black-box: the safety promises through the `vbs-backup` command and the documented API only.

Each step is `vbs-backup run --plan FILE` in a process of its own (the Prefect test server for its API, the
emulator over HTTP for the cloud); what happened is read back through the documented backups list, never
through the product's internals. The emulator's clock is driven by the test while a command runs (a backup
job takes a few virtual minutes), since the command itself waits in real time.
"""

from __future__ import annotations

import pytest

from tests.commands import vbs_backup, write_plan

# The command reaches the session's Prefect test server (tests/conftest.py) through PREFECT_API_URL.
pytestmark = pytest.mark.usefixtures("prefect_server")


def listed(emulator) -> list[dict]:
    """Every backup of the project, as the documented detail list shows it."""
    response = emulator.call("GET", f"/v2/{emulator.project_id}/backups/detail", params={"limit": 1000})
    response.raise_for_status()
    return response.json()["backups"]


def of_plan(backups: list[dict], plan: str) -> set[str]:
    return {b["id"] for b in backups if f"plan={plan} " in (b.get("description") or "")}


def test_two_plans_a_second_ledger_and_a_vanished_backup(cloud_env, tmp_path):
    clock = cloud_env.state.clock
    archive = write_plan(tmp_path, name="archive", name_prefix="vbsb-arch", retention={"keep_monthly": 12})
    nightly = write_plan(
        tmp_path, name="nightly", name_prefix="vbsb", retention={"keep_last": 1, "min_successful": 1}
    )
    prod, laptop = tmp_path / "prod.sqlite", tmp_path / "laptop.sqlite"

    done = vbs_backup("run", "--plan", str(archive), ledger=prod, clock=clock)
    assert done.returncode == 0, done.stdout + done.stderr
    archived = of_plan(listed(cloud_env), "archive")
    assert len(archived) == 5

    done = vbs_backup("run", "--plan", str(nightly), ledger=prod, clock=clock)
    assert done.returncode == 0, done.stdout + done.stderr
    first = of_plan(listed(cloud_env), "nightly")
    assert len(first) == 5 and of_plan(listed(cloud_env), "archive") == archived  # another plan's: untouched

    # The same slot from a second ledger: everything is adopted, nothing is created twice.
    done = vbs_backup("run", "--plan", str(nightly), ledger=laptop, clock=clock)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(listed(cloud_env)) == 10

    # A backup vanishes; the next run in the slot makes a new one instead of reporting green.
    gone = sorted(first)[0]
    cloud_env.call("DELETE", f"/v2/{cloud_env.project_id}/cloudbackups/{gone}").raise_for_status()
    done = vbs_backup("run", "--plan", str(nightly), ledger=prod, clock=clock)
    assert done.returncode == 0, done.stdout + done.stderr
    now = of_plan(listed(cloud_env), "nightly")
    assert gone not in now and len(now) == 5
    available = {b["id"] for b in listed(cloud_env) if b["status"] == "available"}
    assert archived | now <= available

    report = vbs_backup("report", ledger=prod)
    assert report.returncode == 0 and report.stdout.count("completed") == 3, report.stdout
