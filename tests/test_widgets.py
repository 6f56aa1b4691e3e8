"""Widgets and `connect()` in a kernel started by a real Jupyter server, with
outside users connecting over the WebSocket with JWTs."""

from __future__ import annotations

import asyncio
import getpass
import re
from typing import Any

import pytest

from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.kernel_env import kernel_identity

from .support.httpclient import Api
from .support.kernels import comm_update_containing, running_kernel

CONFIGURED_NAME = "Ada Lovelace (kernel)"


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    realtime = {
        **jp_server_config["Realtime"],
        "kernel_user_name": CONFIGURED_NAME,
        # The server refuses chat past 16 KiB; the widget must render safely whatever
        # a server lets through (an older one, a larger `max_chat_length`).
        "max_chat_length": 1 << 20,
    }
    return {**jp_server_config, "Realtime": realtime}


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


async def test_the_chat_widget_renders_markdown_as_the_panel_does_and_safely(
    jp_fetch: Any, jp_serverapp: Any, jupyter_ws_url: str, connect: Any, token: Any
) -> None:
    async with running_kernel(jp_fetch, jp_serverapp) as kernel:
        await kernel.run(
            "from nyo_realtime_ext import ChatWidget\n"
            "chat = ChatWidget('lab:markdown')\n"
            "display(chat)"
        )
        grace = await connect(jupyter_ws_url, token("grace", name="Grace Hopper"))
        await grace.subscribe("lab:markdown")
        said = [
            "This is **bold**\n\n```python\ndef f():\n    return 1\n```",
            "multi line 0\nline 1\nline 2",
            '<img src=x onerror="alert(1)"><script>alert(2)</script>[me](javascript:alert(3))',
            "![tracker](https://third-party.example/pixel.png) ![dot](data:image/png;base64,AAAA)",
            "*a" * 65536,  # a Markdown parser's worst case: 128 KiB
        ]
        for text in said:
            await grace.request(
                {"type": "broadcast", "channel": "lab:markdown", "event": "chat:message",
                 "payload": {"text": text}}
            )  # fmt: skip
        await comm_update_containing(kernel, "Long message (128 KiB)")
        log = await kernel.value("chat._log.value")
        # Markdown, with the code block's indentation kept.
        assert "<strong>bold</strong>" in log and "**bold**" not in log
        assert "<pre><code" in log and "    return 1" in log and "```" not in log
        # Each newline a line break.
        assert re.search(r"multi line 0<br>\s*line 1<br>\s*line 2", log)
        # Nothing that could act.
        assert "onerror" not in log and "<script" not in log and "javascript:" not in log
        # No image from another site: a link to it; a data: image shows.
        assert '<img src="https://third-party.example' not in log
        assert 'href="https://third-party.example/pixel.png"' in log
        assert '<img src="data:image/png;base64,AAAA"' in log
        # Past 16 KiB: plain text, collapsed, no Markdown parser involved.
        assert '<details class="nyo-chat-long">' in log and "<em>" not in log
        # Times carry the instant; the browser writes it in its locale.
        assert log.count("<time ") == len(said) and 'data-ts="' in log


async def test_a_renamed_user_shows_live_in_the_presence_widget(
    jp_fetch: Any,
    jp_serverapp: Any,
    jupyter_url: str,
    jupyter_ws_url: str,
    connect: Any,
    token: Any,
) -> None:
    async with running_kernel(jp_fetch, jp_serverapp) as kernel:
        await kernel.run(
            "from nyo_realtime_ext import PresenceWidget\n"
            "presence = PresenceWidget('lab:names')\n"
            "display(presence)"
        )
        grace_token = token("grace", name="Grace Hopper")
        grace = await connect(jupyter_ws_url, grace_token)
        await grace.subscribe("lab:names")
        await comm_update_containing(kernel, "Grace Hopper")

        # Grace renames herself (from her panel: the HTTP route), on no widget's side.
        answer = await Api(jupyter_url + "api/", grace_token).put(
            "profile", {"name": "Amazing Grace", "color": "#123abc"}
        )
        assert answer.status == 200
        await comm_update_containing(kernel, "Amazing Grace")
        members = await kernel.value("presence.members")
        mine = {m["userId"]: m for m in members}["grace"]
        assert (mine["name"], mine["color"]) == ("Amazing Grace", "#123abc")
        shown = await kernel.value("presence._list.value")
        # Her chosen colour, and her id on hover next to the name she chose.
        assert 'title="Amazing Grace (grace), online"' in shown and "#123abc" in shown
        assert "Grace Hopper" not in shown


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
    # Nobody's server (issue 22): the kernel is a kernel, not a person named "root".
    assert (identity.user_id, identity.kind) == (f"{getpass.getuser()}:kernel", "kernel")
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
    from nyo_realtime_ext import colors
    from nyo_realtime_ext.widgets import avatar_html, initials, user_color

    assert [initials(n) for n in ("Grace Hopper", "ada", "jean.e.sammet", "")] == [
        "GH", "AD", "JS", "?",
    ]  # fmt: skip
    assert user_color("grace") == user_color("grace") != user_color("ada")
    # The colour every client computes the same way (tests/scenarios/colors.json).
    assert user_color is colors.user_color
    plain = avatar_html({"userId": "grace", "name": "Grace Hopper"})
    assert f"background:{colors.user_color('grace')}" in plain
    # A member's own colour (chosen, or from the identity) wins over the shared one.
    assert "background:#123abc" in avatar_html({"userId": "g", "name": "G", "color": "#123abc"})
    assert 'title="Grace Hopper (grace2)"' in avatar_html(
        {"userId": "grace2", "name": "Grace Hopper"}
    )
    busy = avatar_html({"userId": "grace", "name": "Grace Hopper", "status": "busy"})
    assert ">GH<" in busy and "#c62828" in busy
    # Hovering tells two people with the same name apart.
    assert 'title="Grace Hopper (grace), busy"' in busy
    assert "<b>" not in avatar_html({"userId": "m", "name": "<b>Mallory</b>"})
    assert "border-radius:50%;background:#" in avatar_html({"userId": "x", "name": "X"})


