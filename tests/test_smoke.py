async def test_two_users_meet_on_a_channel(server, connect, token):
    ada = await connect(server.url, token("ada", tenant="acme"))
    bob = await connect(server.url, token("bob", tenant="acme"))
    await ada.subscribe("room:1")
    await bob.subscribe("room:1")
    joined = await ada.expect("user:joined")
    assert joined["member"]["userId"] == "bob"
    ack = await bob.request(
        {"type": "broadcast", "channel": "room:1", "event": "chat", "payload": {"t": 1}}
    )
    message = await ada.expect("message")
    assert ack == {"type": "ack", "ref": ack["ref"], "id": message["id"]}
    assert message["payload"] == {"t": 1} and message["from"]["userId"] == "bob"


async def test_jupyter_login_is_a_way_in(jupyter_ws_url, jp_auth_header, connect):
    client = await connect(jupyter_ws_url, headers=jp_auth_header)
    frame = await client.expect("authenticated")
    assert frame["user"]["userId"]
    assert (await client.subscribe("lobby"))["members"][0]["userId"] == frame["user"]["userId"]
