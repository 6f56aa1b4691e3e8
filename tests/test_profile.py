"""Profiles (issue 11): a user chooses their display name and colour once, over HTTP;
the server keeps them and shows them everywhere, live. Real standalone servers and
real WebSocket clients, the memory engine (tests/e2e/test_nodes.py has the Redis nodes)."""

from __future__ import annotations

import asyncio
import json
import re
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nyo_realtime_ext.profiles import NAME_PATTERN, check_name
from nyo_realtime_ext.protocol import ProtocolError

from .support.httpclient import api_of, assert_error, ch
from .support.wsclient import drain, no_frame


def profile(user: str, name: str, color: str | None, chosen: tuple[Any, Any] = (None, None)):
    return {
        "userId": user,
        "name": name,
        "color": color,
        "chosen": {"name": chosen[0], "color": chosen[1]},
    }


async def test_a_chosen_name_and_colour_are_kept_and_cleared(server, token):
    ada = api_of(server, token("ada", name="Ada Lovelace"))
    answer = await ada.get("profile")
    assert answer.status == 200
    assert answer.body == {"profile": profile("ada", "Ada Lovelace", None)}

    answer = await ada.put("profile", {"name": "  Countess  ", "color": "#A0B1C2"})
    assert answer.status == 200
    assert answer.body["profile"] == profile("ada", "Countess", "#a0b1c2", ("Countess", "#a0b1c2"))
    assert (await ada.get("profile")).body == answer.body  # kept by the server

    # Omitted keys stay; null clears back to the identity's value.
    answer = await ada.put("profile", {"name": None})
    assert answer.body["profile"] == profile("ada", "Ada Lovelace", "#a0b1c2", (None, "#a0b1c2"))
    answer = await ada.put("profile", {"color": None})
    assert answer.body["profile"] == profile("ada", "Ada Lovelace", None)
    assert (await ada.put("profile", {})).body["profile"] == profile("ada", "Ada Lovelace", None)


async def test_the_identity_colour_shows_until_one_is_chosen(server, token):
    bob = api_of(server, token("bob", name="Bob", color="#112233"))
    assert (await bob.get("profile")).body["profile"] == profile("bob", "Bob", "#112233")
    chosen = (await bob.put("profile", {"color": "#445566"})).body["profile"]
    assert chosen == profile("bob", "Bob", "#445566", (None, "#445566"))


async def test_profiles_are_per_user_and_per_tenant(server, token):
    ada = api_of(server, token("ada", tenant="acme"))
    await ada.put("profile", {"name": "Ada A."})
    # Another user, and the same user id in another tenant, are untouched.
    bob = api_of(server, token("bob", tenant="acme"))
    other_ada = api_of(server, token("ada", tenant="globex"))
    assert (await bob.get("profile")).body["profile"]["name"] == "Bob"
    assert (await other_ada.get("profile")).body["profile"]["name"] == "Ada"
    # Nobody chooses another's name in a tenant (issue 23, finding 7; test_names.py),
    # but the same name in another tenant is another person's.
    assert_error(await bob.put("profile", {"name": "Ada A."}), 409, "conflict")
    same = (await other_ada.put("profile", {"name": "Ada A."})).body["profile"]
    assert (same["userId"], same["name"]) == ("ada", "Ada A.")
    assert (await ada.get("profile")).body["profile"]["userId"] == "ada"


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 65},
        {"name": "tab\there"},
        {"name": "new\nline"},
        {"name": "\u202eevil"},  # a bidi override would show it as another name
        {"name": 7},
        {"name": ["Ada"]},
        {"color": "red"},
        {"color": "#12345"},
        {"color": "#1234567"},
        {"color": "#ggghhh"},
        {"color": 0x123456},
        {"name": "Fine", "color": "nope"},  # one bad field refuses the whole change
        {"userId": "bob"},  # nobody chooses an id, theirs or another's
        {"name": "Fine", "user": "bob"},
    ],
)
async def test_bad_changes_are_refused_and_change_nothing(server, token, body):
    ada = api_of(server, token("ada", name="Ada"))
    await ada.put("profile", {"name": "Before", "color": "#010203"})
    assert_error(await ada.put("profile", body), 400, "bad_request")
    assert (await ada.get("profile")).body["profile"] == profile(
        "ada", "Before", "#010203", ("Before", "#010203")
    )


