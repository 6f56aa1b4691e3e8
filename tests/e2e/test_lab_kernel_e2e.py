"""A kernel is not a person, in a real browser (issue 22): two anonymous people
of a token-login server and a notebook's kernel with a `PresenceWidget` and a
`ChatWidget` on the lobby. Screenshots go to `test-output/lab-kernel/`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ..support.lab_e2e import (
    CHROMIUM,
    KERNEL_TIMEOUT,
    REPO,
    SEEN_TIMEOUT,
    LabServer,
    Person,
    cells,
    launch_browser,
    run_cell,
    shut_down_kernels,
    start_lab,
)

if CHROMIUM.exists():
    from playwright.sync_api import Browser, expect

pytestmark = pytest.mark.timeout(300)

SHOTS = REPO / "test-output" / "lab-kernel"
KERNEL_NAME = "demo.ipynb's kernel"

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": cell_id,
            "metadata": {},
            "outputs": [],
            "source": [source],
        }
        for cell_id, source in (
            (
                "presence",
                'from nyo_realtime_ext import ChatWidget, PresenceWidget\nPresenceWidget("lobby")',
            ),
            ("chat", 'ChatWidget("lobby")'),
        )
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
def jp_asyncio_loop() -> None:
    """No pytest-jupyter loop: Playwright's sync API runs its own (see lab_e2e)."""


@pytest.fixture
def jp_server_cleanup() -> None:
    """No in-process Jupyter server to clean up."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    for running in start_lab(tmp_path_factory.mktemp("kernel")):
        (running.root / "demo.ipynb").write_text(json.dumps(NOTEBOOK, indent=1))
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser(SHOTS)


def test_the_kernel_is_listed_as_a_kernel_and_never_counted(
    lab: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-kernel?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-kernel?reset"))
    try:
        bob.open_file("demo.ipynb")
        run_cell(bob, 0)  # once the notebook's kernel indicator says it is there
        presence = cells(bob).nth(0).locator(".jp-OutputArea-output")
        expect(presence).to_contain_text(KERNEL_NAME, timeout=KERNEL_TIMEOUT)
        expect(presence).to_contain_text(ada.name, timeout=KERNEL_TIMEOUT)
        # Two people and a kernel: the counts say people.
        expect(presence).to_contain_text("2 people here · 1 kernel")
        expect(presence.locator(".nyo-widget-kernel")).to_contain_text("(kernel)")
        expect(presence).not_to_contain_text("(you)")
        expect(presence.locator(".nyo-widget-person")).to_have_count(2)

        for person in (ada, bob):
            person.show_panel()
            kernel = person.page.locator("#nyo-realtime-panel .nyo-kernels li.nyo-kernel")
            expect(kernel.locator(".nyo-person-name")).to_have_text(
                KERNEL_NAME, timeout=SEEN_TIMEOUT
            )
            expect(person.page.locator("#nyo-realtime-panel .nyo-people > li")).to_have_count(2)
            expect(person.page.locator(".nyo-statusbar .nyo-count")).to_have_text("2 here")
        ada.shot("01-ada-sees-two-people-and-a-kernel")

        # Bob types into the kernel's ChatWidget: the message is his, not the kernel's.
        run_cell(bob, 1)
        chat = cells(bob).nth(1).locator(".jp-OutputArea-output")
        box = chat.locator(".nyo-chat-box input")
        expect(box).to_be_visible(timeout=KERNEL_TIMEOUT)
        box.fill("typed by Bob")
        box.press("Enter")
        expect(box).to_have_value("")
        entry = ada.page.locator("#nyo-realtime-panel .nyo-chat-entry", has_text="typed by Bob")
        expect(entry.locator(".nyo-chat-author")).to_have_text(bob.name, timeout=SEEN_TIMEOUT)
        line = chat.locator(".nyo-chat-entry", has_text="typed by Bob")
        expect(line.locator("b")).to_have_text(bob.name, timeout=KERNEL_TIMEOUT)
        bob.shot("02-bob-typed-into-the-kernels-chat-widget")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
        shut_down_kernels(lab)
