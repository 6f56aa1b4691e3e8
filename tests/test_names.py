"""Nobody wears another's name (issue 23, finding 7): a chosen name that looks like
another member's name or user id, by the skeleton of names.py, is refused with
nothing changed, on the memory engine and on a real redis-server; a name the
identity provider gives is not refused, and is shown with its user id where it
collides (names.labelled, the widgets' rule)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nyo_realtime_ext.names import collide, labelled, skeletons

from .support.httpclient import api_of, assert_error
from .support.wsclient import no_frame

pytestmark = pytest.mark.hardening

ROOM = "presence-lobby"
# Names a reader takes for "Bob": case, Cyrillic В and о, a zero-width space, a
# variation selector, a soft hyphen, full-width letters, a zero for the o.
LOOKALIKES = ["bob", "BOB", "\u0412\u043eb", "B\u200bob", "B\ufe0fob", "Bo\u00adb", "ｂｏｂ", "B0b"]


@pytest.mark.parametrize("lookalike", LOOKALIKES)
def test_lookalikes_of_a_name_collide(lookalike: str) -> None:
    assert collide(lookalike, "Bob")


@pytest.mark.parametrize(
    ("a", "b"),
    [("Bob", "Rob"), ("Bob", "Bobby"), ("Ada", "Adam"), ("Anna", "Anne")],
)
def test_different_names_do_not(a: str, b: str) -> None:
    assert not collide(a, b)


def test_case_meets_the_confusable_mapping_either_way() -> None:
    # UTS #39 maps capital I to l, and small i to itself: both must meet.
    assert collide("Ian", "ian") and collide("Ian", "lan")
    assert skeletons("Ada  Lovelace") == skeletons("ada lovelace")


def test_the_front_end_agrees_on_every_shared_case() -> None:
    """labextension/src/names.spec.ts checks the same cases file."""
    cases = json.loads(Path(__file__).with_name("scenarios").joinpath("names.json").read_text())
    for a, b, expected in cases["pairs"]:
        assert collide(a, b) is expected, (a, b)


def test_a_colliding_name_is_labelled_with_its_user_id() -> None:
    people = [("bob", "Bob"), ("mallory", "Bob"), ("ada", "Ada")]
    assert labelled("Bob", "mallory", people) == "Bob (@mallory)"
    assert labelled("Bob", "bob", people) == "Bob (@bob)"
    assert labelled("Ada", "ada", people) == "Ada"
    # A name like another's *id* is labelled too.
    assert labelled("ADA", "eve", [("ada", "Ada Lovelace")]) == "ADA (@eve)"


@pytest.fixture(params=["memory", "redis"])
def engine_server(request: Any, standalone: Any) -> Any:
    if request.param == "redis":
        return standalone("--redis", request.getfixturevalue("redis_server").url)
    return standalone()


async def test_a_chosen_lookalike_name_is_refused_and_changes_nothing(
    engine_server: Any, connect: Any, token: Any
) -> None:
    server = engine_server
    bob = await connect(server.url, token("bob", name="Bob"))
    await bob.subscribe(ROOM)
    mallory_token = token("mallory", name="Mallory")
    mallory = await connect(server.url, mallory_token)
    await mallory.subscribe(ROOM)
    await bob.expect("user:joined")
    api = api_of(server, mallory_token)
    before = (await api.get("profile")).body

    for lookalike in LOOKALIKES:
        answer = await api.put("profile", {"name": lookalike, "color": "#123456"})
        assert_error(answer, 409, "conflict")
        assert "@bob" in answer.body["error"]["message"]
    assert (await api.get("profile")).body == before  # the colour did not change either
    await no_frame(bob)  # no presence:updated: Mallory still shows as Mallory

    # Another user's id is taken too, and so is a name someone chose.
    carol = api_of(server, token("carol", name="Carol"))
    assert (await carol.put("profile", {"name": "Captain"})).status == 200
    assert_error(await api.put("profile", {"name": "CAROL"}), 409, "conflict")
    assert_error(await api.put("profile", {"name": "\u0421\u0430\u0440t\u0430in"}), 409, "conflict")

    # A name of her own is fine; Bob may write his own name as he likes.
    assert (await api.put("profile", {"name": "Bobby Tables"})).status == 200
    assert (await mallory.expect("presence:updated"))["member"]["name"] == "Bobby Tables"
    bobs = api_of(server, token("bob", name="Bob"))
    assert (await bobs.put("profile", {"name": "BOB"})).status == 200
    # Other tenants are walls: their Bob is another person.
    elsewhere = api_of(server, token("bob2", name="Bo", tenant="acme"))
    assert (await elsewhere.put("profile", {"name": "Bob"})).status == 200


async def test_a_lookalike_name_from_the_identity_is_not_refused(
    engine_server: Any, connect: Any, token: Any
) -> None:
    """The identity provider owns the names it gives: such a member joins as they
    are, and clients tell them apart by id (names.labelled)."""
    server = engine_server
    bob = await connect(server.url, token("bob", name="Bob"))
    await bob.subscribe(ROOM)
    twin = await connect(server.url, token("robert", name="\u0412\u043eb"))
    subscribed = await twin.subscribe(ROOM)
    shown = {m["userId"]: m["name"] for m in subscribed["members"]}
    assert shown == {"bob": "Bob", "robert": "\u0412\u043eb"}
    people = list(shown.items())
    assert [labelled(name, user, people) for user, name in people] == [
        "Bob (@bob)",
        "\u0412\u043eb (@robert)",
    ]
