"""The stand-in cloud: IAM, ECS, EVS and VBS over HTTP, with a controllable clock and fault injection.

It never imports `vbs_backup.cloud` (the client): the HTTP wire is the contract between the two.

    from vbs_backup.emulator import CloudState, EmulatorServer, ManualClock, create_app
    app = create_app(CloudState(clock=ManualClock()), fleet=SAMPLE_FLEET)
    with EmulatorServer(app) as server:
        ...  # server.url, plus the control API under server.url + "/_emulator"
"""

from __future__ import annotations

from pathlib import Path

from .app import create_app
from .clock import ManualClock, ScaledClock
from .fleet import FleetError, FleetModel, apply_fleet, load_fleet
from .server import EmulatorServer
from .state import CloudState, LoggedRequest, Settings

SAMPLE_FLEET = Path(__file__).with_name("sample_fleet.yaml")

__all__ = [
    "SAMPLE_FLEET",
    "CloudState",
    "EmulatorServer",
    "FleetError",
    "FleetModel",
    "LoggedRequest",
    "ManualClock",
    "ScaledClock",
    "Settings",
    "apply_fleet",
    "create_app",
    "load_fleet",
]