@pytest.mark.parametrize(
    "color",
    [
        "red;background-image:url(https://evil.example/t.png)",
        'red" onmouseover="alert(1)',
        "#c33",
        7,
    ],
)
def test_an_avatar_takes_only_a_colour_into_its_style(color: Any) -> None:
    """Issue 23, finding 18: before, a `color` claim went into the style attribute
    as it was, and every viewer's widget loaded the remote image."""
    from nyo_realtime_ext import colors
    from nyo_realtime_ext.widgets import avatar_html

    avatar = avatar_html({"userId": "mallory", "name": "M", "color": color})
    assert "evil.example" not in avatar and "onmouseover" not in avatar and "#c33" not in avatar
    assert f"background:{colors.user_color('mallory')};" in avatar


def test_chat_widget_keeps_the_last_messages_and_closing_unsubscribes(server: Any) -> None:
    from nyo_realtime_ext import ChatWidget, PresenceWidget
    from nyo_realtime_ext.client import ThreadedClient

    from .support.tokens import make_token

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
        assert "<p>three</p>" in chat._log.value and "<p>one</p>" not in chat._log.value
        chat.close()  # the presence widget still uses the channel
        assert [m["userId"] for m in bobs.wait_for(lambda c: len(c.members) == 2).members]
        presence.close()  # the last one: ada leaves
        bobs.wait_for(lambda c: [m["userId"] for m in c.members] == ["bob"])


def test_people_with_one_name_stay_apart_and_chat_uses_their_profile(server: Any) -> None:
    from nyo_realtime_ext import ChatWidget, PresenceWidget
    from nyo_realtime_ext.client import ThreadedClient

    from .support.tokens import make_token

    # Bob's name is Sam with a Cyrillic a: it looks the same (issue 23, finding 7).
    with (
        ThreadedClient(server.url, make_token("ada", name="Sam")) as ada,
        ThreadedClient(server.url, make_token("bob", name="S\u0430m", color="#0000aa")) as bob,
    ):
        presence = PresenceWidget("presence-same", client=ada)
        chat = ChatWidget("presence-same", client=ada)
        bobs = bob.channel("presence-same")
        presence.channel.wait_for(lambda c: len(c.members) == 2)
        shown = presence._list.value
        assert ">Sam <span" in shown and ">S\u0430m <span" in shown  # one name twice...
        assert "(@ada)</span>" in shown and "(@bob)</span>" in shown  # ...told apart by id
        bobs.send("chat:message", {"text": "first line\nsecond line"})
        chat.channel.wait_for(
            lambda c: any(m.get("event") == "chat:message" for c in [c] for m in c.messages)
        )
        log = chat._log.value
        assert re.search(r"first line<br>\s*second line", log)
        assert "background:#0000aa" in log  # bob's own colour, as on the panel
        assert '<b title="bob">S\u0430m (@bob)</b>' in log
        chat.close()
        presence.close()


def test_chat_enter_sends_and_the_multiline_box_adds_lines(server: Any) -> None:
    from nyo_realtime_ext import ChatWidget
    from nyo_realtime_ext.client import ThreadedClient

    from .support.tokens import make_token

    with (
        ThreadedClient(server.url, make_token("ada")) as ada,
        ThreadedClient(server.url, make_token("bob")) as bob,
    ):
        chat = ChatWidget("room", client=ada)
        bobs = bob.channel("room")
        assert not chat.multiline and chat._input.children[0] is chat._text

        def heard() -> list[str]:
            return [m["payload"]["text"] for m in bobs.messages if m["event"] == "chat:message"]

        # What the front end of a `Text` does on Enter (and on Shift+Enter alike):
        # the value it has synced, then {"event": "submit"} on the widget's comm.
        chat._text.value = "  hello  "
        chat._text._handle_custom_msg({"event": "submit"}, [])
        bobs.wait_for(lambda c: heard() == ["hello"])
        assert chat._text.value == ""  # the box is emptied for the next one
        chat._text._handle_custom_msg({"event": "submit"}, [])  # Enter on an empty box
        chat._text.value = "by the button"
        chat._button.click()
        bobs.wait_for(lambda c: heard() == ["hello", "by the button"])

        # Several lines: a text area, where Enter is a new line and Send sends.
        chat._text.value = "started on one line"
        chat._lines.value = True  # the toggle
        assert chat.multiline and chat._input.children[0] is chat._area
        assert chat._area.value == "started on one line"
        chat._area.value += "\nand a second"
        chat._text._handle_custom_msg({"event": "submit"}, [])  # no Enter-send in this mode
        chat._button.click()
        bobs.wait_for(lambda c: len(heard()) == 3)
        assert heard()[-1] == "started on one line\nand a second"
        chat.multiline = False
        assert chat._input.children[0] is chat._text and not chat._lines.value
        chat.close()
