"""Running backup policies: execute now, the scheduler, the tasks, and retention (reference §3.7, §3.9, §4.4,
§4.5, §6.5).

One execution makes one task per associated disk. A disk that can be backed up gets an automatic backup
`autobk_<4 hex>` made through the same job engine as manual backups (job faults apply); the task mirrors
its job: INIT -> `WAITING`, RUNNING -> `RUNNING`, SUCCESS/FAIL -> `EXECUTE_SUCCESS`/`EXECUTE_FAIL`. A disk
already being backed up, or a quota that would be exceeded, fails its task at once (§4.13); a disk in any
other state than available/in-use (or gone) is `SKIP`ped. When the last task ends the policy stops
executing and retention runs for each associated disk; a hung job keeps the policy executing (further
runs answer `AutoBackup.0225`, scheduled slots are skipped).

Scheduling (§4.4): start times are UTC hours; a slot's *day* is judged in the policy's local time
(`time_zone`, UTC when unset): `frequency = N` runs on days 1, 1+N, 1+2N... of each month, `week_frequency`
on the listed weekdays. Each slot fires once; slots that passed while the clock jumped fire in order.

Retention (§4.5) applies to the policy's *automatic* `available` backups of each disk; manual backups,
other policies' backups and backups of disks no longer associated are never touched. Each backup carries
the rule in force when it was made:
* made under a day rule D: deleted once D days old, whatever the policy's rule is now (days->days and
  days->count keep the old expiry);
* made under a count rule: while the policy counts, the newest N of them survive, N being the current
  count (count->count applies to old backups); once the policy switched to days they are kept forever.
With `remain_first_backup_of_curMonth = "Y"` the first backup of the current (local) month is spared
while that month lasts; it still counts among the N newest when it is one of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..errors import vbs
from ..state import Backup, CloudState, Job, Policy, PolicyTask, Project, new_uuid
from . import backups, deletes, jobs
from .common import BACKUPABLE
from .policies import WEEKDAYS, get_policy, tz_offset

_TASK_OF_JOB = {"INIT": "WAITING", "RUNNING": "RUNNING", "SUCCESS": "EXECUTE_SUCCESS", "FAIL": "EXECUTE_FAIL"}
_UNFINISHED = ("WAITING", "RUNNING")


def execute_policy(state: CloudState, project: Project, policy_id: str) -> None:
    """`POST /v2/{pid}/backuppolicy/{id}/action` -> 204; allowed for an OFF policy too (§3.7)."""
    policy = get_policy(project, policy_id)
    if policy.executing:
        raise vbs("AutoBackup.0225", "the policy is being executed", 409)
    run_policy(state, project, policy, state.now())


def run_policy(state: CloudState, project: Project, policy: Policy, at: datetime) -> None:
    policy.executing = True
    rule = (
        ("num", policy.retention_num)
        if policy.retention_num is not None
        else ("day", policy.retention_day or 0)
    )
    for volume_id in list(policy.resource_ids):
        task = PolicyTask(
            job_id=new_uuid(state.rng),
            policy_id=policy.id,
            resource_id=volume_id,
            backup_name=f"autobk_{state.rng.getrandbits(16):04x}",
            status="WAITING",
            created_at=at,
        )
        project.tasks.append(task)
        _start_task(state, project, policy, task, rule, at)
    _maybe_finish(state, project, policy, at)


def _start_task(
    state: CloudState, project: Project, policy: Policy, task: PolicyTask, rule: tuple[str, int], at: datetime
) -> None:
    volume = project.volumes.get(task.resource_id)
    limit = state.settings.per_disk_backup_limit
    if volume is not None and backups.backup_running_on(project, volume.id):
        outcome = "EXECUTE_FAIL"
    elif volume is None or volume.status not in BACKUPABLE:
        outcome = "SKIP"
    elif backups.quota_problem(project, volume.size) or (
        limit is not None and sum(b.volume_id == volume.id for b in project.backups.values()) >= limit
    ):
        outcome = "EXECUTE_FAIL"  # AutoBackup.0218 on the real service; tasks carry no code
    else:
        _, job = backups.start_backup(
            state,
            project,
            volume,
            name=task.backup_name,
            description=None,
            kind="auto",
            policy_id=policy.id,
            retention_rule=rule,
            context={"task_id": task.job_id, "policy_id": policy.id},
            at=at,
        )
        task.vbs_job_id = job.id
        return
    task.status = outcome
    task.finished_at = at


def _task(project: Project, job: Job) -> PolicyTask | None:
    task_id = job.context.get("task_id")
    if task_id is None:
        return None
    return next((t for t in project.tasks if t.job_id == task_id), None)


def _on_start(state: CloudState, project: Project, job: Job, at: datetime) -> None:
    task = _task(project, job)
    if task is not None:
        task.status = _TASK_OF_JOB[job.status]


def _on_finish(state: CloudState, project: Project, job: Job, at: datetime, ok: bool) -> None:
    task = _task(project, job)
    if task is None:
        return
    task.status = _TASK_OF_JOB[job.status]
    task.finished_at = at
    policy = project.policies.get(task.policy_id)
    if policy is not None:
        _maybe_finish(state, project, policy, at)


jobs.register(backups.CREATE, on_start=_on_start, on_finish=_on_finish)


def _maybe_finish(state: CloudState, project: Project, policy: Policy, at: datetime) -> None:
    if any(t.policy_id == policy.id and t.status in _UNFINISHED for t in project.tasks):
        return
    policy.executing = False
    apply_retention(state, project, policy, at)


# --------------------------------------------------------------------------------------------------------
# Retention (§4.5)


def retention_victims(project: Project, policy: Policy, volume_id: str, at: datetime) -> list[Backup]:
    """The automatic backups of one disk that the policy's retention deletes at `at` (pure)."""
    autos = [
        b
        for b in project.backups.values()
        if b.kind == "auto"
        and b.policy_id == policy.id
        and b.volume_id == volume_id
        and b.status == "available"
    ]
    doomed: dict[str, Backup] = {}
    for b in autos:
        if (
            b.retention_rule
            and b.retention_rule[0] == "day"
            and at >= b.created_at + timedelta(days=b.retention_rule[1])
        ):
            doomed[b.id] = b
    if policy.retention_num is not None:
        counted = sorted(
            (b for b in autos if not b.retention_rule or b.retention_rule[0] == "num"),
            key=lambda b: (b.created_at, b.id),
            reverse=True,
        )
        for b in counted[policy.retention_num :]:
            doomed[b.id] = b
    if policy.remain_first_backup_of_cur_month == "Y":
        offset = tz_offset(policy.time_zone)
        local_now = at + offset
        this_month = [
            b
            for b in autos
            if ((c := b.created_at + offset).year, c.month) == (local_now.year, local_now.month)
        ]
        if this_month:
            doomed.pop(min(this_month, key=lambda b: (b.created_at, b.id)).id, None)
    return sorted(doomed.values(), key=lambda b: (b.created_at, b.id))


