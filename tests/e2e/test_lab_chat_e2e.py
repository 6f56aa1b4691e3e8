"""The chat panel in a real browser: it shows the newest end of the conversation,
newlines as line breaks, no image from another site, and a hostile message
does not freeze the page.

Screenshots go to `test-output/lab-chat/`.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from ..support.lab_e2e import (
    CHROMIUM,
    LOAD_TIMEOUT,
    REPO,
    SEEN_TIMEOUT,
    TOKEN,
    LabServer,
    Person,
    free_port,
    launch_browser,
    start_lab,
)
from ..support.tokens import SECRET, make_token

if CHROMIUM.exists():
    from playwright.sync_api import Browser, expect

pytestmark = pytest.mark.timeout(300)

SHOTS = REPO / "test-output" / "lab-chat"

# Say something on the lobby from the page itself, past the composer's limit:
# a raw socket on the page's login, as any client could. Resolves on the ack.
RAW_SAY = """
async ([text, token]) => {
  // Under the server's base URL (the page's own URL is /lab/workspaces/...).
  const { baseUrl } = JSON.parse(document.getElementById('jupyter-config-data').textContent);
  const url = new URL(`${baseUrl}nyo-realtime/ws`, location.href);
  url.searchParams.set('token', token);
  url.protocol = url.protocol.replace('http', 'ws');
  const ws = new WebSocket(url);
  const frames = [];
  const next = type => new Promise((resolve, reject) => {
    const look = () => {
      const i = frames.findIndex(f => f.type === type || f.type === 'error');
      if (i >= 0) {
        const f = frames.splice(i, 1)[0];
        f.type === 'error' ? reject(new Error(JSON.stringify(f))) : resolve(f);
        return true;
      }
    };
    if (!look()) ws.addEventListener('message', function on() {
      if (look()) ws.removeEventListener('message', on);
    });
  });
  ws.addEventListener('message', e => frames.push(JSON.parse(e.data)));
  // Closed before the reply: say why rather than wait forever.
  ws.addEventListener('close', e => frames.push({ type: 'error', code: e.code, reason: e.reason }));
  await next('authenticated');
  ws.send(JSON.stringify({ type: 'subscribe', channel: 'lobby', ref: 1 }));
  await next('subscribed');
  ws.send(JSON.stringify({ type: 'broadcast', channel: 'lobby', event: 'chat:message',
                           payload: { text }, ref: 2 }));
  await next('ack');
  ws.close();
}
"""

# Long tasks (the main thread busy 50 ms or more), recorded from the page's start.
RECORD_LONG_TASKS = """
(() => {
  window.__nyoLongTasks = [];
  new PerformanceObserver(list => {
    for (const entry of list.getEntries()) window.__nyoLongTasks.push(entry.duration);
  }).observe({ type: 'longtask', buffered: true });
})();
"""


@pytest.fixture
def jp_asyncio_loop() -> None:
    """No pytest-jupyter loop: Playwright's sync API runs its own (see lab_e2e)."""


