"""The npm package `nyo-realtime-ext`, as someone else gets it (issue 22).

`npm pack` in `labextension/` makes the tarball a release publishes; a small
third-party JupyterLab extension (`tests/fixtures/third_party_ext/`) is
installed from that tarball, never from the source tree, following the steps of
docs/react.md ("Getting `nyo-realtime-ext`"), built with `jupyter-builder`, and
loaded beside ours into a real `jupyter lab` through
`LabApp.extra_labextensions_path`. In Chromium its `usePresence` list, on
`IRealtime`, shows both people and drops the one who leaves.

Everything is made in pytest's temporary directories; npm's own cache
(`~/.npm`) makes a second run quicker. Screenshots in `test-output/npm-package/`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.lab_e2e import (
    CHROMIUM,
    NO_CHROMIUM,
    REPO,
    SEEN_TIMEOUT,
    LabServer,
    Person,
    launch_browser,
    start_lab,
)

if CHROMIUM.exists():
    from playwright.sync_api import Browser, expect

# npm install from a cold cache downloads a few hundred packages.
pytestmark = pytest.mark.timeout(900)

LABEXTENSION = REPO / "labextension"
FIXTURE = REPO / "tests" / "fixtures" / "third_party_ext"
DOC = REPO / "docs" / "react.md"
SHOTS = REPO / "test-output" / "npm-package"
VENV_BIN = Path(sys.executable).parent
NPM_FLAGS = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]


def run(command: list[str], cwd: Path, timeout: float = 600) -> str:
    env = {
        **os.environ,
        # jupyter-builder, jlpm and the rest of the virtualenv first.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "npm_config_update_notifier": "false",
    }
    start = time.monotonic()
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    # How long each step took, for whoever wonders why the test is slow (pytest -s).
    print(f"{time.monotonic() - start:6.1f} s  {shlex.join(command[:3])}")
    assert result.returncode == 0, f"{command} in {cwd}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def documented_steps(version: str) -> tuple[list[str], list[str], dict[str, Any]]:
    """From docs/react.md's "Getting" section: the `npm pack` and `npm install`
    lines, and the `package.json` dependency `npm install` is said to record."""
    doc = DOC.read_text()
    section = re.search(r"\n## Getting `nyo-realtime-ext`\n(.*?)\n## ", doc, re.S)
    assert section, "docs/react.md lost its section on getting the package"
    text = section.group(1)
    bash = re.search(r"```bash\n(.*?)```", text, re.S)
    record = re.search(r"```json\n(.*?)```", text, re.S)
    assert bash and record, "docs/react.md: the tarball steps or the dependency are gone"
    lines = [line.split("#")[0].strip() for line in bash.group(1).splitlines()]
    pack = next(shlex.split(ln) for ln in lines if ln.startswith("npm pack"))
    install = next(shlex.split(ln) for ln in lines if ln.startswith("npm install"))
    tarball = f"nyo-realtime-ext-{version}.tgz"
    # The docs name the version that labextension/package.json has (kept in step).
    assert install == ["npm", "install", f"../{tarball}"], install
    assert f'"nyo-realtime-ext": "^{version}"' in doc, "docs/react.md: the npm version is stale"
    return pack, install, json.loads(record.group(1))


def check_tarball(tarball: Path) -> None:
    """What an author needs from the package: the JavaScript, a type declaration
    beside every module, and the entry points package.json names."""
    with tarfile.open(tarball) as tar:
        names = {name.removeprefix("package/") for name in tar.getnames()}
        packed = json.load(tar.extractfile("package/package.json"))
    modules = sorted(n for n in names if n.startswith("lib/") and n.endswith(".js"))
    assert modules, f"the tarball has no lib/ (build it first: npm run build:lib:prod): {names}"
    missing = [m for m in modules if m.removesuffix(".js") + ".d.ts" not in names]
    assert not missing, f"the tarball lacks the type declarations of {missing}"
    for entry in ("lib/index.js", "lib/index.d.ts", "lib/reactHooks.d.ts", "lib/tokens.d.ts"):
        assert entry in names, f"the tarball lacks {entry}: {sorted(names)}"
    assert packed["main"] in names and packed["types"] in names, packed
    assert {"style/index.js", "style/index.css", "schema/plugin.json"} <= names, names


@pytest.fixture(scope="module")
def third_party(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture extension, installed from the packed tarball and built.
    Returns a directory for `LabApp.extra_labextensions_path`."""
    if not shutil.which("npm") or not shutil.which("node"):
        pytest.skip("needs node and npm (`apt-get install npm`) to pack and build")
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    version = json.loads((LABEXTENSION / "package.json").read_text())["version"]
    pack, install, record = documented_steps(version)
    base = tmp_path_factory.mktemp("npm-package")

    # `npm pack --pack-destination ...` as the docs say, into the temporary directory.
    assert pack[:2] == ["npm", "pack"] and "--pack-destination" in pack, pack
    out = run(["npm", "pack", "--pack-destination", str(base), "--json", *NPM_FLAGS], LABEXTENSION)
    tarball = base / json.loads(out)[0]["filename"]
    assert tarball.name == f"nyo-realtime-ext-{version}.tgz", tarball
    check_tarball(tarball)

    # Someone else's extension, beside the tarball; the docs' `npm install`.
    ext = base / "third-party-ext"
    shutil.copytree(FIXTURE, ext)
    run([*install, *NPM_FLAGS], ext)
    recorded = json.loads((ext / "package.json").read_text())["dependencies"]
    assert recorded["nyo-realtime-ext"] == record["dependencies"]["nyo-realtime-ext"], recorded
    # Installed from the tarball: a copy, not a link to this checkout.
    installed = ext / "node_modules" / "nyo-realtime-ext"
    assert not installed.is_symlink() and (installed / "lib" / "index.d.ts").is_file()
    assert not (installed / "src").exists() and not (installed / "node_modules").exists()

    run(["node", str(ext / "node_modules" / "typescript" / "bin" / "tsc"), "-p", "."], ext)
    run([str(VENV_BIN / "jupyter-builder"), "build", "."], ext)
    built = json.loads((ext / "build" / "package.json").read_text())["jupyterlab"]
    # Shared, not bundled: JupyterLab's one copy, whose plugin provides IRealtime.
    assert built["sharedPackages"]["nyo-realtime-ext"]["bundled"] is False, built

    extensions = base / "labextensions"
    shutil.copytree(ext / "build", extensions / "nyo-third-party-ext")
    # Built: its ~450 MB of node_modules would otherwise stay in pytest's last few
    # temporary directories (the tarball, sources and build stay, to look at).
    shutil.rmtree(ext / "node_modules")
    return extensions


