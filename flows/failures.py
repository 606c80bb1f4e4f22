"""The one guard every flow's body runs under: an expected failure ends the run Failed with one clear line.

Bad input and unfriendly surroundings (a plan's unknown server, wrong credentials, an unreachable endpoint,
settings that do not validate: `tasks.runtime.EXPECTED_FAILURES`) are not bugs, so the run ends `Failed`
with the failure's message, which the CLI prints as its last line and alert automations carry, and Prefect
logs no "Encountered exception during execution" traceback. Every other exception goes through untouched
(Prefect logs it with its traceback: that one is a bug). `on_failure` hooks fire either way.

    @flow(name="nightly-backup", **ON_FAILURE)
    async def nightly_backup(plan: BackupPlan, credentials: Credentials = None) -> State:
        return await failing_cleanly(run_plan(plan, ...))

(A guard inside the body rather than a decorator: Prefect reads each flow's signature, annotations and
source file from the function it is given, and a wrapper function defined here would break the validation
of parameters such as `BackupPlan`.)
"""

from __future__ import annotations

from collections.abc import Awaitable

from prefect.states import Failed, State

from vbs_backup.tasks.runtime import EXPECTED_FAILURES, INPUT_FAILURES, failure_line, trigger

__all__ = ["INVALID_INPUT", "failing_cleanly"]

# The name of the Failed state a manual run ends in when what was typed is refused (an unknown server, a
# plan that does not validate): red in the UI with its one line, but Prefect emits
# `prefect.flow-run.InvalidInput` for it, which the alert automation does not page on (deployments/alerts.py).
INVALID_INPUT = "InvalidInput"


async def failing_cleanly(body: Awaitable[State]) -> State:
    """`await body` (a flow's body, returning the run's final state); an expected failure it raises
    becomes `Failed(message=<its one line>)`, which Prefect logs once at ERROR ("Finished in state
    Failed(...)"), without a traceback. A refused input of a run that a person started ends in a Failed
    state named `INVALID_INPUT` instead: the person sees it; nobody is paged for a typo."""
    try:
        return await body
    except EXPECTED_FAILURES as exc:
        if isinstance(exc, INPUT_FAILURES) and trigger() != "scheduled":
            return Failed(name=INVALID_INPUT, message=failure_line(exc))
        return Failed(message=failure_line(exc))
