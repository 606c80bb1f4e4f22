"""The layers hold where `lint-imports` cannot look by itself (scripts/check.sh runs the contracts).

The import contracts in pyproject.toml name the core's modules one by one (a forbidden contract has no
"everything but" form), so a new core module would escape "the core never imports Prefect" unless it is
listed: every child of `vbs_backup` must be either in that contract or one of the Prefect layers. And the
generic names must not be installed at the top of site-packages, nor the Prefect packages lose their
place under `vbs_backup`.
"""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import vbs_backup

REPO = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {c["type"] + ":" + c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}


def _contract(kind: str, starting: str) -> dict:
    (found,) = [c for key, c in _contracts().items() if key.startswith(f"{kind}:{starting}")]
    return found


def test_every_child_of_the_package_is_either_core_or_a_prefect_layer():
    core = set(_contract("forbidden", "The core never imports Prefect")["source_modules"])
    prefect = set(_contract("layers", "Prefect layers")["layers"])
    children = {f"vbs_backup.{m.name}" for m in pkgutil.iter_modules(vbs_backup.__path__)}
    assert core.isdisjoint(prefect)
    assert children - core - prefect == set(), "add the new module to a contract in pyproject.toml"
    assert (core | prefect) - children == set(), "a contract names a module that is gone"


def test_the_cloud_client_is_forbidden_every_core_module_but_the_clock_and_the_redaction_of_secrets():
    core = set(_contract("forbidden", "The core never imports Prefect")["source_modules"])
    forbidden = set(_contract("forbidden", "The cloud client stands alone")["forbidden_modules"])
    # The emulator is kept apart by its own contract (independence), the clock and redaction are leaves.
    allowed = {"vbs_backup.cloud", "vbs_backup.emulator", "vbs_backup.clock", "vbs_backup.redaction"}
    assert forbidden == core - allowed


def test_the_core_contract_forbids_prefect_and_every_prefect_layer():
    forbidden = set(_contract("forbidden", "The core never imports Prefect")["forbidden_modules"])
    assert forbidden == {"prefect", *_contract("layers", "Prefect layers")["layers"]}


def test_the_prefect_packages_live_at_the_top_of_the_repository_and_install_under_vbs_backup():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["vbs_backup*"]
    for name in ("flows", "tasks", "deployments"):
        link = REPO / "vbs_backup" / name
        assert link.is_symlink() and link.resolve() == REPO / name
        assert (REPO / name / "__init__.py").is_file()


def test_the_wheel_installs_one_top_level_package_with_its_prefect_packages_and_typing_marker(tmp_path):
    """What `pip install vbs-backup` puts in site-packages: `vbs_backup` alone (with flows, tasks and
    deployments inside it, followed through the symlinks), its data files, and `py.typed`."""
    import shutil
    import subprocess
    import sys
    import zipfile

    # From a copy: pip builds in the source tree, and a `build/` left there would add stale files.
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", "docs"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("vbs_backup-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"vbs_backup", wheel.name.split("-py")[0] + ".dist-info"}
    for expected in (
        "vbs_backup/py.typed",
        "vbs_backup/flows/nightly.py",
        "vbs_backup/tasks/backup.py",
        "vbs_backup/deployments/cli/__init__.py",
        "vbs_backup/emulator/sample_fleet.yaml",
        "vbs_backup/ledger/migrations/script.py.mako",
    ):
        assert expected in names
