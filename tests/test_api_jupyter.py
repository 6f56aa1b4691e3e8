"""The HTTP fallback API under a real Jupyter server (base_url is not '/'):
Jupyter's login and Bearer JWTs, one hub shared with the WebSocket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .support.httpclient import Api, assert_error, ch, held
from .support.wsclient import no_frame


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    """conftest's, with issue 23's application: Mallory may read no `admin` channel."""
    realtime = {
        **jp_server_config["Realtime"],
        "on_subscribe": "tests.support.hooks:keep_mallory_out",
    }
    return {**jp_server_config, "Realtime": realtime}


@pytest.fixture
def jupyter_api(jupyter_url: str) -> Any:
    def make(token: str | None = None, headers: dict[str, str] | None = None) -> Api:
        return Api(jupyter_url + "api/", token, headers)

    return make


async def test_jupyter_login_publishes_to_websocket_subscribers(
    jupyter_api, jupyter_ws_url, jp_auth_header, connect, token
):
    jupyter = jupyter_api(headers=jp_auth_header)
    watcher = await connect(jupyter_ws_url, token("ada"))
    await watcher.subscribe("room")
    answer = await jupyter.post(f"channels/{ch('room')}/messages", {"event": "hi", "payload": 1})
    assert answer.status == 201
    message = await watcher.expect("message")
    assert message["id"] == answer.body["id"]
    assert message["from"]["connectionId"] is None and message["from"]["userId"]
    # The same hub and store: the WebSocket's channel and message are in HTTP history.
    history = await jupyter.get(f"channels/{ch('room')}/messages")
    assert [m["id"] for m in history.body["messages"]] == [message["id"]]


async def test_bearer_jwt_works_under_jupyter_and_owns_what_it_creates(jupyter_api, token):
    ada = jupyter_api(token("ada", channels=["private-j"]))
    created = await ada.post("channels", {"name": "private-j", "type": "private"})
    assert created.status == 201 and created.body["channel"]["owner"] == "ada"
    assert_error(
        await jupyter_api(token("bob")).get(f"channels/{ch('private-j')}"), 403, "forbidden"
    )
    assert_error(
        await ada.post("channels", {"name": "private-j", "type": "private"}), 409, "conflict"
    )


async def test_no_credentials_is_401_json_under_jupyter(jupyter_api):
    anonymous = jupyter_api()
    assert_error(await anonymous.get("channels"), 401, "unauthorized")
    assert_error(
        await anonymous.post(f"channels/{ch('x')}/messages", {"event": "e"}), 401, "unauthorized"
    )
    assert_error(await jupyter_api("not-a-jwt").get("channels"), 401, "unauthorized")
    assert_error(await jupyter_api(headers={"Cookie": "x=1"}).get("channels"), 401, "unauthorized")


async def test_long_poll_under_jupyter_wakes_from_both_sides(
    jupyter_api, jupyter_ws_url, connect, token
):
    ada = jupyter_api(token("ada"))
    since = (await ada.post(f"channels/{ch('lp')}/messages", {"event": "e"})).body["id"]
    poll = asyncio.ensure_future(ada.get(f"channels/{ch('lp')}/messages?since={since}&wait=30"))
    await held(poll)
    bob = await connect(jupyter_ws_url, token("bob"))
    await bob.subscribe("lp")
    ack = await bob.request({"type": "broadcast", "channel": "lp", "event": "ws"})
    assert [m["id"] for m in (await asyncio.wait_for(poll, 20)).body["messages"]] == [ack["id"]]

    poll = asyncio.ensure_future(ada.get(f"channels/{ch('lp')}/messages?since={ack['id']}&wait=30"))
    await held(poll)
    published = await jupyter_api(token("cy")).post(f"channels/{ch('lp')}/messages", {"event": "h"})
    answer = await asyncio.wait_for(poll, 20)
    assert [m["id"] for m in answer.body["messages"]] == [published.body["id"]]


async def test_http_presence_under_jupyter(jupyter_api, jupyter_ws_url, connect, token):
    watcher = await connect(jupyter_ws_url, token("ada"))
    await watcher.subscribe("presence-j")
    bob = jupyter_api(token("bob"))
    path = f"channels/{ch('presence-j')}/presence"
    assert (await bob.post(path, {"status": "busy"})).body["member"]["status"] == "busy"
    joined = await watcher.expect("user:joined")
    assert joined["member"]["userId"] == "bob" and joined["member"]["status"] == "busy"
    assert (await bob.delete(path)).status == 204
    assert (await watcher.expect("user:left"))["member"]["userId"] == "bob"
    members = await bob.get(f"channels/{ch('presence-j')}/members?include=offline")
    assert {m["userId"]: m["status"] for m in members.body["members"]} == {
        "ada": "online",
        "bob": "offline",
    }


async def test_on_subscribe_guards_http_reads_and_presence_under_jupyter(
    jupyter_api, jupyter_ws_url, connect, token
):
    name = "admin:payroll"
    path = f"channels/{ch(name)}"
    admin = await connect(jupyter_ws_url, token("admin"))
    await admin.subscribe(name)
    secret = await admin.request(
        {"type": "broadcast", "channel": name, "event": "pay", "payload": "salaries", "echo": False}
    )
    mallory = jupyter_api(token("mallory"))
    for answer in [
        await mallory.get(f"{path}/messages"),
        await mallory.get(f"{path}/messages?since={secret['id']}&wait=30"),
        await mallory.post(f"{path}/presence", {"status": "online"}),
        await mallory.get(f"{path}/members"),
        await mallory.get(path),
    ]:
        assert_error(answer, 403, "forbidden")
    assert name not in [c["name"] for c in (await mallory.get("channels")).body["channels"]]
    refused = await (await connect(jupyter_ws_url, token("mallory"))).request(
        {"type": "subscribe", "channel": name}
    )
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    await no_frame(admin)  # no `user:joined mallory`
    members = (await jupyter_api(token("admin")).get(f"{path}/members")).body["members"]
    assert [m["userId"] for m in members] == ["admin"]


async def test_openapi_document_points_at_the_jupyter_mount(jupyter_api, jp_base_url):
    answer = await jupyter_api().get("openapi.json")
    assert answer.status == 200
    assert answer.body["servers"] == [{"url": f"{jp_base_url}nyo-realtime/api"}]


async def test_unknown_route_and_bad_method_under_jupyter(jupyter_api, token):
    ada = jupyter_api(token("ada"))
    assert_error(await ada.get("nothing"), 404, "not_found")
    answer = await ada.call("PUT", "channels", body={})
    assert_error(answer, 405, "bad_request")
    assert answer.headers["Allow"] == "GET, POST"


async def _cookie_login(jupyter_url: str, jupyter_token: str) -> str:
    """Log in as a browser does (login form), returning the Cookie header it would send."""
    from http.cookies import SimpleCookie

    from tornado.httpclient import AsyncHTTPClient

    login_url = jupyter_url.replace("nyo-realtime/", "login")
    page = await AsyncHTTPClient().fetch(login_url)
    jar = SimpleCookie()
    for header in page.headers.get_list("Set-Cookie"):
        jar.load(header)
    xsrf = jar["_xsrf"].value
    answer = await AsyncHTTPClient().fetch(
        login_url, method="POST", body=f"password={jupyter_token}&_xsrf={xsrf}",
        headers={"Cookie": f"_xsrf={xsrf}"}, follow_redirects=False, raise_error=False,
    )  # fmt: skip
    for header in answer.headers.get_list("Set-Cookie"):
        jar.load(header)
    return "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())


async def test_a_cookie_login_needs_xsrf_even_behind_a_bogus_bearer_header(
    jupyter_api, jupyter_url, jp_auth_header, token
):
    cookie = await _cookie_login(jupyter_url, jp_auth_header["Authorization"].split(" ", 1)[1])
    logged_in = jupyter_api(headers={"Cookie": cookie})
    assert (await logged_in.get("channels")).status == 200  # a GET needs no XSRF token
    body = {"name": "forged", "type": "public"}
    forged = await jupyter_api(headers={"Cookie": cookie, "Authorization": "Bearer garbage"}).post(
        "channels", body
    )
    assert forged.status == 403
    assert (await logged_in.get(f"channels/{ch('forged')}")).status == 404
    with_jwt = jupyter_api(token("ada"), headers={"Cookie": cookie})
    created = await with_jwt.post("channels", body)
    assert created.status == 201 and created.body["channel"]["owner"] == "ada"
