"""Engine factory for the ledger: SQLite (embedded, the default) or PostgreSQL (several workers).

Nothing here connects at import time; ``make_engine`` only prepares, the first session connects.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

__all__ = ["init_db", "ledger_tables", "make_engine", "normalize_url"]



def ledger_tables() -> list[Table]:
    """Every table defined in a module of this package (importing them all first), and no other: the
    SQLModel metadata is shared by every SQLModel table imported in the process. A feature adds its tables
    in a module of its own here and they are created with the rest."""
    package = importlib.import_module("vbs_backup.ledger")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"vbs_backup.ledger.{module.name}")
    return [
        cls.__table__  # type: ignore[attr-defined]
        for cls in _all_subclasses(SQLModel)
        if cls.__module__.startswith("vbs_backup.ledger.") and hasattr(cls, "__table__")
    ]


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


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


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for the ledger at ``url``.

    SQLite: the file's parent directory is created; connections may cross threads, use WAL (readers do
    not block the writer) and wait for locks instead of failing at once. An in-memory database is shared
    by every session of the engine. PostgreSQL: ``postgresql://`` is mapped to the psycopg 3 driver, and
    connections are checked before use, so a restarted server does not fail the next run.
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
    return create_engine(parsed, **kwargs)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def init_db(engine: Engine) -> None:
    """Create the ledger's tables if they do not exist (safe to call at every start)."""
    SQLModel.metadata.create_all(engine, tables=ledger_tables())
