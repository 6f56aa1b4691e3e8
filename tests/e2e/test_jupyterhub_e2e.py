"""The JupyterLab extension under a real JupyterHub, in a real headless Chromium.

The hub is the one docs/deployment.md tells readers to try,
examples/jupyterhub/run.sh with its jupyterhub_config.py: JupyterHub from PyPI
with its DummyAuthenticator and SimpleLocalProcessSpawner, its proxy
configurable-http-proxy from npm (`.ci/run` installs it into the virtualenv),
and one real redis-server, started by the script, that every single-user server
is given with `--Realtime.redis_url`. Run as root, it also checks the
recipe's `--allow-root`. Two browser contexts log in as two hub users,
"ada" and "bob": each gets a single-user server of their own, with a home of
their own holding an `Untitled.ipynb` of the same path and different content.

They meet in the lobby (status bar, side panel) under their hub names, and
chat; they do not meet on `Untitled.ipynb`, which is two files that only share
a path (`Realtime.document_scope` defaults to the hub user).

Screenshots go to `test-output/e2e-jupyterhub/` at the repository root: not
`test-output/e2e/`, which the lab tests' module empties when it starts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..support.lab_e2e import (
    CHROMIUM,
    LOAD_TIMEOUT,
    REPO,
    SEEN_TIMEOUT,
    Person,
    doc_badge,
    free_port,
    launch_browser,
    lobby_avatar,
    panel_entry,
    wait_until_up,
)

SCREENSHOTS = REPO / "test-output" / "e2e-jupyterhub"
# The recipe docs/deployment.md points at: this test runs it, not a copy of it.
RECIPE = REPO / "examples" / "jupyterhub"
# The virtualenv's bin: jupyterhub, jupyterhub-singleuser, and the proxy that
# .ci/run installs there with `npm install -g --prefix .venv`. Not resolved:
# the interpreter is a symlink out of the virtualenv.
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(300)

NO_PROXY = (
    "needs configurable-http-proxy, JupyterHub's proxy, from npm "
    "(.ci/run: `npm install -g --prefix .venv configurable-http-proxy`)"
)

if CHROMIUM.exists():
    from playwright.sync_api import Browser, expect

# Logging in spawns a single-user server, then JupyterLab loads in a cold browser.
SPAWN_TIMEOUT = 120_000
SAME_PATH = "Untitled.ipynb"


def _notebook(title: str) -> dict[str, Any]:
    return {
        "cells": [
            {"cell_type": "markdown", "id": "title", "metadata": {}, "source": [f"# {title}"]}
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _search_path() -> str:
    """PATH for the hub: the virtualenv's bin first, where the proxy is installed."""
    return os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", os.defpath)])


@dataclass
class Hub:
    url: str
    homes: Path
    log: Path
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_lines(self, needle: str) -> list[str]:
        """The hub's and the servers' log lines that mention `needle`."""
        return [line for line in self.output().splitlines() if needle in line]


def _stop_tree(process: subprocess.Popen[bytes]) -> None:
    """Stop the hub and everything under it: the proxy, the single-user servers
    (each in a session of its own, so no signal to a group reaches them) and
    their kernels. The hub stops them itself on SIGTERM; whatever is left is killed."""
    import psutil

    try:
        tree = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for child in tree:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=10)


@pytest.fixture
def jp_asyncio_loop() -> None:
    """pytest-jupyter's autouse loop would adopt (and then close) the loop that
    Playwright's sync API runs in; this test starts its own processes."""


@pytest.fixture
def jp_server_cleanup() -> None:
    """No in-process Jupyter server here to clean up (see `jp_asyncio_loop`)."""


@pytest.fixture
def browser() -> Iterator[Browser]:
    yield from launch_browser(SCREENSHOTS)


