"""Shared state in a real browser (issue 20): two people, each in their own notebook
on one JupyterLab, with a `link`ed slider and a `PollWidget`. Bob drags his slider
and Ada's follows on her screen; each votes and both see the counts. Screenshots go
to `test-output/lab-state/`."""

from __future__ import annotations

import json
import re
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

SHOTS = REPO / "test-output" / "lab-state"

SOURCE = (
    "import ipywidgets as widgets, nyo_realtime_ext as rt\n"
    "slider = widgets.IntSlider(value=10, min=0, max=100, description='shared')\n"
    "linked = rt.link(slider, 'lab:state', key='slider')\n"
    "poll = rt.PollWidget('lab:state', 'Which colour?', ['blue', 'green'])\n"
    "display(slider, poll)"
)
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "linked",
            "metadata": {},
            "outputs": [],
            "source": [SOURCE],
        }
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
    for running in start_lab(tmp_path_factory.mktemp("state")):
        for name in ("ada.ipynb", "bob.ipynb"):
            (running.root / name).write_text(json.dumps(NOTEBOOK, indent=1))
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser(SHOTS)


def open_and_run(person: Person, notebook: str) -> None:
    person.open_file(notebook)
    idle = person.page.locator(".jp-StatusBar-Widget", has_text="| Idle")
    expect(idle).to_be_visible(timeout=KERNEL_TIMEOUT)
    run_cell(person, 0)
    expect(readout(person)).to_be_visible(timeout=KERNEL_TIMEOUT)


def output(person: Person):  # noqa: ANN201 - a Playwright locator
    return cells(person).nth(0).locator(".jp-OutputArea")


def readout(person: Person):  # noqa: ANN201
    return output(person).locator(".widget-readout").first


def test_bob_drags_the_slider_and_adas_follows_and_both_see_the_poll(
    lab: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-state?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-state?reset"))
    try:
        open_and_run(ada, "ada.ipynb")
        open_and_run(bob, "bob.ipynb")
        expect(readout(ada)).to_have_text("10")
        expect(readout(bob)).to_have_text("10")  # a late link starts from the value

        # Bob drags his slider's handle to the right, as a person does.
        handle = output(bob).locator(".noUi-handle").first
        box = handle.bounding_box()
        assert box is not None
        bob.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        bob.page.mouse.down()
        for step in range(1, 11):
            bob.page.mouse.move(
                box["x"] + box["width"] / 2 + 6 * step, box["y"] + box["height"] / 2
            )
        bob.page.mouse.up()
        dragged = readout(bob).inner_text()
        assert dragged != "10"
        expect(readout(ada)).to_have_text(dragged, timeout=SEEN_TIMEOUT)
        ada.shot("01-ada-follows-bobs-drag")
        bob.shot("02-bob-dragged")

        # Each votes; both see both votes.
        output(ada).get_by_role("button", name=re.compile(r"^blue")).click()
        output(bob).get_by_role("button", name=re.compile(r"^green")).click()
        for person in (ada, bob):
            expect(output(person).get_by_role("button", name="blue: 1")).to_be_visible(
                timeout=SEEN_TIMEOUT
            )
            expect(output(person).get_by_role("button", name="green: 1")).to_be_visible(
                timeout=SEEN_TIMEOUT
            )
            expect(output(person)).to_contain_text("(2 votes)")
        ada.shot("03-ada-sees-both-votes")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
        shut_down_kernels(lab)
