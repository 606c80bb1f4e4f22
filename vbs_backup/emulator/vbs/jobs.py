"""The VBS job engine: asynchronous jobs moving INIT -> RUNNING -> SUCCESS | FAIL (reference §2.8).

A job is driven one of two ways, chosen when it is submitted:

* by time (`Settings.job_mode == "time"`, and always for jobless native operations): it starts at
  `run_at = submit + job_start_seconds` and ends at `finish_at = run_at + job_base_seconds +
  job_seconds_per_gib * size`, virtual seconds on the state's clock. The tick hook moves it.
* by status queries (`job_mode == "polls"`): the first `get_job` moves it to RUNNING and the
  `polls_to_finish`-th `get_job` returns its final status (1 = the first query already sees the end).
  Only `get_job` (and, for policy tasks, `list_policy_tasks`) count as queries: reading the backup through
  the native GET/list never moves a job, so a client cannot hurry a job by polling the wrong resource.

What a job does when it starts and ends is registered per job type by the backends (`register`), so this
module knows nothing about backups. Job faults (`state.take_job_fault`) are drawn at submission: `fail`
ends the job in FAIL with the fault's error code, `hang` leaves it RUNNING forever.

The tick is a tiny discrete-event simulation: all events due up to "now" (job starts and ends, backup
removals, policy slots) run in time order, each at its own virtual time, so a clock jump of a day gives
the same result as a day of small steps. Events created while the tick runs join its agenda.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..errors import vbs
from ..state import CloudState, Job, Project, new_job_id

Action = Callable[[datetime], None]
StartHook = Callable[[CloudState, Project, Job, datetime], None]
FinishHook = Callable[[CloudState, Project, Job, datetime, bool], None]

FINAL = ("SUCCESS", "FAIL")


@dataclass
class _Handler:
    on_start: StartHook | None
    on_finish: FinishHook | None


_HANDLERS: dict[str, list[_Handler]] = {}


def register(
    job_type: str, *, on_start: StartHook | None = None, on_finish: FinishHook | None = None
) -> None:
    """Add a listener for a job type; listeners run in registration order."""
    _HANDLERS.setdefault(job_type, []).append(_Handler(on_start, on_finish))


# --------------------------------------------------------------------------------------------------------
# The agenda of one tick


class Agenda:
    """Events due at or before `now`, run in time order (ties in the order they were added)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._heap: list[tuple[datetime, int, Action]] = []
        self._seq = itertools.count()

    def add(self, at: datetime, action: Action) -> None:
        if at <= self.now:
            heapq.heappush(self._heap, (at, next(self._seq), action))

    def run(self) -> None:
        while self._heap:
            at, _, action = heapq.heappop(self._heap)
            action(at)


_agenda: ContextVar[Agenda | None] = ContextVar("vbs_agenda", default=None)


def schedule(at: datetime, action: Action) -> None:
    """Run `action(at)` in the current tick if it is already due; outside a tick (or when not yet due)
    the next tick's scan finds the pending work instead. Actions must check that they still apply."""
    agenda = _agenda.get()
    if agenda is not None:
        agenda.add(at, action)


def run_tick(state: CloudState, collect: Callable[[Agenda], None]) -> None:
    """Collect the due events (`collect` adds them), then run them and whatever they schedule."""
    agenda = Agenda(state.now())
    token = _agenda.set(agenda)
    try:
        collect(agenda)
        agenda.run()
    finally:
        _agenda.reset(token)


# --------------------------------------------------------------------------------------------------------
# Jobs


def submit(
    state: CloudState,
    project: Project,
    job_type: str,
    *,
    size_gib: int,
    volume_id: str | None,
    context: dict[str, str],
    by_time: bool = False,
    seconds: float | None = None,
    at: datetime | None = None,
) -> Job:
    """Create a job in INIT at `at` (default now). `by_time` forces clock-driven timing (jobless native
    operations, whose caller has no job id to poll); `seconds` overrides the computed duration (deletes)."""
    now = at or state.now()
    settings = state.settings
    job = Job(
        id=new_job_id(state.rng),
        project_id=project.id,
        job_type=job_type,
        status="INIT",
        begin_time=now,
        context=dict(context),
    )
    fault = state.take_job_fault(job_type, volume_id)
    if fault is not None:
        job.outcome = fault.mode
        job.outcome_code = fault.error_code
        job.context["fail_reason"] = fault.fail_reason
    if settings.job_mode == "polls" and not by_time:
        job.polls_left = max(1, settings.polls_to_finish)
    else:
        job.run_at = now + timedelta(seconds=settings.job_start_seconds)
        if job.outcome != "hang":
            duration = seconds
            if duration is None:
                duration = settings.job_base_seconds + settings.job_seconds_per_gib * size_gib
            job.finish_at = job.run_at + timedelta(seconds=duration)
        schedule(job.run_at, lambda at: start(state, project, job, at))
    project.jobs[job.id] = job
    return job


def start(state: CloudState, project: Project, job: Job, at: datetime) -> None:
    if job.status != "INIT":
        return
    job.status = "RUNNING"
    for handler in _HANDLERS.get(job.job_type, []):
        if handler.on_start is not None:
            handler.on_start(state, project, job, at)
    if job.finish_at is not None:
        schedule(job.finish_at, lambda when: finish(state, project, job, when))


def finish(state: CloudState, project: Project, job: Job, at: datetime) -> None:
    if job.status != "RUNNING" or job.outcome == "hang":
        return
    ok = job.outcome != "fail"
    job.status = "SUCCESS" if ok else "FAIL"
    job.end_time = at
    if not ok:
        job.error_code = job.outcome_code
        job.fail_reason = job.context.get("fail_reason")
    for handler in _HANDLERS.get(job.job_type, []):
        if handler.on_finish is not None:
            handler.on_finish(state, project, job, at, ok)


def poll(state: CloudState, project: Project, job: Job) -> None:
    """One status query of a poll-driven job (no-op for clock-driven or finished jobs)."""
    if job.polls_left is None or job.status in FINAL:
        return
    now = state.now()
    if job.status == "INIT":
        start(state, project, job, now)
    job.polls_left -= 1
    if job.polls_left <= 0:
        finish(state, project, job, now)


def collect_due(project: Project, state: CloudState, agenda: Agenda) -> None:
    """Add the due starts and ends of clock-driven jobs to the agenda."""
    for job in project.jobs.values():
        if job.polls_left is not None:
            continue
        if job.status == "INIT" and job.run_at is not None and job.run_at <= agenda.now:
            agenda.add(job.run_at, _starter(state, project, job))
        elif job.status == "RUNNING" and job.finish_at is not None and job.finish_at <= agenda.now:
            agenda.add(job.finish_at, _finisher(state, project, job))


def _starter(state: CloudState, project: Project, job: Job) -> Action:
    return lambda at: start(state, project, job, at)


def _finisher(state: CloudState, project: Project, job: Job) -> Action:
    return lambda at: finish(state, project, job, at)


# --------------------------------------------------------------------------------------------------------
# Operation


def get_job(state: CloudState, project: Project, job_id: str) -> Job:
    """`GET /v1/{pid}/jobs/{job_id}`: a job of another project is as unknown as a missing one."""
    job = project.jobs.get(job_id)
    if job is None:
        raise vbs("common.0011", "query job fail", 404)
    poll(state, project, job)
    return job