@pytest.fixture
def hub(browser: Browser, tmp_path: Path) -> Iterator[Hub]:
    """The documented recipe, examples/jupyterhub/run.sh: a real JupyterHub, its
    state in tmp_path, and the one Redis that the script starts for all users.
    Only the ports (free ones) and the spawn timeouts (a slow CI) are the test's."""
    if shutil.which("configurable-http-proxy", path=_search_path()) is None:
        pytest.skip(NO_PROXY)
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    for tool in ("jupyterhub", "jupyterhub-singleuser"):
        assert (VENV_BIN / tool).exists(), (
            "jupyterhub is not installed: it is in the `test` extra (`pip install -e '.[test]'`)"
        )

    base = tmp_path / "hub"
    homes = base / "homes"  # where the recipe puts them: $NYO_HUB_DIR/homes/<name>
    for user, title in (("ada", "Ada's own Untitled"), ("bob", "Bob's own Untitled")):
        home = homes / user
        (home / ".jupyter" / "labconfig").mkdir(parents=True)
        (home / SAME_PATH).write_text(json.dumps(_notebook(title), indent=1))
        # The news prompt would cover the status bar in screenshots.
        (home / ".jupyter" / "labconfig" / "page_config.json").write_text(
            json.dumps(
                {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
            )
        )

    port = free_port()
    log = tmp_path / "jupyterhub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(RECIPE / "run.sh"),
                # The hub's own API and the proxy's API: free ports too, not 8081 and 8001.
                f"--JupyterHub.hub_bind_url=http://127.0.0.1:{free_port()}",
                f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{free_port()}",
                "--Spawner.start_timeout=120",
                "--Spawner.http_timeout=120",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PATH": _search_path(),
                "PYTHONUNBUFFERED": "1",
                "NYO_HUB_DIR": str(base),
                "NYO_HUB_PORT": str(port),
                "NYO_REDIS_PORT": str(free_port()),
            },
        )
    hub = Hub(f"http://127.0.0.1:{port}", homes, log, process)
    try:
        # Through the proxy: up once the proxy routes to the hub.
        wait_until_up(f"{hub.url}/hub/api/", process, "jupyterhub", log)
        yield hub
    finally:
        _stop_tree(process)


class HubUser(Person):
    """One browser context logged in to the hub as one hub user."""

    def __init__(self, browser: Browser, hub: Hub, username: str) -> None:
        super().__init__(browser, username, SCREENSHOTS)
        self.hub = hub
        self.username = username
        self.base_url = ""

    def log_in(self) -> HubUser:
        """The hub's login form, as a person fills it; the hub spawns the server."""
        self.page.goto(f"{self.hub.url}/hub/login")
        self.page.fill("#username_input", self.username)
        self.page.fill("#password_input", "DummyAuthenticator checks none")
        self.page.click("#login_submit")
        self.page.wait_for_url(f"**/user/{self.username}/lab**", timeout=SPAWN_TIMEOUT)
        # Our own avatar in the lobby means: loaded, connected, authenticated.
        self.page.wait_for_selector(".nyo-statusbar .nyo-avatar", timeout=LOAD_TIMEOUT)
        self.base_url = self.page.evaluate(
            "JSON.parse(document.getElementById('jupyter-config-data').textContent).baseUrl"
        )
        self.me = self.get("api/me")["identity"]
        return self

    def get(self, path: str) -> Any:
        """GET from this user's own single-user server, with the page's login.

        Under JupyterHub a request with the login cookie needs the XSRF token
        even for a GET (unless it is a page load), as JupyterLab always sends."""
        return self.page.evaluate(
            """async url => {
                const xsrf = document.cookie.match(/(?:^|; )_xsrf=([^;]*)/);
                const headers = xsrf ? { 'X-XSRFToken': decodeURIComponent(xsrf[1]) } : {};
                const response = await fetch(url, { headers });
                if (!response.ok) throw new Error(`${url}: ${response.status}`);
                return response.json();
            }""",
            self.base_url + path,
        )

    def open_paths(self, other: HubUser) -> list[str]:
        """What `other` has open, by the lobby's presence (the HTTP API, not the UI)."""
        members = self.get("nyo-realtime/api/channels/lobby/members")["members"]
        for member in members:
            if member["userId"] == other.username:
                return list((member.get("meta") or {}).get("open") or [])
        return []


