"""Driving the Prefect UI in a real browser (Debian's chromium, by path, through Playwright), for the tests
that look at the product as an operator does. The `page` fixture (tests/server/conftest.py) gives a fresh
headless page at 1400 px; the helpers below are the UI gestures those tests share."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS, REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
README_SHOTS = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 900}


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A page in a fresh headless chromium profile; skips the test when chromium or playwright is absent."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is absent: pip install playwright"
    )
    profile = tempfile.mkdtemp(prefix="vbsb-chromium-")
    try:
        with sync_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, viewport=VIEWPORT
            )
            context.set_default_timeout(TIMEOUT_MS)
            try:
                yield context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def open_deployment(page: Any, ui_url: str, deployment: str) -> None:
    page.goto(f"{ui_url}/deployments")
    page.get_by_role("link", name=deployment, exact=True).first.click()
    page.wait_for_url("**/deployments/deployment/**")


def open_run_menu(page: Any, ui_url: str, deployment: str, item: str) -> None:
    """The deployment's Run button, then `item` ("Quick run" or "Custom run")."""
    open_deployment(page, ui_url, deployment)
    choice = page.get_by_text(item, exact=True)
    for _attempt in range(3):  # a click on Run before the page settles may not open its menu
        page.get_by_role("button", name="Run", exact=True).click()
        try:
            choice.wait_for(timeout=5_000)
            break
        except Exception:
            page.keyboard.press("Escape")
    choice.click()


def open_custom_run(page: Any, ui_url: str, deployment: str) -> None:
    open_run_menu(page, ui_url, deployment, "Custom run")
    page.wait_for_url("**/run**")


def form_field(page: Any, label: str) -> Any:
    """A run form's field by its label (`server`, `credentials (Optional)`, ...)."""
    return page.locator(".schema-form-property").filter(
        has=page.locator(".schema-form-property__label", has_text=label)
    )


def open_block_selector(page: Any) -> Any:
    """Choose "VbsCredentials" (not "None", the worker's environment) in the credentials field and open
    its block selector; its options are then listed (a search box first)."""
    field = form_field(page, "credentials")
    field.get_by_role("button", name="VbsCredentials", exact=True).click()
    button = field.locator(".block-document-input .p-select-button__control")
    button.click()
    search = page.get_by_placeholder("Search")
    if not search.is_visible():
        button.focus()
        page.keyboard.press(" ")
    search.wait_for()
    return field


def view_new_run(page: Any, submit: str | None = "Submit") -> str:
    """Press `submit` (None: the run was already started, e.g. by Quick run), follow the toast's "View
    run" to the new run's page, and return its id. A Prefect server on SQLite under load may answer the
    create with a 503 ("Something went wrong"); a person would press Submit again, and so does this, a
    bounded number of times."""
    view_run = page.get_by_role("button", name="View run").last  # the UI renders the toast twice
    if submit is not None:
        oops = page.get_by_text("Something went wrong")
        for _attempt in range(3):
            failures = oops.count()
            page.get_by_role("button", name=submit, exact=True).click()
            deadline = time.monotonic() + TIMEOUT_MS / 1000
            while not view_run.is_visible() and oops.count() == failures and time.monotonic() < deadline:
                page.wait_for_timeout(250)  # the UI's answer, polled: a toast either way
            if view_run.is_visible():
                break
    view_run.click()
    page.wait_for_url("**/runs/flow-run/**")
    return page.url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]


def quick_run(page: Any, ui_url: str, deployment: str) -> str:
    """The deployment's Run, Quick run, then its new run's page; the run's id. A Prefect server on SQLite
    under load may refuse the create ("Something went wrong", no "View run" toast): a person would click
    Quick run again, and so does this, a bounded number of times."""
    for attempt in range(3):
        open_run_menu(page, ui_url, deployment, "Quick run")
        try:
            page.get_by_role("button", name="View run").last.wait_for(timeout=TIMEOUT_MS)
            break
        except Exception:
            if attempt == 2:
                raise
    return view_new_run(page, submit=None)


def screenshot(page: Any, name: str, *, readme: bool = False) -> None:
    """The whole page into test-artifacts/`name`; with `readme`, also into docs/screenshots/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if readme:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOTS / name)
