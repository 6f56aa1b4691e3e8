"""Helpers of the browser tests: a real `jupyter lab` (or `jupyter notebook`) in a
subprocess, Debian's chromium driven by Playwright, and `Person`, one browser
context (one login, one Jupyter user). Test modules define their own fixtures
on top of `start_lab` and `launch_browser`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "e2e"
TOKEN = "e2e-jupyter-token"
# A kernel starting, or its client redrawing a widget, on a busy machine (2 cores, shared).
KERNEL_TIMEOUT = 120_000

NO_CHROMIUM = (
    "needs Debian's chromium at /usr/bin/chromium (`apt-get install chromium`, as .ci/run does)"
)

if CHROMIUM.exists():  # the tests are skipped without it
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# JupyterLab takes a few seconds to start in a cold browser; presence is fast.
LOAD_TIMEOUT = 60_000
SEEN_TIMEOUT = 20_000

# Every notification (toast) a page shows, recorded from the page's start: a
# toast closes by itself after a few seconds, so looking for it by polling the
# page could miss it on a busy machine. Each entry: its text, and whether it
# was ever wholly on screen (the IntersectionObserver that Playwright's own
# `to_be_in_viewport` uses).
RECORD_TOASTS = """
(() => {
  const toasts = (window.__nyoToasts = []);
  const inView = new IntersectionObserver(
    entries => {
      for (const entry of entries) {
        const toast = toasts.find(t => t.node === entry.target);
        if (toast && entry.intersectionRatio >= 0.999) toast.whollyInView = true;
      }
    },
    { threshold: [0, 0.5, 0.999, 1] }
  );
  new MutationObserver(() => {
    for (const node of document.querySelectorAll('.Toastify__toast')) {
      if (!toasts.some(t => t.node === node)) {
        toasts.push({ node, text: '', whollyInView: false });
        inView.observe(node);
      }
    }
    // Its text as last shown, kept once it has gone.
    for (const toast of toasts) {
      if (toast.node.isConnected) toast.text = toast.node.textContent;
    }
  }).observe(document, { childList: true, subtree: true, characterData: true });
})();
"""

# Every status each notebook's kernel indicator (`.jp-Notebook-ExecutionIndicator`,
# on the notebook's toolbar in JupyterLab and Notebook 7) showed, kept on the node
# as `__nyoStatuses`, from the page's start. The indicator shows "idle" from the
# moment it is drawn, before the notebook has any kernel (its first state is a
# default), and follows the kernel only from the first status it is told; so
# "idle" means ready only once it has shown another status before (it shows
# "initializing", "connecting" or "unknown" while the page gets its kernel).
RECORD_KERNEL_STATUS = """
(() => {
  const note = node => {
    const status = node.getAttribute('data-status');
    const seen = (node.__nyoStatuses = node.__nyoStatuses || []);
    if (status !== null && seen[seen.length - 1] !== status) seen.push(status);
  };
  new MutationObserver(records => {
    for (const record of records) {
      if (record.type === 'attributes' &&
          record.target.classList.contains('jp-Notebook-ExecutionIndicator')) {
        note(record.target);
      }
    }
    for (const node of document.querySelectorAll('.jp-Notebook-ExecutionIndicator')) {
      if (!node.__nyoStatuses) note(node);
    }
  }).observe(document, {
    childList: true, subtree: true, attributes: true, attributeFilter: ['data-status']
  });
})();
"""

# Ready to run a cell: the indicator followed the kernel (it showed a status
# other than its default "idle") and now shows it idle or busy (a busy kernel
# queues the run). Before that, JupyterLab has no kernel to send a run to: it
# clears the cell, or asks which kernel to start, and the run is lost.
KERNEL_READY = """
node => {
  const seen = node.__nyoStatuses || [];
  return seen.some(status => status !== 'idle') &&
    ['idle', 'busy'].includes(node.getAttribute('data-status'));
}
"""

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": ["# A notebook two people have open"],
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["print('hello')"],
        },
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(
    url: str, process: subprocess.Popen[bytes], name: str, log: Path, seconds: float = 60
) -> None:
    """Until `url` answers 200; the log in the error if `process` exits or is too slow."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


