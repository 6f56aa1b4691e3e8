"""The JupyterLab extension in a real headless Chromium against a real `jupyter lab`.

Two browser contexts are two people: Jupyter's default identity provider gives
each token login its own user (a random "Anonymous <moon>" with its own id,
kept in that context's cookie), exactly as two people sharing a server's token
would get. Nothing here tells the extension who anyone is.

Each test saves screenshots under `test-output/e2e/` at the repository root
for people to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.lab_e2e import (
    CHROMIUM,
    REPO,
    SCREENSHOTS,
    SEEN_TIMEOUT,
    LabServer,
    Person,
    doc_badge,
    launch_browser,
    lobby_avatar,
    panel_entry,
    start_lab,
)

if CHROMIUM.exists():
    from playwright.sync_api import Browser, expect

pytestmark = pytest.mark.timeout(300)


def test_the_extension_is_installed_and_enabled() -> None:
    """What `pip install .` promises: `jupyter labextension list` shows it enabled and OK."""
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    listing = result.stdout + result.stderr
    line = next((ln for ln in listing.splitlines() if "nyo-realtime-ext" in ln), "")
    assert "enabled" in line and "OK" in line, listing


class Relay:
    """A TCP relay in front of the server whose line can be cut, like a network
    outage: the browser's sockets die without the server closing them."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                self._drop(s)

    def _drop(self, s: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self) -> None:
        self.down = True
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            self._drop(s)

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def jp_asyncio_loop() -> None:
    """pytest-jupyter's autouse loop would adopt (and then close) the loop that
    Playwright's sync API runs in; these tests start their own server process
    and need no loop of pytest's."""


