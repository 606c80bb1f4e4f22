"""What the tasks of one flow run share: the cloud client, the ledger engine, the job waiter, the plan,
the ledger's run row and the schedule slot; and the clock they wait with (`vbs_backup.clock`).

Tasks receive the `RunContext` as an argument (with `cache_policy=NO_CACHE`: it holds live connections and
must not be hashed). The clock is swappable so that tests drive the emulator's clock instead of sleeping:
`use_clock(...)` replaces how long a poll round waits and what "now" is.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn, TypeVar

from prefect import runtime
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from vbs_backup.backup.targets import SelectionError
from vbs_backup.backup.waiter import JobWaiter
from vbs_backup.clock import SYSTEM_CLOCK, Clock
from vbs_backup.cloud import CloudClient
from vbs_backup.cloud.errors import ApiError, ConfigurationError, TransportError
from vbs_backup.cloud.ratelimit import RequestBudget
from vbs_backup.connection import connect
from vbs_backup.ledger import RunStatus, beat, finish_run, init_db, make_engine, start_run
from vbs_backup.plan import BackupPlan, InputError
from vbs_backup.settings import ConfigError, Settings
from vbs_backup.tasks.credentials import VbsCredentials, settings_from_block
from vbs_backup.tasks.progress import RunProgress

log = logging.getLogger(__name__)


# Servers whose disks are being submitted (intents written, creates sent) at once: creates are rate-limited,
# more would only queue, and queue between a server's creates (measured at 10,000 disks: one per request/s
# of a 50 req/s client gave no more throughput and a p99 create skew of 22 s instead of 3 s). A server
# hands its turn on once its creates are sent (tasks.backup.ServerWave).
SERVERS_SUBMITTING_AT_ONCE = 8
# Ledger writes run in threads (`asyncio.to_thread`), three per disk. On PostgreSQL each waits on the server
# (~0.1 s under a 10,000-disk night's load), and asyncio's default pool (cores + 4 threads: 6 here) then
# capped the night at ~20 disks/s (bench/nightly_fleet.py): a run widens its loop's pool to this. The
# ledger engine's connection pool matches it (vbs_backup.ledger.engine.POOL_SIZE).
IO_THREADS = 24
_widened: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
# A live run writes its heartbeat this often (real time), well within the ledger's RUN_LEASE.
HEARTBEAT_EVERY = 60.0


_clock = SYSTEM_CLOCK


def run_clock() -> Clock:
    """The clock this process's runs wait and tell time with (the system's, unless a test swapped it)."""
    return _clock


@contextmanager
def use_clock(clock: Clock) -> Iterator[None]:
    """Tests (and the demo): wait and tell time with `clock` (e.g. sleeping advances the emulator's clock)."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield
    finally:
        _clock = previous


@dataclass
class RunContext:
    plan: BackupPlan
    client: CloudClient
    engine: Engine
    waiter: JobWaiter
    run_id: int
    slot: datetime
    jobs_in_flight: asyncio.Semaphore
    servers_in_flight: asyncio.Semaphore
    submitting: asyncio.Semaphore  # servers submitting at once (see SERVERS_SUBMITTING_AT_ONCE)
    job_slots_lock: asyncio.Lock  # a server takes its disks' job slots at once, under this lock
    clock: Clock = field(default_factory=run_clock)
    progress: RunProgress | None = None  # disks submitted and done, for the operator (tasks.progress)
    target: str | None = None  # the estate target the run works for (None: a run outside an estate)


def load_settings(credentials: VbsCredentials | Settings | str | None = None) -> Settings:
    """Settings for one flow run: the `VBS_BACKUP_` environment (never a `.env` file from the directory
    the run happens to start in), or (when the run has one: its `credentials` parameter) a credentials
    block, whose connection owes nothing to the environment. A block comes loaded (Prefect resolves the
    parameter's reference when the run starts); a programmatic caller may name a saved one instead, and a
    name that no block has is a ConfigError with one line. A blank name is no block. Settings already
    read and checked (an estate's target: tasks/estate.py) are used as they are."""
    if isinstance(credentials, Settings):
        return credentials
    if isinstance(credentials, VbsCredentials):
        return credentials.settings()
    if credentials is None or not credentials.strip():
        return Settings.from_environment()
    return settings_from_block(credentials.strip())


class RunRefused(Exception):
    """An expected failure that a task handed back as a `Refusal`, raised again in the flow's body."""


class InputRefused(RunRefused):
    """A `Refusal` of the run's input (see `INPUT_FAILURES`), raised again in the flow's body."""


# Failures of what the person starting the run typed (a plan or an estate that does not validate, a server
# that does not exist): a manual run that meets one ends in a Failed state named InvalidInput, which the
# alert automation does not page on (flows/failures.py). A scheduled run's plan is configuration, not a
# typo: it pages.
INPUT_FAILURES: tuple[type[Exception], ...] = (InputError, SelectionError, InputRefused)


# Failures of the input or the surroundings, not of the code: settings, plan or selection that are wrong,
# credentials the cloud refuses, a cloud that cannot be reached or answers with an error. A run that meets
# one ends Failed with one line naming it (flows/failures.py) and its ledger row says `failed`; anything
# else keeps its traceback and marks the row `crashed`: that is a bug. (An answer we cannot read,
# `InvalidResponseError`, is deliberately not here.)
EXPECTED_FAILURES: tuple[type[Exception], ...] = (
    ConfigError,
    InputError,  # a plan's or an estate's
    SelectionError,
    ConfigurationError,
    ApiError,
    TransportError,
    RunRefused,
)


def failure_line(exc: BaseException) -> str:
    """The exception's message on one line (as the run's state message and the ledger's)."""
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True)
class Refusal:
    """What a task returns instead of raising an expected failure: Prefect logs a raised exception with a
    traceback ("Task run failed with exception"), a returned value quietly. The flow calls `throw()`, which
    ends the run through the flow's expected-failure guard."""

    message: str
    invalid_input: bool = False  # the run's input was refused (INPUT_FAILURES), not the surroundings

    @classmethod
    def of(cls, exc: BaseException) -> Refusal:
        return cls(failure_line(exc), invalid_input=isinstance(exc, INPUT_FAILURES))

    def throw(self) -> NoReturn:
        raise (InputRefused if self.invalid_input else RunRefused)(self.message)


