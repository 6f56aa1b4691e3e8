"""tests/scenarios/client.json replayed with the Python client against a real server.

labextension/test/scenarios.test.ts replays the same file with the TypeScript
client: what the two clients share (docs/protocol.md, "Client behaviour") is
written down once, as data. The step and expectation vocabulary is described at
the top of the JSON file.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nyo_realtime_ext.client import Channel, ConnectionState, RealtimeClient

from .support.standalone_server import StandaloneServer
from .support.tokens import make_token

SCENARIOS = json.loads((Path(__file__).parent / "scenarios" / "client.json").read_text())
WRONG_SECRET = "not-the-secret-but-long-enough-for-hs256"
WAIT = 10.0  # seconds an expectation may take, unless it says `within`


def now() -> float:
    return time.monotonic()


class Relay:
    """A TCP relay in front of the server whose line can be cut, restored or frozen."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._down = False
        self._frozen = False
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._pipes: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._links.append((writer, up_writer))
        self._pipes += [
            asyncio.ensure_future(self._pipe(reader, up_writer, writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer, up_writer)),
        ]

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return  # frozen: keep both ends open, carry nothing
        sink.transport.abort()
        other.transport.abort()

    def cut(self) -> None:
        """Drop every connection and refuse new ones, like a network outage."""
        self._down = True
        for pipe in self._pipes:
            pipe.cancel()
        for a, b in self._links:
            a.transport.abort()
            b.transport.abort()
        self._links, self._pipes = [], []

    def restore(self) -> None:
        self._down = False

    def freeze(self) -> None:
        """Stop carrying bytes without closing anything: only a heartbeat can tell."""
        self._down = True
        for pipe in self._pipes:
            pipe.cancel()
        self._pipes = []

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


class Recorded:
    """One client of a scenario and everything it did and saw."""

    def __init__(self, spec: dict[str, Any], url: str, defaults: dict[str, Any]) -> None:
        options = {**defaults, **spec.get("options", {})}
        self.reconnect_delay = options["reconnectDelay"] / 1000
        self.token_calls = 0
        self.states: list[tuple[float, str, dict[str, Any]]] = []
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.received: list[dict[str, Any]] = []
        self.subscribed: dict[str, list[dict[str, Any]]] = {}
        self.channels: dict[str, Channel] = {}
        self.client = RealtimeClient(
            url, self._token(spec["token"]), auto_connect=False, **python_options(options)
        )
        self.client.on("state", lambda state, info: self.states.append((now(), state.value, info)))
        write, dispatch = self.client._write, self.client._dispatch

        async def recording_write(ws: Any, frame: dict[str, Any]) -> None:
            self.sent.append((now(), frame))
            await write(ws, frame)

        def recording_dispatch(frame: dict[str, Any]) -> None:
            self.received.append(frame)
            dispatch(frame)

        self.client._write = recording_write  # type: ignore[method-assign]
        self.client._dispatch = recording_dispatch  # type: ignore[method-assign]

    def _token(self, spec: dict[str, Any]) -> str | Callable[[], str]:
        if "provider" not in spec:
            return token_of(spec)
        tokens = [token_of(s) for s in spec["provider"]]

        def provider() -> str:
            self.token_calls += 1
            return tokens[min(self.token_calls, len(tokens)) - 1]

        return provider

    @property
    def retries(self) -> list[tuple[float, dict[str, Any]]]:
        return [(at, info) for at, state, info in self.states if state == "reconnecting"]

    def state_names(self) -> list[str]:
        names: list[str] = []
        for _, state, _ in self.states:
            if not names or names[-1] != state:
                names.append(state)
        return names


def python_options(options: dict[str, Any]) -> dict[str, Any]:
    """The JSON's TypeScript option names (ms) as the Python client's (s)."""
    seconds = {
        "reconnectDelay": "reconnect_delay",
        "maxReconnectDelay": "max_reconnect_delay",
        "heartbeatInterval": "heartbeat_interval",
        "requestTimeout": "request_timeout",
    }
    result: dict[str, Any] = {}
    for name, value in options.items():
        if name in seconds:
            result[seconds[name]] = value / 1000
        elif name == "maxReconnectAttempts":
            result["max_reconnect_attempts"] = value  # null: None, never give up
        elif name == "random":
            result["random"] = lambda value=value: value
        else:
            raise AssertionError(f"unknown client option {name!r}")
    return result


def token_of(spec: dict[str, Any]) -> str:
    if spec.get("valid", True):
        return make_token(spec["user"])
    return make_token(spec["user"], secret=WRONG_SECRET)


