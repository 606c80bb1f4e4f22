"""Flow parameter types shared by every flow, with the titles and descriptions the Prefect UI shows."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from vbs_backup.tasks.credentials import VbsCredentials

# A typed block parameter: the run form offers "VbsCredentials" or "None" (the default: the worker's
# VBS_BACKUP_ environment); "VbsCredentials" opens Prefect's selector of saved VBS Credentials blocks. A
# deployment or an API call passes {"$ref": {"block_document_id": ...}} (or a slug reference), which Prefect
# loads when the run starts. The null branch stays in the schema on purpose: without it the UI starts the
# field at null and then refuses its own value ("None is not valid under any of the given schemas"), so no
# run could be started without picking a block. Python callers may also pass a block's name (str): the run
# loads it, and a name no block has fails in one line (tasks/runtime.load_settings); not in the form.
Credentials = Annotated[
    VbsCredentials | SkipJsonSchema[str] | None,
    Field(
        title="Credentials",
        description="A saved VBS Credentials block; None: the worker's VBS_BACKUP_ environment.",
    ),
]
