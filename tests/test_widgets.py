"""Widgets and `connect()` in a kernel started by a real Jupyter server, with
outside users connecting over the WebSocket with JWTs."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from typing import Any

import pytest

from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.kernel_env import kernel_identity

from .kernels import Kernel, running_kernel

CONFIGURED_NAME = "Ada Lovelace (kernel)"


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    realtime = {**jp_server_config["Realtime"], "kernel_user_name": CONFIGURED_NAME}
    return {**jp_server_config, "Realtime": realtime}


async def comm_update_containing(kernel: Kernel, text: str, timeout: float = 60.0) -> None:
    """Read IOPub until a widget state update that mentions `text` goes to the front end.

    Updates made on the client's thread belong to no cell, so they are read
    here directly rather than through an execute request.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = await kernel.client.get_iopub_msg(timeout=1)
        except Exception:  # queue.Empty
            continue
        content = msg["content"]
        if msg["msg_type"] == "comm_msg" and content["data"].get("method") == "update":
            if text in json.dumps(content["data"].get("state", {})):
                return
    raise AssertionError(f"no widget update mentioning {text!r} reached the front end")


async def test_presence_and_chat_widgets_with_an_outside_user(
    jp_fetch: Any, jp_serverapp: Any, jupyter_ws_url: str, connect: Any, token: Any
) -> None:
    async with running_kernel(jp_fetch, jp_serverapp) as kernel:
        await kernel.run(
            "from nyo_realtime_ext import PresenceWidget, ChatWidget\n"
            "presence = PresenceWidget('lab:room')\n"
            "chat = ChatWidget('lab:room')\n"
            "display(presence, chat)"
        )
        me = await kernel.value("presence.client.user")
        assert me["userId"] == kernel_identity(Realtime(kernel_user_name=CONFIGURED_NAME)).user_id
        assert me["name"] == CONFIGURED_NAME

        grace = await connect(jupyter_ws_url, token("grace", name="Grace Hopper"))
        subscribed = await grace.subscribe("lab:room")
        assert me["userId"] in [m["userId"] for m in subscribed["members"]]
        await comm_update_containing(kernel, "Grace Hopper")
        members = await kernel.value("presence.members")
        assert {m["userId"]: m["name"] for m in members}["grace"] == "Grace Hopper"

        await grace.request(
            {"type": "broadcast", "channel": "lab:room", "event": "chat:message",
             "payload": {"text": "hello from outside"}}
        )  # fmt: skip
        await comm_update_containing(kernel, "hello from outside")
        messages = await kernel.value("chat.messages")
        assert [m["payload"]["text"] for m in messages] == ["hello from outside"]
        assert messages[0]["from"]["userId"] == "grace"

        sent_id = await kernel.value("chat.send('hello from the kernel')")
        heard = await grace.expect("message", payload={"text": "hello from the kernel"})
        assert heard["id"] == sent_id and heard["event"] == "chat:message"
        assert heard["from"]["userId"] == me["userId"]

        # The status picker reaches the others.
        await kernel.run("presence.status = 'busy'")
        updated = await grace.expect("presence:updated")
        assert updated["member"]["userId"] == me["userId"] and updated["member"]["status"] == "busy"

        # Closing both widgets ends the kernel's presence on the channel.
        await kernel.run("chat.close(); presence.close()")
        left = await grace.expect("user:left")
        assert left["member"]["userId"] == me["userId"]


async def test_chat_widget_opens_with_history(
    jp_fetch: Any, jp_serverapp: Any, jupyter_ws_url: str, connect: Any, token: Any
) -> None:
    async with running_kernel(jp_fetch, jp_serverapp) as kernel:
        grace = await connect(jupyter_ws_url, token("grace"))
        await grace.subscribe("lab:history")
        for text in ("one", "two"):
            await grace.request(
                {"type": "broadcast", "channel": "lab:history", "event": "chat:message",
                 "payload": {"text": text}}
            )  # fmt: skip
        await grace.request(
            {"type": "broadcast", "channel": "lab:history", "event": "tick", "payload": 1}
        )
        await kernel.run(
            "from nyo_realtime_ext import ChatWidget\nchat = ChatWidget('lab:history')"
        )
        texts = await kernel.value("[m['payload']['text'] for m in chat.messages]")
        assert texts == ["one", "two"]  # chat messages only, oldest first