async def test_the_body_must_be_a_json_object(server, token):
    ada = api_of(server, token("ada"))
    assert_error(await ada.put("profile", raw=b"{"), 400, "bad_request")
    assert_error(await ada.put("profile", ["name"]), 400, "bad_request")
    assert_error(await ada.call("POST", "profile", {"name": "x"}), 405, "bad_request")
    assert_error(await api_of(server, None).get("profile"), 401, "unauthorized")
    assert (await ada.get("profile")).body["profile"]["chosen"] == {"name": None, "color": None}


async def test_a_long_name_of_64_characters_and_emoji_are_fine(server, token):
    ada = api_of(server, token("ada"))
    name = "é" * 60 + "👩‍💻"  # 64 code points, a zero-width joiner among them
    assert (await ada.put("profile", {"name": name})).body["profile"]["name"] == name


async def test_new_connections_and_members_show_the_chosen_profile(server, connect, token):
    ada_token = token("ada", name="Ada")
    await api_of(server, ada_token).put("profile", {"name": "Countess", "color": "#abcdef"})
    ada = await connect(server.url, ada_token, authenticate=False)
    welcome = await ada.expect("authenticated")
    assert welcome["user"]["userId"] == "ada"
    assert (welcome["user"]["name"], welcome["user"]["color"]) == ("Countess", "#abcdef")

    bob = await connect(server.url, token("bob"))
    await bob.subscribe("presence-room")
    await ada.subscribe("presence-room")
    joined = await bob.expect("user:joined")
    assert (joined["member"]["name"], joined["member"]["color"]) == ("Countess", "#abcdef")
    # The first frame `auth` gives the same welcome as the query token.
    late = await connect(server.url)
    answer = await late.request({"type": "auth", "token": ada_token})
    assert answer["type"] == "authenticated" and answer["user"]["name"] == "Countess"


async def test_a_change_reaches_every_channel_once_live(server, connect, token):
    ada_token = token("ada", name="Ada", color="#000001")
    ada_api = api_of(server, ada_token)
    tab1 = await connect(server.url, ada_token)
    tab2 = await connect(server.url, ada_token)
    bob = await connect(server.url, token("bob"))
    for channel in ("presence-a", "presence-b"):
        await bob.subscribe(channel)
        await tab1.subscribe(channel)
        await tab2.subscribe(channel)  # a second tab: still one member
    await bob.subscribe("plain-room")  # not a presence channel of ada's
    await ada_api.post(f"channels/{ch('presence-c')}/presence")  # an HTTP member too
    await bob.subscribe("presence-c")
    await bob.subscribe("presence-d")  # ada is not there
    await drain(bob)
    await drain(tab1)

    answer = await ada_api.put("profile", {"name": "Countess", "color": "#abcdef"})
    assert answer.status == 200
    updates = [await bob.expect("presence:updated") for _ in range(3)]
    assert sorted(u["channel"] for u in updates) == ["presence-a", "presence-b", "presence-c"]
    for update in updates:
        member = update["member"]
        assert (member["userId"], member["name"], member["color"]) == (
            "ada", "Countess", "#abcdef",
        )  # fmt: skip
    await no_frame(bob)  # exactly one per channel: none for the second tab, none elsewhere
    members = (await ada_api.get(f"channels/{ch('presence-a')}/members")).body["members"]
    assert {m["userId"]: m["name"] for m in members} == {"ada": "Countess", "bob": "Bob"}
    # Ada's own tabs see it too.
    mine = await tab1.expect("presence:updated", channel="presence-a")
    assert mine["member"]["name"] == "Countess"

    # The same values again change nothing anybody sees.
    await ada_api.put("profile", {"name": "Countess"})
    await no_frame(bob)
    # Clearing shows the identity's values again, live.
    await ada_api.put("profile", {"name": None, "color": None})
    reverted = [await bob.expect("presence:updated") for _ in range(3)]
    assert {(u["member"]["name"], u["member"].get("color")) for u in reverted} == {
        ("Ada", "#000001")
    }