def test_two_hub_users_meet_in_the_lobby_and_chat_but_not_on_their_own_files(
    hub: Hub, browser: Browser
) -> None:
    ada = HubUser(browser, hub, "ada")
    bob = HubUser(browser, hub, "bob")
    try:
        ada.log_in()
        bob.log_in()
        # Each browser is the hub user it logged in as, on a server of its own.
        assert ada.base_url == "/user/ada/" and bob.base_url == "/user/bob/"
        assert (ada.me["username"], ada.me["display_name"]) == ("ada", "ada")
        assert (bob.me["username"], bob.me["display_name"]) == ("bob", "bob")

        # Each one's WebSocket handshake is on the log (written before the socket
        # opened, so before the avatar showed), at INFO and nothing above: no
        # "Skipping XSRF check for insecure request" warning from JupyterHub.
        for person in (ada, bob):
            path = f"/user/{person.username}/nyo-realtime/ws"
            lines = hub.log_lines(path)
            assert any(f"101 GET {path}" in line for line in lines), hub.output()
            assert [line for line in lines if not line.startswith(("[I ", "[D "))] == []

        # Two servers, one Redis: each sees the other in the lobby, by hub name.
        expect(lobby_avatar(ada, bob)).to_be_visible(timeout=SEEN_TIMEOUT)
        expect(lobby_avatar(bob, ada)).to_be_visible(timeout=SEEN_TIMEOUT)
        for person in (ada, bob):
            expect(person.page.locator(".nyo-statusbar .nyo-count")).to_have_text("2 here")
            person.show_panel()
            expect(person.page.locator("#nyo-realtime-panel .nyo-me-name")).to_have_text(
                f"You are {person.username}"
            )
        expect(panel_entry(ada, bob).locator(".nyo-person-name")).to_have_text("bob")
        expect(panel_entry(ada, ada).locator(".nyo-person-name")).to_have_text("ada (you)")
        expect(panel_entry(bob, ada).locator(".nyo-person-name")).to_have_text("ada")
        ada.shot("01-hub-ada-sees-bob-in-the-lobby")
        bob.shot("02-hub-bob-sees-ada-in-the-lobby")

        # A chat message from Ada's server reaches Bob's, with her hub name, once.
        ada.say("Hello Bob, from my own server")
        entry = bob.page.locator("#nyo-realtime-panel .nyo-chat-entry")
        expect(entry).to_have_count(1, timeout=SEEN_TIMEOUT)
        expect(entry.locator(".nyo-chat-text")).to_have_text("Hello Bob, from my own server")
        expect(entry.locator(".nyo-chat-author")).to_have_text("ada")
        bob.say("Hi Ada, from mine")
        replies = ada.page.locator("#nyo-realtime-panel .nyo-chat-entry .nyo-chat-text")
        expect(replies).to_have_text(
            ["Hello Bob, from my own server", "Hi Ada, from mine"], timeout=SEEN_TIMEOUT
        )
        bob.shot("03-hub-bob-chats-with-ada")

        # Both open Untitled.ipynb: the same path, two files, each in its own home.
        ada.open_file(SAME_PATH)
        bob.open_file(SAME_PATH)
        for person, title in ((ada, "Ada's own Untitled"), (bob, "Bob's own Untitled")):
            expect(
                person.page.locator(".jp-NotebookPanel .jp-RenderedMarkdown h1")
            ).to_contain_text(title, timeout=LOAD_TIMEOUT)
        # Each has the path open as far as the lobby knows (so each one's document
        # presence has been published too)...
        for me, other in ((ada, bob), (bob, ada)):
            deadline = time.monotonic() + SEEN_TIMEOUT / 1000
            while SAME_PATH not in me.open_paths(other):
                assert time.monotonic() < deadline, (
                    f"{me.username} never saw {other.username} open {SAME_PATH}"
                )
                time.sleep(0.2)
        # ...and longer than presence takes to arrive, yet nobody else is on either file.
        time.sleep(2)
        for me, other in ((ada, bob), (bob, ada)):
            badge = doc_badge(me, SAME_PATH)
            expect(badge).to_have_attribute("data-count", "0")
            expect(badge).to_have_attribute("title", "Nobody else has this open")
            expect(badge.locator(".nyo-avatar")).to_have_count(0)
            expect(me.page.locator(".lm-TabBar-tab[data-nyo-others]")).to_have_count(0)
            # While in the lobby they still see each other.
            expect(lobby_avatar(me, other)).to_be_visible()
            me.show_panel()
            expect(panel_entry(me, other)).to_be_visible()
            # The other's Untitled.ipynb is named, not offered to open: it is their file.
            entry = panel_entry(me, other).locator(".nyo-open-path")
            expect(entry).to_contain_text(SAME_PATH)
            expect(entry.locator("a")).to_have_count(0)
        ada.shot("04-hub-ada-alone-in-her-untitled")
        bob.shot("05-hub-bob-alone-in-his-untitled")
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
