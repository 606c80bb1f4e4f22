"""The stand-in cloud: IAM, ECS, EVS and VBS over HTTP, with a controllable clock and fault injection.

It never imports `vbs_backup.cloud` (the client): the HTTP wire is the contract between the two.

    from vbs_backup.emulator import CloudState, EmulatorServer, ManualClock, create_app
    app = create_app(CloudState(clock=ManualClock()), fleet=SAMPLE_FLEET)
    with EmulatorServer(app) as server:
        ...  # server.url, plus the control API under server.url + "/_emulator"

Public names are imported lazily, so importing one submodule (e.g. `state` from the VBS backend) does not
pull in the whole app.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

SAMPLE_FLEET = Path(__file__).with_name("sample_fleet.yaml")

_EXPORTS = {
    "create_app": "app",
    "EmulatorServer": "server",
    "CloudState": "state",
    "Settings": "state",
    "ManualClock": "clock",
    "ScaledClock": "clock",
    "FleetError": "fleet",
    "FleetModel": "fleet",
    "apply_fleet": "fleet",
    "load_fleet": "fleet",
}

__all__ = ["SAMPLE_FLEET", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