@pytest.fixture
def jp_server_cleanup() -> None:
    """No in-process Jupyter server to clean up."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    # The server refuses chat messages past 16 KiB; the page must stay responsive
    # whatever a server lets through (an older one, a larger `max_chat_length`).
    # A JWT secret too: Mallory comes with a token whose name the identity provider chose.
    yield from start_lab(
        tmp_path_factory.mktemp("chat"),
        realtime={"max_chat_length": 1 << 20, "jwt_secret": SECRET},
    )


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    yield from start_lab(tmp_path_factory.mktemp("chat7"), app="notebook")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser(SHOTS)


def chat_entries(person: Person) -> Any:
    return person.page.locator("#nyo-realtime-panel .nyo-chat-entry")


def chat_log(person: Person) -> Any:
    return person.page.locator("#nyo-realtime-panel .nyo-chat-log")


def newest_wholly_in_view(person: Person, text: str) -> None:
    """The newest message is `text`, and all of it is on screen in the log."""
    newest = chat_entries(person).last
    expect(newest).to_contain_text(text, timeout=SEEN_TIMEOUT)
    # The log clips what is scrolled out: in view means within the log's box.
    # 0.99, not 1: sub-pixel layout; a cut line is a tenth or more of a message.
    expect(newest).to_be_in_viewport(ratio=0.99, timeout=SEEN_TIMEOUT)


def fill_the_log(ada: Person, bob: Person, count: int, tag: str) -> None:
    before = chat_entries(bob).count()
    for n in range(count):
        ada.say(f"{tag} {n}\n\n```python\nvalue = {n}\nprint(value)\n```")
    expect(chat_entries(bob)).to_have_count(before + count, timeout=SEEN_TIMEOUT)


def test_the_newest_message_is_in_view_and_lines_are_lines(
    lab: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-end?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-end?reset"))
    try:
        bob.show_panel()
        fill_the_log(ada, bob, 12, "filler")
        # Each new message, Markdown filled in after React rendered it, wholly in view.
        for n in range(3):
            ada.say(f"**newest {n}**\n\n```python\nfor i in range(3):\n    print(i)\n```")
            newest_wholly_in_view(bob, f"newest {n}")
        bob.shot("01-bob-sees-the-newest-message-whole")

        # Shift+Enter's lines stay lines.
        box = ada.page.locator("#nyo-realtime-panel .nyo-chat-input")
        box.click()
        box.press_sequentially("multi line 0")
        for n in (1, 2):
            box.press("Shift+Enter")
            box.press_sequentially(f"line {n}")
        box.press("Enter")
        newest_wholly_in_view(bob, "line 2")
        text = chat_entries(bob).last.locator(".nyo-chat-text")
        expect(text.locator("br")).to_have_count(2)
        assert text.inner_text().split("\n") == ["multi line 0", "line 1", "line 2"]

        # Scrolled up to read: a new message leaves the reader where they are.
        log = chat_log(bob)
        log.evaluate("node => { node.scrollTop = 0; }")
        first = chat_entries(bob).first
        expect(first).to_be_in_viewport()
        ada.say("while bob reads back")
        expect(chat_entries(bob).last).to_contain_text("while bob reads back", timeout=SEEN_TIMEOUT)
        expect(chat_entries(bob).last).not_to_be_in_viewport()
        expect(first).to_be_in_viewport()
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


def test_unread_messages_are_in_view_when_the_panel_opens(lab: LabServer, browser: Browser) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-unread?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-unread?reset"))
    try:
        bob.show_panel()
        expect(chat_log(bob)).to_be_visible()
        bob.show_files()
        tab = bob.page.locator('.jp-SideBar .lm-TabBar-tab[data-id="nyo-realtime-panel"]')
        for n in range(10):
            ada.say(f"while you were away {n}\n\n- one\n- two\n- three")
        expect(tab).to_have_attribute("data-nyo-unread", "10", timeout=SEEN_TIMEOUT)
        bob.show_panel()
        newest_wholly_in_view(bob, "while you were away 9")
        bob.shot("02-bob-reopens-the-chat-at-the-unread-messages")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


def open_notebook_7(person: Person, server: LabServer) -> None:
    """A notebook in Notebook 7, then the side panel from View > Left Sidebar,
    where Notebook 7 lists side panels (it has no side bar of tabs)."""
    person.page.goto(server.url("notebooks/shared.ipynb"))
    person.wait_for_document("shared.ipynb")
    person.me = person.page.evaluate("fetch('/api/me').then(r => r.json())")["identity"]
    person.page.get_by_role("menuitem", name="View").click()
    person.page.locator(".lm-Menu-item", has_text="Left Sidebar").click()
    person.page.locator(".lm-Menu-item", has_text="Collaborators and chat").click()
    expect(person.page.locator("#nyo-realtime-panel")).to_be_visible()


def test_notebook_7_opens_the_chat_at_the_newest_message(
    notebook7: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada", SHOTS)
    bob = Person(browser, "bob", SHOTS)
    try:
        open_notebook_7(ada, notebook7)
        for n in range(12):
            ada.say(f"before bob came {n}\n\n```python\nvalue = {n}\nprint(value)\n```")
        expect(chat_entries(ada)).to_have_count(12, timeout=SEEN_TIMEOUT)

        # Bob opens the chat on a long conversation: he sees its end, not its start.
        open_notebook_7(bob, notebook7)
        newest_wholly_in_view(bob, "before bob came 11")
        expect(chat_entries(bob).first).not_to_be_in_viewport()
        bob.shot("05-notebook7-bob-opens-the-chat-at-the-newest-message")

        # Each new message, Markdown filled in after React rendered it, wholly in view.
        for n in range(3):
            ada.say(f"**newest {n}**\n\n```python\nfor i in range(3):\n    print(i)\n```")
            newest_wholly_in_view(bob, f"newest {n}")
        bob.shot("06-notebook7-bob-sees-the-newest-message-whole")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


class ThirdParty:
    """Another site: an HTTP server that records each request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                seen.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# A red dot, 2x2 px.
DOT = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAYAAABytg0kAAAAFElEQVR4"
    "nGP8z8DwnwEImBigAAAf/AIB1qbLkwAAAABJRU5ErkJggg=="
)


