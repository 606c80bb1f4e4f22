"""What Prefect stored of a flow run's logs, for tests that check how a failure reads."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from prefect.states import State


async def logged(state: State) -> str:
    """Every log line Prefect stored for the state's flow run (and its task runs), one per line."""
    await APILogHandler.aflush()
    run_id = state.state_details.flow_run_id
    assert isinstance(run_id, UUID)
    async with get_client() as client:
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return "\n".join(log.message for log in logs)
