"""`vbs-backup estate check`, as an operator runs it: the installed command in a process of its own."""

from __future__ import annotations

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
