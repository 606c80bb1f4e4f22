"""The deployments: prefect.yaml agrees with the catalog; `vbs-backup serve` registers them on a real
server; a run started like the UI's Run button completes and lands in the ledger; nightly runs never
overlap."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from vbs_backup.deployments.catalog import ALL_DEPLOYMENTS, CATALOG, DEFAULT_PLAN, TAG
from vbs_backup.flows.server import SERVER_REF
from vbs_backup.ledger import DiskBackup, Run, make_engine
from vbs_backup.plan import BackupPlan

from .conftest import REPO, SERVED_PLAN, state_time

server = pytest.mark.server


def test_prefect_yaml_and_the_catalog_describe_the_same_deployments():
    config = yaml.safe_load(Path(REPO / "prefect.yaml").read_text())
    in_yaml = {d["name"]: d for d in config["deployments"]}
    assert list(in_yaml) == [spec.name for spec in ALL_DEPLOYMENTS]
    for spec in ALL_DEPLOYMENTS:
        entry = in_yaml[spec.name]
        assert entry["entrypoint"] == spec.entrypoint
        assert entry["description"] == spec.description
        assert entry["parameters"] == spec.parameters
        assert entry.get("concurrency_limit") == spec.concurrency_limit
        assert tuple(entry["tags"]) == spec.tags
        expected = [{"cron": spec.cron, "timezone": spec.timezone}] if spec.cron else []
        assert entry["schedules"] == expected
        assert entry["work_pool"]["name"] == "vbs-backup"
        assert (REPO / spec.entrypoint.split(":")[0]).is_file()
        assert spec.load_flow().name == spec.name  # the entry point names the flow of that name
    # Every plan given as a default parameter is a valid plan, in the schedules' timezone.
    assert BackupPlan.model_validate(DEFAULT_PLAN).schedule_timezone == CATALOG[0].timezone


@server
def test_serve_registers_every_catalog_deployment(prefect_server, served):
    for spec in CATALOG:
        deployment = prefect_server.deployment(spec.name)
        assert deployment["entrypoint"] == spec.module_path
        assert TAG in deployment["tags"]
        if spec.takes_plan:  # the served plan, as its non-default fields
            served_plan = BackupPlan.model_validate(deployment["parameters"]["plan"])
            assert served_plan == BackupPlan.model_validate(SERVED_PLAN)
        schedules = [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in deployment["schedules"]]
        assert schedules == ([(spec.cron, spec.timezone)] if spec.cron else [])
        assert all(s["active"] for s in deployment["schedules"])
        limit = deployment.get("global_concurrency_limit")
        assert (limit["limit"] if limit else None) == spec.concurrency_limit


@server
def test_the_on_demand_forms_ask_only_what_an_operator_chooses(prefect_server, served):
    schema = prefect_server.deployment("backup-server")["parameter_openapi_schema"]
    assert schema["required"] == ["server"]
    assert list(schema["properties"]) == ["server", "credentials"]  # the plan is the deployment's
    assert schema["properties"]["server"]["pattern"] == SERVER_REF
    retention = prefect_server.deployment("apply-retention")["parameter_openapi_schema"]
    assert list(retention["properties"]) == ["dry_run", "credentials"]
    # Quick run starts the nightly at once (the UI opens the full form when a parameter is required),
    # and the plan's form fields have titles.
    nightly = prefect_server.deployment("nightly-backup")["parameter_openapi_schema"]
    assert nightly.get("required", []) == []
    plan = nightly["definitions"]["BackupPlan"]["properties"]
    assert plan["poll_interval_seconds"]["title"] == "Poll interval (seconds)"


@server
def test_a_malformed_server_is_refused_by_the_server_before_any_run(prefect_server, served):
    deployment = prefect_server.deployment("backup-server")
    before = prefect_server.api.post("/flow_runs/count", json={}).json()
    response = prefect_server.create_flow_run(deployment["id"], {"parameters": {"server": "db 01\nrm"}})
    assert response.status_code in (409, 422), response.text
    assert "server" in response.text
    assert prefect_server.api.post("/flow_runs/count", json={}).json() == before  # no run, so no alert


@server
def test_a_run_started_like_the_ui_run_button_completes_and_is_in_the_ledger(
    prefect_server, served, cloud, ledger_url, timings
):
    cloud.control("DELETE", "/job_faults")
    started = time.monotonic()
    flow_run = prefect_server.run("nightly-backup")
    final = prefect_server.wait_final(flow_run["id"])

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert final["state"]["message"].startswith("5 of 5 disks backed up")
    states = prefect_server.states(flow_run["id"])
    created = state_time(states[0])
    running = next(state_time(s) for s in states if s["type"] == "RUNNING")
    timings["nightly_create_to_running_s"] = round(running - created, 2)
    timings["nightly_create_to_completed_s"] = round(state_time(states[-1]) - created, 2)
    timings["nightly_wall_clock_s"] = round(time.monotonic() - started, 2)

    with Session(make_engine(ledger_url)) as session:
        run = session.exec(select(Run).where(Run.flow_run_id == flow_run["id"])).one()
        rows = session.exec(select(DiskBackup).where(DiskBackup.run_id == run.id)).all()
    assert (run.status.value, run.deployment, run.plan_name, run.disks_succeeded) == (
        "completed",
        "nightly-backup",
        "nightly",
        5,
    )
    assert {r.status.value for r in rows} == {"succeeded"}
    available = {b["id"] for b in cloud.backups() if b["status"] == "available"}
    assert {r.backup_id for r in rows} <= available


@server
def test_nightly_runs_never_overlap(prefect_server, served, cloud):
    cloud.control("DELETE", "/job_faults")
    # Two runs at once (a one-minute slot, so each really backs up); the second waits for a slot.
    plan = {**SERVED_PLAN, "slot_minutes": 1}
    first = prefect_server.run("nightly-backup", {"plan": plan})
    second = prefect_server.run("nightly-backup", {"plan": {**plan, "name": "overlap"}})
    for flow_run in (first, second):
        assert prefect_server.wait_final(flow_run["id"], timeout=150)["state"]["type"] == "COMPLETED"

    histories = [prefect_server.states(r["id"]) for r in (first, second)]
    (a_start, a_end), (b_start, b_end) = (
        (min(state_time(s) for s in h if s["type"] == "RUNNING"), state_time(h[-1])) for h in histories
    )
    assert a_end <= b_start or b_end <= a_start, "two nightly runs were Running at the same time"
    names = {s["name"] for h in histories for s in h}
    assert "AwaitingConcurrencySlot" in names
