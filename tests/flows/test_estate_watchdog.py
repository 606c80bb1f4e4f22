"""The estate watchdog against the emulator (two projects, each a target of the estate with its own saved
credentials block and the same plan name, `nightly`) and one ledger holding both targets' runs.

The nights are each target's child run (`estate_target`, as `estate-nightly` starts it), with its block,
its runs recorded under its name. Virtual time as in test_watchdog_view.py: the
ledger stamps a run's start with the real time, so the last night runs at the real time on both clocks.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from sqlmodel import Session

from tests.estates import BETA, BETA_DATA, add_beta, save_beta_block, save_block
from vbs_backup.estate import load_estate
from vbs_backup.flows.estate import estate_target
from vbs_backup.flows.estate_watchdog import estate_watchdog
from vbs_backup.ledger import Run, RunStatus, start_run

ALPHA_LABELS = ("web-01 /dev/vda", "web-01 /dev/vdb", "db-01 /dev/vda", "db-01 /dev/vdb", "db-01 /dev/vdc")


@pytest.fixture
def estate(cloud_env, tmp_path: Path) -> Path:
    """Targets alpha (the example project) and beta (a second one), each with its block and plan
    `nightly`; the estate file's path."""
    add_beta(cloud_env)
    save_block("alpha-creds", cloud_env, cloud_env.project_id, cloud_env.ak, cloud_env.sk)
    save_beta_block("beta-creds", cloud_env)
    nightly = {"name": "nightly", "selection": {"tags": {"backup": "nightly"}}, "poll_interval_seconds": 30}
    common = {"cloud": "huaweicloud", "region": "eu-west-0", "plans": [nightly]}
    path = tmp_path / "estate.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "acme",
                "targets": [
                    {
                        "name": "alpha",
                        "project_id": cloud_env.project_id,
                        "credentials": "alpha-creds",
                        **common,
                    },
                    {"name": "beta", "project_id": BETA["id"], "credentials": "beta-creds", **common},
                ],
            }
        )
    )
    return path


async def night(estate: Path, target: str) -> bool:
    """The target's night as the estate runs it (its block, its runs recorded under its name)."""
    state = await estate_target(load_estate(estate).target(target), estate="acme", return_state=True)
    return state.is_completed()


async def estate_protection(state) -> str:
    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["estate-protection"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    return artifact.data


async def test_a_stale_disk_of_one_target_fails_the_estate_naming_only_that_disk(
    cloud_env, virtual_time, ledger, estate
):
    clock = cloud_env.state.clock
    today = clock.now()
    clock.set(today - timedelta(days=1))
    assert await night(estate, "alpha") and await night(estate, "beta")
    clock.set(today)
    assert await night(estate, "alpha")
    fault = {"mode": "fail", "volume_id": BETA_DATA, "count": 1}
    cloud_env.control("POST", "/job_faults", json=fault).raise_for_status()
    assert not await night(estate, "beta")  # app-01 /dev/vdb failed tonight
    clock.advance(3 * 3600)  # its newest good backup, last night's, is now over the RPO

    state = await estate_watchdog(str(estate), return_state=True)

    assert state.is_failed()
    lines = state.message.splitlines()
    assert lines[0] == "1 protection problem(s) in 1 of 2 target(s):"
    assert len(lines) == 2
    assert re.fullmatch(
        r"beta: app-01 /dev/vdb: newest good backup is 27\.\d h old \(RPO 26\.0 h\); "
        r"last attempt failed VolumeBackup\.0064",
        lines[1],
    ), lines[1]
    page = await estate_protection(state)
    assert page.startswith("# ❌ Estate acme: 1 of 2 targets protected within the RPO (26 h)\n")
    sections = re.findall(r"^## (\S+) Target (\w+), plan nightly: (\d) of (\d) disks", page, re.MULTILINE)
    assert sections == [("❌", "beta", "1", "2"), ("✅", "alpha", "5", "5")]  # problems first

    state = await estate_watchdog(str(estate), targets=["alpha"], return_state=True)

    assert state.is_completed(), state.message
    assert state.message == "all 5 protected disks of 1 target(s) have a good backup within the RPO"


async def test_an_unknown_target_fails_in_one_line(cloud_env, virtual_time, ledger, estate):
    state = await estate_watchdog(str(estate), targets=["alpha", "gamma"], return_state=True)

    assert state.is_failed()
    assert state.message == "estate acme has no target gamma (its targets: alpha, beta)"


async def test_a_broken_estate_file_fails_with_its_problems_one_per_line(cloud_env, ledger, tmp_path):
    path = tmp_path / "estate.yaml"
    path.write_text(
        "name: acme\ntargets:\n  - {cloud: otc, region: eu-de, project_id: '12', credentials: x}\n"
    )

    state = await estate_watchdog(str(path), return_state=True)

    assert state.is_failed()
    assert state.message.splitlines()[0] == f"Invalid estate in {path}:"
    assert (
        "  - targets.0.project_id: must be 32 lowercase hexadecimal characters" in state.message.splitlines()
    )


@pytest.mark.parametrize("broken", ["block-for-another-project", "secret-refused"])
async def test_a_target_that_cannot_sign_in_is_its_own_problem_and_never_sees_the_other_targets_runs(
    cloud_env, virtual_time, ledger, estate, broken
):
    # Only alpha ran tonight (its plan has the name beta's has); alpha also left a dead run behind.
    assert await night(estate, "alpha")
    with Session(ledger) as session:
        dead = start_run(session=session, plan_name="nightly", trigger="direct", target="alpha")
        dead.started_at = dead.heartbeat_at = dead.started_at - timedelta(hours=1)
        session.add(dead)
        session.commit()
        dead_id = dead.id
    if broken == "block-for-another-project":
        save_block("beta-creds", cloud_env, cloud_env.project_id, cloud_env.ak, cloud_env.sk)
        reason = "target beta: credentials block 'beta-creds' is for another place: project_id"
    else:
        save_block("beta-creds", cloud_env, BETA["id"], BETA["access_keys"][0]["ak"], "wrong-secret")
        reason = "APIGW.0301"

    state = await estate_watchdog(str(estate), targets=["beta"], return_state=True)

    assert state.is_failed()
    verdict, *lines = state.message.splitlines()
    assert verdict == "2 protection problem(s) in 1 of 1 target(s):"
    assert all(line.startswith("beta: ") or re.fullmatch(r"\d warning\(s\):", line) for line in lines), lines
    # Checked against the ledger alone, and only beta's rows of it: alpha's run is not beta's, alpha's
    # disks are not beta's, alpha's dead run is alpha's to report.
    assert "beta: plan nightly: no nightly run of this plan recorded yet" in lines
    assert any(
        line.startswith("beta: plan nightly: cannot list the plan's disks: ") and reason in line
        for line in lines
    )
    assert not any(label in state.message for label in ALPHA_LABELS)
    with Session(ledger) as session:
        assert session.get(Run, dead_id).status is RunStatus.running

    state = await estate_watchdog(str(estate), return_state=True)  # both: beta's failure spares alpha

    assert state.is_failed()
    alpha = [line for line in state.message.splitlines() if line.startswith("alpha: ")]
    assert len(alpha) == 1 and alpha[0].startswith(f"alpha: run {dead_id} of plan nightly: abandoned: ")
    page = await estate_protection(state)
    assert re.search(r"^## ❌ Target alpha, plan nightly: 5 of 5 disks", page, re.MULTILINE)
    assert re.search(r"^## ❌ Target beta, plan nightly: 0 of 0 disks", page, re.MULTILINE)