T = TypeVar("T")


async def refusing(work: Awaitable[T]) -> T | Refusal:
    """In a task: `await work` and return its value, or a `Refusal` for an expected failure it raises
    (`EXPECTED_FAILURES`); anything else (a bug) is raised and keeps its traceback.

        return await refusing(discover_targets(ctx.client, ctx.plan))
    """
    try:
        return await work
    except EXPECTED_FAILURES as exc:
        return Refusal.of(exc)


def unwrap(result: T | Refusal) -> T:
    """In a flow's body: a task's value; a `Refusal` is raised (as `RunRefused`), which the flow's
    expected-failure guard (flows/failures.py) turns into Failed with its one line."""
    if isinstance(result, Refusal):
        result.throw()
    return result


def _settings_problem(exc: ValidationError) -> str:
    """A settings validation error on one line: each field and what is wrong with it (never its value:
    Settings hides input in errors)."""
    problems = [
        f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    ]
    return "invalid settings: " + "; ".join(problems)


@dataclass
class CloudContext:
    """What a flow that is not a backup plan needs: a connected client, the ledger, the clock."""

    client: CloudClient
    engine: Engine
    clock: Clock
    project_id: str | None = None  # the project the client works in


@asynccontextmanager
async def open_cloud(
    credentials: VbsCredentials | Settings | str | None = None, *, budget: RequestBudget | None = None
) -> AsyncIterator[CloudContext]:
    """Connect to the cloud and open the ledger for one flow run; the client is closed on the way out.
    Settings that do not validate are a ConfigError naming the fields (an expected failure). `budget`: the
    account's API budget shared with other processes (an estate's target: tasks/budget.py), taken once per
    request on top of the client's own rate limit."""
    try:
        settings = load_settings(credentials)
    except ValidationError as exc:
        raise ConfigError(_settings_problem(exc)) from None
    client = connect(settings, shared_budget=budget)
    try:
        yield CloudContext(client, ledger_engine(settings), run_clock(), settings.project_id)
    finally:
        await client.close()


def ledger_engine(settings: Settings) -> Engine:
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    init_db(engine)
    return engine


def trigger() -> str:
    """How this run started, for the ledger: a deployment (schedule or UI) or a direct call."""
    if runtime.deployment.id:
        return (
            "scheduled"
            if runtime.flow_run.tags and "auto-scheduled" in runtime.flow_run.tags
            else "deployment"
        )
    return "direct"