class LabServer:
    def __init__(self, root: Path, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.root = root
        self.port = port
        self.process = process
        self.log = log

    def url(self, path: str, port: int | None = None) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{port or self.port}/{path}{sep}token={TOKEN}"


def start_lab(
    base: Path,
    app: str = "jupyterlab",
    labextensions: Path | None = None,
    realtime: dict[str, Any] | None = None,
) -> Iterator[LabServer]:
    """A JupyterLab (or Notebook 7) with the extension; `realtime`: more `Realtime` options."""
    root, config = base / "root", base / "config"
    root.mkdir(parents=True)
    (config / "labconfig").mkdir(parents=True)
    (root / "shared.ipynb").write_text(json.dumps(NOTEBOOK, indent=1))
    (root / "notes.md").write_text("# Notes\n\nA file, not a notebook.\n")
    # The news prompt would cover the status bar in screenshots.
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    (config / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {
                    "jpserver_extensions": {"nyo_realtime_ext": True},
                    "identity_provider_class": "tests.support.anonymous.DistinctAnonymous",
                },
                "Realtime": {"db_path": str(base / "realtime.db"), **(realtime or {})},
                # More lab extensions than the installed ones (`who_is_here`).
                **(
                    {"LabApp": {"extra_labextensions_path": [str(labextensions)]}}
                    if labextensions
                    else {}
                ),
            }
        )
    )
    port = free_port()
    log = base / "server.log"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    args = [
        sys.executable, "-m", app,
        "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        args.append("--allow-root")
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = LabServer(root, port, process, log)
    wait_until_up(server.url("api/status"), process, app, log)
    # Without the built front end every browser test would only time out.
    with urllib.request.urlopen(server.url("lab" if app == "jupyterlab" else "tree")) as page:
        assert b"nyo-realtime-ext" in page.read(), (
            "the lab extension is not installed: `pip install -e .` builds and installs it"
        )
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def launch_browser(shots: Path) -> Iterator[Browser]:
    """Chromium for a module's tests; `shots` (its screenshot folder) starts empty."""
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Person:
    """One browser context: one login, one Jupyter user."""

    def __init__(
        self,
        browser: Browser,
        label: str,
        shots: Path = SCREENSHOTS,
        locale: str | None = None,
    ) -> None:
        self.label = label
        self.shots = shots
        # `locale`: the browser's language and region (dates, times), else chromium's.
        self.context: BrowserContext = browser.new_context(
            viewport={"width": 1400, "height": 860}, **({"locale": locale} if locale else {})
        )
        self.context.add_init_script(RECORD_TOASTS)
        self.context.add_init_script(RECORD_KERNEL_STATUS)
        self.page: Page = self.context.new_page()
        # JupyterLab's dialogs are modal: one that opens on its own (a file
        # changed on disk, a kernel to pick, a slow server's "connection
        # error") takes every click until answered. Before each action and
        # each auto-waiting assertion, Playwright answers any that is open.
        self.dialogs: list[str] = []
        self.page.add_locator_handler(self.page.locator(".jp-Dialog"), self._answer_dialog)
        self.errors: list[str] = []
        # Uncaught errors thrown from our bundle; the host application's own
        # (Notebook 7 logs one at start with or without this extension) are not ours.
        self.page.on(
            "pageerror",
            lambda error: (
                "nyo-realtime-ext" in (error.stack or "")
                and self.errors.append(f"{error}\n{error.stack}")
            ),
        )
        # What our bundle warned of ("nyo-realtime: ..."), for whoever reads a failure.
        self.warnings: list[str] = []
        self.page.on(
            "console",
            lambda message: (
                message.type in ("warning", "error")
                and message.text.startswith("nyo-realtime")
                and self.warnings.append(message.text)
            ),
        )
        self.me: dict[str, Any] = {}

    def _answer_dialog(self, dialog: Any) -> None:
        """Answer a JupyterLab dialog as Enter would: its default button (what
        JupyterLab's own `acceptDialog` does). What it said is kept in
        `dialogs`, and in a screenshot, for whoever reads a failure."""
        dialog = dialog.first
        try:
            text = " ".join(dialog.inner_text(timeout=5_000).split())
        except Exception as error:  # gone meanwhile: nothing to answer
            text = f"(unreadable: {error})"
        self.dialogs.append(text)
        print(f"{self.label}: answering a JupyterLab dialog: {text}")
        self.shot(f"dialog-{len(self.dialogs)}")
        dialog.dispatch_event("keydown", {"key": "Enter"})

    def notifications(self) -> list[dict[str, Any]]:
        """Every toast this page showed since it loaded (see RECORD_TOASTS)."""
        return self.page.evaluate(
            "(window.__nyoToasts || []).map(t => ({ text: t.text, whollyInView: t.whollyInView }))"
        )

    def wait_for_notification(
        self, text: str, wholly_in_view: bool = False, timeout: float = SEEN_TIMEOUT
    ) -> dict[str, Any]:
        """The first toast this page showed with `text` in it (and, if asked, once
        wholly on screen), from the record: it may have closed since."""
        deadline = time.monotonic() + timeout / 1000
        while True:
            shown = self.notifications()
            for toast in shown:
                if text in (toast["text"] or "") and (toast["whollyInView"] or not wholly_in_view):
                    return toast
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label} was shown no notification {text!r}: {shown}")
            time.sleep(0.1)

    def open_lab(self, url: str) -> Person:
        self.page.goto(url)
        # Our own avatar in the lobby means: loaded, connected, authenticated.
        self.page.wait_for_selector(".nyo-statusbar .nyo-avatar", timeout=LOAD_TIMEOUT)
        self.me = self.page.evaluate("fetch('/api/me').then(r => r.json())")["identity"]
        return self

    @property
    def user_id(self) -> str:
        return self.me["username"]

    @property
    def name(self) -> str:
        return self.me["display_name"]

    def show_panel(self) -> None:
        panel = self.page.locator("#nyo-realtime-panel")
        if not panel.is_visible():
            self.page.locator('.jp-SideBar [data-id="nyo-realtime-panel"]').click()
        expect(panel).to_be_visible()

    def show_files(self) -> None:
        browser = self.page.locator("#filebrowser")
        if not browser.is_visible():
            self.page.locator('.jp-SideBar [data-id="filebrowser"]').click()
        expect(browser).to_be_visible()

    def open_file(self, name: str) -> None:
        self.show_files()
        self.page.locator(".jp-DirListing-item", has_text=name).dblclick()
        self.wait_for_document(name)

    def wait_for_document(self, name: str) -> None:
        # Attached, not visible: with nobody else there the badge is empty.
        self.page.wait_for_selector(
            f'.nyo-doc-presence[data-path="{name}"]', state="attached", timeout=LOAD_TIMEOUT
        )

    def say(self, text: str) -> None:
        self.show_panel()
        box = self.page.locator("#nyo-realtime-panel .nyo-chat-input")
        box.fill(text)
        box.press("Enter")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"))

    def close(self) -> None:
        self.context.close()


