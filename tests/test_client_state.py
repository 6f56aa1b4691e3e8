"""The Python client's shared state (`RealtimeClient.shared_state`, `SyncState`)
against a real standalone server: a live mapping, writes through the server,
observers called once per change, consistent after the server restarts."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import pytest

from nyo_realtime_ext.client import (
    Conflict,
    ConnectionLost,
    RealtimeClient,
    RequestError,
    SharedState,
    ThreadedClient,
)

from .support.standalone_server import StandaloneServer
from .support.tokens import make_token

FAST = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.5, "max_reconnect_attempts": 50}


async def until(
    state: SharedState, predicate: Callable[[SharedState], bool], timeout: float = 30
) -> None:
    """Wait for `predicate(state)`, checked at each change the state reports."""
    changed = asyncio.Event()
    off = state.observe(None, lambda *_: changed.set())
    try:
        async with asyncio.timeout(timeout):
            while not predicate(state):
                changed.clear()
                await changed.wait()
    finally:
        off()


async def test_a_write_shows_in_every_client_and_observers_hear_it_once(
    server: StandaloneServer,
) -> None:
    ada = RealtimeClient(server.url, make_token("ada"))
    bob = RealtimeClient(server.url, make_token("bob"))
    ada_state = await ada.shared_state("room")
    bob_state = await bob.shared_state("room")
    heard: list[tuple[str, Any]] = []
    slider: list[Any] = []
    bob_state.observe(None, lambda key, value, entry: heard.append((key, value)))
    bob_state.observe("slider", lambda key, value, entry: slider.append(value))

    version = await ada_state.set("slider", 5)
    assert ada_state["slider"] == 5 and ada_state.version("slider") == version  # at once
    await until(bob_state, lambda s: s.get("slider") == 5)
    assert bob_state.entry("slider") == {
        "key": "slider", "value": 5, "version": version,
        "from": {"userId": "ada", "connectionId": ada.connection_id},
    }  # fmt: skip
    await ada_state.set("params", {"alpha": 0.5})
    await ada_state.delete("slider")
    await until(bob_state, lambda s: "slider" not in s and "params" in s)
    assert heard == [("slider", 5), ("params", {"alpha": 0.5}), ("slider", None)]
    assert slider == [5, None]
    assert dict(bob_state) == dict(ada_state) == {"params": {"alpha": 0.5}}

    # Compare-and-set: the version one holds, or a Conflict with the entry as it is.
    current = bob_state.version("params")
    newer = await bob_state.compare_and_set("params", {"alpha": 1}, current)
    with pytest.raises(Conflict) as conflict:
        await ada_state.compare_and_set("params", {"alpha": 2}, current)
    assert conflict.value.entry["version"] == newer and conflict.value.entry["value"] == {
        "alpha": 1
    }
    with pytest.raises(Conflict):
        await ada_state.compare_and_set("params", {}, None)  # None: only if absent
    with pytest.raises(RequestError) as forged:
        await ada_state.set("~bob/vote", "x")
    assert forged.value.code == "forbidden"
    await until(ada_state, lambda s: s["params"] == {"alpha": 1})
    # A newcomer starts from the current state.
    cy = RealtimeClient(server.url, make_token("cy"))
    assert dict(await cy.shared_state("room")) == {"params": {"alpha": 1}}
    for client in (ada, bob, cy):
        await client.close()


async def test_the_mapping_is_consistent_after_the_server_restarts(
    standalone: Callable[..., StandaloneServer],
) -> None:
    server = standalone()
    writer = RealtimeClient(server.url, make_token("ada"), **FAST)
    reader = RealtimeClient(server.url, make_token("bob"), **FAST)
    written = await writer.shared_state("room")
    read = await reader.shared_state("room")
    seen: list[tuple[str, str]] = []  # (key, version) of every change the reader heard
    read.observe(None, lambda key, value, entry: seen.append((key, entry["version"])))

    acked: dict[str, tuple[int, str]] = {}  # key -> the last acked (value, version)
    stop = asyncio.Event()

    async def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            key = f"k{n % 5}"
            try:
                acked[key] = (n, await written.set(key, n, timeout=20))
            except (ConnectionLost, asyncio.TimeoutError):
                pass  # cut off before the ack: its outcome is unknown

    task = asyncio.ensure_future(write())
    for cut in (server.kill, lambda: server.stop(signal.SIGTERM)):
        await until(read, lambda s: len(seen) >= 20)
        seen_before = len(seen)
        cut()
        server.start()
        await until(read, lambda s, before=seen_before: len(seen) >= before + 20)
    stop.set()
    await task
    # A last write from a fresh client settles where everything stands on the server.
    final = RealtimeClient(server.url, make_token("cy"))
    truth = await final.shared_state("room")
    await until(read, lambda s: dict(s) == dict(truth))
    await until(written, lambda s: dict(s) == dict(truth))
    for key, (value, version) in acked.items():
        # An acked write is there, or was overwritten by a later one.
        assert truth[key] >= value, (key, value, version)
    assert len(seen) == len(set(seen)), "a change was heard twice"
    by_key: dict[str, list[int]] = {}
    for key, version in seen:
        by_key.setdefault(key, []).append(int(version.rpartition("-")[2]))
    assert all(seqs == sorted(seqs) for seqs in by_key.values()), "an older value came back"
    for client in (writer, reader, final):
        await client.close()


def test_the_threaded_face_reads_locally_and_writes_through_the_server(
    server: StandaloneServer,
) -> None:
    ada = ThreadedClient(server.url, make_token("ada"))
    bob = ThreadedClient(server.url, make_token("bob"))
    try:
        mine, theirs = ada.shared_state("room"), bob.shared_state("room")
        heard: list[Any] = []
        off = theirs.observe("x", lambda key, value, entry: heard.append(value))
        mine.set("x", [1, 2])
        theirs.wait_for(lambda s: s.get("x") == [1, 2])
        assert theirs.to_dict() == mine.to_dict() == {"x": [1, 2]}
        off()
        mine.set("x", 3)
        theirs.wait_for(lambda s: s.get("x") == 3)
        assert heard == [[1, 2]]  # the remover took effect
        with pytest.raises(Conflict):
            theirs.compare_and_set("x", 4, "nope-1")
        assert ada.shared_state("room") is mine
    finally:
        ada.close()
        bob.close()
