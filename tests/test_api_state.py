"""Shared state over HTTP (`channels/{name}/state`, `.../state/{key}`) against a real
standalone server: the same rules and frames as `state:set`, seen by a WebSocket
subscriber."""

from __future__ import annotations

from .support.httpclient import api_of, assert_error, ch


async def test_put_get_and_delete_reach_websocket_subscribers(server, connect, token):
    ada = api_of(server, token("ada", tenant="acme"))
    bob = await connect(server.url, token("bob", tenant="acme"))
    answer = await ada.put(f"channels/{ch('room:1')}/state/{ch('~ada/vote')}", {"value": "yes"})
    assert answer.status == 200  # the channel is made on first write, as by a publish
    entry = answer.body["entry"]
    assert entry == {
        "key": "~ada/vote",
        "value": "yes",
        "version": entry["version"],
        "from": {"userId": "ada", "connectionId": None},
    }
    await bob.subscribe("room:1", state=True)
    snapshot = await bob.expect("state")
    assert snapshot["entries"] == [entry] and snapshot["complete"] is True

    changed = await ada.put(f"channels/{ch('room:1')}/state/n", {"value": {"x": 1}})
    seen = await bob.expect("state:changed")
    assert seen == {"type": "state:changed", "channel": "room:1", **changed.body["entry"]}
    listed = await ada.get(f"channels/{ch('room:1')}/state")
    assert listed.status == 200
    assert listed.body == {"entries": [changed.body["entry"], entry]}  # by key: "n" < "~"

    gone = await ada.delete(f"channels/{ch('room:1')}/state/n")
    assert gone.status == 204 and gone.body is None
    deleted = await bob.expect("state:changed")
    assert deleted["key"] == "n" and deleted["value"] is None
    assert (await ada.get(f"channels/{ch('room:1')}/state")).body == {"entries": [entry]}


async def test_compare_and_set_answers_409_with_the_entry_as_it_is(server, token):
    ada = api_of(server, token("ada", tenant="acme"))
    path = f"channels/{ch('room:2')}/state/count"
    first = (await ada.put(path, {"value": 1, "ifVersion": ""})).body["entry"]
    second = (await ada.put(path, {"value": 2, "ifVersion": first["version"]})).body["entry"]
    stale = await ada.put(path, {"value": 3, "ifVersion": first["version"]})
    assert_error(stale, 409, "conflict")
    assert stale.body["error"]["entry"] == second
    again = await ada.put(path, {"value": 3, "ifVersion": ""})
    assert_error(again, 409, "conflict")
    assert (await ada.get(f"channels/{ch('room:2')}/state")).body["entries"] == [second]


async def test_bad_writes_get_their_status_and_change_nothing(server, token):
    ada = api_of(server, token("ada", tenant="acme"))
    room = ch("room:3")
    await ada.put(f"channels/{room}/state/k", {"value": 0})
    before = (await ada.get(f"channels/{room}/state")).body
    assert_error(
        await ada.put(f"channels/{room}/state/{ch('~bob/vote')}", {"value": 1}), 403, "forbidden"
    )
    assert_error(
        await ada.put(f"channels/{room}/state/k", {"value": "x" * 70_000}), 413, "payload_too_large"
    )
    assert_error(await ada.put(f"channels/{room}/state/k", {}), 400, "bad_request")
    assert_error(
        await ada.put(f"channels/{room}/state/k", {"value": 1, "other": 2}), 400, "bad_request"
    )
    for if_version in (7, None):  # null is no version: leave it out for no condition
        assert_error(
            await ada.put(f"channels/{room}/state/k", {"value": 1, "ifVersion": if_version}),
            400,
            "bad_request",
        )
    assert_error(
        await ada.put(f"channels/{room}/state/{ch('a' * 300)}", {"value": 1}), 400, "bad_request"
    )
    assert (await ada.get(f"channels/{room}/state")).body == before
    # Reading never creates a channel; deleting needs one.
    assert_error(await ada.get(f"channels/{ch('nowhere')}/state"), 404, "not_found")
    assert_error(await ada.delete(f"channels/{ch('nowhere')}/state/k"), 404, "not_found")
    assert_error(await ada.get(f"channels/{ch('nowhere')}"), 404, "not_found")


async def test_private_channels_need_their_rights_over_http(server, token):
    ada = api_of(server, token("ada", tenant="acme", channels=["private-team"]))
    eve = api_of(server, token("eve", tenant="acme"))
    assert (await ada.put(f"channels/{ch('private-team')}/state/k", {"value": 1})).status == 200
    assert_error(await eve.get(f"channels/{ch('private-team')}/state"), 403, "forbidden")
    assert_error(
        await eve.put(f"channels/{ch('private-team')}/state/k", {"value": 2}), 403, "forbidden"
    )
    assert_error(await eve.delete(f"channels/{ch('private-team')}/state/k"), 403, "forbidden")
    assert (await ada.get(f"channels/{ch('private-team')}/state")).body["entries"][0]["value"] == 1
