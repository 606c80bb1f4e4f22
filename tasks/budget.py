"""An account's API budget, shared by every process that calls it (issue "Many projects, many workers").

The gateway limits an account, not a process: two workers that each keep their own `RateLimiter`
(cloud/ratelimit.py) under the account's rate exceed it together. So each account gets one Prefect global
concurrency limit in rate-limit mode, named `account_limit_name(account)` (`vbs-backup-account-<account>`,
made by `vbs-backup estate limits`): `limit` = the burst, `slot_decay_per_second` = the rate. Every request
of every process takes one slot (`AccountBudget`, the cloud layer's `RequestBudget`, taken after the
process's own limiter, which still adapts to 429s); slots come back at the rate, so whatever the number of
workers, the account sees at most `burst + rate * T` requests in any T seconds.

How Prefect 3.9.1 hands out a slot (prefect/concurrency/asyncio.py `rate_limit`, services.py, and the
server's api/concurrency_limits_v2.py), and what it costs:

* One `POST /v2/concurrency_limits/increment` per try, made by a per-process service (one per set of
  limit names, on Prefect's own event-loop thread) that handles its queue one item at a time. The server
  answers 200 when `active_slots` (decayed) + 1 <= limit, else 423 with `Retry-After` (about 1 / rate,
  randomised: a Poisson interval clamped to +30 %); the service sleeps that long and tries again, for ever
  (no timeout unless given). Each slot granted also emits one `prefect.concurrency-limit.acquired` event
  (the events websocket; the server stores it).
* Measured on a PostgreSQL-backed server on the same 2-core machine: about 20 ms per round trip (45-50
  bare POSTs/s); `rate_limit` about 26 ms (31-39 slots/s from one process with free slots, the thread hop
  and the event included; 17-21 while other jobs loaded the machine). Slots are taken one at a time per
  process, so that is the ceiling of one process's request rate through an account budget (the default
  `max_requests_per_second` is 10).
* The server decays slots by `floor(rate * seconds since the last update)` and each grant restarts that
  clock, so the fraction of a slot earned since the last grant is lost; with the randomised polling, an
  account gets less than its configured rate: measured 62 % of 10 req/s with a burst of 1, 70 % with 5,
  80 % with 10 (one or two processes alike); bench/estate_fleet.py measured 64-73 % to three idle
  processes, and 57-60 % under a 3,000-disk estate's own load. It never gets more (the envelope above
  holds).
* A 423 is rolled back on the server (its `denied_slots` bookkeeping never sticks), so waiting does not
  push later `Retry-After`s up.

Only one coroutine per process and limit waits on the server at a time (`_lock`): the hundreds of disks of
a night queue on an asyncio lock here instead of in Prefect's queue. Prefect's service would serialise
them too, but a caller cancelled while queued there would still have its slot taken (the service sends
the request anyway), and each would be a queue item on another thread; behind the lock a cancelled waiter
costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, rate_limit
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.logging import get_run_logger

from vbs_backup.settings import ConfigError

__all__ = [
    "LIMIT_PREFIX",
    "AccountBudget",
    "AccountBudgetError",
    "LimitChange",
    "account_limit_name",
    "apply_account_limit",
    "default_burst",
    "read_account_limit",
    "shared_budget",
]

LIMIT_PREFIX = "vbs-backup-account-"


def account_limit_name(account: str) -> str:
    """The Prefect global concurrency limit that holds `account`'s request budget."""
    return f"{LIMIT_PREFIX}{account}"


def default_burst(rate: float) -> int:
    """One second's worth of requests, rounded down, at least one: the size of the gateway's own bucket as
    it reports it ("limit:N,time:1 second"), so a burst of ours fits in it; more slots than that would be
    a clump the gateway throttles, fewer cost throughput (Prefect loses part of a slot per grant, see the
    module docstring: 62 % of the rate with a burst of 1, 80 % with one second's worth)."""
    if not rate > 0:
        raise ValueError("the rate must be positive")
    return max(1, int(rate))


class AccountBudgetError(ConfigError):
    """No request slot could be taken from an account's limit: the limit does not exist (`vbs-backup
    estate limits` makes it), the Prefect server cannot be reached, or the wait timed out."""


# One lock per event loop and limit name, whatever the number of `AccountBudget`s (one per target, say,
# when targets share an account). Event loops are not shared between threads, hence the key.
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_locks_guard = threading.Lock()


def _lock(name: str) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    with _locks_guard:
        return _locks.setdefault(loop, {}).setdefault(name, asyncio.Lock())


