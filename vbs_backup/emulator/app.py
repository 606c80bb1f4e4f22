"""The emulator's ASGI application: every service's routes behind the gateway middleware.

`create_app(state, fleet=...)` builds one Starlette app serving IAM, ECS, EVS, VBS and the `/_emulator`
control API, with the `Gateway` middleware in front. `app.state` holds the `CloudState` (`cloud`), the fleet
it started with (`fleet`, reloaded by `POST /_emulator/reset`), the fault rules (`faults`), the global rate
limiter (`rate_limiter`), the per-account ones (`account_limits`) and the Host names the control API
answers (`control_hosts`).

Exposure: the control API is unauthenticated, so it is guarded (see `control`): loopback Host names only
(plus `hosts`, the address the emulator was explicitly bound to), and state changes only from programs (a
JSON body or none, no browser `Origin`), so neither a cross-site page (CSRF) nor a rebound DNS name can
reconfigure a running emulator. The cloud API is deliberately not Host-checked: every call but the token
request is AK/SK-signed or token-authenticated, clients may reach the emulator under any name (a container
name, a LAN address), and what a rebinding page could do there is create or delete made-up backups.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from . import control, ecs, evs, iam
from .faults import AccountRateLimits, FaultInjector, RateLimiter
from .fleet import FleetModel, apply_fleet, load_fleet
from .gateway import Gateway
from .state import CloudState
from .vbs import install as install_vbs
from .vbs import routes as vbs_routes


def create_app(
    state: CloudState | None = None,
    *,
    fleet: dict[str, Any] | FleetModel | Path | str | None = None,
    wall_clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    hosts: Iterable[str] = (),
) -> Starlette:
    """An emulator app over `state` (a fresh `CloudState` by default), with `fleet` loaded into it.

    `hosts`: Host names (or the bind address) the control API answers besides loopback; pass the address
    the emulator is bound to when it is not a loopback one (`vbs-backup emulator --host` does).

    `wall_clock` (real time, for the AK/SK signature window and the request log's arrival times) and
    `monotonic` (for the rate limiters) are test seams; the emulator's own virtual time is `state.clock`.
    """
    state = state if state is not None else CloudState()
    fleet_model = load_fleet(fleet) if fleet is not None else None
    if fleet_model is not None:
        apply_fleet(state, fleet_model)

    routes: list[BaseRoute] = [*control.routes(), *iam.routes(), *ecs.routes(), *evs.routes(), *vbs_routes()]
    install_vbs(state)

    faults = FaultInjector()
    rate_limiter = RateLimiter(monotonic)
    account_limits = AccountRateLimits(monotonic)
    gateway = Middleware(
        Gateway,
        faults=faults,
        rate_limiter=rate_limiter,
        account_limits=account_limits,
        wall_clock=wall_clock,
    )
    app = Starlette(routes=routes, middleware=[gateway])
    app.state.cloud = state
    app.state.fleet = fleet_model
    app.state.faults = faults
    app.state.rate_limiter = rate_limiter
    app.state.account_limits = account_limits
    app.state.control_hosts = control.allowed_hosts(hosts)
    return app
