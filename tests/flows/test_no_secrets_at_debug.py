"""Black-box, all at DEBUG: no SK, password or IAM token in any output, the ledger or Prefect's database.

`vbs-backup run --plan FILE` runs in a process of its own (the session's Prefect test server for its API,
the emulator over HTTP for the cloud) with Prefect, httpx, httpcore and our loggers at DEBUG and sent to
Prefect's API (`PREFECT_LOGGING_EXTRA_LOGGERS`): httpcore then logs every response's headers, the IAM
token's `X-Subject-Token` among them. Runs: a success with token auth, then forced failures (wrong SK,
unknown server, wrong password, a 401 and a 500 from the cloud, an unreachable endpoint). Afterwards every
stdout and stderr, the ledger file and the Prefect server's SQLite database (logs, state messages,
artifacts) are searched for each secret: zero hits. The expected failures also end with one clear line
and print no traceback.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

from tests.commands import Done, vbs_backup, write_plan

UNKNOWN = "00000000-0000-4000-8000-000000000000"
DEBUG_ENV = {
    "PREFECT_LOGGING_LEVEL": "DEBUG",
    "PREFECT_LOGGING_ROOT_LEVEL": "DEBUG",  # httpx, httpcore and vbs_backup loggers at DEBUG
    "PREFECT_LOGGING_EXTRA_LOGGERS": "httpcore,httpx,vbs_backup",  # ... and sent to Prefect's database
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def files_of(url_or_path: str | Path) -> bytes:
    """A SQLite database's bytes, with its write-ahead log and journal (recent writes live there)."""
    path = Path(str(url_or_path).split(":///", 1)[-1])
    return b"".join(
        p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")) if p.is_file() and p.stat().st_size
    )


def last_line(done: Done) -> str:
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture
def debug_env(cloud_env, monkeypatch):
    for key, value in DEBUG_ENV.items():
        monkeypatch.setenv(key, value)
    return cloud_env


def use_token_auth(monkeypatch, emulator, password: str) -> None:
    monkeypatch.delenv("VBS_BACKUP_AK", raising=False)
    monkeypatch.delenv("VBS_BACKUP_SK", raising=False)
    monkeypatch.setenv("VBS_BACKUP_USERNAME", emulator.username)
    monkeypatch.setenv("VBS_BACKUP_PASSWORD", password)
    monkeypatch.setenv("VBS_BACKUP_DOMAIN", emulator.domain)


def use_aksk(monkeypatch, emulator, sk: str) -> None:
    for key in ("VBS_BACKUP_USERNAME", "VBS_BACKUP_PASSWORD", "VBS_BACKUP_DOMAIN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VBS_BACKUP_AK", emulator.ak)
    monkeypatch.setenv("VBS_BACKUP_SK", sk)


def test_no_secret_anywhere_at_debug_through_success_and_forced_failures(debug_env, tmp_path, monkeypatch):
    emulator, clock = debug_env, debug_env.state.clock
    ledger = tmp_path / "ledger.sqlite"
    plan = str(write_plan(tmp_path, name="nightly", retention={"keep_last": 1, "min_successful": 1}))
    unknown = str(write_plan(tmp_path, name="unknown", selection={"ids": [UNKNOWN]}))
    another = str(write_plan(tmp_path, name="another", name_prefix="vbsb-other"))
    wrong_sk = f"wrong-sk-{uuid.uuid4().hex}"
    wrong_password = f"wrong-password-{uuid.uuid4().hex}"
    done: dict[str, Done] = {}

    def run(name: str, plan_file: str = plan) -> Done:
        done[name] = vbs_backup("run", "--plan", plan_file, ledger=ledger, clock=clock)
        return done[name]

    use_token_auth(monkeypatch, emulator, emulator.password)
    ok = run("success (token)")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert last_line(ok).startswith("Completed: ")

    use_aksk(monkeypatch, emulator, wrong_sk)
    run("wrong SK")
    use_aksk(monkeypatch, emulator, emulator.sk)
    run("unknown server", unknown)

    use_token_auth(monkeypatch, emulator, wrong_password)
    run("wrong password (token)")
    use_token_auth(monkeypatch, emulator, emulator.password)
    fault = {"operation": "ecs.list_servers", "status": 401, "code": "APIGW.0301", "message": "token revoked"}
    emulator.control("POST", "/faults", json=fault).raise_for_status()
    run("401 fault (token)")
    emulator.control("DELETE", "/faults").raise_for_status()
    fault = {"operation": "vbs.create_backup", "status": 500}
    emulator.control("POST", "/faults", json=fault).raise_for_status()
    run("500 fault (token)", another)  # another plan: its backups are created (and meet the fault)
    emulator.control("DELETE", "/faults").raise_for_status()
    monkeypatch.setenv("VBS_BACKUP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    run("unreachable endpoint (token)")

    failures = {name: d for name, d in done.items() if not name.startswith("success")}
    assert all(d.returncode == 1 for d in failures.values()), "\n".join(
        f"{n}: {d.returncode} {last_line(d)}" for n, d in failures.items()
    )
    assert last_line(done["wrong SK"]).startswith("Failed: ECS list_servers failed: 401 APIGW.0301 ")
    assert "check the AK/SK pair and the machine's clock" in last_line(done["wrong SK"])
    # a plan naming a server that does not exist is refused input (no page), not a failed night
    assert last_line(done["unknown server"]) == f"InvalidInput: unknown server id(s) in the plan: {UNKNOWN}"
    assert last_line(done["wrong password (token)"]).startswith("Failed: IAM create_token failed: 401")
    unreachable = last_line(done["unreachable endpoint (token)"])
    assert unreachable.startswith("Failed: ECS list_servers failed: ConnectError")
    for name in ("wrong SK", "unknown server", "wrong password (token)", "unreachable endpoint (token)"):
        output = done[name].stdout + done[name].stderr
        assert "Traceback" not in output, f"{name}:\n{output}"
        assert "Task run failed with exception" not in output, f"{name}:\n{output}"

    tokens = list(emulator.state.tokens)
    assert len(tokens) >= 3  # the success, the 401 run (and its renewal), the 500 run
    secrets = {
        "SK": emulator.sk,
        "wrong SK": wrong_sk,
        "password": emulator.password,
        "wrong password": wrong_password,
        **{f"token {i}": token for i, token in enumerate(tokens)},
    }
    prefect_db = files_of(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    places = {
        **{f"{name}: stdout": d.stdout.encode() for name, d in done.items()},
        **{f"{name}: stderr": d.stderr.encode() for name, d in done.items()},
        "ledger": files_of(ledger),
        "Prefect database": prefect_db,
    }
    hits = [
        f"{what} in {where}"
        for what, secret in secrets.items()
        for where, content in places.items()
        if secret.encode() in content
    ]
    assert hits == []
    # ... and the search meant something: httpcore's DEBUG lines with the token header reached the console
    # and Prefect's database, masked.
    for where in ("success (token): stderr", "Prefect database"):
        assert b"receive_response_headers.complete" in places[where], where
        assert b"(b'x-subject-token', b'***')" in places[where].lower(), where
