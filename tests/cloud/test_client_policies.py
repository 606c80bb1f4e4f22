"""The client's backup-policy operations (reference §3.1-§3.15) against the emulator over a real socket:
create/list/update (enable, disable)/delete, disk association, execution and its tasks (with pagination),
and policy tags; the documented validation errors as the right exception, `.code` and `.http_status`.
"""

from __future__ import annotations

import uuid

import pytest

from tests.emulator_state import project
from vbs_backup.cloud import BadRequestError, ConflictError, NotFoundError
from vbs_backup.cloud.models import (
    CreatePolicyRequest,
    PolicyStatus,
    ScheduledPolicy,
    Tag,
    TagMatch,
    TagQuery,
    TagQueryAction,
    TagValues,
    TaskStatus,
    UpdatePolicyRequest,
    Weekday,
)


def policy_request(
    name: str = "nightly", *, tags: list[Tag] | None = None, **schedule: object
) -> CreatePolicyRequest:
    fields: dict[str, object] = {
        "start_time": "02:00",
        "frequency": 1,
        "retention_num": 7,
        "status": PolicyStatus.ON,
    }
    fields.update(schedule)
    return CreatePolicyRequest(backup_policy_name=name, scheduled_policy=ScheduledPolicy(**fields), tags=tags)


async def finish_run(client, policy_id: str) -> None:
    """List the policy's tasks until none is waiting or running: in poll mode each listing is one status
    query of their jobs (bounded, so a hung job fails the test instead of looping)."""
    for _ in range(5):
        page = await client.vbs.list_policy_tasks(policy_id)
        if not any(t.status in (TaskStatus.WAITING, TaskStatus.RUNNING) for t in page.tasks):
            return
    raise AssertionError(f"the tasks of policy {policy_id} did not finish: {page.tasks}")


# -- create, list, update, delete (§3.1-§3.4, §3.8) --------------------------------------------------------


async def test_create_policy_then_list_it_with_the_wire_spellings_decoded(client, emulator):
    request = CreatePolicyRequest(
        backup_policy_name="weekly",
        scheduled_policy=ScheduledPolicy(
            start_time="22:00,00:00",
            week_frequency=[Weekday.SUN, Weekday.WED],
            retention_day=30,
            remain_first_backup_of_cur_month=True,
            status=PolicyStatus.OFF,
        ),
        time_zone="UTC+02:00",
    )

    policy_id = await client.vbs.create_policy(request)

    (policy,) = await client.vbs.list_policies()
    assert policy.id == policy_id and policy.name == "weekly"
    sp = policy.scheduled_policy
    assert sp.start_time == "22:00,00:00"
    assert sp.week_frequency == [Weekday.SUN, Weekday.WED]
    assert sp.retention_day == 30 and sp.retention_num is None  # `rentention_day` on the wire
    assert sp.remain_first_backup_of_cur_month is True  # "Y" on the wire
    assert policy.enabled is False and policy.policy_resource_count == 0
    assert policy.time_zone == "UTC+02:00"
    assert (await client.vbs.get_policy(policy_id)).name == "weekly"


async def test_update_policy_merges_and_keeps_what_is_not_sent(client, emulator, wire):
    policy_id = await client.vbs.create_policy(policy_request(start_time="03:00"))
    wire.clear()

    answer = await client.vbs.update_policy(
        policy_id,
        UpdatePolicyRequest(backup_policy_name="renamed", scheduled_policy=ScheduledPolicy(retention_num=14)),
    )

    assert answer == policy_id
    policy = await client.vbs.get_policy(policy_id)
    assert policy.name == "renamed"
    assert policy.scheduled_policy.retention_num == 14
    assert policy.scheduled_policy.start_time == "03:00"  # kept
    assert policy.scheduled_policy.frequency == 1  # kept, and sent along by the client (§3.3 client rule)
    # the client looked the frequency up first: one list, then the PUT
    assert wire.operations()[:2] == ["vbs.list_policies", "vbs.update_policy"]


