"""Reproducible installs: `constraints.txt` pins every dependency at a version pyproject admits.

README's Quick start and `.ci/run` install with `pip install -c constraints.txt -e ".[test]"`; the file is
refreshed with `scripts/lock.sh` (see README, "Reproducible installs").
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = ("test", "postgres")  # what the lock covers: `.[test]` for CI, `.[postgres]` for installations

# Libraries whose next major (or, below 1.0, next minor series) is known to break APIs we use: each needs an
# upper bound in pyproject, so a fresh install without the constraints file cannot pick it up.
MAJOR_BREAKERS = {
    "prefect",
    "httpx",
    "pydantic",
    "pydantic-settings",
    "sqlmodel",
    "typer",
    "uvicorn",
    "starlette",
    "alembic",
    "platformdirs",  # a major may move the default ledger path
    "pyyaml",
    "psycopg",
    "pytest",
    "pytest-asyncio",
    "hypothesis",
    "playwright",
    "huaweicloudsdkecs",
    "huaweicloudsdkevs",
}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements() -> list[Requirement]:
    found = [Requirement(r) for r in project()["dependencies"]]
    for extra in EXTRAS:
        found += [Requirement(r) for r in project()["optional-dependencies"][extra]]
    return found


def pins() -> dict[str, Version]:
    pinned: dict[str, Version] = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"constraints.txt:{number}: not a `name==version` pin: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in pinned, f"constraints.txt:{number}: {name} pinned twice"
        pinned[name] = Version(match[2])
    return pinned


def test_every_direct_dependency_is_pinned_at_a_version_pyproject_admits():
    pinned = pins()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, outside pyproject's {requirement}"
        )
    assert "alembic" in pinned and "psycopg-binary" in pinned  # the migrations and the [postgres] extra


def test_every_dependency_with_a_breaking_major_has_an_upper_bound():
    by_name = {canonicalize_name(r.name): r for r in requirements()}
    assert set(MAJOR_BREAKERS) <= set(by_name), "MAJOR_BREAKERS names a library pyproject does not use"
    for name in sorted(MAJOR_BREAKERS):
        operators = {spec.operator for spec in by_name[name].specifier}
        assert operators & {"<", "<=", "==", "~=", "==="}, f"{by_name[name]} has no upper bound"


def test_every_installed_dependency_of_the_project_is_pinned():
    """The lock is complete: the installed closure of `vbs-backup[test,postgres]` is pinned, by name."""
    try:
        metadata.distribution("vbs-backup")
    except metadata.PackageNotFoundError:  # pragma: no cover - the tests run from an installed checkout
        pytest.skip("vbs-backup is not installed")
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    assert tuple(lock.EXTRAS) == EXTRAS
    missing = sorted(set(lock.closure("vbs-backup", EXTRAS)) - set(pins()))
    assert not missing, f"installed but not pinned in constraints.txt: {', '.join(missing)}"


def test_readme_and_ci_install_from_the_constraints_file():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in quick_start.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2, quick_start
    assert all("-c constraints.txt" in command for command in commands), commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines(), "the test command differs between README step 2 and .ci/run"
