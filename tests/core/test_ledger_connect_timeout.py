"""A PostgreSQL ledger gives up connecting after a bound instead of hanging the run (libpq waits for ever by
default). The silent host is a local socket that listens but never accepts: the TCP handshake completes, the
PostgreSQL one never does. No PostgreSQL server is needed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from vbs_backup.ledger import make_engine


@pytest.fixture
def silent_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # never accept()ed: connections wait in the backlog, unanswered
        yield listener.getsockname()[1]
    # closing the listener resets whatever still waits in its backlog


class _Stop(Exception):
    pass


def connect_params(url: str, **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments the engine hands to the driver's connect()."""
    engine = make_engine(url, **kwargs)
    seen: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect, _record, _cargs, cparams):  # type: ignore[no-untyped-def]
        seen.update(cparams)
        raise _Stop

    with pytest.raises(_Stop):
        engine.connect()
    engine.dispose()
    return seen


def test_a_postgres_ledger_bounds_connecting_by_default():
    assert connect_params("postgresql://vbs:pw@db.example.invalid/ledger")["connect_timeout"] == 10


def test_a_connect_timeout_in_the_url_wins():
    params = connect_params("postgresql://vbs:pw@db.example.invalid/ledger?connect_timeout=3")
    assert params["connect_timeout"] == "3"


def test_sqlite_gets_no_connect_timeout(tmp_path):
    assert "connect_timeout" not in connect_params(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def test_a_silent_database_host_fails_instead_of_hanging(silent_port):
    engine = make_engine(f"postgresql://vbs:pw@127.0.0.1:{silent_port}/ledger", connect_timeout=2)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        attempt = pool.submit(engine.connect)
        # a guard only (the bound is 2 s): without a connect timeout this would wait for ever
        with pytest.raises(OperationalError, match="timeout"):
            attempt.result(timeout=60)
    finally:
        pool.shutdown(wait=False)  # a hung attempt ends when the fixture closes the listener
    engine.dispose()