async def test_disable_and_enable_policy(client, emulator):
    policy_id = await client.vbs.create_policy(policy_request())

    assert await client.vbs.disable_policy(policy_id) == policy_id
    with emulator.state.locked():
        assert project(emulator).policies[policy_id].status == "OFF"
    assert (await client.vbs.get_policy(policy_id)).enabled is False

    await client.vbs.enable_policy(policy_id)
    assert (await client.vbs.get_policy(policy_id)).enabled is True


async def test_delete_policy_removes_it_and_an_unknown_policy_is_not_found(client, emulator):
    policy_id = await client.vbs.create_policy(policy_request())

    await client.vbs.delete_policy(policy_id)

    assert await client.vbs.list_policies() == []
    with pytest.raises(NotFoundError) as caught:
        await client.vbs.delete_policy(policy_id)
    assert (caught.value.code, caught.value.http_status) == ("AutoBackup.0205", 404)
    for call in (
        lambda: client.vbs.update_policy(policy_id, UpdatePolicyRequest(backup_policy_name="x")),
        lambda: client.vbs.execute_policy(policy_id),
        lambda: client.vbs.list_policy_tasks(policy_id),
        lambda: client.vbs.associate_resources(policy_id, [str(uuid.uuid4())]),
        lambda: client.vbs.list_policy_tags(policy_id),
    ):
        with pytest.raises(NotFoundError) as caught:
            await call()
        assert (caught.value.code, caught.value.http_status) == ("AutoBackup.0205", 404)


@pytest.mark.parametrize(
    ("schedule", "code"),
    [
        ({"start_time": "12:30"}, "AutoBackup.0103"),  # whole hours only
        ({"start_time": "25:00"}, "AutoBackup.0103"),
        ({"retention_num": 1}, "AutoBackup.0107"),  # below 2
        ({"retention_num": 100}, "AutoBackup.0107"),  # above 99
        ({"frequency": 31}, "AutoBackup.0106"),  # above 30
    ],
    ids=["half-hour", "hour-25", "retention-1", "retention-100", "frequency-31"],
)
async def test_create_policy_validation_errors(client, emulator, wire, schedule, code):
    with pytest.raises(BadRequestError) as caught:
        await client.vbs.create_policy(policy_request(**schedule))

    assert (caught.value.code, caught.value.http_status) == (code, 400)
    assert wire.statuses("vbs.create_policy") == [400]
    with emulator.state.locked():
        assert project(emulator).policies == {}


async def test_create_policy_with_a_reserved_name_is_refused(client):
    with pytest.raises(BadRequestError) as caught:
        await client.vbs.create_policy(policy_request(name="default_nightly"))

    assert (caught.value.code, caught.value.http_status) == ("AutoBackup.0102", 400)


# -- association (§3.5, §3.6, §4.6) -----------------------------------------------------------------------


async def test_associate_resources_partially_succeeds_and_moves_disks_between_policies(
    client, emulator, fleet
):
    first = await client.vbs.create_policy(policy_request("first"))
    second = await client.vbs.create_policy(policy_request("second"))
    data, wal = fleet.volume["db-01-data"], fleet.volume["db-01-wal"]
    unknown = str(uuid.uuid4())

    result = await client.vbs.associate_resources(first, [data, wal, unknown])

    assert [r.resource_id for r in result.success_resources] == [data, wal]
    assert result.failed_ids == [unknown] and not result.all_succeeded
    assert result.fail_resources[0].code == "AutoBackup.1400"
    assert result.success_resources[0].availability_zone == "eu-west-0a"
    assert (await client.vbs.get_policy(first)).policy_resource_count == 2
    assert (await client.evs.get_volume(data)).metadata["policy"] == first  # §4.8

    moved = await client.vbs.associate_resources(second, [wal])

    assert moved.all_succeeded
    with emulator.state.locked():
        assert project(emulator).policies[first].resource_ids == [data]
        assert project(emulator).policies[second].resource_ids == [wal]