def test_chat_fetches_no_image_from_another_site(lab: LabServer, browser: Browser) -> None:
    third = ThirdParty()
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-img?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-img?reset"))
    asked: list[str] = []
    bob.page.on("request", lambda request: asked.append(request.url))
    try:
        bob.show_panel()
        remote = f"http://127.0.0.1:{third.port}/pixel.png?reader=bob"
        ada.say(
            f"![tracker]({remote}) <img src='http://127.0.0.1:{third.port}/raw.png'> "
            f"![dot]({DOT}) ![icon](/static/favicons/favicon.ico)"
        )
        entry = chat_entries(bob).last
        link = entry.locator("a.nyo-chat-image-link").first
        expect(link).to_have_attribute("href", remote, timeout=SEEN_TIMEOUT)
        expect(link).to_contain_text("tracker")
        expect(entry.locator("a.nyo-chat-image-link")).to_have_count(2)
        # Same-origin and data: images show (each decoded: loaded, not just present).
        images = entry.locator(".nyo-chat-text img")
        expect(images).to_have_count(2)
        for image in images.all():
            assert image.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
        bob.shot("03-bob-sees-a-link-not-the-third-partys-image")
        assert not [url for url in asked if f":{third.port}/" in url], asked
        assert third.requests == []
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
        third.close()


def test_a_hostile_message_does_not_freeze_the_page(lab: LabServer, browser: Browser) -> None:
    ada = Person(browser, "ada", SHOTS).open_lab(lab.url("lab/workspaces/ada-dos?reset"))
    try:
        hostile = "*a" * 65536  # 128 KiB: a Markdown parser's worst case
        ada.page.evaluate(RAW_SAY, [hostile, TOKEN])
        ada.page.evaluate(RAW_SAY, ["after the long one", TOKEN])
    finally:
        ada.close()
    # Bob loads JupyterLab with the message in the lobby's history.
    bob = Person(browser, "bob", SHOTS)
    bob.context.add_init_script(RECORD_LONG_TASKS)
    try:
        bob.open_lab(lab.url("lab/workspaces/bob-dos?reset"))
        bob.show_panel()
        newest_wholly_in_view(bob, "after the long one")
        long = chat_entries(bob).filter(has=bob.page.locator(".nyo-chat-long"))
        expect(long).to_have_count(1, timeout=LOAD_TIMEOUT)
        expect(long.locator(".nyo-chat-expand")).to_contain_text("Show all (128 KiB")
        # Shown as text, collapsed: a few lines high, not 128 KiB of them.
        assert long.bounding_box()["height"] < 300  # type: ignore[index]
        expect(long.locator("em")).to_have_count(0)
        bob.shot("04-bob-sees-the-hostile-message-collapsed")
        # Responsive all along: the main thread was never busy a second at once.
        tasks = bob.page.evaluate("window.__nyoLongTasks")
        assert max(tasks, default=0) < 1000, sorted(tasks)[-5:]
        assert bob.errors == []
    finally:
        bob.close()


def test_a_name_given_twice_shows_with_the_user_id(lab: LabServer, browser: Browser) -> None:
    """Issue 23, finding 7: Mallory comes with a token naming her as Bob (one the
    identity provider gave, so not refused). On Bob's page her chat line, her
    mention toast and the member list show the user id beside the name, which
    nobody chooses: "Bob (@mallory)", and Bob as "Bob (@<his id>)"."""
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-twin?reset"))
    url = f"ws://127.0.0.1:{lab.port}/nyo-realtime/ws"
    try:
        with ws_connect(url, open_timeout=30) as mallory:

            def answer(frame: dict[str, Any], want: str) -> dict[str, Any]:
                mallory.send(json.dumps(frame))
                while True:
                    got = json.loads(mallory.recv(timeout=30))
                    assert got["type"] != "error", got
                    if got["type"] == want:
                        return got

            # A Cyrillic В and о: it looks the same, and passes no equality test.
            twin = bob.name.replace("A", "\u0410").replace("o", "\u043e")
            answer({"type": "auth", "token": make_token("mallory", name=twin)}, "authenticated")
            answer({"type": "subscribe", "channel": "lobby", "ref": 1}, "subscribed")
            bob.show_panel()
            answer(
                {"type": "broadcast", "channel": "lobby", "event": "chat:message",
                 "payload": {"text": f"@{bob.name} please run cell 1"}, "ref": 2},
                "ack",
            )  # fmt: skip
            line = chat_entries(bob).last
            expect(line).to_contain_text("please run cell 1", timeout=SEEN_TIMEOUT)
            expect(line.locator(".nyo-chat-author")).to_have_text(f"{twin} (@mallory)")
            toast = bob.wait_for_notification("(@mallory)")
            assert twin in toast["text"]
            people = bob.page.locator("#nyo-realtime-panel .nyo-person-name")
            expect(people.filter(has_text="(@mallory)")).to_have_count(1, timeout=SEEN_TIMEOUT)
            expect(people.filter(has_text=f"{bob.name} (@{bob.user_id}) (you)")).to_have_count(1)
            bob.shot("07-bob-tells-his-twin-apart")
        assert bob.errors == []
    finally:
        bob.close()