@asynccontextmanager
async def open_run(
    plan: BackupPlan,
    *,
    credentials: VbsCredentials | Settings | str | None = None,
    target: str | None = None,
    budget: RequestBudget | None = None,
) -> AsyncIterator[RunContext]:
    """Connect, open the ledger and record the run's start; close everything on the way out. The run row
    is finished by the flow (it knows the outcome); a run that an expected failure (`EXPECTED_FAILURES`)
    ends here is marked failed with its one-line message, one that dies of anything else crashed.
    `target`: the estate target the run works for (its row says so: reports and the watchdog filter by
    it); `budget`: see `open_cloud`."""
    _widen_thread_pool()
    _quiet_returned_failures()
    async with open_cloud(credentials, budget=budget) as cloud:
        clock, engine = cloud.clock, cloud.engine
        with Session(engine) as session:
            run = start_run(
                session=session,
                plan_name=plan.name,
                trigger=trigger(),
                flow_run_id=str(runtime.flow_run.id) if runtime.flow_run.id else None,
                deployment=runtime.deployment.name,
                target=target,
                project_id=cloud.project_id,
            )
            run_id = run.id
        assert run_id is not None
        ctx = RunContext(
            plan=plan,
            client=cloud.client,
            engine=engine,
            waiter=JobWaiter(
                cloud.client.vbs,
                interval=plan.poll_interval_seconds,
                clock=clock,
            ),
            run_id=run_id,
            slot=plan.schedule_slot(clock.now()),
            jobs_in_flight=asyncio.Semaphore(plan.max_concurrent_jobs),
            servers_in_flight=asyncio.Semaphore(plan.max_concurrent_servers),
            submitting=asyncio.Semaphore(SERVERS_SUBMITTING_AT_ONCE),
            job_slots_lock=asyncio.Lock(),
            clock=clock,
            target=target,
        )
        heart = asyncio.create_task(_heartbeat(engine, run_id), name="vbs-run-heartbeat")
        try:
            yield ctx
        except BaseException as exc:
            if isinstance(exc, EXPECTED_FAILURES):
                status, message = RunStatus.failed, failure_line(exc)
            else:
                status, message = RunStatus.crashed, _short(exc)
            with Session(engine) as session:
                finish_run(session=session, run_id=run_id, status=status, message=message)
            raise
        finally:
            heart.cancel()


class _ReturnedFailure(logging.Filter):
    """Drops Prefect's "Task run failed with state: Failed(...)" record, which it logs at ERROR with an
    empty traceback ("NoneType: None") and the whole result's repr, when `back_up_disk` *returns* a Failed
    state on purpose (a disk that was not backed up: tasks.backup). Prefect's own "Finished in state
    Failed('<reason>')" line still says it, once and readably. Any other task, and a task that raised,
    keep every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        returned = str(record.msg).startswith("Task run failed with state:")
        no_exception = record.exc_info is None or record.exc_info[0] is None
        ours = getattr(record, "task_name", None) == RETURNS_FAILED_STATE
        return not (returned and no_exception and ours)


# The one task that returns a Failed state on purpose (tasks.backup.back_up_disk's `name`).
RETURNS_FAILED_STATE = "back-up-disk"
_RETURNED_FAILURE = _ReturnedFailure()


def _quiet_returned_failures() -> None:
    logger = logging.getLogger("prefect.task_runs")
    if _RETURNED_FAILURE not in logger.filters:
        logger.addFilter(_RETURNED_FAILURE)


def _widen_thread_pool() -> None:
    """Give the running loop a default executor of IO_THREADS threads (once per loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _widened:
        loop.set_default_executor(ThreadPoolExecutor(IO_THREADS, thread_name_prefix="vbsb-io"))
        _widened.add(loop)


async def _heartbeat(engine: Engine, run_id: int) -> None:
    """Tell the ledger that this run lives; a run whose heartbeat stops is marked abandoned by the next run
    or the watchdog. Real time on purpose: a lease is about processes, not about the cloud's clock."""
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        try:
            await asyncio.to_thread(_beat, engine, run_id)
        except Exception as exc:  # a missed beat is harmless; the lease is ten of them
            log.warning("heartbeat of run %s not written: %s", run_id, exc)


def _beat(engine: Engine, run_id: int) -> None:
    with Session(engine) as session:
        beat(session=session, run_id=run_id)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
