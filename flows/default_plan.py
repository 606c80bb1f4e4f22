"""The plan every deployment runs unless told otherwise: every server tagged backup=nightly, with the
default retention (7 daily, 4 weekly), slots and retention days counted in Europe/Paris.

It is also the default of the flows' `plan` parameter, so that a deployment can be started with
Prefect's "Quick run" (the UI opens the full form whenever the flow has a required parameter) and a
one-server backup from the UI gets the same names, tags and retention as the nightly run.
"""

from __future__ import annotations

from typing import Any

from vbs_backup.plan import BackupPlan

__all__ = ["DEFAULT", "DEFAULT_PLAN", "TIMEZONE"]

TIMEZONE = "Europe/Paris"

# Only non-default fields, exactly as in prefect.yaml (tests/server/test_deployments.py checks).
DEFAULT_PLAN: dict[str, Any] = {
    "name": "nightly",
    "selection": {"tags": {"backup": "nightly"}},
    "schedule_timezone": TIMEZONE,
}


# Validated once, at import: a typo here fails then, not at 02:00. A frozen model: one shared instance is
# safe as every flow's default.
DEFAULT: BackupPlan = BackupPlan.model_validate(DEFAULT_PLAN)