class AccountBudget:
    """The cloud layer's `RequestBudget` over the Prefect limit `name` (`account_limit_name(account)`):
    `acquire()` takes one slot with `rate_limit(name, occupy=1, strict=True)`.

    `timeout_seconds` bounds one `acquire` (the wait behind other coroutines of this process included);
    None waits as long as it takes. Failures are an `AccountBudgetError` (a `ConfigError`): the request is
    not sent. `acquired` and `waited` (seconds) say what this budget took, for a run's log (`describe`).
    """

    def __init__(self, name: str, *, timeout_seconds: float | None = None) -> None:
        if timeout_seconds is not None and not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive (or None: no timeout)")
        self.name = name
        self.timeout_seconds = timeout_seconds
        self.acquired = 0
        self.waited = 0.0

    def __repr__(self) -> str:
        return f"AccountBudget({self.name!r})"

    async def acquire(self) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_seconds), _lock(self.name):
                await rate_limit(self.name, occupy=1, strict=True)
        except TimeoutError as exc:
            if self.timeout_seconds is None:
                raise
            raise AccountBudgetError(
                f"no request slot from Prefect limit {self.name} within {self.timeout_seconds:g} s"
            ) from exc
        except ConcurrencySlotAcquisitionError as exc:
            # Prefect's message says which: the limit is missing, or the server's answer (or none).
            raise AccountBudgetError(
                f"{exc} (the account limits are made by `vbs-backup estate limits ...`)"
            ) from exc
        self.acquired += 1
        self.waited += time.monotonic() - started

    def describe(self) -> str:
        """`412 requests through vbs-backup-account-acme, 31.2 s waited`."""
        return f"{self.acquired} requests through {self.name}, {self.waited:.1f} s waited"


async def read_account_limit(
    account: str, *, client: PrefectClient | None = None
) -> GlobalConcurrencyLimitResponse | None:
    """`account`'s limit as the Prefect server has it (`.limit` is the burst, `.slot_decay_per_second` the
    rate, `.active`), None when there is none. A flow checks it before its first request; errors reaching
    the server propagate (Prefect's client raises httpx's)."""
    if client is None:
        async with get_client() as own:
            return await read_account_limit(account, client=own)
    try:
        return await client.read_global_concurrency_limit_by_name(account_limit_name(account))
    except ObjectNotFound:
        return None


async def shared_budget(account: str, *, timeout_seconds: float | None = None) -> AccountBudget | None:
    """The budget a run for `account` takes its requests from: an `AccountBudget` when the account's limit
    exists and is active, else None with a warning in the run's log (the run then keeps only its own
    process's limiter, as before estates: better than no backup because `estate limits` was not run)."""
    limit = await read_account_limit(account)
    name = account_limit_name(account)
    if limit is None:
        _logger().warning(
            "account %s has no shared API budget (no Prefect limit %s): this run keeps only its own rate "
            "limit, so workers calling the account together may exceed its rate; `vbs-backup estate limits` "
            "creates it",
            account,
            name,
        )
        return None
    if not limit.active:
        _logger().warning("account %s: its shared API budget %s is switched off (inactive)", account, name)
        return None
    _logger().info(
        "account %s: requests share the budget %s (%g req/s, burst %d, all workers together)",
        account,
        name,
        limit.slot_decay_per_second,
        limit.limit,
    )
    return AccountBudget(name, timeout_seconds=timeout_seconds)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@dataclass(frozen=True)
class LimitChange:
    """What `apply_account_limit` found and did for one account's limit: `action` is "created",
    "updated" or "unchanged" (with `dry_run`, nothing was written: "created" means it would be);
    `before` is the limit as it was (None when there was none)."""

    name: str
    rate: float
    burst: int
    action: str
    before: GlobalConcurrencyLimitResponse | None
    dry_run: bool = False

    def describe(self) -> str:
        """`created`, `unchanged`, `updated (was 5 req/s, burst 5, inactive)`, `would create`..."""
        action = self.action
        if self.dry_run and action != "unchanged":
            action = f"would {action.removesuffix('d')}"  # would create, would update
        if self.action != "updated" or self.before is None:
            return action
        was = f"{self.before.slot_decay_per_second:g} req/s, burst {self.before.limit}"
        return f"{action} (was {was}{'' if self.before.active else ', inactive'})"


async def apply_account_limit(
    client: PrefectClient, account: str, *, rate: float, burst: int, dry_run: bool = False
) -> LimitChange:
    """Make `account`'s limit say `rate` and `burst`, active: create it, update what differs, or leave it
    as it is (a re-run with the same numbers writes nothing). With `dry_run`, only read."""
    if not rate > 0 or burst < 1:
        raise ValueError("need a positive rate and a burst of at least 1")
    name = account_limit_name(account)
    before = await read_account_limit(account, client=client)
    if before is None:
        action = "created"
    elif before.limit == burst and before.slot_decay_per_second == rate and before.active:
        action = "unchanged"
    else:
        action = "updated"
    if not dry_run and action == "created":
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=burst, slot_decay_per_second=rate, active=True)
        )
    elif not dry_run and action == "updated":
        await client.update_global_concurrency_limit(
            name, GlobalConcurrencyLimitUpdate(limit=burst, slot_decay_per_second=rate, active=True)
        )
    return LimitChange(name=name, rate=rate, burst=burst, action=action, before=before, dry_run=dry_run)
