"""Plan-scoped backup attempts and run heartbeats.

A disk backup's identity becomes (plan, volume, slot), with one row per attempt at it, instead of
(volume, backup name); runs get a heartbeat. Existing rows get their run's plan, the slot read from the end
of their name (``...-YYYYMMDDHHMM``, UTC; NULL when the name does not end that way), attempt 1, and
``created_by_us`` true: every row of the old ledger was a backup we asked for.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)
SLOT_SUFFIX = re.compile(r"-(\d{12})$")
CHUNK = 1000


def slot_from_name(name: str) -> datetime | None:
    """The UTC slot start that the old names end with, e.g. ``vbsb-web-01-vdb-202611290100``."""
    match = SLOT_SUFFIX.search(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:  # twelve digits that are no date, e.g. a month 13
        return None


def _fill_slots() -> None:
    conn = op.get_bind()
    disk_backups = sa.table(
        "disk_backups", sa.column("id", sa.Integer()), sa.column("slot_start", UTC_DATETIME)
    )
    rows = conn.execute(sa.text("SELECT id, backup_name FROM disk_backups")).all()
    # As UTCDateTime stores them: naive UTC on SQLite (no timezone type), timestamptz on PostgreSQL.
    naive = conn.dialect.name == "sqlite"
    updates = []
    for row_id, name in rows:
        slot = slot_from_name(name)
        if slot is not None:
            updates.append({"row_id": row_id, "slot": slot.replace(tzinfo=None) if naive else slot})
    stmt = (
        disk_backups.update()
        .where(disk_backups.c.id == sa.bindparam("row_id"))
        .values(slot_start=sa.bindparam("slot"))
    )
    for start in range(0, len(updates), CHUNK):
        conn.execute(stmt, updates[start : start + CHUNK])


def upgrade() -> None:
    op.add_column("runs", sa.Column("heartbeat_at", UTC_DATETIME, nullable=True))

    # Added nullable (plan_name) or with a server default (filling the existing rows), then tightened below.
    with op.batch_alter_table("disk_backups") as batch:
        batch.add_column(sa.Column("plan_name", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("slot_start", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("created_by_us", sa.Boolean(), nullable=False, server_default=sa.true()))

    op.execute(
        "UPDATE disk_backups SET plan_name = "
        "(SELECT runs.plan_name FROM runs WHERE runs.id = disk_backups.run_id)"
    )
    _fill_slots()

    # On SQLite this block copies the table once (new NOT NULL, constraints); PostgreSQL alters in place.
    with op.batch_alter_table("disk_backups") as batch:
        batch.alter_column("plan_name", existing_type=sa.String(length=64), nullable=False)
        # The models set these on insert; the server defaults only served the rows already there.
        batch.alter_column("attempt", existing_type=sa.Integer(), server_default=None)
        batch.alter_column("created_by_us", existing_type=sa.Boolean(), server_default=None)
        batch.drop_constraint("uq_disk_backups_volume_name", type_="unique")
        batch.create_unique_constraint(
            "uq_disk_backups_attempt", ["plan_name", "volume_id", "slot_start", "attempt"]
        )
        batch.create_index("ix_disk_backups_plan_name", ["plan_name"], unique=False)
        batch.create_index("ix_disk_backups_slot_start", ["slot_start"], unique=False)


def downgrade() -> None:
    # Fails if a volume has two rows of one name (a retried attempt): the old schema cannot hold them.
    with op.batch_alter_table("disk_backups") as batch:
        batch.drop_index("ix_disk_backups_slot_start")
        batch.drop_index("ix_disk_backups_plan_name")
        batch.drop_constraint("uq_disk_backups_attempt", type_="unique")
        batch.create_unique_constraint("uq_disk_backups_volume_name", ["volume_id", "backup_name"])
        for column in ("created_by_us", "attempt", "slot_start", "plan_name"):
            batch.drop_column(column)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
