"""PostgreSQL for tests: the local server at 127.0.0.1:5432 (trust auth, database `test`), one fresh
schema per use; tests skip with a visible reason when the server is not reachable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

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
