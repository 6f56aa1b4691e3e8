"""The realtime service as a Jupyter server extension, under a base_url that is not '/'."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from jupyter_server.auth import IdentityProvider, User

from .support.httpclient import Api
from .support.tokens import SECRET, make_token


class NamedUser(IdentityProvider):
    """Jupyter's token login, but the user behind the token has a real profile.

    It records the `Sec-Fetch-Mode` each request's login saw, by path."""

    fetch_modes: ClassVar[dict[str, str | None]] = {}

    def get_user(self, handler: Any) -> Any:
        NamedUser.fetch_modes[handler.request.path] = handler.request.headers.get("Sec-Fetch-Mode")
        return super().get_user(handler)

    def generate_anonymous_user(self, handler: Any) -> User:
        return User(
            username="ada",
            name="Ada Lovelace",
            display_name="Ada L.",
            initials="AL",
            color="#aa3377",
        )


@pytest.fixture
def jp_server_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"nyo_realtime_ext": True},
            "identity_provider_class": f"{__name__}.NamedUser",
        },
        "Realtime": {
            "jwt_secret": SECRET,
            "db_path": str(tmp_path / "jupyter-realtime.db"),
            "heartbeat_interval": 12,
        },
    }


def test_pip_install_enables_the_extension():
    jupyter = Path(sys.executable).with_name("jupyter")
    result = subprocess.run(
        [str(jupyter), "server", "extension", "list"], capture_output=True, text=True, timeout=120
    )
    listing = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    assert re.search(r"^\s*nyo_realtime_ext enabled\s*$", listing, re.M), listing
    assert re.search(r"^\s*nyo_realtime_ext [0-9.]+ OK\s*$", listing, re.M), listing


async def test_jupyter_login_gives_the_identity_providers_user(
    jupyter_ws_url, jp_auth_header, jp_fetch, connect
):
    me = json.loads((await jp_fetch("api", "me")).body)["identity"]
    client = await connect(jupyter_ws_url, headers=jp_auth_header)
    frame = await client.expect("authenticated")
    assert me["username"] == "ada"
    assert frame["user"] == {
        "userId": "ada",
        "tenantId": "default",
        "name": me["display_name"],
        "color": me["color"],
    }
    assert frame["heartbeatInterval"] == 12000  # c.Realtime config reached the extension


async def test_jupyter_token_in_the_query_is_not_mistaken_for_a_jwt(
    jupyter_ws_url, jp_auth_header, connect
):
    jupyter_token = jp_auth_header["Authorization"].split(" ", 1)[1]
    client = await connect(f"{jupyter_ws_url}?token={jupyter_token}")
    assert (await client.expect("authenticated"))["user"]["tenantId"] == "default"


async def test_the_login_sees_a_websocket_handshake_as_a_websocket(
    jupyter_ws_url, jp_auth_header, connect
):
    """JupyterHub's login tells a WebSocket from a page load by `Sec-Fetch-Mode`,
    which Chromium leaves off WebSocket handshakes: it then warned "Skipping XSRF
    check for insecure request" for every connection. The login sees it said."""
    path = urlsplit(jupyter_ws_url).path
    NamedUser.fetch_modes.clear()
    chromium = await connect(jupyter_ws_url, headers=jp_auth_header)  # no fetch metadata
    await chromium.expect("authenticated")
    assert NamedUser.fetch_modes == {path: "websocket"}
    NamedUser.fetch_modes.clear()
    said = await connect(jupyter_ws_url, headers={**jp_auth_header, "Sec-Fetch-Mode": "cors"})
    await said.expect("authenticated")
    assert NamedUser.fetch_modes == {path: "cors"}  # what a browser says stays as it is


