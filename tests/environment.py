"""The `VBS_BACKUP_` environment of a test: none of this machine's (`without_machine_settings`), or the
settings that point the product at the emulator's example project (`use_emulator`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

USER_VARIABLES = ("VBS_BACKUP_USERNAME", "VBS_BACKUP_PASSWORD", "VBS_BACKUP_DOMAIN")


def without_machine_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No VBS_BACKUP_* variable and no .env file from the machine leaks into a test: the variables go, and
    the current directory is `tmp_path` (returned)."""
    for name in list(os.environ):
        if name.startswith("VBS_BACKUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def use_emulator(monkeypatch: pytest.MonkeyPatch, emulator: Any, **variables: str) -> None:
    """The settings of the emulator's example project, signing in with its AK/SK (the IAM user's variables
    removed), plus `variables` (`DATABASE_URL="sqlite:///..."` sets VBS_BACKUP_DATABASE_URL)."""
    values = {
        "ENDPOINT": emulator.url,
        "PROJECT_ID": emulator.project_id,
        "AK": emulator.ak,
        "SK": emulator.sk,
        **variables,
    }
    for name, value in values.items():
        monkeypatch.setenv(f"VBS_BACKUP_{name}", value)
    for name in USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
