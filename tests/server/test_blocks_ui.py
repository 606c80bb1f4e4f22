"""In a real browser (Debian's chromium driven by Playwright): the `credentials` field of a run form is
Prefect's block selector and offers the block `vbs-backup blocks register` saved; a run started with the
block picked there signs in with it; the block's page labels its cloud "Cloud", shows the product's
description and an example that loads the block from its real module. Screenshots in test-artifacts/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .browser import open_block_selector, open_custom_run, view_new_run
from .conftest import ARTIFACTS, register_block

pytestmark = pytest.mark.server

BLOCK = "vbs-emulator"


@pytest.fixture(scope="module")
def block(prefect_server, cloud) -> dict[str, Any]:
    return register_block(prefect_server, cloud, BLOCK, iam_user=True)


def test_the_run_form_s_credentials_field_offers_the_registered_block(page, prefect_server, served, block):
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        open_custom_run(page, prefect_server.ui_url, "backup-server")
        field = open_block_selector(page)
        # "VbsCredentials" (the other choice, None, is the worker's environment) is Prefect's block
        # selector, showing the block type's logo, listing every saved VBS Credentials block.
        assert field.locator(".block-document-input img[src^='https://']").count() == 1
        page.get_by_text(BLOCK, exact=True).wait_for()
        listed = page.locator(".p-select-options, [role=listbox]").last.inner_text().split("\n")
        assert {"None", BLOCK} <= {line.strip() for line in listed}, listed
        page.screenshot(path=str(ARTIFACTS / "ui-credentials-selector.png"), full_page=True)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "ui-credentials-selector-failed.png"), full_page=True)
        raise


def test_a_run_started_with_the_block_picked_in_the_form_signs_in_with_it(
    page, prefect_server, served, cloud, block
):
    ARTIFACTS.mkdir(exist_ok=True)
    cloud.control("DELETE", "/requests")
    try:
        open_custom_run(page, prefect_server.ui_url, "policy-audit")
        field = open_block_selector(page)
        page.get_by_text(BLOCK, exact=True).click()
        field.get_by_text(BLOCK, exact=True).wait_for()  # the selector shows the block picked
        page.screenshot(path=str(ARTIFACTS / "ui-credentials-picked.png"), full_page=True)
        flow_run_id = view_new_run(page)
        final = prefect_server.wait_final(flow_run_id)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "ui-credentials-run-failed.png"), full_page=True)
        raise

    assert final["parameters"]["credentials"] == {"$ref": {"block_document_id": block["id"]}}
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    operations = [entry["operation"] for entry in cloud.control("GET", "/requests").json()]
    assert "iam.create_token" in operations


def test_the_block_s_page_reads_cloud_and_shows_how_this_product_uses_it(page, prefect_server, block):
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.goto(f"{prefect_server.ui_url}/blocks/block/{block['id']}")
        snippet = page.locator(".block-type-snippet")
        snippet.wait_for()
        code = snippet.inner_text()
        assert "from vbs_backup.tasks.credentials import VbsCredentials" in code
        assert f'VbsCredentials.load("{BLOCK}")' in code
        assert "vbs-backup blocks register" in code and "`credentials` parameter" in code
        page.get_by_text("Cloud", exact=True).first.wait_for()
        assert page.get_by_text("CloudName").count() == 0
        page.get_by_text("VBS Credentials", exact=True).first.wait_for()  # the block type's card
        assert page.locator("img[src^='https://']").count() >= 1  # its logo
        page.screenshot(path=str(ARTIFACTS / "ui-credentials-block.png"), full_page=True)

        # The form that creates one: the cloud is a choice of three, labelled "Cloud".
        page.goto(f"{prefect_server.ui_url}/blocks/catalog/vbs-credentials/create")
        cloud_field = page.locator(".p-label").filter(
            has=page.get_by_text(re.compile(r"^Cloud( \(Optional\))?$"))
        )
        cloud_field.first.wait_for()
        assert page.get_by_text("CloudName").count() == 0
        select = cloud_field.first.locator(".p-select-button__control")
        select.click()
        if not page.get_by_role("option").first.is_visible():
            select.focus()
            page.keyboard.press(" ")
        page.get_by_role("option").first.wait_for()
        options = [text.strip() for text in page.get_by_role("option").all_inner_texts()]
        assert [o for o in options if o] == ["huaweicloud", "flexibleengine", "otc"], options
        page.screenshot(path=str(ARTIFACTS / "ui-credentials-block-form.png"), full_page=True)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "ui-credentials-block-failed.png"), full_page=True)
        raise
