"""Working together in a notebook, in a real browser: where each person is (the
cell they have active), who ran which cell, names and colours, and the chat.

Two browser contexts are two people (see `lab_e2e`); screenshots go to
`test-output/lab-collab/`.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..support.lab_e2e import (
    ACTIVE,
    CHROMIUM,
    KERNEL_TIMEOUT,
    LOAD_TIMEOUT,
    REPO,
    SEEN_TIMEOUT,
    LabServer,
    Person,
    cells,
    click_cell,
    doc_badge,
    launch_browser,
    lobby_avatar,
    panel_entry,
    run_cell,
    shut_down_kernels,
    start_lab,
)

if CHROMIUM.exists():
    from playwright.sync_api import Browser, expect

pytestmark = pytest.mark.timeout(300)

SHOTS = REPO / "test-output" / "lab-collab"

# Cell ids in the file (nbformat 4.5): every page finds the same cell by id.
COLLAB = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"cell-{n}",
            "metadata": {},
            "outputs": [],
            "source": [source],
        }
        for n, source in enumerate(
            ["first = 1", "print('ran by ada')", "third = 3", "fourth = 4"], start=1
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


def _with_notebook(server: Iterator[LabServer]) -> Iterator[LabServer]:
    for running in server:
        # One copy per test: a notebook a test ran and saved would make the next
        # test's pages ask "File Changed: overwrite or revert?".
        for name in ("cells", "fast", "ran", "rename", "collab"):
            (running.root / f"{name}.ipynb").write_text(json.dumps(COLLAB, indent=1))
        yield running


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    yield from _with_notebook(start_lab(tmp_path_factory.mktemp("collab")))


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    yield from _with_notebook(start_lab(tmp_path_factory.mktemp("collab7"), app="notebook"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser(SHOTS)


def avatar_on_cell(person: Person, index: int, other: Person) -> Any:
    return (
        cells(person)
        .nth(index)
        .locator(f'.nyo-cell-marks .nyo-cell-presence .nyo-avatar[data-user-id="{other.user_id}"]')
    )


def all_avatars_of(person: Person, other: Person) -> Any:
    return person.page.locator(
        f'.jp-NotebookPanel:visible .nyo-cell-presence .nyo-avatar[data-user-id="{other.user_id}"]'
    )


def open_both(ada: Person, bob: Person, name: str) -> None:
    ada.open_file(name)
    bob.open_file(name)
    expect(
        doc_badge(bob, name).locator(f'.nyo-avatar[data-user-id="{ada.user_id}"]')
    ).to_be_visible(timeout=SEEN_TIMEOUT)


def test_others_see_which_cell_i_am_on_and_can_go_there(lab: LabServer, browser: Browser) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-cells?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-cells?reset"))
    try:
        open_both(ada, bob, "cells.ipynb")

        # Ada clicks into cell 1: Bob sees her avatar there, and only there.
        click_cell(ada, 0)
        expect(avatar_on_cell(bob, 0, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        expect(all_avatars_of(bob, ada)).to_have_count(1)
        bob.shot("01-bob-sees-ada-on-cell-1")

        # She moves to cell 3: the mark moves with her.
        click_cell(ada, 2)
        expect(avatar_on_cell(bob, 2, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        expect(avatar_on_cell(bob, 0, ada)).to_have_count(0)
        expect(all_avatars_of(bob, ada)).to_have_count(1)
        # The cell carries a bar in her colour, the same colour as her avatar.
        color = avatar_on_cell(bob, 2, ada).evaluate("n => getComputedStyle(n).backgroundColor")
        bar = cells(bob).nth(2).evaluate("n => getComputedStyle(n).boxShadow")
        assert color in bar, (color, bar)
        bob.shot("02-bob-sees-ada-move-to-cell-3")

        # Bob's panel says where Ada is; a click takes him to that cell.
        click_cell(bob, 0)
        bob.show_panel()
        where = panel_entry(bob, ada).locator("a.nyo-person-cell")
        expect(where).to_have_text("cells.ipynb, cell 3: third = 3", timeout=SEEN_TIMEOUT)
        bob.shot("03-bob-panel-says-where-ada-is")
        where.click()
        expect(cells(bob).nth(2)).to_have_class(ACTIVE, timeout=SEEN_TIMEOUT)
        expect(cells(bob).nth(0)).not_to_have_class(ACTIVE)
        expect(cells(bob).nth(2)).to_be_in_viewport()
        # ...and Ada now sees Bob on cell 3 beside her.
        expect(avatar_on_cell(ada, 2, bob)).to_be_visible(timeout=SEEN_TIMEOUT)
        ada.shot("04-ada-sees-bob-join-her-on-cell-3")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


def test_moving_fast_through_cells_sends_few_updates(lab: LabServer, browser: Browser) -> None:
    """Arrow keys through the cells, fifteen moves: Bob sees where Ada stops, and
    her page sent a few presence updates for it, not one per move."""
    ada = Person(browser, "ada", SHOTS)
    sent: list[tuple[float, dict[str, Any]]] = []

    def on_socket(ws: Any) -> None:
        if "nyo-realtime/ws" in ws.url:
            ws.on("framesent", lambda payload: sent.append((time.monotonic(), json.loads(payload))))

    ada.page.on("websocket", on_socket)
    ada.open_lab(lab.url("lab/workspaces/ada-fast?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-fast?reset"))
    try:
        open_both(ada, bob, "fast.ipynb")
        click_cell(ada, 0)
        expect(avatar_on_cell(bob, 0, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        ada.page.keyboard.press("Escape")  # command mode: arrows move between cells
        time.sleep(1)  # let the last update go before counting
        start = time.monotonic()
        moves = ["ArrowDown"] * 3 + ["ArrowUp"] * 3 + ["ArrowDown"] * 3 + ["ArrowUp"] * 3
        moves += ["ArrowDown"] * 3
        for key in moves:
            ada.page.keyboard.press(key)
        elapsed = time.monotonic() - start
        expect(avatar_on_cell(bob, 3, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        expect(all_avatars_of(bob, ada)).to_have_count(1)
        time.sleep(1)  # anything still waiting has gone by now
        updates = [
            at
            for at, frame in sent
            if at >= start
            and frame.get("type") == "presence"
            and str(frame.get("channel", "")).startswith("presence-doc")
            and "cell" in (frame.get("meta") or {})
        ]
        # At most four a second, plus the last one at the end of its window.
        assert 1 <= len(updates) <= 4 * elapsed + 2, (len(updates), elapsed)
        assert len(updates) < len(moves), (len(updates), elapsed)
        bob.shot("05-bob-sees-where-ada-stopped")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


def ran_mark(person: Person, index: int) -> Any:
    return cells(person).nth(index).locator(".nyo-cell-marks .nyo-cell-ran")


def test_others_see_who_ran_which_cell_also_after_a_reload(
    lab: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-ran?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-ran?reset"))
    try:
        open_both(ada, bob, "ran.ipynb")
        expect(ran_mark(bob, 1)).to_have_count(0)

        # Ada runs cell 2 in her kernel.
        run_cell(ada, 1)
        expect(cells(ada).nth(1).locator(".jp-OutputArea-output")).to_have_text(
            "ran by ada", timeout=KERNEL_TIMEOUT
        )

        # Bob sees on that cell, and only that one, that Ada ran it.
        mark = ran_mark(bob, 1)
        expect(mark).to_have_attribute("data-user-id", ada.user_id, timeout=SEEN_TIMEOUT)
        expect(mark).to_contain_text(ada.name)
        expect(mark).to_have_attribute(
            "title", re.compile(f"^Last run by {re.escape(ada.name)} at ")
        )
        for other in (0, 2, 3):
            expect(ran_mark(bob, other)).to_have_count(0)
        # ...and a line in the notebook's activity list in his panel.
        bob.show_panel()
        line = bob.page.locator(
            '#nyo-realtime-panel .nyo-activity-document[data-path="ran.ipynb"] .nyo-activity-entry'
        )
        expect(line).to_have_count(1, timeout=SEEN_TIMEOUT)
        expect(line).to_have_attribute("data-user-id", ada.user_id)
        expect(line.locator("a")).to_have_text(f"{ada.name} ran cell 2print('ran by ada')")
        bob.shot("06-bob-sees-that-ada-ran-cell-2")

        # After a reload, the history the server keeps brings it back.
        bob.page.goto(lab.url("lab/workspaces/bob-ran-again?reset"))
        bob.page.wait_for_selector(".nyo-statusbar .nyo-avatar", timeout=LOAD_TIMEOUT)
        bob.open_file("ran.ipynb")
        expect(ran_mark(bob, 1)).to_have_attribute(
            "data-user-id", ada.user_id, timeout=SEEN_TIMEOUT
        )
        expect(ran_mark(bob, 1)).to_contain_text(ada.name)
        bob.show_panel()
        expect(line).to_have_count(1, timeout=SEEN_TIMEOUT)
        bob.shot("07-bob-after-a-reload-still-sees-who-ran-it")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
        shut_down_kernels(lab)


WIDGET_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "presence-widget",
            "metadata": {},
            "outputs": [],
            "source": [
                "from nyo_realtime_ext import connect\n",
                "from nyo_realtime_ext.widgets import PresenceWidget\n",
                "client = connect()\n",
                "client.connect(timeout=30)\n",
                'PresenceWidget("lobby", client=client)',
            ],
        }
    ],
    "metadata": COLLAB["metadata"],
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_a_new_name_and_colour_show_everywhere_at_once(lab: LabServer, browser: Browser) -> None:
    (lab.root / "widget.ipynb").write_text(json.dumps(WIDGET_NOTEBOOK, indent=1))
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-name?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-name?reset"))
    try:
        open_both(ada, bob, "rename.ipynb")
        click_cell(ada, 0)
        expect(avatar_on_cell(bob, 0, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        ada.say("Before the rename")

        # Bob's kernel shows the lobby with a PresenceWidget of its own.
        bob.open_file("widget.ipynb")
        run_cell(bob, 0)
        widget = cells(bob).nth(0).locator(".jp-OutputArea-output")
        expect(widget).to_contain_text(ada.name, timeout=KERNEL_TIMEOUT)

        # Ada picks a name and a colour in her panel.
        ada.show_panel()
        ada.page.locator("#nyo-realtime-panel .nyo-profile-edit").click()
        form = ada.page.locator("#nyo-realtime-panel .nyo-profile-form")
        expect(form.locator(".nyo-profile-name")).to_have_value(ada.name)
        form.locator(".nyo-profile-own-color").check()
        form.locator(".nyo-profile-color").fill("#aa3377")
        form.locator(".nyo-profile-name").fill("Ada Lovelace")
        form.get_by_role("button", name="Save").click()
        expect(form).to_have_count(0, timeout=SEEN_TIMEOUT)
        expect(ada.page.locator("#nyo-realtime-panel .nyo-me-name")).to_have_text(
            "You are Ada Lovelace", timeout=SEEN_TIMEOUT
        )

        # Bob sees it, live: the panel, the status bar, the document, the chat, the kernel.
        bob.show_panel()
        expect(panel_entry(bob, ada).locator(".nyo-person-name")).to_have_text(
            "Ada Lovelace", timeout=SEEN_TIMEOUT
        )
        bob_bar = bob.page.locator(f'.nyo-statusbar .nyo-avatar[data-user-id="{ada.user_id}"]')
        expect(bob_bar).to_have_text("AL")
        expect(bob_bar).to_have_css("background-color", "rgb(170, 51, 119)")
        expect(bob_bar).to_have_attribute("title", f"Ada Lovelace ({ada.user_id}) — Online")
        bob.page.locator(".lm-TabBar-tab", has_text="rename.ipynb").click()
        on_doc = doc_badge(bob, "rename.ipynb").locator(
            f'.nyo-avatar[data-user-id="{ada.user_id}"]'
        )
        expect(on_doc).to_have_text("AL", timeout=SEEN_TIMEOUT)
        expect(on_doc).to_have_css("background-color", "rgb(170, 51, 119)")
        expect(avatar_on_cell(bob, 0, ada)).to_have_text("AL")
        chat = bob.page.locator("#nyo-realtime-panel .nyo-chat-entry")
        expect(chat.locator(".nyo-chat-author")).to_have_text(["Ada Lovelace"])
        expect(chat.locator(".nyo-avatar")).to_have_css("background-color", "rgb(170, 51, 119)")
        bob.shot("08-bob-sees-ada-renamed-in-panel-document-and-chat")
        bob.page.locator(".lm-TabBar-tab", has_text="widget.ipynb").click()
        expect(widget).to_contain_text("Ada Lovelace", timeout=KERNEL_TIMEOUT)
        expect(widget).not_to_contain_text(ada.name)
        bob.shot("09-bob-sees-ada-renamed-in-the-kernels-presence-widget")

        # Clearing goes back to the login's name and the colour of her id.
        ada.page.locator("#nyo-realtime-panel .nyo-profile-edit").click()
        expect(form.locator(".nyo-profile-name")).to_have_value("Ada Lovelace")
        form.locator(".nyo-profile-name").fill("")
        form.locator(".nyo-profile-own-color").uncheck()
        form.get_by_role("button", name="Save").click()
        expect(panel_entry(bob, ada).locator(".nyo-person-name")).to_have_text(
            ada.name, timeout=SEEN_TIMEOUT
        )
        expect(widget).to_contain_text(ada.name, timeout=KERNEL_TIMEOUT)
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
        shut_down_kernels(lab)


def test_a_refused_name_shows_the_servers_reason(lab: LabServer, browser: Browser) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-bad?reset"))
    try:
        ada.show_panel()
        ada.page.locator("#nyo-realtime-panel .nyo-profile-edit").click()
        form = ada.page.locator("#nyo-realtime-panel .nyo-profile-form")
        expect(form.locator(".nyo-profile-name")).to_have_value(ada.name)
        form.locator(".nyo-profile-name").fill("x" * 500)
        form.get_by_role("button", name="Save").click()
        expect(form.locator(".nyo-profile-error")).to_contain_text(
            "`name` must be", timeout=SEEN_TIMEOUT
        )
        # Still open, nothing changed.
        expect(ada.page.locator("#nyo-realtime-panel .nyo-me-name")).to_have_text(
            f"You are {ada.name}"
        )
        ada.shot("10-ada-sees-why-her-name-was-refused")
    finally:
        ada.close()


def chat_entries(person: Person) -> Any:
    return person.page.locator("#nyo-realtime-panel .nyo-chat-entry")


def test_chat_renders_markdown_and_nothing_that_can_act(lab: LabServer, browser: Browser) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-md?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-md?reset"))
    try:
        bob.show_panel()
        before = chat_entries(bob).count()
        ada.say("This is **bold** and `inline`\n\n```python\nimport os\nprint(os.sep)\n```")
        entry = chat_entries(bob).nth(before)
        expect(entry.locator(".nyo-chat-text strong")).to_have_text("bold", timeout=SEEN_TIMEOUT)
        expect(entry.locator(".nyo-chat-text p code")).to_have_text("inline")
        block = entry.locator(".nyo-chat-text pre")
        expect(block).to_contain_text("import os")
        # Highlighted: the keyword is a span of its own, as in a Markdown cell.
        expect(block.locator("span", has_text=re.compile(r"^import$")).first).to_be_visible()
        bob.shot("11-bob-reads-markdown-with-a-highlighted-code-block")

        # What could act, in every way Markdown lets one write it.
        ada.say('<img src=x onerror="window.__nyoPwned = 1">')
        ada.say("<script>window.__nyoPwned = 2</script>")
        ada.say('<a href="javascript:window.__nyoPwned = 3" id="nyo-bad-link">click me</a>')
        ada.say("[also me](javascript:window.__nyoPwned=4)")
        expect(chat_entries(bob)).to_have_count(before + 5, timeout=SEEN_TIMEOUT)
        for link in (bob.page.get_by_text("click me"), bob.page.get_by_text("also me")):
            if link.count():
                link.first.click()
        bob.page.wait_for_timeout(1000)  # what an onerror would do, it would have done now
        assert bob.page.evaluate("window.__nyoPwned") is None
        panel = bob.page.locator("#nyo-realtime-panel")
        expect(panel.locator("[onerror]")).to_have_count(0)
        expect(panel.locator(".nyo-chat-text script")).to_have_count(0)
        expect(panel.locator('.nyo-chat-text [href^="javascript"]')).to_have_count(0)
        bob.shot("12-bob-sees-harmless-html")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


def test_a_mention_notifies_and_unread_messages_are_counted(
    lab: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-at?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-at?reset"))
    try:
        # Bob looks at his files, not the chat.
        bob.show_files()
        tab = bob.page.locator('.jp-SideBar .lm-TabBar-tab[data-id="nyo-realtime-panel"]')
        expect(tab).not_to_have_attribute("data-nyo-unread", re.compile("."))

        ada.say("Anyone around?")
        expect(tab).to_have_attribute("data-nyo-unread", "1", timeout=SEEN_TIMEOUT)
        badge = tab.evaluate("n => getComputedStyle(n, '::after').content")
        assert badge == '"1"', badge

        # Ada types @ and the start of Bob's name: his full name is offered.
        ada.show_panel()
        box = ada.page.locator("#nyo-realtime-panel .nyo-chat-input")
        box.click()
        box.press_sequentially(f"Look @{bob.name[:-2]}")
        offer = ada.page.locator(f'.nyo-mention-list .nyo-mention[data-user-id="{bob.user_id}"]')
        expect(offer).to_have_text(bob.name, timeout=SEEN_TIMEOUT)
        ada.shot("13-ada-completes-bobs-name")
        box.press("Enter")  # takes the offer, does not send
        expect(box).to_have_value(f"Look @{bob.name} ")
        box.press("Shift+Enter")  # a new line, not sent either
        box.press_sequentially("at cell 2")
        expect(box).to_have_value(f"Look @{bob.name} \nat cell 2")
        box.press("Enter")
        expect(box).to_have_value("")

        # Bob, with the panel closed, gets a JupyterLab notification. It closes
        # by itself after a while: the page's record of toasts, not a poll, says
        # it came, and that once it had slid in from the right edge it was
        # wholly on screen.
        toast = bob.wait_for_notification(f"{ada.name} mentioned you", wholly_in_view=True)
        assert "at cell 2" in toast["text"], toast
        bob.shot("14-bob-is-notified-of-adas-mention")
        expect(tab).to_have_attribute("data-nyo-unread", "2")

        # Opening the panel reads them all; the mention stands out.
        bob.show_panel()
        expect(tab).not_to_have_attribute("data-nyo-unread", re.compile("."))
        mention = chat_entries(bob).filter(has_text="at cell 2")
        expect(mention).to_have_class(re.compile(r"\bnyo-chat-mentions-me\b"))
        expect(mention.locator(".nyo-chat-text")).to_contain_text(f"Look @{bob.name}")
        bob.shot("15-bob-opens-the-chat-unread-cleared")

        # A message while he reads is not unread.
        ada.say("Thanks")
        expect(chat_entries(bob).last).to_contain_text("Thanks", timeout=SEEN_TIMEOUT)
        expect(tab).not_to_have_attribute("data-nyo-unread", re.compile("."))
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


def test_a_flood_of_mentions_is_one_notification_with_a_count(
    lab: LabServer, browser: Browser
) -> None:
    """Issue 23, finding 12: 25 mentions in a row from one person are one toast
    that says how many (the first at once, the rest gathered), not 25 toasts."""
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-flood?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-flood?reset"))
    try:
        bob.show_files()
        tab = bob.page.locator('.jp-SideBar .lm-TabBar-tab[data-id="nyo-realtime-panel"]')
        for n in range(25):
            ada.say(f"@{bob.name} look {n}")
        expect(tab).to_have_attribute("data-nyo-unread", "25", timeout=SEEN_TIMEOUT)
        # The rest are told when the sender's window (5 s) ends.
        toast = bob.wait_for_notification(
            f"{ada.name} mentioned you 25 times", timeout=SEEN_TIMEOUT + 10_000
        )
        assert "look 24" in toast["text"], toast
        bob.shot("16-bob-is-told-of-25-mentions-once")
        told = [t for t in bob.notifications() if "mentioned you" in (t["text"] or "")]
        # One toast, updated; two if the first had closed before the update came.
        assert 1 <= len(told) <= 2, told
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


def open_our_settings(person: Person) -> Any:
    person.page.get_by_role("menuitem", name="Settings").click()
    person.page.locator(".lm-Menu-item", has_text="Settings Editor").click()
    person.page.locator(".jp-PluginList-entry", has_text="Realtime collaboration").click()
    form = person.page.locator(".jp-SettingsPanel, .jp-SettingsEditor").first
    expect(form.get_by_text("Show the chat").first).to_be_visible(timeout=LOAD_TIMEOUT)
    return form


def test_settings_hide_the_chat_and_move_the_lobby_live(lab: LabServer, browser: Browser) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-set?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-set?reset"))
    try:
        # Others may be in the lobby too (a kernel's client from another test).
        expect(lobby_avatar(ada, bob)).to_be_visible(timeout=SEEN_TIMEOUT)
        everyone = int(lobby_count(bob).get_attribute("data-count") or 0)
        assert everyone >= 2
        ada.show_panel()
        expect(ada.page.locator("#nyo-realtime-panel .nyo-chat")).to_be_visible()

        # In the Settings Editor: no chat. The panel drops it at once.
        form = open_our_settings(ada)
        form.get_by_label("Show the chat").uncheck()
        expect(ada.page.locator("#nyo-realtime-panel .nyo-chat")).to_have_count(
            0, timeout=SEEN_TIMEOUT
        )
        expect(ada.page.locator("#nyo-realtime-panel .nyo-people")).to_be_visible()

        # Another lobby: Ada leaves Bob's and is alone in hers.
        # The field's label is a heading of JupyterLab's form, not a <label>.
        lobby = form.locator('input[id$="_lobby"]')
        lobby.fill("team-a")
        lobby.press("Tab")
        expect(lobby_count(ada)).to_have_text("1 here", timeout=SEEN_TIMEOUT)
        expect(lobby_count(bob)).to_have_text(f"{everyone - 1} here", timeout=SEEN_TIMEOUT)
        expect(lobby_avatar(bob, ada)).to_have_count(0)
        expect(panel_entry(ada, bob)).to_have_count(0)
        ada.shot("16-ada-in-another-lobby-without-chat")

        # Back to the shared lobby: they see each other again.
        lobby.fill("lobby")
        lobby.press("Tab")
        expect(lobby_count(ada)).to_have_text(f"{everyone} here", timeout=SEEN_TIMEOUT)
        expect(lobby_count(bob)).to_have_text(f"{everyone} here", timeout=SEEN_TIMEOUT)
        form.get_by_label("Show the chat").check()
        expect(ada.page.locator("#nyo-realtime-panel .nyo-chat")).to_be_visible(
            timeout=SEEN_TIMEOUT
        )
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
        # The settings are the server's, shared by every later test's pages.
        settings = lab.root.parent / "config" / "lab" / "user-settings" / "nyo-realtime-ext"
        shutil.rmtree(settings, ignore_errors=True)


def lobby_count(person: Person) -> Any:
    return person.page.locator(".nyo-statusbar .nyo-count")


def test_notebook_7_shows_cell_presence_and_who_ran_a_cell(
    notebook7: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada", SHOTS)
    bob = Person(browser, "bob", SHOTS)
    try:
        for person in (ada, bob):
            person.page.goto(notebook7.url("notebooks/collab.ipynb"))
            person.wait_for_document("collab.ipynb")
            person.me = person.page.evaluate("fetch('/api/me').then(r => r.json())")["identity"]
        expect(
            doc_badge(bob, "collab.ipynb").locator(f'.nyo-avatar[data-user-id="{ada.user_id}"]')
        ).to_be_visible(timeout=SEEN_TIMEOUT)

        click_cell(ada, 0)
        expect(avatar_on_cell(bob, 0, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        click_cell(ada, 2)
        expect(avatar_on_cell(bob, 2, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        expect(all_avatars_of(bob, ada)).to_have_count(1)

        run_cell(ada, 1)
        expect(cells(ada).nth(1).locator(".jp-OutputArea-output")).to_have_text(
            "ran by ada", timeout=KERNEL_TIMEOUT
        )
        expect(ran_mark(bob, 1)).to_have_attribute(
            "data-user-id", ada.user_id, timeout=SEEN_TIMEOUT
        )
        bob.shot("17-notebook7-bob-sees-ada-on-a-cell-and-what-she-ran")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
        shut_down_kernels(notebook7)