@pytest.fixture
def jp_server_cleanup() -> None:
    """No in-process Jupyter server here to clean up (see `jp_asyncio_loop`)."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    yield from start_lab(tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser(SCREENSHOTS)


def test_two_people_see_each_other_share_a_notebook_chat_and_leave(
    lab: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada").open_lab(lab.url("lab/workspaces/ada?reset"))
    bob = Person(browser, "bob").open_lab(lab.url("lab/workspaces/bob?reset"))
    try:
        # Two logins, two people, named by the Jupyter server alone.
        assert ada.user_id != bob.user_id
        ada.show_panel()
        expect(ada.page.locator("#nyo-realtime-panel .nyo-me-name")).to_have_text(
            f"You are {ada.name}"
        )

        # Each sees the other appear: avatar and count in the status bar, a row in the panel.
        expect(lobby_avatar(ada, bob)).to_be_visible(timeout=SEEN_TIMEOUT)
        expect(lobby_avatar(bob, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        expect(ada.page.locator(".nyo-statusbar .nyo-count")).to_have_text("2 here")
        expect(bob.page.locator(".nyo-statusbar .nyo-count")).to_have_text("2 here")
        expect(panel_entry(ada, bob).locator(".nyo-person-name")).to_have_text(bob.name)
        expect(panel_entry(ada, ada).locator(".nyo-person-name")).to_have_text(f"{ada.name} (you)")
        ada.shot("01-ada-sees-bob-arrive")

        # Bob says he is busy; Ada sees it on his avatar and in the panel.
        bob.page.locator(".nyo-statusbar select.nyo-status-picker").select_option("busy")
        expect(lobby_avatar(ada, bob)).to_have_attribute(
            "data-status", "busy", timeout=SEEN_TIMEOUT
        )
        expect(panel_entry(ada, bob).locator(".nyo-person-status")).to_have_text("Busy")
        expect(panel_entry(ada, bob).locator(".nyo-status-dot")).to_have_class(
            "nyo-status-dot nyo-status-busy"
        )
        ada.shot("02-ada-sees-bob-busy")

        # Both open the same notebook: each sees the other on its toolbar and tab.
        ada.open_file("shared.ipynb")
        expect(doc_badge(ada, "shared.ipynb")).to_have_attribute("data-count", "0")
        bob.open_file("shared.ipynb")
        for me, other in ((ada, bob), (bob, ada)):
            badge = doc_badge(me, "shared.ipynb")
            expect(badge.locator(f'.nyo-avatar[data-user-id="{other.user_id}"]')).to_be_visible(
                timeout=SEEN_TIMEOUT
            )
            expect(badge).to_have_attribute("data-count", "1")
            expect(badge).to_have_attribute("title", f"Also here: {other.name}")
            expect(
                me.page.locator('.lm-TabBar-tab[data-nyo-others="1"]', has_text="shared.ipynb")
            ).to_be_visible()
        # ...and the panel says what each has open.
        ada.show_panel()
        expect(
            panel_entry(ada, bob).locator('.nyo-open-path a[data-path="shared.ipynb"]')
        ).to_be_visible(timeout=SEEN_TIMEOUT)
        ada.shot("03-ada-and-bob-in-the-same-notebook")
        bob.shot("04-bob-sees-ada-on-the-notebook")

        # A chat message from Ada reaches Bob, with her name, once.
        ada.say("Shall we look at cell 2 together?")
        bob.show_panel()
        entry = bob.page.locator("#nyo-realtime-panel .nyo-chat-entry")
        expect(entry).to_have_count(1, timeout=SEEN_TIMEOUT)
        expect(entry.locator(".nyo-chat-text")).to_have_text("Shall we look at cell 2 together?")
        expect(entry.locator(".nyo-chat-author")).to_have_text(ada.name)
        bob.say("Yes, opening it now")
        expect(ada.page.locator("#nyo-realtime-panel .nyo-chat-entry")).to_have_count(
            2, timeout=SEEN_TIMEOUT
        )
        expect(ada.page.locator("#nyo-realtime-panel .nyo-chat-entry").nth(1)).to_contain_text(
            "Yes, opening it now"
        )
        bob.shot("05-bob-chats-with-ada")

        # Bob leaves: he disappears from Ada's lobby, panel and notebook.
        bob.close()
        expect(lobby_avatar(ada, bob)).to_have_count(0, timeout=SEEN_TIMEOUT)
        expect(ada.page.locator(".nyo-statusbar .nyo-count")).to_have_text("1 here")
        expect(panel_entry(ada, bob)).to_have_count(0)
        expect(doc_badge(ada, "shared.ipynb")).to_have_attribute("data-count", "0")
        expect(ada.page.locator(".lm-TabBar-tab[data-nyo-others]")).to_have_count(0)
        ada.shot("06-ada-after-bob-left")

        # Someone arriving later gets the chat history when the panel opens.
        carol = Person(browser, "carol").open_lab(lab.url("lab/workspaces/carol?reset"))
        try:
            carol.show_panel()
            history = carol.page.locator("#nyo-realtime-panel .nyo-chat-entry .nyo-chat-text")
            expect(history).to_have_text(
                ["Shall we look at cell 2 together?", "Yes, opening it now"], timeout=SEEN_TIMEOUT
            )
            # Bob has left, yet his message still carries his name, from the server's records.
            authors = carol.page.locator("#nyo-realtime-panel .nyo-chat-entry .nyo-chat-author")
            try:
                expect(authors).to_have_text([ada.name, bob.name], timeout=SEEN_TIMEOUT)
            except AssertionError as failure:
                raise AssertionError(f"{failure}\nCarol's warnings: {carol.warnings}") from None
            carol.shot("07-carol-arrives-and-reads-the-history")
        finally:
            carol.close()
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


FORGE_AND_CONNECT = """
async ({ path, claims, asFrame }) => {
  // A token that claims to be someone else, signed with nothing the server knows.
  const b64 = value => btoa(JSON.stringify(value)).replace(/=+$/, '')
    .replace(/[+]/g, '-').replace(/[/]/g, '_');
  const forged = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2lnbmF0dXJl`;
  const url = new URL(path, location.href);
  url.protocol = url.protocol.replace('http', 'ws');
  if (!asFrame) url.searchParams.set('token', forged);
  const ws = new WebSocket(url);
  const frames = [];
  return await new Promise(resolve => {
    ws.onopen = () => asFrame && ws.send(JSON.stringify({ type: 'auth', token: forged }));
    ws.onmessage = event => {
      frames.push(JSON.parse(event.data));
      if (!asFrame) { ws.close(); resolve({ frames, code: null }); }
    };
    ws.onclose = event => resolve({ frames, code: event.code });
  });
}
"""


def test_a_page_cannot_pose_as_someone_else(lab: LabServer, browser: Browser) -> None:
    ada = Person(browser, "ada").open_lab(lab.url("lab/workspaces/forger?reset"))
    try:
        claims = {"sub": "grace", "name": "Grace Hopper"}
        # A forged token on the handshake is ignored: the Jupyter login decides.
        handshake = ada.page.evaluate(
            FORGE_AND_CONNECT, {"path": "/nyo-realtime/ws", "claims": claims, "asFrame": False}
        )
        user = handshake["frames"][0]["user"]
        assert (user["userId"], user["name"]) == (ada.user_id, ada.name)
        # Sent as an `auth` frame, it is refused outright.
        as_frame = ada.page.evaluate(
            FORGE_AND_CONNECT, {"path": "/nyo-realtime/ws", "claims": claims, "asFrame": True}
        )
        assert all(f.get("user", {}).get("userId") != "grace" for f in as_frame["frames"])
        assert {"type": "error", "code": "unauthorized"}.items() <= as_frame["frames"][-1].items()
        assert as_frame["code"] == 4401
        # And nobody called Grace ever showed up.
        expect(ada.page.locator(".nyo-avatar", has_text="GH")).to_have_count(0)
    finally:
        ada.close()


def test_any_file_shows_who_else_has_it_open(lab: LabServer, browser: Browser) -> None:
    ada = Person(browser, "ada").open_lab(lab.url("lab/workspaces/ada-notes?reset"))
    bob = Person(browser, "bob").open_lab(lab.url("lab/workspaces/bob-notes?reset"))
    try:
        ada.open_file("notes.md")
        bob.open_file("notes.md")
        for me, other in ((ada, bob), (bob, ada)):
            expect(
                doc_badge(me, "notes.md").locator(f'.nyo-avatar[data-user-id="{other.user_id}"]')
            ).to_be_visible(timeout=SEEN_TIMEOUT)
        # Closing the file is leaving it, while staying in the lobby.
        bob.page.locator(".lm-TabBar-tab", has_text="notes.md").locator(
            ".lm-TabBar-tabCloseIcon"
        ).click()
        expect(doc_badge(ada, "notes.md")).to_have_attribute(
            "data-count", "0", timeout=SEEN_TIMEOUT
        )
        expect(lobby_avatar(ada, bob)).to_be_visible()
        ada.show_panel()
        expect(panel_entry(ada, bob).locator(".nyo-person-idle")).to_have_text("nothing open")
        ada.shot("12-ada-alone-in-notes-after-bob-closed-it")
    finally:
        ada.close()
        bob.close()


def test_a_dropped_connection_shows_reconnecting_and_catches_up(
    lab: LabServer, browser: Browser
) -> None:
    relay = Relay(lab.port)
    ada = Person(browser, "ada").open_lab(lab.url("lab/workspaces/ada2?reset"))
    # Bob's whole page goes through the relay, so cutting it is his network failing.
    bob = Person(browser, "bob").open_lab(lab.url("lab/workspaces/bob2?reset", port=relay.port))
    try:
        bob.show_panel()
        ada.show_panel()
        expect(lobby_avatar(bob, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        mark = bob.page.locator(".nyo-statusbar .nyo-connection")
        expect(mark).to_be_hidden()
        before = bob.page.locator("#nyo-realtime-panel .nyo-chat-entry").count()

        relay.cut()
        expect(mark).to_be_visible(timeout=SEEN_TIMEOUT)
        expect(mark).to_have_text("reconnecting…")
        expect(bob.page.locator("#nyo-realtime-panel .nyo-connection")).to_have_text(
            "reconnecting…"
        )
        # Said while Bob was away: he must get it when he is back, once.
        ada.say("Did you get this while you were offline?")
        expect(ada.page.locator("#nyo-realtime-panel .nyo-chat-entry")).to_have_count(
            before + 1, timeout=SEEN_TIMEOUT
        )
        bob.shot("08-bob-reconnecting")

        relay.restore()
        expect(mark).to_be_hidden(timeout=60_000)
        expect(bob.page.locator("#nyo-realtime-panel .nyo-connection")).to_have_text("connected")
        entries = bob.page.locator("#nyo-realtime-panel .nyo-chat-entry .nyo-chat-text")
        expect(entries).to_have_count(before + 1, timeout=SEEN_TIMEOUT)
        expect(entries.last).to_have_text("Did you get this while you were offline?")
        # Ada still sees him: he is back on the lobby.
        expect(lobby_avatar(ada, bob)).to_be_visible(timeout=SEEN_TIMEOUT)
        bob.shot("09-bob-back-and-caught-up")
    finally:
        ada.close()
        bob.close()
        relay.close()


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    yield from start_lab(tmp_path_factory.mktemp("notebook7"), app="notebook")


def test_notebook_7_has_the_panel_and_document_presence_without_a_status_bar(
    notebook7: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada")
    bob = Person(browser, "bob")
    try:
        for person in (ada, bob):
            person.page.goto(notebook7.url("notebooks/shared.ipynb"))
            person.wait_for_document("shared.ipynb")
            person.me = person.page.evaluate("fetch('/api/me').then(r => r.json())")["identity"]
        # Notebook 7 has no status bar: the extension must not need one.
        expect(ada.page.locator(".jp-StatusBar-Widget")).to_have_count(0)
        expect(ada.page.locator(".nyo-statusbar")).to_have_count(0)

        # The notebook's toolbar shows who else has it open.
        for me, other in ((ada, bob), (bob, ada)):
            expect(
                doc_badge(me, "shared.ipynb").locator(
                    f'.nyo-avatar[data-user-id="{other.user_id}"]'
                )
            ).to_be_visible(timeout=SEEN_TIMEOUT)

        # The side panel is in View > Left Sidebar, where Notebook 7 lists side panels.
        for person in (ada, bob):
            person.page.get_by_role("menuitem", name="View").click()
            person.page.locator(".lm-Menu-item", has_text="Left Sidebar").click()
            person.page.locator(".lm-Menu-item", has_text="Collaborators and chat").click()
            expect(person.page.locator("#nyo-realtime-panel")).to_be_visible()
        expect(panel_entry(ada, bob).locator(".nyo-person-name")).to_have_text(
            bob.name, timeout=SEEN_TIMEOUT
        )
        expect(
            panel_entry(ada, bob).locator('.nyo-open-path a[data-path="shared.ipynb"]')
        ).to_be_visible(timeout=SEEN_TIMEOUT)

        # With no status bar, the panel's picker sets the status.
        bob.page.locator("#nyo-realtime-panel select.nyo-status-picker").select_option("away")
        expect(panel_entry(ada, bob)).to_have_attribute("data-status", "away", timeout=SEEN_TIMEOUT)
        expect(
            doc_badge(ada, "shared.ipynb").locator(f'.nyo-avatar[data-user-id="{bob.user_id}"]')
        ).to_have_attribute("data-status", "away")

        ada.say("Hello from Notebook 7")
        expect(bob.page.locator("#nyo-realtime-panel .nyo-chat-entry .nyo-chat-text")).to_have_text(
            ["Hello from Notebook 7"], timeout=SEEN_TIMEOUT
        )
        ada.shot("10-notebook7-ada-sees-bob-away")
        bob.shot("11-notebook7-bob-reads-ada")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()


# -- another extension on IRealtime: the example of docs/react.md ---------------------------

LABEXTENSION = REPO / "labextension"


def _docs_example() -> tuple[str, dict[str, Any]]:
    """The `src/index.tsx` and `package.json` that docs/react.md shows, as written there."""
    doc = (REPO / "docs" / "react.md").read_text()
    tsx = re.search(r"```tsx\n(.*?)```", doc, re.S)
    package = re.search(r"```json\n(.*?)```", doc, re.S)
    assert tsx and package, "docs/react.md lost its example"
    return tsx.group(1), json.loads(package.group(1))


@pytest.fixture(scope="module")
def who_is_here(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/react.md's "who is here" extension, built against this checkout's
    lab extension (its types, and `nyo-realtime-ext` shared, not bundled).
    Returns a directory for `LabApp.extra_labextensions_path`."""
    node_modules = LABEXTENSION / "node_modules"
    if not (node_modules / "@jupyter" / "builder").exists() or not shutil.which("node"):
        pytest.skip("needs node and labextension/node_modules (`npm install` in labextension/)")
    if not (LABEXTENSION / "lib" / "index.d.ts").exists():
        pytest.skip("needs the built lab extension (`npm run build:prod` in labextension/)")
    tsx, package = _docs_example()
    root = tmp_path_factory.mktemp("who-is-here")
    (root / "src").mkdir()
    (root / "src" / "index.tsx").write_text(tsx)
    package.update(name="nyo-who-is-here", version="0.0.1", private=True, main="lib/index.js")
    package["devDependencies"] = {"@jupyter/builder": "^1.2.3"}
    package["jupyterlab"]["outputDir"] = "build"
    (root / "package.json").write_text(json.dumps(package, indent=1))
    (root / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "jsx": "react",
                    "module": "esnext",
                    "moduleResolution": "node",
                    "target": "ES2022",
                    "lib": ["DOM", "ES2022"],
                    "strict": True,
                    "esModuleInterop": True,
                    "skipLibCheck": True,
                    "outDir": "lib",
                    "rootDir": "src",
                    "types": [],
                },
                "include": ["src/*"],
            }
        )
    )
    # The lab extension's node_modules, and the lab extension itself as the
    # `nyo-realtime-ext` dependency, as npm would install them.
    (root / "node_modules").mkdir()
    for entry in node_modules.iterdir():
        if not entry.name.startswith("."):
            (root / "node_modules" / entry.name).symlink_to(entry)
    (root / "node_modules" / "nyo-realtime-ext").symlink_to(LABEXTENSION)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in (
        ["node", str(node_modules / "typescript" / "bin" / "tsc"), "-p", "."],
        [str(Path(sys.executable).parent / "jupyter-builder"), "build", "."],
    ):
        result = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    extensions = root / "labextensions"
    extensions.mkdir()
    shutil.copytree(root / "build", extensions / "nyo-who-is-here")
    return extensions


@pytest.fixture(scope="module")
def lab_with_who_is_here(
    tmp_path_factory: pytest.TempPathFactory, who_is_here: Path
) -> Iterator[LabServer]:
    yield from start_lab(tmp_path_factory.mktemp("lab-who"), labextensions=who_is_here)


def test_another_extension_uses_the_pages_connection_through_irealtime(
    lab_with_who_is_here: LabServer, browser: Browser
) -> None:
    """The docs' twenty-line extension: `usePresence` on `IRealtime` shows who is
    here as React state, on the page's one WebSocket, as Jupyter's user."""
    lab = lab_with_who_is_here
    ada = Person(browser, "ada")
    sockets: list[str] = []
    ada.page.on("websocket", lambda ws: sockets.append(ws.url))
    ada.open_lab(lab.url("lab/workspaces/ada-who?reset"))
    bob = Person(browser, "bob").open_lab(lab.url("lab/workspaces/bob-who?reset"))
    try:
        ada.page.locator('.jp-SideBar [data-id="who-is-here"]').click()
        widget = ada.page.locator("#who-is-here")
        expect(widget).to_be_visible()
        row = widget.locator(f'li[data-user-id="{bob.user_id}"]')
        expect(row).to_have_text(f"{bob.name}: online", timeout=SEEN_TIMEOUT)
        expect(widget.locator(f'li[data-user-id="{ada.user_id}"]')).to_have_text(
            f"{ada.name}: online"
        )

        # Bob's status, set in his status bar, arrives as state in Ada's widget.
        bob.page.locator(".nyo-statusbar select.nyo-status-picker").select_option("away")
        expect(row).to_have_text(f"{bob.name}: away", timeout=SEEN_TIMEOUT)
        # The panel (on the same hooks) and the widget agree.
        ada.show_panel()
        expect(panel_entry(ada, bob)).to_have_attribute("data-status", "away")
        expect(widget).to_be_visible()
        ada.shot("13-another-extension-shows-who-is-here")

        bob.close()
        expect(row).to_have_count(0, timeout=SEEN_TIMEOUT)
        expect(widget.locator("li")).to_have_count(1)

        # Panel, status bar, badges and the other extension: one connection.
        assert len([url for url in sockets if "/nyo-realtime/ws" in url]) == 1, sockets
        assert ada.errors == []
    finally:
        ada.close()
        bob.close()
