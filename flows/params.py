"""Flow parameter types shared by every flow, with the titles and descriptions the Prefect UI shows."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Credentials = Annotated[
    str | None,
    Field(
        title="Credentials block",
        description="Name of a saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.",
    ),
]
