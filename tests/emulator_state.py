"""What a test reads straight from the emulator's state (it runs in the test's process): the example
project, and how many requests of an operation reached the cloud API."""

from __future__ import annotations

from typing import Any

from vbs_backup.emulator.state import Project


def project(emulator: Any) -> Project:
    """The handle's project in the emulator (servers, volumes, backups, jobs, policies)."""
    return emulator.state.projects[emulator.project_id]


def calls(emulator: Any, operation: str) -> int:
    """How many requests for `operation` (e.g. "vbs.create_backup") the emulator has logged."""
    return sum(1 for entry in emulator.state.request_log if entry.operation == operation)