@pytest.fixture
def jp_asyncio_loop() -> None:
    """pytest-jupyter's autouse loop would adopt (and then close) the loop that
    Playwright's sync API runs in; this test starts its own server process."""


@pytest.fixture
def jp_server_cleanup() -> None:
    """No in-process Jupyter server here to clean up (see `jp_asyncio_loop`)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser(SHOTS)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, third_party: Path) -> Iterator[LabServer]:
    yield from start_lab(tmp_path_factory.mktemp("lab-npm"), labextensions=third_party)


def members(person: Person) -> Any:
    """The third-party widget's list, shown in the right side bar."""
    widget = person.page.locator("#third-party-members")
    if not widget.is_visible():
        person.page.locator('.jp-SideBar [data-id="third-party-members"]').click()
    expect(widget).to_be_visible()
    return widget.locator("ul.third-party-members")


def test_an_extension_built_on_the_packed_tarball_shows_who_is_here(
    lab: LabServer, browser: Browser
) -> None:
    ada = Person(browser, "ada", SHOTS)
    sockets: list[str] = []
    ada.page.on("websocket", lambda ws: sockets.append(ws.url))
    ada.open_lab(lab.url("lab/workspaces/ada-npm?reset"))
    bob = Person(browser, "bob", SHOTS).open_lab(lab.url("lab/workspaces/bob-npm?reset"))
    try:
        for me in (ada, bob):
            listed = members(me)
            for person in (ada, bob):
                expect(listed.locator(f'li[data-user-id="{person.user_id}"]')).to_have_text(
                    person.name, timeout=SEEN_TIMEOUT
                )
            expect(listed).to_have_attribute("data-count", "2")
        ada.shot("01-ada-third-party-widget-both")
        bob.shot("02-bob-third-party-widget-both")

        bob.close()
        listed = members(ada)
        expect(listed.locator(f'li[data-user-id="{bob.user_id}"]')).to_have_count(
            0, timeout=SEEN_TIMEOUT
        )
        expect(listed).to_have_attribute("data-count", "1")
        expect(listed.locator("li")).to_have_text([ada.name])
        ada.shot("03-ada-third-party-widget-after-bob-left")

        # On the page's one connection: our panel, status bar and the other extension.
        assert len([url for url in sockets if "/nyo-realtime/ws" in url]) == 1, sockets
        assert ada.errors == [] and bob.errors == []
    finally:
        ada.close()
        bob.close()
