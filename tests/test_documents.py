"""Document channels are for the people who may open the documents (issue 23,
finding 7): Mallory gets `forbidden` on Bob's `presence-doc@bob:` channels over
WebSocket and HTTP, on both engines, while Bob, his kernel and whoever Bob's own
server admits keep using them."""

from __future__ import annotations

from typing import Any

import pytest

from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.documents import escape_scope, may_use_document, scope_in
from nyo_realtime_ext.kernel_env import kernel_identity

from .support.httpclient import Api, api_of, assert_error, ch

pytestmark = pytest.mark.hardening

BOBS = "presence-doc@bob:analysis.ipynb"
BOBS_NAMED = "presence-doc@bob=2Fgpu:analysis.ipynb"


def test_a_scope_is_read_as_the_front_end_writes_it() -> None:
    assert escape_scope("ada/analysis") == "ada=2Fanalysis"
    assert escape_scope("é=x") == "=C3=A9=3Dx"
    assert scope_in("presence-doc@ada=2Fanalysis:a.ipynb") == "ada=2Fanalysis"
    assert scope_in("presence-doc:a.ipynb") is None  # shared files: no scope, no rule
    assert scope_in("lobby") is None
    assert scope_in("presence-doc@" + "x" * 187) == ""  # cut short: nobody's


def test_who_may_use_a_scoped_document_channel() -> None:
    mallorys_server = Realtime(document_scope="mallory")
    assert not may_use_document(mallorys_server, "mallory", BOBS)
    assert not may_use_document(mallorys_server, "mallory", BOBS_NAMED)
    assert may_use_document(mallorys_server, "bob", BOBS)  # his files, from anywhere
    assert may_use_document(mallorys_server, "bob", BOBS_NAMED)
    assert not may_use_document(mallorys_server, "bo", BOBS)  # no prefix of an id
    assert not may_use_document(mallorys_server, "bob", "presence-doc@bobby:a.ipynb")
    # Her own server's documents are for whoever her server admits.
    assert may_use_document(mallorys_server, "anyone", "presence-doc@mallory:a.ipynb")
    assert may_use_document(mallorys_server, "anyone", "presence-doc:a.ipynb")
    assert may_use_document(mallorys_server, "anyone", "lobby")
    # Bob shares his server's files with Ada, by configuration.
    shared = Realtime(document_scope="mallory", document_readers={"bob/gpu": ["ada"]})
    assert may_use_document(shared, "ada", BOBS_NAMED)
    assert not may_use_document(shared, "ada", BOBS)


@pytest.fixture(params=["memory", "redis"])
def mallorys_server(request: Any, standalone: Any) -> Any:
    """A server whose documents are Mallory's (as her own server on JupyterHub),
    on the memory engine or on a real redis-server."""
    args = ["--Realtime.document_scope=mallory"]
    if request.param == "redis":
        args += ["--redis", request.getfixturevalue("redis_server").url]
    return standalone(*args)


async def test_mallory_is_forbidden_on_bobs_document_channel(
    mallorys_server: Any, connect: Any, token: Any
) -> None:
    server = mallorys_server
    forged = {"event": "cell:executed", "payload": {"cell": {"id": "c", "index": 0, "line": "x"}}}
    # Bob uses his document's channel from wherever he is: it exists, with his run.
    bob = await connect(server.url, token("bob"))
    assert (await bob.subscribe(BOBS))["channelType"] == "presence"
    ran = await bob.request(
        {"type": "broadcast", "channel": BOBS, "ref": 2, **forged}
    )  # fmt: skip
    assert ran["type"] == "ack"

    mallory = await connect(server.url, token("mallory", name="Bob"))
    refused = await mallory.request({"type": "subscribe", "channel": BOBS, "ref": 1})
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert refused["channel"] == BOBS
    api = api_of(server, token("mallory"))
    name = ch(BOBS)
    for answer in [
        await api.post(f"channels/{name}/messages", forged),
        await api.get(f"channels/{name}/messages"),
        await api.get(f"channels/{name}/messages?wait=1"),
        await api.get(f"channels/{name}/members"),
        await api.post(f"channels/{name}/presence"),
        await api.get(f"channels/{name}"),
        await api.post("channels", {"name": "presence-doc@bob:new.ipynb", "type": "presence"}),
    ]:
        assert_error(answer, 403, "forbidden")
    assert BOBS not in [c["name"] for c in (await api.get("channels")).body["channels"]]

    # Nothing of Mallory's reached Bob's history or members.
    bobs_api = api_of(server, token("bob"))
    history = await bobs_api.get(f"channels/{name}/messages")
    assert [m["from"]["userId"] for m in history.body["messages"]] == ["bob"]
    members = await bobs_api.get(f"channels/{name}/members")
    assert [m["userId"] for m in members.body["members"]] == ["bob"]
    # Mallory's own documents are hers to use.
    mine = await mallory.subscribe("presence-doc@mallory:analysis.ipynb")
    assert mine["type"] == "subscribed"


async def test_bobs_own_server_lets_his_kernel_and_browser_in(
    jp_serverapp: Any, jupyter_url: str, jupyter_ws_url: str, jp_auth_header: Any,
    connect: Any, token: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """On JupyterHub, Bob's server's own scope is `bob`: his browser (Jupyter's
    login) and his kernel (the token kernel_env gives it) use his documents;
    Mallory, with a JWT for this server, does not."""
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    service = jp_serverapp.web_app.settings["nyo_realtime_service"]
    service.authenticator.trust_token("bobs-kernel", kernel_identity(service.config))

    browser = await connect(jupyter_ws_url, headers=jp_auth_header)
    assert (await browser.subscribe(BOBS))["type"] == "subscribed"
    kernel = await connect(jupyter_ws_url, "bobs-kernel")
    assert (await kernel.subscribe(BOBS))["type"] == "subscribed"
    jupyter = Api(jupyter_url + "api/", headers=jp_auth_header)
    assert (await jupyter.get(f"channels/{ch(BOBS)}/messages")).status == 200

    mallory = await connect(jupyter_ws_url, token("mallory"))
    refused = await mallory.request({"type": "subscribe", "channel": BOBS_NAMED, "ref": 1})
    assert refused["code"] == "forbidden"
