"""Accounts: projects of one account share its gateway rate budget; the request log says who called, when.

An emulator of its own over a real socket, with a fleet of three projects: two of the account `acme` and one
alone (its account is its project id). Its wall clock (the log's arrival times) and monotonic clock (the
rate limiters' buckets) are the test's, so nothing sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import EmulatorHandle, emulator_handle
from vbs_backup.emulator.app import create_app
from vbs_backup.emulator.clock import ManualClock
from vbs_backup.emulator.server import EmulatorServer
from vbs_backup.emulator.state import CloudState, LoggedRequest

ACME_1 = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
ACME_2 = "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2"
SOLO = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"


def project(project_id: str, n: int, account: str | None = None) -> dict:
    spec = {
        "id": project_id,
        "name": f"eu-west-0_p{n}",
        "access_keys": [{"ak": f"ACCOUNTAK{n:011d}", "sk": f"account-secret-{n}"}],
        "users": [{"name": f"ops-{n}", "password": f"password-{n}", "domain": account or f"domain-{n}"}],
    }
    return spec if account is None else {**spec, "account": account}


FLEET = {
    "region": "eu-west-0",
    "settings": {"job_mode": "polls"},
    "projects": [project(ACME_1, 1, "acme"), project(ACME_2, 2, "acme"), project(SOLO, 3)],
}


@dataclass
class Accounts:
    """The emulator, a handle per project, and the two clocks the test moves."""

    state: CloudState
    client: httpx.Client
    handles: dict[str, EmulatorHandle]
    wall: list[float]
    monotonic: list[float]

    def control(self, method: str, path: str, json: object = None) -> httpx.Response:
        return self.client.request(method, f"/_emulator/{path.lstrip('/')}", json=json)

    def list_servers(self, project_id: str, **kwargs: object) -> httpx.Response:
        return self.handles[project_id].call("GET", f"/v1/{project_id}/cloudservers/detail", **kwargs)

    def statuses(self, *project_ids: str) -> list[int]:
        return [self.list_servers(pid).status_code for pid in project_ids]

    def rate_limit(self, **body: object) -> dict:
        response = self.control("POST", "/rate_limit", json=body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def accounts_server() -> Iterator[Accounts]:
    wall, monotonic = [time.time()], [1000.0]
    state = CloudState(clock=ManualClock())
    app = create_app(state, fleet=FLEET, wall_clock=lambda: wall[0], monotonic=lambda: monotonic[0])
    with EmulatorServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert server.url is not None
        handles = {spec["id"]: emulator_handle(server.url, state, spec, client) for spec in FLEET["projects"]}
        yield Accounts(state, client, handles, wall, monotonic)


@pytest.fixture
def accounts(accounts_server: Accounts) -> Accounts:
    accounts_server.control("POST", "/reset").raise_for_status()
    # Near real time: AK/SK dates (signed with real time) are checked against this clock.
    accounts_server.wall[0] = time.time()
    return accounts_server


# The fleet ----------------------------------------------------------------------------------------------


def test_a_project_belongs_to_its_fleet_account_or_to_an_account_of_its_own(accounts):
    projects = accounts.control("GET", "/state").json()["projects"]
    assert {pid: p["account"] for pid, p in projects.items()} == {ACME_1: "acme", ACME_2: "acme", SOLO: SOLO}
    assert accounts.state.projects[SOLO].account == SOLO


def test_an_empty_account_name_is_refused_by_the_fleet(accounts):
    bad = {"projects": [{**project("c0" * 16, 9), "account": ""}]}
    response = accounts.control("POST", "/fleet", json=bad)
    assert response.status_code == 400
    assert "projects.0.account" in response.json()["error"]["message"]


# The request log ----------------------------------------------------------------------------------------


def test_each_request_is_logged_with_its_arrival_time_project_and_account(accounts):
    start = accounts.wall[0]
    for pid in (ACME_1, ACME_2, SOLO):
        assert accounts.list_servers(pid).status_code == 200
        accounts.wall[0] += 0.25
    token = accounts.handles[ACME_2].token()  # unauthenticated: no caller yet
    accounts.wall[0] += 0.25
    assert accounts.list_servers(ACME_2, token=token).status_code == 200  # the token's project
    accounts.wall[0] += 0.25
    assert accounts.list_servers(SOLO, ak="NOSUCHAK").status_code == 401  # nobody we know

    rows = accounts.control("GET", "/requests").json()
    assert [(r["operation"], r["status"], r["project_id"], r["account"]) for r in rows] == [
        ("ecs.list_servers", 200, ACME_1, "acme"),
        ("ecs.list_servers", 200, ACME_2, "acme"),
        ("ecs.list_servers", 200, SOLO, SOLO),
        ("iam.create_token", 201, None, None),
        ("ecs.list_servers", 200, ACME_2, "acme"),
        ("ecs.list_servers", 401, None, None),
    ]
    assert [r["at"] for r in rows] == [start + 0.25 * n for n in range(6)]
    assert rows[0]["method"] == "GET" and rows[0]["path"] == f"/v1/{ACME_1}/cloudservers/detail"
    with accounts.state.locked():
        logged = list(accounts.state.request_log)
    assert logged[0] == LoggedRequest(
        "ecs.list_servers", "GET", f"/v1/{ACME_1}/cloudservers/detail", 200, start, ACME_1, "acme"
    )


def test_a_call_into_another_project_is_logged_as_its_caller(accounts):
    response = accounts.handles[SOLO].call(
        "GET", f"/v1/{ACME_1}/cloudservers/detail", headers={"X-Project-Id": SOLO}
    )
    assert response.status_code == 403
    (row,) = accounts.control("GET", "/requests").json()
    assert (row["status"], row["project_id"], row["account"]) == (403, SOLO, SOLO)


# Per-account rate limits --------------------------------------------------------------------------------


def test_an_account_limit_is_shared_by_its_projects_and_spares_the_others(accounts):
    described = accounts.rate_limit(account="acme", rate=1, burst=2)
    assert described == {"rate": None, "burst": None, "accounts": {"acme": {"rate": 1, "burst": 2.0}}}

    # Two tokens for the whole account, whichever of its projects draws them.
    assert accounts.statuses(ACME_1, ACME_2) == [200, 200]
    throttled = accounts.list_servers(ACME_1)
    assert throttled.status_code == 429
    body = throttled.json()
    assert body["error_code"] == "APIGW.0308"
    assert body["error_msg"] == (
        "The throttling threshold has been reached: policy user over ratelimit,limit:1,time:1 second"
    )
    assert int(throttled.headers["Retry-After"]) >= 1
    assert accounts.statuses(ACME_2) == [429]
    assert accounts.statuses(*[SOLO] * 5) == [200] * 5  # another account: no limit

    accounts.monotonic[0] += 1.0  # one token back, for either project
    assert accounts.statuses(ACME_2, ACME_1) == [200, 429]

    rows = accounts.control("GET", "/requests").json()
    per_account = [(r["account"], r["status"]) for r in rows]
    assert per_account.count(("acme", 429)) == 3
    assert per_account.count(("acme", 200)) == 3
    assert per_account.count((SOLO, 200)) == 5


def test_removing_an_account_limit_lifts_it_and_reset_clears_them_all(accounts):
    accounts.rate_limit(account="acme", rate=0.01, burst=1)
    accounts.rate_limit(account=SOLO, rate=0.01, burst=1)
    assert set(accounts.control("GET", "/rate_limit").json()["accounts"]) == {"acme", SOLO}
    assert accounts.statuses(ACME_1, ACME_2, SOLO, SOLO) == [200, 429, 200, 429]

    described = accounts.rate_limit(account="acme", rate=None)
    assert list(described["accounts"]) == [SOLO]
    assert accounts.statuses(ACME_1, ACME_2, ACME_1, SOLO) == [200, 200, 200, 429]

    accounts.control("POST", "/reset").raise_for_status()
    assert accounts.control("GET", "/rate_limit").json() == {"rate": None, "burst": None, "accounts": {}}
    assert accounts.statuses(SOLO, SOLO, SOLO) == [200] * 3


def test_the_global_limit_still_counts_every_account(accounts):
    accounts.rate_limit(rate=0.01, burst=3)
    accounts.rate_limit(account="acme", rate=0.01, burst=1)
    # acme's second request is refused by its own bucket and takes no global token; SOLO gets the rest.
    assert accounts.statuses(ACME_1, ACME_2, SOLO, SOLO, SOLO) == [200, 429, 200, 200, 429]
    assert accounts.control("GET", "/rate_limit").json() == {
        "rate": 0.01,
        "burst": 3.0,
        "accounts": {"acme": {"rate": 0.01, "burst": 1.0}},
    }


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"account": "", "rate": 1}, "account must be a non-empty string"),
        ({"account": 7, "rate": 1}, "account must be a string"),
        ({"account": "acme", "rate": -1}, "rate must be positive"),
        ({"account": "acme", "rate": 1, "burst": 0}, "burst must be at least 1"),
    ],
)
def test_a_bad_account_limit_is_refused_and_changes_nothing(accounts, body, problem):
    response = accounts.control("POST", "/rate_limit", json=body)
    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]
    assert accounts.control("GET", "/rate_limit").json()["accounts"] == {}
