"""Alerts, all created (or updated) by name by `vbs-backup alerts setup`, so it can be run again at will.
The automations run on the Prefect server and notify through the same saved notification blocks (generic
webhook, Slack, Microsoft Teams); they need nothing from the flows and also cover processes that died.

* `vbs-backup: failed runs` (AUTOMATION_NAME): a run of a product deployment ends Failed, Crashed or
  TimedOut. `prefect.flow-run.Failed` does not cover the other two states, hence three events. A run
  refused for what a person typed ends in a Failed-type state named InvalidInput (flows/failures.py):
  Prefect emits `prefect.flow-run.InvalidInput` for it, which is not among the three, so typos page nobody.
* `vbs-backup: nightly-backup overdue` (NIGHTLY_AUTOMATION_NAME): no run of nightly-backup ended Completed
  within 26 h (configurable). It watches the watcher: a stopped `vbs-backup serve` pauses every schedule,
  so nothing runs, nothing fails and only the absence of runs says so.
* `vbs-backup: lost runs` (LOST_AUTOMATION_NAME): a run whose heartbeats stopped for 10 min
  (configurable) without it ending is marked Crashed (Prefect's "zombie flow" recipe): a worker whose
  machine died leaves its runs Running for ever otherwise, and an estate's parent run would wait for them.
  The Crashed state then pages through the first automation.

The failure automation's subject and body are vbs_backup.notify's SUBJECT and BODY, which the flows'
e-mail hook (flows/hooks.py, for installations whose Prefect server cannot send e-mail itself) renders in
the flow's process: one wording for every failure notification.

How the Prefect UI (3.9.1, Automations page) shows a trigger. It recognises four templates from the
trigger's JSON (`SI()` in server/ui/assets/index-*.js); anything else is "A custom trigger". A flow-run
event trigger is the "Flow run state" template, read as "When any flow run [of flow A or B] [with the tag
T] enters <states>", only when `match_related` is empty or matches `prefect.resource.id` values that all
start with `prefect.flow` (flows by id) or all with `prefect.tag`, with `for_each` empty or on
`prefect.resource.id` and threshold 1. There is no deployment variant: matching deployments by name (or by
`prefect.deployment.<id>`) always reads "A custom trigger". So the failure trigger matches the tag that
every catalog deployment carries (catalog.TAG; deployments inherit it to their runs, Prefect relates the
run's, flow's and deployment's tags to each state event): the card reads "When any flow run with the tag
vbs-backup enters Failed, Crashed, TimedOut", it needs no ids, covers deployments re-created later (and
future catalog entries), and ignores runs of the same flows outside a deployment (`vbs-backup demo`
against a configured server fails on purpose). Flow ids would list the flows on the card but would need
resolving at setup and would page for those demo runs. A subset (`--deployment`) cannot be a tag: it
matches deployment names and reads "A custom trigger". Either way the description names the deployments,
the states and the targets. The proactive trigger stays custom on purpose: the UI reads a proactive flow
run trigger as "stays in <state> for <time>", which would misstate "no Completed run within 26 h".

Prefect's rules for proactive triggers (prefect 3.9.1: server/events/triggers.py, services/triggers.py,
events/schemas/automations.py):

* `within` is at least 10 s (validated client- and server-side; 0 becomes 10 s).
* Evaluation: the triggers service (PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED, default on; no
  PREFECT_SERVER_SERVICES_TRIGGERS_* setting sets a period) evaluates proactive triggers every
  PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY (default 5 s, read when the server starts): an alert comes
  up to 5 s after its window closes. Each trigger is re-evaluated only when its window is due.
* Without `after` and `for_each`, windows are consecutive (tumbling): the first opens at the first
  evaluation after the automation is loaded (within 5 s of its creation or update), each next one at the
  end of the last; a window with fewer than `threshold` expected events fires when it closes. That
  alerts between W and 2W after the last Completed run and can miss one skipped night entirely (a 48 h
  gap holds a whole 26 h window only if the windows happen to align).
* With the same event in `after` and `expect` (what we use) each expected event restarts the window (the
  "same event in after and expect" case, made for heartbeats): it fires exactly W after the last
  Completed run. Without `for_each`, the periodic evaluation also opens a window when none is open, so
  it fires W after the automation is created even if nightly-backup never completed, and after firing it
  opens the next window at the following evaluation (W later): while nothing completes it repeats every
  2W (52 h).
* `for_each` would evaluate per label value, but buckets for a value only open on one of its events: a
  deployment that never completes would never fire. So no `for_each`: one deployment, one window.
* Windows ("buckets") live in the database, and the service deletes those closed for more than
  PREFECT_SERVER_EVENTS_EXPIRED_BUCKET_BUFFER (60 s): a window that closed while the server was down (or
  the automation disabled) fires at once when it is back only if it closed within that minute; otherwise
  a new window opens then, and the alert comes W after the restart: late, not lost.
* Updating an automation (PUT) gives its trigger a new id: the window starts again, so `setup_alerts`
  leaves an identical automation untouched (re-running `alerts setup` from a cron job would otherwise
  postpone the alert forever).
* The server itself is the watcher: if it is down, nothing fires.

The messages are Jinja templates rendered by the server: the deployment, the run and its name, its whole
state message (the flows put the failed disks and their reasons there, e.g. "FAILED: db-01 /dev/vdb
(failed: VolumeBackup.0064 insufficient capacity)"; Prefect's events carry up to 100,000 characters of it)
and a link to the run (`ui_url` uses the server's PREFECT_UI_URL, or its API URL without `/api`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from string import Template
from urllib.parse import urlsplit
from uuid import UUID

from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    MicrosoftTeamsWebhook,
    NotificationBlock,
    SlackWebhook,
)
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger, Posture
from pydantic import SecretStr

from vbs_backup.deployments.catalog import ALL_DEPLOYMENTS, TAG
from vbs_backup.flows.failures import INVALID_INPUT  # the state name of a run refused for its input
from vbs_backup.notify import BODY, SUBJECT

__all__ = [
    "AUTOMATION_NAME",
    "FAILURE_EVENTS",
    "INVALID_INPUT",
    "LOST_AFTER",
    "LOST_AUTOMATION_NAME",
    "NIGHTLY_AUTOMATION_NAME",
    "NIGHTLY_DEPLOYMENT",
    "NIGHTLY_WITHIN",
    "AlertSetup",
    "Notifier",
    "alert_automation",
    "failure_trigger",
    "lost_run_automation",
    "lost_run_trigger",
    "nightly_automation",
    "nightly_trigger",
    "notification_block",
    "setup_alerts",
]

AUTOMATION_NAME = "vbs-backup: failed runs"
FAILURE_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut")

NIGHTLY_AUTOMATION_NAME = "vbs-backup: nightly-backup overdue"
NIGHTLY_DEPLOYMENT = "nightly-backup"
NIGHTLY_WITHIN = timedelta(hours=26)  # a nightly schedule, plus two hours for a long or late night
COMPLETED_EVENT = "prefect.flow-run.Completed"

LOST_AUTOMATION_NAME = "vbs-backup: lost runs"
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
# A flow run's process sends a heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (180 by default,
# at least 30): after three missed beats and a margin its process (a worker's machine) is taken for dead.
LOST_AFTER = timedelta(minutes=10)
# A run that ends says so; these events close its heartbeat window (InvalidInput: flows/failures.py).
_ENDED_EVENTS = {
    COMPLETED_EVENT,
    *FAILURE_EVENTS,
    "prefect.flow-run.Cancelled",
    f"prefect.flow-run.{INVALID_INPUT}",
}
MIN_PROACTIVE_WITHIN = timedelta(seconds=10)  # Prefect's minimum for a proactive trigger

# The proactive alert has no run to show: it says what is wrong and what to check. $-placeholders are
# filled at setup (the window, the deployment); {{ }} is left for the server.
NIGHTLY_SUBJECT = Template("vbs-backup: no Completed run of $deployment in $within")
NIGHTLY_BODY = Template("""\
No run of the deployment $deployment has ended Completed for $within (since the last Completed run, or \
since `vbs-backup alerts setup`): backups may have stopped.
Check:
- is `vbs-backup serve` running (or, with a work pool, its worker)? Stopping it pauses the schedules of \
every deployment, the watchdog's too;
- is the deployment $deployment paused, or its schedule off? (Prefect UI > Deployments > $deployment)
- are its runs stuck Scheduled, Late or Pending, or did every run fail (see the "$failed" alerts)?
This check runs on the Prefect server; it says so again every $repeat until a run completes.
Checked at {{ firing.triggered }}. Automation: {{ automation|ui_url }}""")


class Notifier(StrEnum):
    """Where notifications go; each kind is saved as one block named `vbs-backup-<kind>`."""

    webhook = "webhook"
    slack = "slack"
    teams = "teams"

    @property
    def block_name(self) -> str:
        return f"vbs-backup-{self.value}"


def notification_block(kind: Notifier, url: str) -> NotificationBlock:
    """The notification block for `kind`. The URL is stored as a secret in every case: webhook URLs
    usually carry their token."""
    if kind is Notifier.slack:
        return SlackWebhook(url=SecretStr(url))
    if kind is Notifier.teams:
        return MicrosoftTeamsWebhook(url=SecretStr(url))
    return CustomWebhookNotificationBlock(
        name="vbs-backup",
        url="{{webhook_url}}",
        secrets={"webhook_url": url},
        # `text` for chat servers that take Slack-style payloads; subject and body for everyone else.
        json_data={"subject": "{{subject}}", "body": "{{body}}", "text": "{{subject}}\n{{body}}"},
    )


def failure_trigger(deployments: Sequence[str] | None = None) -> EventTrigger:
    """A flow run of a product deployment entering Failed, Crashed or TimedOut: by the product's tag when
    `deployments` is None (the UI's "Flow run state" card), else by deployment name (a custom card). No
    ids either way: alerts can be set up before the deployments exist and survive their re-creation."""
    related: dict[str, str | list[str]]
    if deployments is None:
        related = {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"}
    else:
        related = {"prefect.resource.role": "deployment", "prefect.resource.name": list(deployments)}
    return EventTrigger(
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related=related,
        expect=set(FAILURE_EVENTS),
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def nightly_trigger(within: timedelta, deployment: str = NIGHTLY_DEPLOYMENT) -> EventTrigger:
    """No run of `deployment` ending Completed within `within` of the last one that did (or of the
    automation's creation): Completed both starts and satisfies the window (see the module's notes)."""
    if within < MIN_PROACTIVE_WITHIN:
        raise ValueError(f"the nightly window must be at least {MIN_PROACTIVE_WITHIN.seconds} s (Prefect)")
    return EventTrigger(
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "deployment", "prefect.resource.name": deployment},
        after={COMPLETED_EVENT},
        expect={COMPLETED_EVENT},
        posture=Posture.Proactive,
        threshold=1,
        within=within,
    )


def lost_run_trigger(within: timedelta = LOST_AFTER) -> EventTrigger:
    """A run of a product deployment whose heartbeats stopped for `within` without it ending: one window
    per run (`for_each`), opened by each heartbeat and closed by the next one or by the run's end (Prefect's
    "zombie flow" recipe, restricted to the product's tag)."""
    if within < MIN_PROACTIVE_WITHIN:
        raise ValueError(f"the lost-run window must be at least {MIN_PROACTIVE_WITHIN.seconds} s (Prefect)")
    return EventTrigger(
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"},
        after={HEARTBEAT_EVENT},
        expect={HEARTBEAT_EVENT, *_ENDED_EVENTS},
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=within,
    )


def lost_run_automation(within: timedelta = LOST_AFTER) -> AutomationCore:
    """Marks Crashed a run whose process stopped sending heartbeats (its worker or machine died): the
    run would otherwise stay Running for ever, its parent (estate-nightly) would wait for it, and nobody
    would be told. The Crashed state then pages through the failed-runs automation."""
    return AutomationCore(
        name=LOST_AUTOMATION_NAME,
        description=(
            f"Marks Crashed a run of a deployment tagged {TAG} that sent no heartbeat for "
            f"{duration_text(within)} and did not end (its worker or machine is gone); "
            f"'{AUTOMATION_NAME}' then notifies. Workers send a heartbeat every "
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (default 180): keep the window above three of them. "
            "Created by `vbs-backup alerts setup --lost-after-minutes M`."
        ),
        enabled=True,
        trigger=lost_run_trigger(within),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                name="Crashed",
                message=f"no heartbeat for {duration_text(within)}: the process running it (its worker or "
                "machine) is gone",
            )
        ],
        actions_on_trigger=[],
        actions_on_resolve=[],
    )


