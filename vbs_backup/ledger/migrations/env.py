"""Alembic environment of the ledger: online only, on the connection that
:func:`vbs_backup.ledger.engine.alembic_config` put in ``config.attributes`` (the caller owns its
transaction and, on PostgreSQL, the advisory lock taken on it)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the ledger migrations run through vbs_backup.ledger.engine: init_db, upgrade_ledger")

context.configure(
    connection=connection,
    # Only needed to autogenerate a new revision; the migrations themselves never read the live models.
    target_metadata=context.config.attributes.get("target_metadata"),
    # SQLite alters a table by copying it: autogenerate then writes `batch_alter_table` blocks.
    render_as_batch=True,
)
with context.begin_transaction():  # joins the caller's transaction when there is one
    context.run_migrations()