async def test_disassociate_resources_reports_disks_that_were_not_associated(client, emulator, fleet):
    policy_id = await client.vbs.create_policy(policy_request())
    data, wal = fleet.volume["db-01-data"], fleet.volume["db-01-wal"]
    await client.vbs.associate_resources(policy_id, [data])

    result = await client.vbs.disassociate_resources(policy_id, [data, wal])

    assert [r.resource_id for r in result.success_resources] == [data]
    assert result.failed_ids == [wal] and result.fail_resources[0].code
    assert (await client.vbs.get_policy(policy_id)).policy_resource_count == 0
    assert "policy" not in (await client.evs.get_volume(data)).metadata


# -- execution and tasks (§3.7, §3.9) ---------------------------------------------------------------------


async def test_execute_policy_makes_one_task_and_one_autobk_backup_per_disk(client, emulator, fleet):
    policy_id = await client.vbs.create_policy(policy_request(retention_num=10))
    disks = [fleet.volume["db-01-data"], fleet.volume["db-01-wal"]]
    await client.vbs.associate_resources(policy_id, disks)

    await client.vbs.execute_policy(policy_id)

    with pytest.raises(ConflictError) as caught:
        await client.vbs.execute_policy(policy_id)  # the first run is still going
    assert (caught.value.code, caught.value.http_status) == ("AutoBackup.0225", 409)
    # in poll mode each task listing is one status query of the tasks' jobs: two end them
    await client.vbs.list_policy_tasks(policy_id)
    page = await client.vbs.list_policy_tasks(policy_id)
    assert page.count == 2
    assert {t.resource_id for t in page.tasks} == set(disks)
    assert all(t.status == TaskStatus.EXECUTE_SUCCESS and t.finished_at for t in page.tasks)
    assert all((t.backup_name or "").startswith("autobk_") for t in page.tasks)
    autos = [b async for b in client.vbs.iter_backup_details()]
    assert sorted(b.name for b in autos) == sorted(t.backup_name for t in page.tasks)
    assert all(b.is_policy_backup for b in autos)
    await client.vbs.execute_policy(policy_id)  # finished, so it may run again


async def test_policy_tasks_are_listed_across_pages(client, emulator, fleet, wire):
    policy_id = await client.vbs.create_policy(policy_request(retention_num=10))
    await client.vbs.associate_resources(policy_id, [fleet.volume["db-01-data"], fleet.volume["db-01-wal"]])
    for _ in range(3):  # three runs of two disks: six tasks
        await client.vbs.execute_policy(policy_id)
        await finish_run(client, policy_id)
        emulator.control("POST", "/clock/advance", json={"seconds": 60}).raise_for_status()

    first = await client.vbs.list_policy_tasks(policy_id, limit=4)
    rest = await client.vbs.list_policy_tasks(policy_id, limit=4, offset=4)
    wire.clear()
    every = [t async for t in client.vbs.iter_policy_tasks(policy_id, page_size=4)]

    assert first.count == rest.count == 6
    assert len(first.tasks) == 4 and len(rest.tasks) == 2
    assert [t.job_id for t in every] == [t.job_id for t in first.tasks + rest.tasks]
    assert len({t.job_id for t in every}) == 6
    assert len(wire.entries("vbs.list_policy_tasks")) == 2  # 4 + 2: the short page ends the listing
    newest_first = [t.created_at for t in every]
    assert newest_first == sorted(newest_first, reverse=True)


# -- tags (§3.10-§3.15) -----------------------------------------------------------------------------------