async def test_nobody_changes_another_users_profile(server, connect, token):
    bob_api = api_of(server, token("bob"))
    ada = await connect(server.url, token("ada", name="Ada"))
    watcher = await connect(server.url, token("cy"))
    await ada.subscribe("presence-room")
    await watcher.subscribe("presence-room")
    await drain(watcher)
    # The route has no user in it: bob's PUT is bob's profile, whatever the body says.
    assert_error(
        await bob_api.put("profile", {"userId": "ada", "name": "Mallory"}), 400, "bad_request"
    )
    # Nor may he take Ada's name as his (test_names.py); a name of his own is his.
    assert_error(await bob_api.put("profile", {"name": "Ada"}), 409, "conflict")
    changed = (await bob_api.put("profile", {"name": "Not Ada"})).body["profile"]
    assert changed["userId"] == "bob"
    await no_frame(watcher)
    members = (await bob_api.get(f"channels/{ch('presence-room')}/members")).body["members"]
    assert [(m["userId"], m["name"]) for m in members] == [("ada", "Ada"), ("cy", "Cy")]


async def test_the_profile_route_is_rate_limited(standalone, token):
    server = standalone("--Realtime.rate_limit=2")
    ada = api_of(server, token("ada"))
    answers = await asyncio.gather(*(ada.put("profile", {"name": f"n{i}"}) for i in range(12)))
    statuses = [a.status for a in answers]
    assert 429 in statuses and 200 in statuses


async def test_profile_changes_are_a_few_per_minute_and_a_refused_one_changes_nothing(
    standalone, connect, token
):
    # Issue 23, finding 6: each change is one `presence:updated` per channel per
    # watcher, so 279 renames in 5 s cost the server seconds of CPU.
    server = standalone("--Realtime.profile_changes_per_minute=3")
    ada, bob = api_of(server, token("ada")), api_of(server, token("bob"))
    watcher = await connect(server.url, token("bob"))
    await watcher.request({"type": "subscribe", "channel": "presence-room"})
    present = await connect(server.url, token("ada"))
    await present.request({"type": "subscribe", "channel": "presence-room"})
    answers = [await ada.put("profile", {"name": f"Ada {i}"}) for i in range(8)]
    assert [a.status for a in answers] == [200] * 6 + [429] * 2  # bursts of twice 3
    assert_error(answers[-1], 429, "rate_limited")
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert "profile changes per minute" in answers[-1].body["error"]["message"]
    assert (await ada.get("profile")).body["profile"]["name"] == "Ada 5"  # refused: unchanged
    members = (await bob.get(f"channels/{ch('presence-room')}/members")).body["members"]
    assert {m["userId"]: m["name"] for m in members}["ada"] == "Ada 5"
    assert (await ada.get("profile")).status == 200  # reading is not a change
    assert (await bob.put("profile", {"name": "Bob"})).status == 200  # bob's own budget


# -- the rule for names, as the OpenAPI document publishes it ---------------------------

SPACES = " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
TRICKY = "\x00\x1f\x7f\x9f\u061c\u200b\u200d\u200e\u202a\u202e\u2066\u2069é😀"


@given(
    st.text(alphabet=st.sampled_from(SPACES + TRICKY + "ab"), max_size=70)
    | st.text(max_size=80)
    | st.builds(lambda a, n, b: a + "x" * n + b, st.text(SPACES, max_size=3),
                st.integers(60, 68), st.text(SPACES, max_size=3))
)  # fmt: skip
@settings(max_examples=2000, deadline=None)
def test_the_published_name_pattern_accepts_exactly_what_the_server_does(name):
    try:
        check_name(name)
        accepted = True
    except ProtocolError:
        accepted = False
    assert accepted == bool(re.search(NAME_PATTERN, name)), repr(name)


def test_the_openapi_document_publishes_the_name_rule():
    document = json.loads(files("nyo_realtime_ext").joinpath("openapi.json").read_text("utf-8"))
    body = document["paths"]["/profile"]["put"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["name"]["pattern"] == NAME_PATTERN
