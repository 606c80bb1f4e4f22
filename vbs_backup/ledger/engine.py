"""Engine factory for the ledger: SQLite (embedded, the default) or PostgreSQL (several workers), its schema
(:data:`LEDGER_TABLES`) and the schema's version (Alembic migrations in ``migrations/``, applied by
:func:`init_db`).

Nothing here connects at import time; ``make_engine`` only prepares, the first session connects.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from vbs_backup.ledger.policy_audit import PolicyTaskRecord
from vbs_backup.ledger.restores import Restore, RestoreDrill
from vbs_backup.ledger.sharing import ShareRecord
from vbs_backup.ledger.tables import DiskBackup, RetentionDecision, Run

if TYPE_CHECKING:  # pragma: no cover
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "LEDGER_TABLES",
    "LedgerVersionError",
    "alembic_config",
    "init_db",
    "ledger_head",
    "ledger_metadata",
    "ledger_revision",
    "make_engine",
    "normalize_url",
    "upgrade_ledger",
]

log = logging.getLogger(__name__)


# The ledger's schema: every table of the ledger, and no other (the SQLModel metadata is shared by every
# SQLModel table imported in the process). A feature adds its tables in a module of its own and lists them
# here, with a migration in ``migrations/versions``; tests/core/test_migrations.py checks the two agree.
_LEDGER_MODELS: tuple[type[SQLModel], ...] = (
    Run,
    DiskBackup,
    RetentionDecision,
    PolicyTaskRecord,
    Restore,
    RestoreDrill,
    ShareRecord,
)
LEDGER_TABLES: tuple[Table, ...] = tuple(
    model.__table__  # type: ignore[attr-defined]
    for model in _LEDGER_MODELS
)


# How long a SQLite writer waits for another one (another worker thread, the CLI) before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalize_url(url: str) -> URL:
    """Parse ``url``; ``postgres://`` and ``postgresql://`` select the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_sqlite_memory(url: URL) -> bool:
    db = url.database or ""
    return db in ("", ":memory:") or (db.startswith("file:") and "mode=memory" in db)


# Connections to a PostgreSQL ledger: one per thread a run writes from (tasks.runtime.IO_THREADS), plus a
# few for the heartbeat and reads; SQLAlchemy's default (5 + 10) made writers wait for a connection. A run
# may keep fewer (Settings.database_pool_size): its writers then wait for one in turn.
POOL_SIZE = 24