def duration_text(span: timedelta) -> str:
    """`26 h`, `1 h 30 min`, `45 s`: a window as people write it."""
    seconds = round(span.total_seconds())
    parts = [(seconds // 3600, "h"), (seconds % 3600 // 60, "min"), (seconds % 60, "s")]
    return " ".join(f"{n} {unit}" for n, unit in parts if n) or "0 s"


def _where(targets: Mapping[Notifier, str]) -> str:
    """`webhook (alerts.example.com), slack (hooks.slack.com)`: kinds and hosts only, never the URLs
    (webhook URLs carry their token)."""
    return ", ".join(f"{kind.value} ({urlsplit(url).hostname})" for kind, url in targets.items())


def _notify(block_ids: Sequence[UUID], subject: str, body: str) -> list[SendNotification]:
    return [SendNotification(block_document_id=b, subject=subject, body=body) for b in block_ids]


def alert_automation(
    block_ids: Sequence[UUID], deployments: Sequence[str] | None = None, *, where: str = "the saved blocks"
) -> AutomationCore:
    """The failed-runs automation: `deployments` None means every deployment tagged with the product's
    tag (all of the catalog's)."""
    watched = (
        f"a run of any deployment tagged {TAG} (the catalog's: {', '.join(s.name for s in ALL_DEPLOYMENTS)})"
        if deployments is None
        else f"a run of {', '.join(deployments)}"
    )
    return AutomationCore(
        name=AUTOMATION_NAME,
        description=(
            f"Notifies {where} when {watched} ends Failed, Crashed or TimedOut, with the run's name, its "
            f"message (the failed disks and why) and a link. Runs refused for their input (state "
            f"{INVALID_INPUT}) page nobody. Created by `vbs-backup alerts setup`; run it again to change "
            "the targets."
        ),
        enabled=True,
        trigger=failure_trigger(deployments),
        actions=_notify(block_ids, SUBJECT, BODY),
        actions_on_trigger=[],
        actions_on_resolve=[],
    )


def nightly_automation(
    block_ids: Sequence[UUID],
    within: timedelta = NIGHTLY_WITHIN,
    *,
    where: str = "the saved blocks",
    deployment: str = NIGHTLY_DEPLOYMENT,
) -> AutomationCore:
    """The proactive automation: no Completed run of `deployment` within `within`."""
    values = {
        "deployment": deployment,
        "within": duration_text(within),
        "repeat": duration_text(2 * within),
        "failed": AUTOMATION_NAME,
    }
    return AutomationCore(
        name=NIGHTLY_AUTOMATION_NAME,
        description=(
            f"Notifies {where} when no run of the deployment {deployment} has ended Completed for "
            f"{values['within']} (since the last one, or since this automation was set up), then every "
            f"{values['repeat']} until one does. It runs on the Prefect server, so it also reports a "
            "stopped `vbs-backup serve` or worker, or a paused deployment. Created by `vbs-backup alerts "
            "setup --nightly-within-hours H`."
        ),
        enabled=True,
        trigger=nightly_trigger(within, deployment),
        actions=_notify(block_ids, NIGHTLY_SUBJECT.substitute(values), NIGHTLY_BODY.substitute(values)),
        actions_on_trigger=[],
        actions_on_resolve=[],
    )


@dataclass(frozen=True)
class Upserted:
    name: str
    automation_id: UUID | None  # None: deleted, or never there
    outcome: str  # created, updated, unchanged, deleted, absent


@dataclass(frozen=True)
class AlertSetup:
    failures: Upserted
    nightly: Upserted
    blocks: list[str]
    deployments: list[str]
    nightly_within: timedelta | None  # None: no nightly watch
    lost: Upserted | None = None
    lost_after: timedelta | None = None  # None: lost runs are not marked Crashed


def _same(existing: Automation, wanted: AutomationCore) -> bool:
    """Whether `existing` already is `wanted` (the server's trigger id aside: the client model has none)."""
    fields = set(AutomationCore.model_fields)
    return AutomationCore.model_validate(existing.model_dump(include=fields)) == wanted


async def _upsert(client: PrefectClient, wanted: AutomationCore) -> Upserted:
    """Create `wanted`, or update the automation of its name, or leave it alone when it is identical
    (an update restarts a proactive window)."""
    existing = await client.read_automations_by_name(wanted.name)
    for duplicate in existing[1:]:  # left by a concurrent setup: one automation, one alert
        await client.delete_automation(duplicate.id)
    if not existing:
        return Upserted(wanted.name, await client.create_automation(wanted), "created")
    current = existing[0]
    if _same(current, wanted):
        return Upserted(wanted.name, current.id, "unchanged")
    await client.update_automation(current.id, wanted)
    return Upserted(wanted.name, current.id, "updated")


async def _remove(client: PrefectClient, name: str) -> Upserted:
    existing = await client.read_automations_by_name(name)
    for automation in existing:
        await client.delete_automation(automation.id)
    return Upserted(name, None, "deleted" if existing else "absent")


async def setup_alerts(
    targets: Mapping[Notifier, str],
    *,
    deployments: Sequence[str] | None = None,
    nightly_within: timedelta | None = NIGHTLY_WITHIN,
    lost_after: timedelta | None = LOST_AFTER,
    client: PrefectClient | None = None,
) -> AlertSetup:
    """Save one notification block per target (overwriting) and create or update the automations so
    that they notify exactly these targets: failed runs of `deployments` (default: every deployment of
    the product), and no Completed nightly-backup within `nightly_within` (None: no such watch; also
    none when `deployments` leaves nightly-backup out). An existing watch that is no longer wanted is
    deleted, so that it does not go on notifying the old targets."""
    if not targets:
        raise ValueError("give at least one notification target (webhook, Slack or Teams URL)")
    if nightly_within is not None and nightly_within < MIN_PROACTIVE_WITHIN:
        raise ValueError(f"the nightly window must be at least {MIN_PROACTIVE_WITHIN.seconds} s (Prefect)")
    if lost_after is not None and lost_after < MIN_PROACTIVE_WITHIN:
        raise ValueError(f"the lost-run window must be at least {MIN_PROACTIVE_WITHIN.seconds} s (Prefect)")
    if client is None:
        async with get_client() as own:
            return await setup_alerts(
                targets,
                deployments=deployments,
                nightly_within=nightly_within,
                lost_after=lost_after,
                client=own,
            )
    names = list(deployments) if deployments is not None else [spec.name for spec in ALL_DEPLOYMENTS]
    if NIGHTLY_DEPLOYMENT not in names:
        nightly_within = None
    block_ids = []
    for kind, url in targets.items():
        block = notification_block(kind, url)
        block_ids.append(await block.asave(kind.block_name, overwrite=True, client=client))
    where = _where(targets)
    failures = await _upsert(
        client,
        alert_automation(block_ids, list(deployments) if deployments is not None else None, where=where),
    )
    if nightly_within is None:
        nightly = await _remove(client, NIGHTLY_AUTOMATION_NAME)
    else:
        nightly = await _upsert(client, nightly_automation(block_ids, nightly_within, where=where))
    if lost_after is None:
        lost = await _remove(client, LOST_AUTOMATION_NAME)
    else:
        lost = await _upsert(client, lost_run_automation(lost_after))
    return AlertSetup(
        failures, nightly, [k.block_name for k in targets], names, nightly_within, lost, lost_after
    )
