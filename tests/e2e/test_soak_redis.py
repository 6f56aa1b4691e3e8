"""Soak on Redis (issue 23): two `nyo-realtime serve --redis` nodes on one real
redis-server, churn on both, and one of them killed (SIGKILL) while it churns.

Churners, `NYO_SOAK_CONCURRENCY` (60) at a time for `NYO_SOAK_SECONDS` (20), and on
until there were `NYO_SOAK_CLIENTS` (1,000) at least, spread over both nodes, each in
one of the modes of test_soak.py (clean, abrupt, unsubscribe, reset, unacked,
anonymous) on one of a few presence channels, publishing with a `ref` and waiting for
the `ack`. Watchers, subscribed to every channel, one on node A and two on node B,
record every message and presence event. At 40% of the run node B is killed; from
then on every churner goes to A. Those B had at the time (churners and its watchers)
connect again to A and subscribe with `since`, the last id they read; then the test checks that

- no churner failed, but for those on B when it died, and those came back on A:
  a `recovered: true` one read its channel on A from right after what it had read
  on B, without a gap or a repeat;
- the watchers of B came back `recovered: true` (the history holds the whole run)
  or were told otherwise; every acked message reached every watcher, each once, in
  the one order of its channel, and a recovered watcher has exactly that order;
- the watcher on A saw each churning user's joins and leaves alternate; B's members
  were reaped within its lease (heartbeat_timeout 10 s: a lease of 5 s; a member on
  B alone, who does not come back, times it), and a `presence` request on A lists
  only the watchers;
- neither node logged a Traceback, and every churning user can still connect.

It prints its figures. A longer run by hand:

    NYO_SOAK_SECONDS=600 .venv/bin/python -m pytest tests/e2e/test_soak_redis.py -p no:cacheprovider -s
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from typing import Any

import pytest

from ..support.soak import (
    CHANNELS,
    USERS,
    Churn,
    Watcher,
    abort,
    all_left,
    check_alternation,
    check_messages,
    churn_for,
)
from ..support.tokens import make_token
from ..support.wsclient import WSClient

SOAK_SECONDS = float(os.environ.get("NYO_SOAK_SECONDS") or 20)
CLIENTS = int(os.environ.get("NYO_SOAK_CLIENTS") or 1000)  # at least, however long it takes
CONCURRENCY = int(os.environ.get("NYO_SOAK_CONCURRENCY") or 60)
KILL_AFTER = 0.4  # of SOAK_SECONDS
HEARTBEAT_TIMEOUT = 10.0
LEASE = max(3.0, HEARTBEAT_TIMEOUT / 2)  # engines/redis/engine.py, RedisPresence.lease
HISTORY = 10_000  # longer than a default run: a watcher that moves recovers
# Watchers on A, then on B; the first, on A, never moves: its order is the channels'.
PLACES = {"watcher-0": "a", "watcher-1": "b", "watcher-2": "b"}
# A member of every channel on B only, who does not come back: how long A takes to
# reap B's connections is when A's watcher hears that it left.
STAYER = "stayer-on-b"
# What A's reaping may take on a busy machine beyond lease + lease/3 + 1 s
# (docs/architecture.md), A's watcher's lag included.
REAP_SLACK = 5.0
WAIT = 60.0

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server"),
    pytest.mark.timeout(SOAK_SECONDS + 240),
]


class Moved:
    """A churner that was on B when it died, come back on A."""

    def __init__(self, n: int, stage: str | None, channel: str, before: list[str]) -> None:
        self.n = n
        self.stage = stage
        self.channel = channel
        self.before = before  # ids it read on B
        self.after: list[str] = []  # ids it read on A
        self.recovered: bool | None = None  # None: nothing read, subscribed without since


class TwoNodeChurn(Churn):
    """Churners on A and B in turn; once B is killed, on A, and those B had come back."""

    def __init__(self, a: str, b: str, watchers: list[Watcher]) -> None:
        super().__init__(a, watchers, CONCURRENCY)
        self.a, self.b = a, b
        self.b_dead = False
        self.node: dict[int, str] = {}
        self.moved: list[Moved] = []
        self.killed_at: float | None = None

    def on_b(self) -> list[int]:
        """The churners under way on B."""
        return [n for n in list(self.stage) if self.node.get(n) == self.b]

    def url_for(self, n: int) -> str:
        url = self.b if n % 2 and not self.b_dead else self.a
        self.node[n] = url
        return url

    async def resume(self, n: int, exc: Exception) -> bool:
        if not (self.b_dead and self.node.get(n) == self.b):
            return False  # a failure, on A or on B before it was killed
        try:
            await asyncio.wait_for(self.come_back(n), 30)
        except Exception as again:
            self.failed(n, again)
        return True

    async def come_back(self, n: int) -> None:
        stage, old = self.stage.get(n), self.clients.get(n)
        mode = self.modes_of(n)
        user, channel = self.place(n)
        if mode == "anonymous" or old is None or stage in ("connecting", "authenticating"):
            # Nothing of it reached a channel: it starts again, on A.
            self.moved.append(Moved(n, stage, channel, []))
            self.modes[mode] -= 1
            await self.once(n)
            return
        before = [f["id"] for f in old.backlog if f["type"] == "message"]
        moved = Moved(n, stage, channel, before)
        self.moved.append(moved)
        self.node[n] = self.a
        client = self.clients[n] = await WSClient.open(self.a, make_token(user))
        await client.expect("authenticated")
        since = {"since": before[-1]} if before else {}
        reply = await client.subscribe(channel, **since)
        moved.recovered = reply.get("recovered")
        if mode == "unacked":  # it went without waiting for the ack, as before
            abort(client.ws)
            return
        if stage in ("subscribing", "publishing"):  # not acked: published again
            await self.publish(n, client, channel)
        moved.after = [f["id"] for f in client.backlog if f["type"] == "message"]
        await self.leave(n, client, channel)


def left_after(watcher: Watcher, channel: str, user: str, at: float) -> float | None:
    for (event, who), when in zip(
        watcher.presence[channel], watcher.presence_at[channel], strict=True
    ):
        if when > at and who == user and event == "user:left":
            return when - at
    return None


async def test_soak_on_two_nodes_one_killed_loses_no_acked_message_and_no_member(
    nodes: Any,
) -> None:
    a, b = nodes(
        2, "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT), f"--Realtime.history_size={HISTORY}"
    )
    node_of = {"a": a, "b": b}
    watchers = [await Watcher.open(node_of[place].url, user) for user, place in PLACES.items()]
    on_b = [w for w in watchers if PLACES[w.user] == "b"]
    stayer = await Watcher.open(b.url, STAYER)
    pingers = [asyncio.ensure_future(w.keep_alive(every=2.0)) for w in [*watchers, stayer]]
    churn = TwoNodeChurn(a.url, b.url, watchers)
    figures: dict[str, Any] = {}

    async def kill_b() -> None:
        await asyncio.sleep(SOAK_SECONDS * KILL_AFTER)
        # Killed in the middle of things: once a quarter of the churners are on B (on
        # a busy machine they may all be waiting a moment for the watchers to read).
        deadline = time.monotonic() + 10
        while len(churn.on_b()) < CONCURRENCY // 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # this process's own churners, not the server
        figures["churned before the kill"] = churn.churned
        figures["on B at the kill"] = Counter(churn.stage[n] for n in churn.on_b())
        churn.b_dead = True  # no churner goes to B from now on
        churn.killed_at = time.monotonic()
        b.kill()

        async def back_on_a(watcher: Watcher) -> None:
            await watcher.until(lambda: watcher.closed is not None, WAIT, "B's close")
            await watcher.reopen(a.url)

        await asyncio.gather(*(back_on_a(watcher) for watcher in on_b))
        figures["back"] = time.monotonic() - churn.killed_at

    try:
        started = time.monotonic()
        killer = asyncio.ensure_future(kill_b())
        seconds = await churn_for(churn, SOAK_SECONDS)
        if churn.churned < CLIENTS:  # a slow machine: on until there were enough
            seconds += await churn_for(churn, 120, connections=CLIENTS - churn.churned)
        await asyncio.wait_for(killer, WAIT)
        assert churn.churned >= CLIENTS, f"{churn.churned} churned in {seconds:.0f} s"
        churn_ended = time.monotonic()
        assert churn.killed_at is not None

        # A last message on each channel, published once every ack is in: a watcher
        # that has it has everything before it (one order per channel).
        for channel in CHANNELS:
            payload = {"n": -1, "t": time.monotonic()}
            frame = {"type": "broadcast", "channel": channel, "event": "end", "payload": payload}
            reply = await watchers[0].request(frame, timeout=WAIT)
            assert reply["type"] == "ack", reply
            end = reply["id"]
            for watcher in watchers:
                await watcher.until(
                    lambda w=watcher, c=channel, i=end: any(
                        m["id"] == i for m in reversed(w.messages[c])
                    ),
                    WAIT,
                    f"the last message of {channel}",
                )

        # Every churning user left every channel as often as they joined it, as A's
        # watcher saw (B's members by A reaping them); then A lists only the watchers.
        await watchers[0].until(
            lambda: all_left(watchers[0], [*USERS, STAYER]), LEASE * 2 + WAIT, "all left"
        )
        settled = time.monotonic()
        presence = {}
        for channel in CHANNELS:
            reply = await watchers[0].request({"type": "presence", "channel": channel}, WAIT)
            presence[channel] = sorted(m["userId"] for m in reply["members"])

        # Nobody's connection count leaked: every churning user still gets in.
        for user in USERS:
            client = await WSClient.open(a.url, make_token(user))
            assert (await client.expect("authenticated"))["user"]["userId"] == user
            client.close()
    finally:
        for task in pingers:
            task.cancel()
        for watcher in [*watchers, stayer]:
            watcher.close()

    killed_at = churn.killed_at
    reaped = [left_after(watchers[0], c, STAYER, killed_at) for c in CHANNELS]
    stages = Counter(m.stage for m in churn.moved)
    recovered = Counter(m.recovered for m in churn.moved)
    print(
        f"\nsoak on Redis: {churn.churned} connections churned in {seconds:.1f} s "
        f"({churn.churned / seconds:.0f}/s, {CONCURRENCY} at a time) over two nodes; "
        f"{len(churn.acked)} messages acked; modes {dict(churn.modes)}; churners held back "
        f"{churn.held_back:.1f} s for the watchers to catch up\n"
        f"      node B killed {killed_at - started:.1f} s in, after "
        f"{figures['churned before the kill']} churns, with churners on it at stages "
        f"{dict(figures['on B at the kill'])}; {len(churn.moved)} came back on A "
        f"(by stage {dict(stages)}; recovered {dict(recovered)}); its watchers back "
        f"{figures['back']:.2f} s after the kill, recovered "
        f"{ {w.user: sorted(set(w.recovered.values())) for w in on_b} }\n"
        f"      B's members reaped: {STAYER} gone from every channel "
        f"{max(r or 0 for r in reaped):.1f} s after the kill (lease {LEASE:.0f} s); every "
        f"churner gone {settled - churn_ended:.1f} s after the churn"
    )

    assert not churn.failures, f"{len(churn.failures)} churns failed: {churn.failures[:10]}"
    for node in (a, b):
        output = node.output()
        assert "Traceback" not in output, output[-5000:]
    for watcher in watchers:
        assert watcher.closed is None and not watcher.errors, (
            watcher.user,
            watcher.closed,
            watcher.errors[:5],
        )
    assert [w.user for w in watchers if w.lost] == [w.user for w in on_b]

    # The churners that moved read their channel on A from right after what they had
    # read on B, where they were told they recovered.
    order = {c: [m["id"] for m in watchers[0].messages[c]] for c in CHANNELS}
    for moved in churn.moved:
        seen = moved.before + moved.after
        if moved.recovered and seen:
            start = order[moved.channel].index(seen[0])
            assert order[moved.channel][start : start + len(seen)] == seen, (
                f"churn {moved.n} ({moved.stage}) on {moved.channel}: {moved.before[-3:]} on "
                f"B, then {moved.after[:3]} on A"
            )

    # B's watchers were told whether they have everything; with a history longer
    # than the run, they have it. Every acked message reached every watcher, each
    # once, in one order.
    for watcher in on_b:
        for channel in CHANNELS:
            if len(order[channel]) < HISTORY:
                assert watcher.recovered[channel] is True, (watcher.user, channel)
    check_messages(watchers, churn.acked)

    check_alternation(watchers[0], [*USERS, STAYER])
    assert all(r is not None and r < LEASE + LEASE / 3 + 1 + REAP_SLACK for r in reaped), reaped
    assert presence == {c: sorted(PLACES) for c in CHANNELS}, presence