def make_engine(
    url: str, *, echo: bool = False, connect_timeout: int = 10, pool_size: int = POOL_SIZE
) -> Engine:
    """An engine for the ledger at ``url``.

    SQLite: the file's parent directory is created; connections may cross threads, use WAL (readers do
    not block the writer) and wait for locks instead of failing at once. An in-memory database is shared
    by every session of the engine. PostgreSQL: ``postgresql://`` is mapped to the psycopg 3 driver,
    connections are checked before use, so a restarted server does not fail the next run, and opening one
    gives up after ``connect_timeout`` seconds (libpq waits for ever by default: an unreachable or silent
    database host would hang the run); a ``connect_timeout`` in the URL's query wins; it keeps
    ``pool_size`` connections open, and a third more in a burst.
    """
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False}
        if _is_sqlite_memory(parsed):
            kwargs["poolclass"] = StaticPool
        else:
            assert parsed.database is not None
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        kwargs["pool_size"], kwargs["max_overflow"] = pool_size, max(1, pool_size // 3)
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": connect_timeout}
    return create_engine(parsed, **kwargs)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


# --------------------------------------------------------------------------------------------------------
# Schema version
# --------------------------------------------------------------------------------------------------------

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The schema of every release before migrations existed: a ledger with tables but no version is at it.
UNVERSIONED_REVISION = "0001"


class LedgerVersionError(RuntimeError):
    """The ledger's schema is newer than this code knows: it was written by a newer vbs-backup."""


def ledger_metadata() -> MetaData:
    """A metadata holding copies of the ledger's tables only (the SQLModel one is shared by every model)."""
    metadata = MetaData()
    for table in LEDGER_TABLES:
        table.to_metadata(metadata)
    return metadata


def alembic_config(connection: Connection | None, target_metadata: MetaData | None = None) -> Config:
    """Alembic's configuration, built in code (no alembic.ini): the migrations run on ``connection``, in
    the caller's transaction. ``target_metadata`` is only for drafting a revision with autogenerate."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    config.attributes["target_metadata"] = target_metadata
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(None))


def ledger_head() -> str:
    """The revision this code writes (the newest migration)."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def _revision(conn: Connection) -> str | None:
    # Read directly rather than through Alembic's MigrationContext: this runs at every start and must be
    # one quiet query (the context logs at INFO each time it is made).
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def ledger_revision(engine: Engine) -> str | None:
    """The ledger's schema revision; None for an empty database or a ledger from before migrations."""
    with engine.connect() as conn:
        return _revision(conn)


# Alembic keeps the running migration in module globals (`alembic.context`, `alembic.op`): two threads
# migrating at once, even two different databases, would mix them up. One migration per process at a time.
_MIGRATING = threading.Lock()


def _lock(conn: Connection) -> None:
    """Serialise migrations across processes, and make them all-or-nothing: two workers starting at once
    would both see an old ledger; the second waits here until the first commits, then finds it current.

    PostgreSQL: an advisory lock per schema, released with the transaction (its DDL is transactional).
    SQLite: the driver opens a transaction only before a data change, leaving DDL to autocommit; an explicit
    ``BEGIN IMMEDIATE`` takes the write lock now (others wait, up to the busy timeout) and keeps the DDL in
    the transaction, so a migration that fails half-way leaves the ledger as it was."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('vbs_backup.ledger:' || current_schema()))"))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade_ledger(engine: Engine) -> tuple[str | None, str]:
    """Bring the ledger to the head revision, in one transaction; returns (from, to), from None when the
    database was empty.

    Empty: the tables are created from the models and stamped head (a fresh ledger need not replay
    history). Tables but no version: a ledger of a release before migrations, stamped
    ``UNVERSIONED_REVISION`` and upgraded. A revision this code does not know: :class:`LedgerVersionError`.
    """
    from alembic import command

    head = ledger_head()
    with _MIGRATING, engine.begin() as conn:
        _lock(conn)
        current = _revision(conn)  # again, under the lock: another worker may have just migrated
        if current == head:
            return current, head
        config = alembic_config(conn)
        unversioned = current is None
        if unversioned:
            if not {t.name for t in LEDGER_TABLES} & set(inspect(conn).get_table_names()):
                SQLModel.metadata.create_all(conn, tables=list(LEDGER_TABLES))
                command.stamp(config, head)
                log.info("ledger created at revision %s", head)
                return None, head
            command.stamp(config, UNVERSIONED_REVISION)
            current = UNVERSIONED_REVISION
        elif current not in {script.revision for script in _scripts().walk_revisions()}:
            raise LedgerVersionError(
                f"the ledger is at schema revision {current!r}, which this vbs-backup does not know (its "
                f"newest is {head!r}): it was written by a newer vbs-backup; upgrade vbs-backup to use it"
            )
        command.upgrade(config, "head")
        if unversioned:
            # A ledger from an even older release may lack a table that came later (create_all used to add
            # them at start); at head the models are the schema, so create what is missing from them.
            SQLModel.metadata.create_all(conn, tables=list(LEDGER_TABLES))
        log.info("ledger migrated from %s to %s", current, head)
        return current, head


def init_db(engine: Engine) -> None:
    """Make the ledger current (safe and cheap to call at every start): one query when it already is,
    otherwise :func:`upgrade_ledger` (create, or migrate). Raises :class:`LedgerVersionError` for a ledger
    written by a newer vbs-backup."""
    if ledger_revision(engine) != ledger_head():
        upgrade_ledger(engine)
