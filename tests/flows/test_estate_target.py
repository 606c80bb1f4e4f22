"""One target of an estate (flows/estate.py `estate_target`, the child run `estate-nightly` starts per
target): its plans in turn, with its own credentials block, checked against the target before anything is
sent; its runs recorded under its name. The parent over a real work pool: tests/server/test_estate_pool.py.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import Engine
from sqlmodel import Session, select

from tests.estates import BETA, BETA_VOLUMES, add_beta, save_beta_block, save_block, target
from vbs_backup.flows.estate import estate_target
from vbs_backup.identity import parse_marker
from vbs_backup.ledger import Run


def backups_of(state, project_id: str) -> list:
    return list(state.projects[project_id].backups.values())


NIGHTLY = {"name": "nightly", "selection": {"tags": {"backup": "nightly"}}, "poll_interval_seconds": 30}
DATA_ONLY = {**NIGHTLY, "name": "data", "include_system_disk": False}


async def test_a_target_runs_each_plan_with_its_own_block_and_records_its_name(
    cloud_env, virtual_time, ledger: Engine
):
    add_beta(cloud_env)
    save_beta_block("beta-creds", cloud_env)
    beta = target("beta", BETA["id"], "beta-creds", NIGHTLY, DATA_ONLY, account="acme")

    state = await estate_target(beta, estate="acme", return_state=True)

    assert state.is_completed(), state.message
    assert state.message.startswith("plan nightly: ") and "; plan data: " in state.message
    made = [(parse_marker(b.description)[0], b.volume_id) for b in backups_of(cloud_env.state, BETA["id"])]
    assert sorted(made) == sorted([("nightly", v) for v in BETA_VOLUMES] + [("data", BETA_VOLUMES[1])])
    assert backups_of(cloud_env.state, cloud_env.project_id) == []  # the other project is untouched
    with Session(ledger) as session:
        runs = session.exec(select(Run)).all()
    assert sorted((r.plan_name, r.target, r.project_id) for r in runs) == [
        ("data", "beta", BETA["id"]),
        ("nightly", "beta", BETA["id"]),
    ]
    # Each plan's summary hangs off the target's run under its own key.
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert {"beta-nightly-summary", "beta-data-summary"} <= {a.key for a in artifacts}


async def test_a_block_that_signs_in_elsewhere_fails_the_target_before_any_request(
    cloud_env, virtual_time, ledger
):
    add_beta(cloud_env)
    # The block is alpha's (the example project), the target says beta.
    save_block("alpha-creds", cloud_env, cloud_env.project_id, cloud_env.ak, cloud_env.sk)
    cloud_env.control("DELETE", "/requests").raise_for_status()

    state = await estate_target(target("beta", BETA["id"], "alpha-creds", NIGHTLY), return_state=True)

    assert state.is_failed()
    assert state.message == (
        "target beta: credentials block 'alpha-creds' is for another place: "
        f"project_id {cloud_env.project_id} (the target says {BETA['id']})"
    )
    assert cloud_env.control("GET", "/requests").json() == []
    assert backups_of(cloud_env.state, cloud_env.project_id) == backups_of(cloud_env.state, BETA["id"]) == []


async def test_a_failed_plan_fails_the_target_and_the_next_plan_still_runs(cloud_env, virtual_time, ledger):
    add_beta(cloud_env)
    save_beta_block("beta-creds", cloud_env)
    failing = BETA_VOLUMES[0]
    cloud_env.control("POST", "/job_faults", json={"mode": "fail", "volume_id": failing}).raise_for_status()
    beta = target("beta", BETA["id"], "beta-creds", NIGHTLY, DATA_ONLY)

    state = await estate_target(beta, return_state=True)

    assert state.is_failed()
    assert state.message.startswith("target beta: plan nightly: ")
    assert "app-01 /dev/vda" in state.message and "plan data" not in state.message
    data = [b for b in backups_of(cloud_env.state, BETA["id"]) if parse_marker(b.description)[0] == "data"]
    assert [b.volume_id for b in data] == [BETA_VOLUMES[1]]  # the second plan ran
