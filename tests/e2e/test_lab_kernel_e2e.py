"""A kernel is not a person, in a real browser (issue 22): two anonymous people
of a token-login server and a notebook's kernel with a `PresenceWidget` and a
`ChatWidget` on the lobby. Screenshots go to `test-output/lab-kernel/`."""

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


CHAT_NOTEBOOK = {
    **NOTEBOOK,
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "chat-widget",
            "metadata": {},
            "outputs": [],
            "source": [
                'from nyo_realtime_ext import ChatWidget\nChatWidget("lobby", height="200px")'
            ],
        }
    ],
}

SLOW_NOTEBOOK = {
    **NOTEBOOK,
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "once",
            "metadata": {},
            "outputs": [],
            "source": ["print('ran once')"],
        }
    ],
}

# A busy machine, made reliable: the page asks for its notebook's session (which
# starts the kernel) 8 s late, so that the notebook shows its cells long before
# it has a kernel to run them in.
SLOW_SESSIONS = """
(() => {
  const fetch = window.fetch.bind(window);
  window.fetch = (input, init) => {
    const url = typeof input === 'string' ? input : input.url;
    const method = (init && init.method) || (typeof input === 'string' ? 'GET' : input.method);
    if (/\\/api\\/sessions/.test(url) && method.toUpperCase() === 'POST') {
      return new Promise(resolve => setTimeout(resolve, 8000)).then(() => fetch(input, init));
    }
    return fetch(input, init);
  };
})();
"""

# The first message at the top of a scrolled log, as the reader sees it.
FIRST_IN_VIEW = """
log => {
  const top = log.getBoundingClientRect().top;
  const entry = [...log.querySelectorAll('.nyo-chat-entry')]
    .find(e => e.getBoundingClientRect().bottom > top + 1);
  return entry ? entry.textContent : null;
}
"""


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
        (running.root / "chat.ipynb").write_text(json.dumps(CHAT_NOTEBOOK, indent=1))
        (running.root / "slow.ipynb").write_text(json.dumps(SLOW_NOTEBOOK, indent=1))
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


def test_a_chat_widget_shows_messages_as_the_panel_does_and_follows_the_newest(
    lab: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-widget?reset"))
    # Bob's browser writes times the American way: the widget must too.
    bob = Person(browser, "bob", SHOTS, locale="en-US")
    try:
        bob.open_lab(lab.url("lab/workspaces/bob-widget?reset"))
        bob.open_file("chat.ipynb")
        run_cell(bob, 0)
        chat = cells(bob).nth(0).locator(".jp-OutputArea-output")
        log = chat.locator(".nyo-chat-widget-log")
        expect(log).to_be_visible(timeout=KERNEL_TIMEOUT)
        entries = log.locator(".nyo-chat-entry")
        bob.show_panel()
        panel = bob.page.locator("#nyo-realtime-panel .nyo-chat-entry")

        # Markdown, as in the panel: bold, a code block with its indentation.
        ada.say("**bold move** and `code`\n\n```python\nfor i in range(3):\n    print(i)\n```")
        for where in (entries, panel):
            entry = where.filter(has_text="bold move")
            expect(entry.locator("strong")).to_have_text("bold move", timeout=KERNEL_TIMEOUT)
            expect(entry.locator("code").first).to_have_text("code")
            code = entry.locator("pre")
            expect(code).to_have_count(1)
            assert "for i in range(3):\n    print(i)" in code.inner_text()
            expect(entry).not_to_contain_text("**")
            expect(entry).not_to_contain_text("```")

        # The time in the browser's locale: what the panel shows for that message.
        widget_time = entries.filter(has_text="bold move").locator("time")
        panel_time = panel.filter(has_text="bold move").locator(".nyo-chat-time")
        expect(widget_time).to_have_text(re.compile(r"^\d{1,2}:\d{2}\s(AM|PM)$"))
        expect(widget_time).to_have_text(panel_time.inner_text())

        # Sanitised: nothing in a message runs, in the widget or the panel.
        ada.say(
            '<img src="x" onerror="window.__nyoPwned = \'img\'">'
            "<script>window.__nyoPwned = 'script'</script>"
            " [a link](javascript:window.__nyoPwned='link') hostile end"
        )
        hostile = entries.filter(has_text="hostile end")
        expect(hostile).to_have_count(1, timeout=KERNEL_TIMEOUT)
        expect(panel.filter(has_text="hostile end")).to_have_count(1, timeout=SEEN_TIMEOUT)
        for entry in (hostile, panel.filter(has_text="hostile end")):
            # A script goes whole, its content too, as JupyterLab's sanitiser does.
            expect(entry).not_to_contain_text("__nyoPwned")
            expect(entry.locator("script, [onerror]")).to_have_count(0)
            expect(entry.locator('a[href^="javascript"]')).to_have_count(0)
            # The image is tried (and fails: there is no "x"), so an onerror would have run.
            for image in entry.locator("img").all():
                image.evaluate("img => img.decode().catch(() => null)")
        hostile.get_by_text("a link").click()
        assert bob.page.evaluate("window.__nyoPwned") is None

        # More than the log holds: the newest is wholly in view after each one.
        for n in range(8):
            ada.say(f"filler {n}\n\n```python\nvalue = {n}\nprint(value)\n```")
            expect(entries.last).to_contain_text(f"filler {n}", timeout=KERNEL_TIMEOUT)
            expect(entries.last).to_be_in_viewport(ratio=0.99, timeout=SEEN_TIMEOUT)
        expect(entries.filter(has_text="bold move")).not_to_be_in_viewport()
        bob.shot("03-bobs-chat-widget-follows-the-newest-message")

        # Scrolled up to read: a new message leaves the reader where they are.
        top = log.evaluate("node => (node.scrollTop = node.scrollHeight - node.clientHeight - 250)")
        expect(entries.last).not_to_be_in_viewport()
        reading = log.evaluate(FIRST_IN_VIEW)
        ada.say("while bob reads back")
        expect(entries.last).to_contain_text("while bob reads back", timeout=KERNEL_TIMEOUT)
        expect(entries.last).not_to_be_in_viewport()
        assert log.evaluate("node => node.scrollTop") == top
        assert log.evaluate(FIRST_IN_VIEW) == reading
        bob.shot("04-bob-reads-back-in-the-chat-widget")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
        shut_down_kernels(lab)


def test_a_cell_run_while_the_kernel_starts_waits_for_it_and_runs_once(
    lab: LabServer, browser: Browser
) -> None:
    """run_cell (tests/support/lab_e2e.py) on a kernel that starts slowly: it waits
    for the notebook's kernel indicator, as a person would, rather than press
    Shift+Enter while JupyterLab has no kernel to run the cell in."""
    ada = Person(browser, "ada", SHOTS)
    ada.context.add_init_script(SLOW_SESSIONS)
    try:
        ada.open_lab(lab.url("lab/workspaces/ada-slow?reset"))
        ada.open_file("slow.ipynb")
        run_cell(ada, 0)
        cell = cells(ada).nth(0)
        expect(cell.locator(".jp-OutputArea-output")).to_have_text(
            "ran once", timeout=KERNEL_TIMEOUT
        )
        # Once: the first run in a new kernel.
        expect(cell.locator(".jp-InputArea-prompt")).to_have_text("[1]:")
        assert ada.dialogs == [] and ada.errors == []
    finally:
        ada.close()
        shut_down_kernels(lab)