def lobby_avatar(person: Person, other: Person) -> Any:
    return person.page.locator(f'.nyo-statusbar .nyo-avatar[data-user-id="{other.user_id}"]')


def panel_entry(person: Person, other: Person) -> Any:
    return person.page.locator(f'#nyo-realtime-panel li.nyo-person[data-user-id="{other.user_id}"]')


def doc_badge(person: Person, path: str) -> Any:
    return person.page.locator(f'.jp-Toolbar .nyo-doc-presence[data-path="{path}"]')


ACTIVE = re.compile(r"\bjp-mod-active\b")


def shut_down_kernels(server: LabServer) -> None:
    """Kernels outlive the pages that started them: stop them, for the next tests' sake."""
    with urllib.request.urlopen(server.url("api/sessions")) as response:
        sessions = json.load(response)
    for session in sessions:
        request = urllib.request.Request(
            server.url(f"api/sessions/{session['id']}"), method="DELETE"
        )
        urllib.request.urlopen(request).close()


def cells(person: Person) -> Any:
    return person.page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")


def click_cell(person: Person, index: int) -> None:
    cells(person).nth(index).locator(".jp-InputArea-editor").click()
    expect(cells(person).nth(index)).to_have_class(ACTIVE)


def wait_for_kernel(person: Person) -> None:
    """Until the visible notebook's kernel indicator says its kernel is there, idle
    or busy, as a person waits before running a cell (see KERNEL_READY)."""
    indicator = person.page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator")
    node = indicator.element_handle(timeout=LOAD_TIMEOUT)
    try:
        person.page.wait_for_function(KERNEL_READY, arg=node, timeout=KERNEL_TIMEOUT)
    except Exception as error:
        seen = node.evaluate("node => node.__nyoStatuses || []")
        raise AssertionError(
            f"{person.label}: the notebook's kernel is not ready; its indicator showed {seen}"
        ) from error


def run_cell(person: Person, index: int) -> None:
    """Run a cell as a person does (Shift+Enter in it), and see it start.

    The key goes once the notebook has its kernel (the toolbar's kernel indicator,
    `wait_for_kernel`: before that JupyterLab loses the run) and the cell's editor
    has the focus (a page still settling, focus moving to a new tab, would swallow
    it otherwise). It is pressed once: pressing again because the page seems slow
    could run it twice. Its prompt shows `[*]` when queued or running and `[n]`
    when done.
    """
    started = re.compile(r"\[[*0-9]+\]")
    cell = cells(person).nth(index)
    wait_for_kernel(person)
    click_cell(person, index)
    expect(cell.locator(".jp-InputArea-editor .cm-editor.cm-focused")).to_have_count(
        1, timeout=SEEN_TIMEOUT
    )
    person.page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-InputArea-prompt")).to_have_text(started, timeout=KERNEL_TIMEOUT)
