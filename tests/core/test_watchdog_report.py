"""`vbs-backup report`: a plan's on-demand runs read as such, not as nightly runs; and the protection view's
module stays free of Prefect (the core package never imports it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlmodel import Session
from typer.testing import CliRunner

from vbs_backup.deployments.cli.app import app
from vbs_backup.ledger import RunStatus, finish_run, init_db, make_engine, start_run


def test_report_labels_each_run_with_its_kind(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = make_engine(url)
    init_db(engine)
    with Session(engine) as session:
        for deployment, trigger in (
            ("nightly-backup", "scheduled"),
            ("backup-server", "deployment"),
            ("apply-retention", "deployment"),
            (None, "direct"),
            ("nightly-backup", "deployment"),
        ):
            run = start_run(session=session, plan_name="nightly", trigger=trigger, deployment=deployment)
            assert run.id is not None
            finish_run(session=session, run_id=run.id, status=RunStatus.completed)
    engine.dispose()

    done = CliRunner().invoke(app, ["report", "--database-url", url], env={"COLUMNS": "200"})

    assert done.exit_code == 0, done.output
    lines = {line.split("│")[1].strip(): line for line in done.output.splitlines() if line.count("│") > 5}
    kinds = {run: [c.strip() for c in line.split("│")][3] for run, line in lines.items() if run.isdigit()}
    assert kinds == {
        "1": "nightly",
        "2": "on demand: backup-server",
        "3": "retention",
        "4": "direct",
        "5": "nightly, started by hand",
    }
    assert [c.strip() for c in lines["3"].split("│")][6] == "-"  # a retention run backs up no disk
    assert [c.strip() for c in lines["2"].split("│")][2] == "nightly"  # the plan, next to the kind


def test_the_protection_view_imports_no_prefect():
    code = (
        "import sys, vbs_backup.watchdog.view, vbs_backup.deployments.cli.app;"
        " print('prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