def matches(actual: Any, expected: Any, names: dict[str, str]) -> bool:
    """`expected` is a subset of `actual`; '$name' strings stand for published ids."""
    if isinstance(expected, str) and expected.startswith("$"):
        return actual == names[expected[1:]]
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(actual[k], v, names) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(matches(a, e, names) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    return actual == expected


async def eventually(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = now() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if now() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def close_to(value: float, expected: float) -> bool:
    return abs(value - expected) <= 1e-9 + 1e-6 * abs(expected)


class Replay:
    def __init__(self, scenario: dict[str, Any], server: StandaloneServer) -> None:
        self.scenario = scenario
        self.server = server
        self.relay: Relay | None = None
        self.clients: dict[str, Recorded] = {}
        self.names: dict[str, str] = {}
        self.marks: dict[str, float] = {}
        self.tasks: list[asyncio.Future[Any]] = []

    async def run(self) -> None:
        try:
            for number, step in enumerate(self.scenario["steps"], 1):
                try:
                    if "do" in step:
                        await getattr(self, f"do_{step['do']}")(step)
                    else:
                        await getattr(self, f"expect_{step['expect']}")(step)
                except AssertionError as exc:
                    raise AssertionError(f"step {number} {json.dumps(step)}: {exc}") from exc
        finally:
            for recorded in self.clients.values():
                await recorded.client.close()
            for task in self.tasks:
                task.cancel()
            if self.relay is not None:
                await self.relay.close()

    def wait(self, step: dict[str, Any]) -> float:
        return step.get("within", WAIT * 1000) / 1000

    # -- steps -----------------------------------------------------------------------

    async def do_client(self, step: dict[str, Any]) -> None:
        url = self.server.url
        if step.get("via") == "relay":
            if self.relay is None:
                self.relay = await Relay(self.server.port).start()
            url = self.relay.url
        defaults = SCENARIOS["defaults"]["options"]
        self.clients[step["name"]] = Recorded(step, url, defaults)

    async def do_connect(self, step: dict[str, Any]) -> None:
        await self.clients[step["client"]].client.connect(timeout=WAIT)

    async def do_start(self, step: dict[str, Any]) -> None:
        self.clients[step["client"]].client.start()

    async def do_subscribe(self, step: dict[str, Any]) -> None:
        recorded = self.clients[step["client"]]
        name = step["channel"]
        channel = await recorded.client.channel(name, history=step.get("history", False))
        recorded.channels[name] = channel
        events = recorded.subscribed.setdefault(name, [])
        channel.on("subscribed", events.append)

    async def do_publish(self, step: dict[str, Any]) -> None:
        recorded = self.clients[step["client"]]
        channel = recorded.channels[step["channel"]]
        message_id = await channel.send(step["event"], step.get("payload"))
        if "as" in step:
            self.names[step["as"]] = message_id

    async def do_status(self, step: dict[str, Any]) -> None:
        channel = self.clients[step["client"]].channels[step["channel"]]
        await channel.update_status(step.get("status"), step.get("meta"))

    async def do_raw(self, step: dict[str, Any]) -> None:
        client = self.clients[step["client"]].client
        for frame in step["frames"]:
            await client.request(frame)

    async def do_flood(self, step: dict[str, Any]) -> None:
        client = self.clients[step["client"]].client

        async def ping() -> None:
            try:
                await client.request({"type": "ping"})
            except Exception:
                pass  # dropped unanswered, or cut off: that is the point

        self.tasks += [asyncio.ensure_future(ping()) for _ in range(step["count"])]

    async def do_cut(self, step: dict[str, Any]) -> None:
        assert self.relay is not None
        self.relay.cut()

    async def do_restore(self, step: dict[str, Any]) -> None:
        assert self.relay is not None
        self.relay.restore()

    async def do_freeze(self, step: dict[str, Any]) -> None:
        assert self.relay is not None
        self.relay.freeze()

    async def do_restart_server(self, step: dict[str, Any]) -> None:
        await asyncio.to_thread(self.server.stop)  # SIGTERM: 1001 to every client
        await asyncio.to_thread(self.server.start)

    async def do_stop_server(self, step: dict[str, Any]) -> None:
        await asyncio.to_thread(self.server.stop)

    async def do_start_server(self, step: dict[str, Any]) -> None:
        await asyncio.to_thread(self.server.start)

    async def do_sleep(self, step: dict[str, Any]) -> None:
        await asyncio.sleep(step["ms"] / 1000)

    async def do_mark(self, step: dict[str, Any]) -> None:
        self.marks[step["name"]] = now()

    # -- expectations ----------------------------------------------------------------

    async def expect_state(self, step: dict[str, Any]) -> None:
        client = self.clients[step["client"]].client
        await eventually(
            lambda: client.state.value == step["state"],
            f"state {step['state']} (is {client.state.value})",
            self.wait(step),
        )

    async def expect_states(self, step: dict[str, Any]) -> None:
        assert self.clients[step["client"]].state_names() == step["states"]

    async def expect_closed(self, step: dict[str, Any]) -> None:
        client = self.clients[step["client"]].client
        await eventually(lambda: client.state is ConnectionState.CLOSED, "closed", self.wait(step))
        assert step["reason_contains"] in (client.close_reason or ""), client.close_reason

    async def expect_messages(self, step: dict[str, Any]) -> None:
        channel = self.clients[step["client"]].channels[step["channel"]]
        expected = step["payloads"]

        def payloads() -> list[Any]:
            return [m.get("payload") for m in channel.messages]

        await eventually(
            lambda: len(channel.messages) >= len(expected), "messages", self.wait(step)
        )
        await asyncio.sleep(0.2)  # time for a duplicate to show up, if one were let through
        assert matches(payloads(), expected, self.names), payloads()
        ids = [m["id"] for m in channel.messages]
        assert len(ids) == len(set(ids)), f"an id was delivered twice: {ids}"
        if "ids" in step:
            assert matches(ids, step["ids"], self.names), ids

    async def expect_subscribed(self, step: dict[str, Any]) -> None:
        events = self.clients[step["client"]].subscribed[step["channel"]]
        wanted = {k: step[k] for k in ("recovered", "resubscribed") if k in step}
        await eventually(
            lambda: events and matches(events[-1], wanted, self.names),
            f"subscribed {wanted} (events: {events})",
            self.wait(step),
        )

    async def expect_sent(self, step: dict[str, Any]) -> None:
        recorded = self.clients[step["client"]]
        since = self.marks[step["since_mark"]] if "since_mark" in step else 0.0

        def count() -> int:
            return sum(
                1
                for at, f in recorded.sent
                if at >= since and matches(f, step["frame"], self.names)
            )

        await eventually(
            lambda: count() >= step.get("count_at_least", 1),
            f"{step.get('count_at_least', 1)} sent like {step['frame']} (got {count()})",
            self.wait(step),
        )

    async def expect_received(self, step: dict[str, Any]) -> None:
        recorded = self.clients[step["client"]]

        def count() -> int:
            return sum(1 for f in recorded.received if matches(f, step["frame"], self.names))

        await eventually(
            lambda: count() >= step.get("count_at_least", 1),
            f"{step.get('count_at_least', 1)} received like {step['frame']} (got {count()})",
            self.wait(step),
        )

    async def expect_member(self, step: dict[str, Any]) -> None:
        channel = self.clients[step["client"]].channels[step["channel"]]

        def member() -> dict[str, Any] | None:
            return next((m for m in channel.members if m.get("userId") == step["user"]), None)

        if step.get("absent"):
            await eventually(lambda: member() is None, f"{step['user']} gone", self.wait(step))
            return
        wanted = {k: step[k] for k in ("status", "meta") if k in step}
        await eventually(
            lambda: (m := member()) is not None and matches(m, wanted, self.names),
            f"{step['user']} with {wanted} (is {member()})",
            self.wait(step),
        )

    async def expect_retry(self, step: dict[str, Any]) -> None:
        recorded = self.clients[step["client"]]
        index = step.get("index", 0)
        await eventually(lambda: len(recorded.retries) > index, f"retry {index}", self.wait(step))
        at, info = recorded.retries[index]
        for key in ("attempt", "code"):
            if key in step:
                assert info.get(key) == step[key], info
        base = recorded.reconnect_delay
        if "window_x" in step:
            assert close_to(info["window"], step["window_x"] * base), info
        if "after_mark" in step:
            elapsed = (at - self.marks[step["after_mark"]]) * 1000
            assert step.get("at_least_ms", 0) <= elapsed <= step.get("at_most_ms", 1e12), elapsed
        if "waited_at_least_x" in step:

            def opened() -> float | None:
                return next((t for t, s, _ in recorded.states if t > at and s == "open"), None)

            opened_at = await eventually(opened, "open after the retry", self.wait(step))
            waited = opened_at - at
            assert waited >= step["waited_at_least_x"] * base, (waited, base)

    async def expect_retries(self, step: dict[str, Any]) -> None:
        recorded = self.clients[step["client"]]
        base = recorded.reconnect_delay
        if "exactly" in step:
            infos = [info for _, info in recorded.retries]
            assert len(infos) == len(step["exactly"]), infos
            for info, wanted in zip(infos, step["exactly"], strict=True):
                assert info["attempt"] == wanted["attempt"], info
                assert close_to(info["window"], wanted["window_x"] * base), info
            return
        await eventually(
            lambda: len(recorded.retries) >= step["at_least"],
            f"{step['at_least']} retries",
            self.wait(step),
        )
        if "window_x_at_most" in step:
            top = step["window_x_at_most"] * base
            assert all(info["window"] <= top + 1e-9 for _, info in recorded.retries)

    async def expect_no_retry(self, step: dict[str, Any]) -> None:
        recorded = self.clients[step["client"]]
        before, state = len(recorded.retries), recorded.client.state
        await asyncio.sleep(step["for_ms"] / 1000)
        assert len(recorded.retries) == before and recorded.client.state is state

    async def expect_token_calls(self, step: dict[str, Any]) -> None:
        assert self.clients[step["client"]].token_calls == step["count"]


@pytest.mark.parametrize("scenario", SCENARIOS["scenarios"], ids=lambda s: s["name"])
async def test_scenario(
    scenario: dict[str, Any], standalone: Callable[..., StandaloneServer]
) -> None:
    server = standalone(*scenario.get("server", []))
    await Replay(scenario, server).run()
