"""Running the `vbs-backup` command in tests: in-process through typer's runner (`command_runner`), or as
the installed script in a process of its own (`vbs_backup`), which the black-box tests use."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import typer
import yaml
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
VBS_BACKUP = Path(sys.executable).with_name("vbs-backup")
SELECTION = {"tags": {"backup": "nightly"}}


def command_runner(app: typer.Typer) -> Callable[..., str]:
    """`run(*args, code=0)`: the command's output, once it has exited with `code`."""
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    return run


def write_plan(tmp_path: Path, **fields) -> Path:
    path = tmp_path / f"{fields['name']}.yaml"
    path.write_text(yaml.safe_dump({"selection": SELECTION, "poll_interval_seconds": 0.2, **fields}))
    return path


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def vbs_backup(*args: str, ledger: Path, clock=None) -> Done:
    """Run the command to its end; meanwhile move `clock` (virtual time) 30 s per 50 ms of real time."""
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "VBS_BACKUP_DATABASE_URL": f"sqlite:///{ledger}",
        "COLUMNS": "200",  # rich tables unwrapped
    }
    with subprocess.Popen(
        [str(VBS_BACKUP), *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        for _ in range(6000):  # at most 300 s
            try:
                stdout, stderr = proc.communicate(timeout=0.05)
                return Done(proc.returncode, stdout, stderr)
            except subprocess.TimeoutExpired:
                if clock is not None:
                    clock.advance(30)
        proc.kill()
        stdout, stderr = proc.communicate()
        return Done(-9, stdout, stderr + "\n(killed: still running after 300 s)")