async def test_jwt_users_and_jupyter_users_meet_in_the_same_tenant(
    jupyter_ws_url, jp_auth_header, connect
):
    jupyter_user = await connect(jupyter_ws_url, headers=jp_auth_header)
    await jupyter_user.expect("authenticated")
    await jupyter_user.subscribe("lobby")
    outsider = await connect(jupyter_ws_url, make_token("outsider"))
    reply = await outsider.subscribe("lobby")
    assert len(reply["members"]) == 2
    joined = await jupyter_user.expect("user:joined")
    assert joined["member"]["userId"] == "outsider"
    ack = await outsider.request(
        {
            "type": "broadcast",
            "channel": "lobby",
            "event": "chat:message",
            "payload": {"text": "hi"},
        }
    )
    message = await jupyter_user.expect("message")
    assert (message["id"], message["payload"]) == (ack["id"], {"text": "hi"})


async def test_without_jupyter_login_a_first_frame_jwt_or_nothing(jupyter_ws_url, connect):
    client = await connect(jupyter_ws_url)
    refused = await client.request({"type": "subscribe", "channel": "lobby"})
    assert refused["code"] == "unauthorized"
    reply = await client.request({"type": "auth", "token": make_token("late", tenant="acme")})
    assert reply["user"] == {"userId": "late", "tenantId": "acme", "name": "Late"}
    intruder = await connect(f"{jupyter_ws_url}?token=forged")
    assert (await intruder.recv())["code"] == "unauthorized"
    assert await intruder.closed() == 4401


async def test_jupyter_server_reads_realtime_flags_from_its_command_line(tmp_path, connect):
    import asyncio
    import socket

    from .support.standalone_server import free_port

    port = free_port()
    secret = "a-secret-given-on-the-command-line-only!"
    jupyter = Path(sys.executable).with_name("jupyter")
    process = subprocess.Popen(
        [str(jupyter), "server", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.token=t", f"--ServerApp.root_dir={tmp_path}", "--ServerApp.base_url=/base/",
         f"--Realtime.jwt_secret={secret}", "--Realtime.heartbeat_interval=7",
         f"--Realtime.db_path={tmp_path / 'cli.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/base/nyo-realtime/ws"
        client = await connect(url, make_token("ada", secret=secret), authenticate=False)
        frame = await client.expect("authenticated", timeout=30)
        assert frame["heartbeatInterval"] == 7000
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_documents_are_scoped_to_this_server_unless_configured_shared(
    jp_fetch, jp_serverapp, monkeypatch
):
    """On JupyterHub every user's `Untitled.ipynb` is a different file: the lab
    extension scopes document presence to the server's user, as the server says."""
    monkeypatch.setenv("JUPYTERHUB_USER", "grace")
    settings = json.loads((await jp_fetch("nyo-realtime", "settings")).body)
    assert settings == {"documentScope": "grace"}
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "gpu")
    settings = json.loads((await jp_fetch("nyo-realtime", "settings")).body)
    assert settings == {"documentScope": "grace/gpu"}
    # A deployment whose servers share one filesystem turns scoping off.
    jp_serverapp.web_app.settings["nyo_realtime_service"].config.document_scope = ""
    settings = json.loads((await jp_fetch("nyo-realtime", "settings")).body)
    assert settings == {"documentScope": ""}


async def test_the_profile_under_jupyter_starts_from_the_jupyter_identity(
    jupyter_url, jupyter_ws_url, jp_auth_header, jp_fetch, connect
):
    me = json.loads((await jp_fetch("api", "me")).body)["identity"]
    assert me["color"]  # Jupyter's identity has a colour: it wins over the shared one
    jupyter = Api(jupyter_url + "api/", headers=jp_auth_header)
    answer = await jupyter.get("profile")
    assert answer.status == 200
    assert answer.body["profile"] == {
        "userId": me["username"],
        "name": me["display_name"],
        "color": me["color"],
        "chosen": {"name": None, "color": None},
    }
    renamed = await jupyter.put("profile", {"name": "Ada L."})
    assert renamed.status == 200
    assert (renamed.body["profile"]["name"], renamed.body["profile"]["color"]) == (
        "Ada L.",
        me["color"],
    )
    client = await connect(jupyter_ws_url, headers=jp_auth_header)
    welcome = await client.expect("authenticated")
    assert (welcome["user"]["name"], welcome["user"]["color"]) == ("Ada L.", me["color"])