async def test_connect_falls_back_to_the_running_server_file(
    jp_fetch: Any, jp_serverapp: Any
) -> None:
    """Without the environment variables, `JPY_PARENT_PID` leads to the server
    that started the kernel, and its Jupyter token gets in."""
    async with running_kernel(jp_fetch, jp_serverapp) as kernel:
        await kernel.run(
            "import os\n"
            "for name in ('NYO_REALTIME_URL', 'NYO_REALTIME_TOKEN'):\n"
            "    os.environ.pop(name, None)\n"
            "from nyo_realtime_ext.client import connect, discover\n"
            "url, _, headers = discover()\n"
            "fallback = connect().connect(timeout=30)\n"
        )
        url = await kernel.value("url")
        assert url.endswith("/a%40b/nyo-realtime/ws")
        assert await kernel.value("fallback.state.value") == "open"
        await kernel.run("fallback.close()")


def test_kernel_identity_is_a_real_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    identity = kernel_identity(Realtime())
    assert identity.user_id == getpass.getuser()
    assert identity.name and not identity.name.startswith("Anonymous")
    monkeypatch.setenv("JUPYTERHUB_USER", "katherine")
    assert kernel_identity(Realtime()).user_id == "katherine"
    configured = kernel_identity(Realtime(kernel_user="dorothy", kernel_user_name="Dorothy V."))
    assert (configured.user_id, configured.name) == ("dorothy", "Dorothy V.")


async def test_kernel_token_is_accepted_only_by_its_server(
    jp_serverapp: Any, jupyter_ws_url: str, connect: Any
) -> None:
    import os

    token = os.environ["NYO_REALTIME_TOKEN"]
    assert os.environ["NYO_REALTIME_URL"] == jupyter_ws_url.replace("localhost", "127.0.0.1")
    client = await connect(jupyter_ws_url, headers={"Authorization": f"Bearer {token}"})
    frame = await client.expect("authenticated")
    assert frame["user"]["name"] == CONFIGURED_NAME
    wrong = await connect(jupyter_ws_url, headers={"Authorization": f"Bearer {token[:-2]}xx"})
    assert await wrong.closed() == 4401
    await asyncio.sleep(0)


def test_avatars_have_initials_a_stable_colour_and_a_status_dot() -> None:
    from nyo_realtime_ext.widgets import avatar_html, initials, user_color

    assert [initials(n) for n in ("Grace Hopper", "ada", "jean.e.sammet", "")] == [
        "GH", "AD", "JS", "?",
    ]  # fmt: skip
    assert user_color("grace") == user_color("grace") != user_color("ada")
    busy = avatar_html({"userId": "grace", "name": "Grace Hopper", "status": "busy"})
    assert ">GH<" in busy and "#c62828" in busy
    assert "<b>" not in avatar_html({"userId": "m", "name": "<b>Mallory</b>"})
    assert "border-radius:50%;background:#" in avatar_html({"userId": "x", "name": "X"})


def test_chat_widget_keeps_the_last_messages_and_closing_unsubscribes(server: Any) -> None:
    from nyo_realtime_ext import ChatWidget, PresenceWidget
    from nyo_realtime_ext.client import ThreadedClient

    from .tokens import make_token

    with (
        ThreadedClient(server.url, make_token("ada")) as ada,
        ThreadedClient(server.url, make_token("bob")) as bob,
    ):
        chat = ChatWidget("room", client=ada, max_messages=2)
        presence = PresenceWidget("room", client=ada)
        bobs = bob.channel("room")
        for text in ("one", "two", "three"):
            bobs.send("chat:message", {"text": text})
        bobs.wait_for(lambda c: len(c.messages) == 3)
        chat.channel.wait_for(lambda c: len(c.messages) == 3)
        assert [m["payload"]["text"] for m in chat.messages] == ["two", "three"]
        assert "<br>three<" in chat._log.value and "<br>one<" not in chat._log.value
        chat.close()  # the presence widget still uses the channel
        assert [m["userId"] for m in bobs.wait_for(lambda c: len(c.members) == 2).members]
        presence.close()  # the last one: ada leaves
        bobs.wait_for(lambda c: [m["userId"] for m in c.members] == ["bob"])
