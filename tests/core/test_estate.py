"""The estate file (vbs_backup/estate.py): targets with their plans, read and checked as a whole before
anything runs; every problem is one line naming where it is, as a plan's are."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vbs_backup.cloud.endpoints import CloudName
from vbs_backup.estate import EstateError, UnknownTargetError, load_estate, validate_estate

PROJECT_A = "0123456789abcdef0123456789abcdef"
PROJECT_B = "fedcba9876543210fedcba9876543210"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def estate_file(tmp_path: Path) -> Path:
    _write(
        tmp_path / "plans" / "nightly.yaml",
        """
        name: nightly
        selection: {tags: {backup: nightly}}
        schedule_timezone: UTC
        retention: {keep_daily: 7, keep_weekly: 4}
        """,
    )
    return _write(
        tmp_path / "estate.yaml",
        f"""
        name: acme
        targets:
          - cloud: huaweicloud
            region: eu-west-101
            project_id: {PROJECT_A}
            credentials: hwc-prod
            plans:
              - file: plans/nightly.yaml
              - name: db
                selection: {{name_patterns: ["db-*"]}}
            schedule_timezone: Europe/Paris
            retention: {{keep_daily: 14}}
          - name: otc-de
            cloud: otc
            region: eu-de
            project_id: {PROJECT_B}
            credentials: otc-prod
            account: otc-acme
            plans: [{{file: plans/nightly.yaml}}]
        """,
    )


def test_an_estate_reads_its_targets_and_their_plans_with_the_targets_overrides(estate_file):
    estate = load_estate(estate_file)

    first, second = estate.targets
    assert (estate.name, first.name, first.cloud) == (
        "acme",
        "huaweicloud-eu-west-101-01234567",
        "huaweicloud",
    )
    assert first.account == "hwc-prod"  # by default, the targets of one credentials block share a budget
    assert [p.name for p in first.plans] == ["nightly", "db"]
    nightly = first.plans[0]
    # The target's overrides win over the plan file, retention rule by rule.
    assert nightly.schedule_timezone == "Europe/Paris"
    assert (nightly.retention.keep_daily, nightly.retention.keep_weekly) == (14, 4)
    assert (second.name, second.cloud, second.account) == ("otc-de", CloudName.otc, "otc-acme")
    assert second.plans[0].schedule_timezone == "UTC"  # no override there
    assert estate.target("otc-de") is second


def test_every_problem_of_the_estate_and_of_its_plans_is_one_line_naming_where(tmp_path):
    data = {
        "name": "Acme Corp",
        "targets": [
            {
                "cloud": "aws",
                "region": "EU West",
                "project_id": "0123",
                "credentials": "hwc-prod",
                "plans": [{"file": "missing.yaml"}, {"name": "db"}],
                "colour": "blue",
            }
        ],
    }

    with pytest.raises(EstateError) as caught:
        validate_estate(data, source="in estate.yaml", base=tmp_path)

    problems = caught.value.problems
    assert any(p.startswith("targets.0.plans.0 (") and "cannot read" in p for p in problems)
    assert any(p.startswith("targets.0.plans.1: selection:") for p in problems)  # the plan's own words
    for field in ("name", "targets.0.cloud", "targets.0.region", "targets.0.project_id", "targets.0.colour"):
        assert any(p.startswith(f"{field}:") for p in problems), (field, problems)
    assert not any(p.startswith("targets.0.plans:") for p in problems)  # no "too short" on top of the why
    assert str(caught.value).startswith("Invalid estate in estate.yaml:\n  - ")


def test_one_plan_name_in_one_project_has_one_owner(estate_file, tmp_path):
    # A backup's identity is (plan, volume, slot) within a project: two targets applying plan `nightly` to
    # the same project would take each other's backups for their own.
    text = estate_file.read_text().replace(PROJECT_B, PROJECT_A)
    clash = _write(tmp_path / "clash.yaml", text)

    with pytest.raises(EstateError) as caught:
        load_estate(clash)

    assert caught.value.problems == [
        f"otc-de.plans: plan nightly is also applied to project {PROJECT_A} by huaweicloud-eu-west-101-"
        "01234567 (a backup's identity is its plan, volume and slot: one owner each)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "(estate): expected a mapping with name and targets, got empty"),
        ("- a\n- b\n", "(estate): expected a mapping with name and targets, got a list"),
        ("name: [unclosed\n", "(file): not valid YAML"),
        ("name: acme\ntargets: []\n", "targets: Tuple should have at least 1 item"),
    ],
)
def test_a_file_that_is_not_an_estate_says_so_in_one_line(tmp_path, text, expected):
    path = _write(tmp_path / "estate.yaml", text)

    with pytest.raises(EstateError) as caught:
        load_estate(path)

    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(expected)


def test_two_targets_of_one_name_are_refused(estate_file, tmp_path):
    text = estate_file.read_text().replace("- name: otc-de", "- name: huaweicloud-eu-west-101-01234567")

    with pytest.raises(EstateError) as caught:
        load_estate(_write(tmp_path / "twice.yaml", text))

    assert "targets: two targets are named huaweicloud-eu-west-101-01234567" in caught.value.problems


def test_a_run_chooses_targets_by_name_every_one_by_default(estate_file):
    estate = load_estate(estate_file)
    first, second = estate.targets
    assert estate.choose(None) == estate.choose([]) == [first, second]
    assert estate.choose([second.name, first.name, second.name]) == [first, second]  # the estate's order
    assert estate.choose(["otc-de"]) == [second]
    with pytest.raises(UnknownTargetError) as raised:
        estate.choose(["gamma", "otc-de", "delta"])
    assert str(raised.value) == (
        "estate acme has no target gamma, delta (its targets: huaweicloud-eu-west-101-01234567, otc-de)"
    )