async def test_policy_tags_add_list_delete(client, emulator):
    policy_id = await client.vbs.create_policy(policy_request(tags=[Tag(key="env", value="prod")]))

    await client.vbs.add_policy_tag(policy_id, "owner", "ops")
    await client.vbs.add_policy_tag(policy_id, "env", "test")  # an existing key is overwritten

    assert {t.key: t.value for t in await client.vbs.list_policy_tags(policy_id)} == {
        "env": "test",
        "owner": "ops",
    }
    await client.vbs.delete_policy_tag(policy_id, "owner")
    assert [t.key for t in await client.vbs.list_policy_tags(policy_id)] == ["env"]
    with pytest.raises(NotFoundError) as caught:
        await client.vbs.delete_policy_tag(policy_id, "owner")
    assert (caught.value.code, caught.value.http_status) == ("AutoBackup.0216", 404)


async def test_delete_policy_tag_percent_encodes_the_key(client, wire):
    # batch keys may hold characters that are special in a URL (§3.14); the key is one path segment,
    # percent-encoded (`#` -> `%23`, §3.11), and the signature covers the encoded path
    policy_id = await client.vbs.create_policy(policy_request())
    keys = ["team#1", "a b", "x%y", "k?q", "ünï"]
    await client.vbs.batch_policy_tags(policy_id, "create", dict.fromkeys(keys, "v"))

    for key in keys:
        await client.vbs.delete_policy_tag(policy_id, key)

    assert await client.vbs.list_policy_tags(policy_id) == []
    assert wire.statuses("vbs.delete_policy_tag") == [204] * len(keys)


async def test_batch_policy_tags_upsert_and_delete(client):
    policy_id = await client.vbs.create_policy(policy_request())

    await client.vbs.batch_policy_tags(policy_id, "create", {"env": "prod", "team": "db", "tier": "gold"})
    await client.vbs.batch_policy_tags(policy_id, "update", {"tier": "silver"})
    await client.vbs.batch_policy_tags(policy_id, "delete", {"team": None})

    assert {t.key: t.value for t in await client.vbs.list_policy_tags(policy_id)} == {
        "env": "prod",
        "tier": "silver",
    }


async def test_too_many_policy_tags_are_refused_0215(client):
    policy_id = await client.vbs.create_policy(policy_request())
    await client.vbs.batch_policy_tags(policy_id, "create", {f"k{i}": "v" for i in range(10)})

    with pytest.raises(BadRequestError) as caught:
        await client.vbs.add_policy_tag(policy_id, "eleventh", "v")

    assert (caught.value.code, caught.value.http_status) == ("AutoBackup.0215", 400)


async def test_project_policy_tags_and_query_by_tags(client):
    prod = await client.vbs.create_policy(policy_request("prod_nightly"))
    test = await client.vbs.create_policy(policy_request("test_nightly"))
    other = await client.vbs.create_policy(policy_request("untagged"))
    await client.vbs.add_policy_tag(prod, "env", "prod")
    await client.vbs.add_policy_tag(test, "env", "test")

    project_tags = await client.vbs.list_project_policy_tags()
    by_env = await client.vbs.query_policies_by_tags(
        TagQuery(tags=[TagValues(key="env", values=["prod", "test"])])
    )
    by_name = await client.vbs.query_policies_by_tags(
        TagQuery(tags=[TagValues(key="env", values=[])], matches=[TagMatch(value="PROD")])
    )
    paged = await client.vbs.query_policies_by_tags(
        TagQuery(tags=[TagValues(key="env", values=[])], limit=1, offset=1)
    )
    counted = await client.vbs.query_policies_by_tags(
        TagQuery(action=TagQueryAction.COUNT, not_tags=[TagValues(key="env", values=["prod"])])
    )

    assert [(t.key, sorted(t.values)) for t in project_tags] == [("env", ["prod", "test"])]
    assert sorted(by_env.policy_ids) == sorted([prod, test]) and by_env.total_count == 2
    assert by_name.policy_ids == [prod]
    assert by_name.resources[0].resource_name == "prod_nightly"
    assert by_name.resources[0].tags == [Tag(key="env", value="prod")]
    assert paged.total_count == 2 and len(paged.policy_ids) == 1
    assert counted.total_count == 2 and counted.resources == []  # `test` and `other`
    assert other not in by_env.policy_ids
