"""Runs know their estate target and their project.

One ledger records the runs of every target of an estate (issue "Many projects"), and plan names repeat
across targets: a run gets the name of the target it worked for (indexed: a target's reads are scoped by
it) and the id of the project it worked on. Both are NULL on the runs already there: they ran outside any
estate, and which project they worked on was not recorded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns only: SQLite adds them in place, without copying the table.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("target", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("project_id", sa.String(length=64), nullable=True))
        batch.create_index("ix_runs_target", ["target"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_target")
        batch.drop_column("project_id")
        batch.drop_column("target")