def apply_retention(state: CloudState, project: Project, policy: Policy, at: datetime) -> None:
    for volume_id in list(policy.resource_ids):
        for backup in retention_victims(project, policy, volume_id, at):
            deletes.mark_deleting(state, project, backup, at)


# --------------------------------------------------------------------------------------------------------
# Scheduler (§4.4)


def _day_matches(policy: Policy, local: datetime) -> bool:
    if policy.frequency is not None:
        return (local.day - 1) % policy.frequency == 0
    return WEEKDAYS[local.weekday()] in (policy.week_frequency or [])


def next_slot(policy: Policy, after: datetime) -> datetime | None:
    """The first start time after `after` on a day the policy runs (None if none within ~13 months)."""
    hours = sorted({int(t[:2]) for t in policy.start_time.split(",")})
    offset = tz_offset(policy.time_zone)
    base = after.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for day in range(400):
        midnight = base + timedelta(days=day)
        for hour in hours:
            slot = midnight + timedelta(hours=hour)
            if slot > after and _day_matches(policy, slot + offset):
                return slot
    return None


def _fire(state: CloudState, project: Project, policy_id: str, slot: datetime) -> None:
    policy = project.policies.get(policy_id)
    if policy is None or policy.status != "ON":
        return
    if policy.last_run_slot is not None and slot <= policy.last_run_slot:
        return
    policy.last_run_slot = slot
    if not policy.executing:  # a slot that finds the previous run still going is skipped
        run_policy(state, project, policy, slot)
    following = next_slot(policy, slot)
    if following is not None:
        jobs.schedule(following, _firer(state, project, policy_id, following))


def _firer(state: CloudState, project: Project, policy_id: str, slot: datetime) -> jobs.Action:
    return lambda at: _fire(state, project, policy_id, slot)


def collect_due(state: CloudState, project: Project, agenda: jobs.Agenda) -> None:
    for policy in project.policies.values():
        if policy.status != "ON":
            continue
        if policy.last_run_slot is None:  # e.g. loaded from a fleet file: owed nothing before now
            policy.last_run_slot = agenda.now
            continue
        slot = next_slot(policy, policy.last_run_slot)
        if slot is not None and slot <= agenda.now:
            agenda.add(slot, _firer(state, project, policy.id, slot))
