"""PostgreSQL for tests: the local server at 127.0.0.1:5432 (trust auth, database `test`), one fresh
schema per use; tests skip with a visible reason when the server is not reachable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from vbs_backup.ledger import init_db, make_engine

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url_or_skip() -> str:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}".strip())
    return PG_URL


@contextmanager
def fresh_schema_url(prefix: str = "test") -> Iterator[str]:
    """A URL whose every connection works in a new, empty schema (libpq `options`), dropped afterwards."""
    base = postgres_url_or_skip()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def ledger_engine(kind: str, tmp_path: Path, prefix: str = "test") -> Iterator[Engine]:
    """A fresh, initialised ledger: a new SQLite file (`kind="sqlite"`) or a new PostgreSQL schema."""
    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'ledger' / 'ledger.sqlite'}")
        init_db(engine)
        yield engine
        engine.dispose()
        return
    with fresh_schema_url(prefix) as url:
        engine = make_engine(url)
        init_db(engine)
        yield engine
        engine.dispose()
