"""`vbs-backup estate check`, as an operator runs it: the installed command in a process of its own."""

from __future__ import annotations

import socket
import subprocess

from tests.commands import ROOT, VBS_BACKUP


def _check(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VBS_BACKUP), "estate", "check", "--file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_the_example_estate_checks_and_lists_its_targets_with_their_plans():
    done = _check(ROOT / "examples" / "estate.yaml")

    assert done.returncode == 0, done.stderr
    assert "estate acme: 2 target(s)" in done.stdout
    assert "huaweicloud-eu-west-101-01234567" in done.stdout and "otc-frankfurt" in done.stdout
    # The target's timezone override reached both of its plans, the inline one and the one from a file.
    assert "nightly (Europe/Berlin), db-hourly (Europe/Berlin)" in done.stdout


def test_a_broken_estate_is_one_line_per_problem_and_exit_2(tmp_path):
    estate = tmp_path / "estate.yaml"
    estate.write_text(
        "name: acme\n"
        "targets:\n"
        "  - {cloud: otc, region: eu-de, project_id: '12', credentials: otc-prod,\n"
        "     plans: [{file: nope.yaml}]}\n"
    )

    done = _check(estate)

    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"Invalid estate in {estate}:"
    assert any(line.startswith("  - targets.0.plans.0 (") and "cannot read" in line for line in lines)
    assert "  - targets.0.project_id: must be 32 lowercase hexadecimal characters" in lines
    assert len(lines) == 3  # nothing else: no traceback, no "too short" for the plan that could not be read


def _limits(path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VBS_BACKUP), "estate", "limits", "--file", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **env},
    )


def test_estate_limits_refuses_a_broken_estate_before_anything_else(tmp_path):
    estate = tmp_path / "estate.yaml"
    estate.write_text("name: acme\ntargets: []\n")

    done = _limits(estate, "--rate", "10", PREFECT_HOME=str(tmp_path / "home"))

    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[0] == f"Invalid estate in {estate}:"


def test_estate_limits_needs_a_positive_rate(tmp_path):
    done = _limits(ROOT / "examples" / "estate.yaml", "--rate", "0", PREFECT_HOME=str(tmp_path / "home"))

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "--rate must be a positive number of requests per second\n"


def test_estate_limits_without_a_prefect_server_is_one_line_and_exit_2(tmp_path):
    estate = ROOT / "examples" / "estate.yaml"
    home = str(tmp_path / "home")  # no profile: no API URL from anywhere

    unset = _limits(estate, "--rate", "10", PREFECT_HOME=home)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        closed = _limits(
            estate, "--rate", "10", PREFECT_HOME=home, PREFECT_API_URL=f"http://127.0.0.1:{port}/api"
        )

    assert (unset.returncode, unset.stdout) == (2, "")
    assert unset.stderr.startswith("No Prefect server configured: set PREFECT_API_URL")
    assert (closed.returncode, closed.stdout) == (2, "")
    assert closed.stderr.startswith(f"No Prefect server reachable at http://127.0.0.1:{port}/api: ")
    assert len(unset.stderr.splitlines()) == len(closed.stderr.splitlines()) == 1
