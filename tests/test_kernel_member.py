"""A kernel is never counted as a person (issue 22, docs/protocol.md "People and
kernels"): on a single-user server with token login, where every browser is an
anonymous person, a notebook's kernel joins as a kernel of its own."""

from __future__ import annotations

import getpass
from typing import Any

import pytest

from nyo_realtime_ext.auth import Authenticator, AuthError
from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.kernel_env import _notebook_path, kernel_identity
from nyo_realtime_ext.models import Member

from .support.kernels import comm_update_containing, running_kernel
from .support.tokens import SECRET, make_token

ROOM = "lab:room"


@pytest.fixture(autouse=True)
def no_jupyterhub(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before the server starts: its kernels would be the hub's user.
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)


def test_who_a_kernel_is() -> None:
    me = getpass.getuser()
    notebook = kernel_identity(Realtime(), "work/demo.ipynb")
    assert (notebook.user_id, notebook.name, notebook.kind) == (
        f"{me}:kernel:work/demo.ipynb", "demo.ipynb's kernel", "kernel",
    )  # fmt: skip
    assert notebook.to_wire()["kind"] == "kernel"
    # JupyterLab starts a notebook's session at `<dir>/<uuid>`, named after the file.
    assert _notebook_path("work/0f3c-uuid", "demo.ipynb") == "work/demo.ipynb"
    assert _notebook_path("demo.ipynb", None) == "demo.ipynb"
    # An owner that is known makes the kernel that person, whatever the notebook.
    owner = kernel_identity(Realtime(kernel_user="dorothy"), "demo.ipynb")
    assert (owner.user_id, owner.kind) == ("dorothy", "person")
    assert "kind" not in owner.to_wire()


def test_kind_comes_from_the_token_and_only_a_kernel_writes_it() -> None:
    auth = Authenticator(Realtime(jwt_secret=SECRET))
    assert auth.identify(make_token("ada")).kind == "person"
    assert auth.identify(make_token("k", kind="kernel")).kind == "kernel"
    with pytest.raises(AuthError, match="kind"):
        auth.identify(make_token("x", kind="robot"))
    # One added field on the member's wire, only where it is not a person.
    assert "kind" not in Member("ada", "Ada").to_wire()
    assert Member("k", "K", kind="kernel").to_wire()["kind"] == "kernel"


async def test_two_anonymous_people_and_a_notebooks_kernel(
    jp_fetch: Any, jp_serverapp: Any, jupyter_ws_url: str, connect: Any
) -> None:
    async with running_kernel(jp_fetch, jp_serverapp, notebook="demo.ipynb") as kernel:
        await kernel.run(
            "from nyo_realtime_ext import PresenceWidget, ChatWidget\n"
            f"presence = PresenceWidget({ROOM!r})\n"
            f"chat = ChatWidget({ROOM!r})\n"
            "display(presence, chat)"
        )
        me = await kernel.value("presence.client.user")
        assert me["kind"] == "kernel" and me["name"] == "demo.ipynb's kernel"
        assert me["userId"] == f"{getpass.getuser()}:kernel:demo.ipynb"

        # Two browsers, each an anonymous person of Jupyter's token login.
        io = await connect(jupyter_ws_url, make_token("anon-io", name="Anonymous Io"))
        subscribed = await io.subscribe(ROOM)
        kernels = [m for m in subscribed["members"] if m.get("kind") == "kernel"]
        assert [m["name"] for m in kernels] == ["demo.ipynb's kernel"]
        europa = await connect(jupyter_ws_url, make_token("anon-eu", name="Anonymous Europa"))
        await europa.subscribe(ROOM)
        await comm_update_containing(kernel, "2 people here")

        title = await kernel.value("presence._title.value")
        assert "2 people here" in title and "1 kernel" in title
        listed = await kernel.value("presence._list.value")
        # People first, then the kernel, marked as one; nobody is "you" to a kernel.
        assert listed.index("Anonymous Europa") < listed.index("Anonymous Io")
        assert listed.index("Anonymous Io") < listed.index("demo.ipynb&#x27;s kernel")
        assert "(kernel)" in listed and "(this kernel)" in listed and "(you)" not in listed
        assert await kernel.value("presence._picker.description") == "Kernel:"

        # What a person sends is theirs; what the kernel's code sends is the kernel's.
        await io.request(
            {"type": "broadcast", "channel": ROOM, "event": "chat:message",
             "payload": {"text": "hello from Io"}}
        )  # fmt: skip
        await comm_update_containing(kernel, "hello from Io")
        await kernel.value("chat.send('hello from the kernel')")
        heard = await europa.expect("message", payload={"text": "hello from the kernel"})
        assert heard["from"]["userId"] == me["userId"]
        messages = await kernel.value("[m['from']['userId'] for m in chat.messages]")
        assert messages == ["anon-io", me["userId"]]
        log = await kernel.value("chat._log.value")
        assert "(kernel)" in log and "Anonymous Io" in log

        # Typed into the box: the browser sends it (relay); the kernel never signs it.
        assert await kernel.value("chat._log.relay") == ROOM
        await kernel.run("chat._text.value = 'typed by a person'; chat._submit()")
        assert await kernel.value("chat._text.value") == "typed by a person"
        assert "not sent" in await kernel.value("chat._notice.value")
        await kernel.value("chat.send('after')")
        after = await europa.expect("message", payload={"text": "after"})
        assert after["from"]["userId"] == me["userId"]
        assert all(f.get("payload") != {"text": "typed by a person"} for f in europa.backlog)

        await kernel.run("chat.close(); presence.close()")
        left = await io.expect("user:left")
        assert left["member"]["userId"] == me["userId"] and left["member"]["kind"] == "kernel"
