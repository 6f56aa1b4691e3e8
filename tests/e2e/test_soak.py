"""Soak: a real `nyo-realtime serve` under connection churn, watched from inside and out.

Churners, `NYO_SOAK_CONCURRENCY` (50) at a time, each open a connection as one of a
few users, subscribe to one of a few presence channels, publish a message with a
`ref` and wait for its `ack`, then go: cleanly (close frame), after unsubscribing,
abruptly (socket closed, or reset, with no close frame), right after a publish
whose ack they do not wait for, or without ever authenticating. Long-lived
watchers, subscribed to every channel, record every message and presence event.
The churn runs `NYO_SOAK_SECONDS` (20 in CI) after a warm-up; then the test checks
that

- no churner failed and the server logged no Traceback;
- every acked message reached every watcher, and every watcher saw each
  channel's messages in the same order, each once;
- each churning user's `user:joined` and `user:left` alternate on every channel,
  and presence is exact at the end: a `presence` request lists only the watchers;
- the server's RSS (VmRSS) came back to within 30 MB of its post-warm-up
  baseline, and its open file descriptors to within a few of theirs;
- every churning user can still connect (no per-user connection count leaked).

It prints the figures (connections churned, messages acked, RSS and fds before,
at peak and after). A longer run by hand:

    NYO_SOAK_SECONDS=600 .venv/bin/python -m pytest tests/e2e/test_soak.py -p no:cacheprovider -s
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import pytest

from ..support.soak import (
    CHANNELS,
    USERS,
    Churn,
    Watcher,
    check_alternation,
    check_messages,
    churn_for,
)
from ..support.tokens import make_token
from ..support.wsclient import WSClient

SOAK_SECONDS = float(os.environ.get("NYO_SOAK_SECONDS") or 20)
CONCURRENCY = int(os.environ.get("NYO_SOAK_CONCURRENCY") or 50)
WARM_UP_CONNECTIONS = 300
WATCHERS = [f"watcher-{n}" for n in range(3)]
RSS_SLACK_KB = 30 * 1024
FD_SLACK = 5
SETTLE_SECONDS = 15.0

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
    pytest.mark.timeout(SOAK_SECONDS + 150),
]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def exact_presence(watchers: list[Watcher]) -> dict[str, list[str]]:
    """Ask until every channel lists only the watchers (leaves of abrupt closes may lag)."""
    for watcher in watchers:  # the reply comes after all it was sent before: read it all
        await watcher.request({"type": "ping"}, timeout=120)
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        seen = {}
        for channel in CHANNELS:
            reply = await watchers[0].request({"type": "presence", "channel": channel}, 60)
            seen[channel] = sorted(m["userId"] for m in reply["members"])
        if all(users == sorted(WATCHERS) for users in seen.values()):
            return seen
        if time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.2)


async def test_soak_churn_loses_nothing_and_leaks_nothing(standalone: Any) -> None:
    server = standalone()
    pid = server.process.pid
    url = server.url
    rss_start, fds_start = rss_kb(pid), fd_count(pid)
    watchers = [await Watcher.open(url, user) for user in WATCHERS]
    pingers = [asyncio.ensure_future(w.keep_alive()) for w in watchers]
    churn = Churn(url, watchers, CONCURRENCY)
    try:
        await churn_for(churn, 120, connections=WARM_UP_CONNECTIONS)
        await exact_presence(watchers)
        await asyncio.sleep(1)
        rss_before, fds_before = rss_kb(pid), fd_count(pid)
        warm = churn.churned

        peak = [rss_before]
        slowest = [0.0, 0.0]  # a watcher's ping round trip, and when

        async def sample() -> None:
            while True:
                await asyncio.sleep(0.5)
                peak.append(rss_kb(pid))
                sent = time.monotonic()
                await watchers[0].request({"type": "ping"}, timeout=60)
                took = time.monotonic() - sent
                if took > slowest[0]:
                    slowest[:] = [took, sent - churn.started]

        sampler = asyncio.ensure_future(sample())
        seconds = await churn_for(churn, SOAK_SECONDS)
        sampler.cancel()
        presence = await exact_presence(watchers)
        await asyncio.sleep(2)
        rss_after, fds_after = rss_kb(pid), fd_count(pid)

        # Nobody's connection count leaked: every churning user still gets in.
        for user in USERS:
            client = await WSClient.open(url, make_token(user))
            assert (await client.expect("authenticated"))["user"]["userId"] == user
            client.close()
    finally:
        for task in pingers:
            task.cancel()
        for watcher in watchers:
            watcher.close()

    churned = churn.churned - warm
    acked = len(churn.acked)
    print(
        f"\nsoak: {churned} connections churned in {seconds:.1f} s "
        f"({churned / seconds:.0f}/s, {CONCURRENCY} at a time) after {warm} to warm up; "
        f"{acked} messages acked; modes {dict(churn.modes)}; churners held back "
        f"{churn.held_back:.1f} s for the watchers to catch up\n"
        f"      server RSS {rss_start / 1024:.1f} MB at start, {rss_before / 1024:.1f} MB after "
        f"warm-up, {max(peak) / 1024:.1f} MB at peak, {rss_after / 1024:.1f} MB after; "
        f"open fds {fds_start} at start, {fds_before} after warm-up, {fds_after} after; "
        f"slowest ping {slowest[0] * 1000:.0f} ms (at {slowest[1]:.0f} s)"
    )

    assert not churn.failures, f"{len(churn.failures)} churns failed: {churn.failures[:10]}"
    output = server.output()
    assert "Traceback" not in output, output[-5000:]
    for watcher in watchers:
        assert watcher.closed in (None, 1000, -1) and not watcher.errors, (
            watcher.user,
            watcher.closed,
            watcher.errors[:5],
        )

    # Every acked message reached every watcher, each once, in one order for all;
    # joins and leaves of each churning user alternate, and end with a leave.
    check_messages(watchers, churn.acked)
    for watcher in watchers:
        check_alternation(watcher, USERS)
    assert presence == {c: sorted(WATCHERS) for c in CHANNELS}, presence

    assert rss_after < rss_before + RSS_SLACK_KB, (
        f"RSS grew from {rss_before} kB to {rss_after} kB over the churn"
    )
    assert abs(fds_after - fds_before) <= FD_SLACK, (
        f"open fds went from {fds_before} to {fds_after}"
    )
