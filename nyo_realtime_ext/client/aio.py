"""Python client for docs/protocol.md: reconnects, recovers, and never hands a message twice.

Two faces over one implementation, in the manner of the `websockets` library:

- `RealtimeClient` and `Channel` are asyncio objects, for code that owns a loop.
- `ThreadedClient` and `SyncChannel` run a `RealtimeClient` on an event loop in
  a thread of their own. That is the face for notebooks: ipykernel 7 may not run
  background asyncio tasks between cells (ipykernel issue 1510), so a client that
  lived on the kernel's loop would go deaf whenever no cell is running. Its calls
  are thread-safe; its callbacks run on the client's thread.

`connect()` builds a `ThreadedClient` and, in a kernel started by a Jupyter
server with the extension, finds that server without arguments (see
`discover`).

Delivery guarantee: the client remembers the last message id it saw on every
channel. After a reconnect it authenticates again and subscribes with
`since` = that id, so the server replays exactly what was missed; ids already
seen are dropped, so the application sees every message once, in order. When
the server cannot replay everything (`recovered: false`) the channel says so,
and the application can reload.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import inspect
import itertools
import json
import logging
import os
import random as _random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

# What the server knows too; STATUSES is re-exported for the client's users.
from ..constants import ENV_TOKEN, ENV_URL, WS_PATH
from ..constants import STATUSES as STATUSES

log = logging.getLogger(__name__)

TokenProvider = Callable[[], "str | None | Awaitable[str | None]"]
Callback = Callable[..., Any]

#: `since` that no server knows: the server answers with every message it still
#: retains (docs/protocol.md, "Messages, ids and recovery"). A first subscribe uses it
#: to learn the channel's history and its last id, so that a reconnect right
#: after can ask for exactly what it missed.
FROM_START = ""

#: Close codes of docs/protocol.md that change what the client does next.
CLOSE_UNAUTHORIZED = 4401
CLOSE_HEARTBEAT = 4408
CLOSE_TOO_MANY = 4429

# The reconnection policy of docs/protocol.md ("Client behaviour"), the same in
# the TypeScript client (labextension/src/client.ts); tests/scenarios/client.json
# is replayed against both.
#: Seconds: the window of the first reconnect attempt; it doubles per failed attempt.
RECONNECT_DELAY = 3.0
#: Seconds: no window is wider.
MAX_RECONNECT_DELAY = 30.0
#: Failed attempts in a row before the client gives up (state `closed`); None: never.
MAX_RECONNECT_ATTEMPTS: int | None = 10
#: After a 4429 the next attempt waits in the window of this attempt (8 x the first).
RATE_LIMITED_ATTEMPT = 4
#: Seconds between pings, unless the server advertises a shorter `heartbeatInterval`.
HEARTBEAT_INTERVAL = 25.0
#: Seconds of silence that mean a dead connection when the server advertises no
#: `heartbeatTimeout`.
HEARTBEAT_TIMEOUT = 60.0
#: Seconds a request waits for its reply.
REQUEST_TIMEOUT = 10.0

#: Events a channel emits about itself; any other name passed to `Channel.on`
#: is a message event (`chat:message`, ...).
CHANNEL_EVENTS = frozenset(
    {"message", "members", "user:joined", "user:left", "presence:updated", "subscribed", "error"}
)


class RealtimeError(Exception):
    """Base of the client's exceptions."""


class RequestError(RealtimeError):
    """The server answered a request with an `error` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionLost(RealtimeError):
    """The connection dropped before the reply came.

    For `send` this means the outcome is unknown: the server may or may not
    have accepted the message. Sending again could publish it twice, so the
    client never retries on its own.
    """


class ClientClosed(RealtimeError):
    """The client is closed (by `close()`, a refused token, or giving up)."""


class ConnectionState(str, enum.Enum):
    """The same four states as the TypeScript client.

    ``connecting`` until the first attempt's outcome; ``open`` while
    authenticated (subscriptions live); ``reconnecting`` while waiting for the
    next attempt, after a lost connection or a failed attempt; ``closed`` for good
    (``close()``, a refused token, or giving up), with `RealtimeClient.close_reason`.
    """

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"
    #: The old name of OPEN (an alias: ``ConnectionState.AUTHENTICATED is ConnectionState.OPEN``).
    AUTHENTICATED = "open"


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = _random.random
) -> float:
    """Seconds to wait before reconnect `attempt` (1, 2, ...): "full jitter".

    The window doubles with every attempt up to `cap`, and the delay is drawn
    uniformly inside it, so that clients cut off together do not come back
    together (AWS Architecture Blog, "Exponential Backoff And Jitter").
    """
    return rand() * backoff_window(attempt, base, cap)


def backoff_window(attempt: int, base: float, cap: float) -> float:
    """The longest delay before reconnect `attempt`: `base` doubled per attempt, at most `cap`."""
    # The exponent is bounded: a client that never gives up counts on for ever.
    return min(cap, base * 2 ** min(max(0, attempt - 1), 62))


def _callback_error(callback: Callback) -> None:
    log.exception("nyo-realtime: callback %r raised", callback)


class _Emitter:
    """Named callbacks; a callback that raises is logged and the others still run."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {}

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call `callback` on `event`; returns a function that removes it."""
        callbacks = self._callbacks.setdefault(event, [])
        callbacks.append(callback)

        def off() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return off

    def emit(self, event: str, *args: Any) -> None:
        for callback in list(self._callbacks.get(event, ())):
            try:
                callback(*args)
            except Exception:
                _callback_error(callback)


class Channel(_Emitter):
    """One subscribed channel of a `RealtimeClient`; use it on the client's loop.

    `messages` holds what arrived (history first when asked for), at most
    `max_messages` of them; `members` the presence list. Events for `on`:
    ``message`` (every message), an event name such as ``chat:message`` (the
    messages of that event), ``user:joined`` / ``user:left`` /
    ``presence:updated`` (a member dict), ``members`` (the whole list after any
    change), ``subscribed`` (the `subscribed` frame, after every (re)subscribe;
    check its ``recovered``) and ``error``.
    """

    def __init__(self, client: RealtimeClient, name: str, history: bool, max_messages: int) -> None:
        super().__init__()
        self.client = client
        self.name = name
        self.type: str | None = None
        self.messages: list[dict[str, Any]] = []
        self.members: list[dict[str, Any]] = []
        self.last_id: str | None = None
        #: False after a resubscribe the server could not fully replay.
        self.recovered = True
        self.subscribed = asyncio.Event()
        self.active = True
        #: Why the server refused the subscription, if it did.
        self.failure: RequestError | None = None
        self._failed = asyncio.Event()
        self._history = history
        self._first_subscribe = True
        self._max_messages = max_messages
        # Ids delivered lately: a replay after `recovered: false` resends what
        # the server still has, and none of it may reach the application twice.
        self._seen: deque[str] = deque(maxlen=max(1000, max_messages))
        self._seen_set: set[str] = set()
        # One's own status and meta as last set here: put back after a reconnect,
        # when the server has made us a fresh member ("online", empty meta).
        self._presence: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} subscribed={self.subscribed.is_set()}>"

    # -- application calls -------------------------------------------------------

    async def send(self, event: str, payload: Any = None, timeout: float | None = None) -> str:
        """Publish and wait for the server's `ack`; returns the message id.

        Waits for the connection first if it is down. `timeout` (default: the
        client's `request_timeout`, 10 s) bounds that wait and the wait for the
        ack. Raises `ConnectionLost` when the connection drops before the ack
        (the outcome is then unknown), `RequestError` when the server refuses,
        `ClientClosed` when the client is closed.
        """
        timeout = self.client._timeout(timeout)
        await self._ready(timeout)
        reply = await self.client.request(
            {"type": "broadcast", "channel": self.name, "event": event, "payload": payload},
            timeout,
        )
        return reply["id"]

    async def update_status(
        self,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Set one's own status (one of `STATUSES`) and/or meta; returns the members.

        Remembered, so that a reconnect puts them back instead of "online".
        """
        timeout = self.client._timeout(timeout)
        update: dict[str, Any] = {}
        if status is not None:
            update["status"] = status
        if meta is not None:
            update["meta"] = meta
        before = dict(self._presence)
        self._presence.update(update)
        try:
            await self._ready(timeout)
            reply = await self.client.request(
                {"type": "presence", "channel": self.name, **update}, timeout
            )
        except RequestError:
            self._presence = before  # refused: nothing to put back later
            raise
        self._set_members(reply["members"])
        return self.members

    async def unsubscribe(self, timeout: float | None = None) -> None:
        """Leave the channel; it is not resubscribed after a reconnect."""
        self.active = False
        self.client._channels.pop(self.name, None)
        if self.subscribed.is_set():
            self.subscribed.clear()
            try:
                await self.client.request(
                    {"type": "unsubscribe", "channel": self.name}, self.client._timeout(timeout)
                )
            except (ConnectionLost, ClientClosed):
                pass  # the server forgets the subscription with the connection

    async def _ready(self, timeout: float | None) -> None:
        if self.failure is not None and not self.active:  # refused, or put out
            raise self.failure
        if not self.active:
            raise RealtimeError(f"channel {self.name!r} was unsubscribed")
        if not self.subscribed.is_set():
            await self.client._wait_for(self.subscribed, timeout, self._failed)
        if self.failure is not None:
            raise self.failure

    # -- frames from the client's reader -------------------------------------------

    def _subscribe_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "channel": self.name}
        if self.last_id is not None:
            frame["since"] = self.last_id
        elif self._history or not self._first_subscribe:
            # Nothing seen yet: everything the server retains is new to us.
            # After a reconnect this may include messages from before the
            # first subscribe of a channel opened without history.
            frame["since"] = FROM_START
        return frame

    def _on_subscribed(self, frame: dict[str, Any]) -> None:
        self.type = frame.get("channelType")
        first = self._first_subscribe
        self._first_subscribe = False
        # Only a resubscribe from a real id can tell that something was lost;
        # FROM_START is always "unrecovered" to the server, yet loses nothing.
        self.recovered = bool(frame.get("recovered", True)) if self._asked_since else True
        if "members" in frame:
            self._set_members(frame["members"])
        self.emit("subscribed", {**frame, "recovered": self.recovered, "resubscribed": not first})

    def _on_put_out(self, frame: dict[str, Any]) -> None:
        """The server ended the subscription (rights withdrawn): not resubscribed."""
        reason = frame.get("reason") or "unsubscribed"
        self.active = False
        self.subscribed.clear()
        self.client._channels.pop(self.name, None)
        self.failure = RequestError(reason, f"the server ended the subscription ({reason})")
        self._failed.set()
        self.emit("unsubscribed", frame)

    def _on_message(self, frame: dict[str, Any]) -> None:
        message_id = frame.get("id")
        if not isinstance(message_id, str) or message_id in self._seen_set:
            return
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(message_id)
        self._seen_set.add(message_id)
        self.last_id = message_id
        message = {k: v for k, v in frame.items() if k != "type"}
        self.messages.append(message)
        if len(self.messages) > self._max_messages:
            del self.messages[: len(self.messages) - self._max_messages]
        self.emit("message", message)
        event = message.get("event")
        if isinstance(event, str) and event not in CHANNEL_EVENTS:
            self.emit(event, message)

    def _on_member(self, type_: str, member: dict[str, Any]) -> None:
        others = [m for m in self.members if m.get("userId") != member.get("userId")]
        if type_ != "user:left":
            others.append(member)
        self.members = others
        self.emit(type_, member)
        self.emit("members", list(self.members))

    def _set_members(self, members: list[dict[str, Any]]) -> None:
        self.members = list(members)
        self.emit("members", list(self.members))

    def _on_disconnect(self) -> None:
        self.subscribed.clear()

    _asked_since = False


class RealtimeClient(_Emitter):
    """An asyncio client for one server.

    `token` is a JWT string, or a callable (plain or async) returning one: the
    provider is asked again before every connection, when a token is refused
    (4401) and `token_refresh_margin` seconds before a token's `exp`, for an
    in-band `auth` refresh. A refused static token is never retried.

    Reconnection follows docs/protocol.md, "Client behaviour", like the
    TypeScript client: full jitter in a window of `reconnect_delay` (3 s)
    doubled per failed attempt up to `max_reconnect_delay` (30 s); state
    `closed` after `max_reconnect_attempts` (10) failed attempts in a row (None:
    keep trying at the cap); after a 4429 the window of attempt 4 at least.
    Times are in seconds. `random` replaces `random.random` (tests pin the jitter).

    Client events for `on`: ``state`` (the new `ConnectionState` and a dict with
    ``reason``, ``code``, and for ``reconnecting`` ``attempt``, ``window`` and
    ``delay``) and ``error`` (an `error` frame that answers no request).
    """

    def __init__(
        self,
        url: str,
        token: str | TokenProvider | None = None,
        *,
        auto_connect: bool = True,
        reconnect: bool = True,
        reconnect_delay: float = RECONNECT_DELAY,
        max_reconnect_delay: float = MAX_RECONNECT_DELAY,
        max_reconnect_attempts: int | float | None = MAX_RECONNECT_ATTEMPTS,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        request_timeout: float = REQUEST_TIMEOUT,
        connect_timeout: float = 20.0,
        token_refresh_margin: float = 60.0,
        headers: dict[str, str] | None = None,
        max_messages: int = 1000,
        random: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self._token = token
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.max_reconnect_attempts = max_reconnect_attempts
        self.heartbeat_interval = heartbeat_interval
        self.request_timeout = request_timeout
        self._random = random or _random.random
        self.connect_timeout = connect_timeout
        self.token_refresh_margin = token_refresh_margin
        self.headers = dict(headers or {})
        self.max_messages = max_messages

        self.state = ConnectionState.CLOSED
        self.close_reason: str | None = None
        self.user: dict[str, Any] | None = None
        self.connection_id: str | None = None
        self._channels: dict[str, Channel] = {}
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._ws: WebSocketClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed_by_user = False
        self._authenticated = asyncio.Event()
        self._closed = asyncio.Event()
        self._last_token: str | None = None
        self._next_token: str | None = None
        self._local_close: tuple[int, str] | None = None  # why *we* closed, if we did
        self._last_received = 0.0
        if auto_connect:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop yet: the first `connect()` or `channel()` starts it
            else:
                self.start()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background (idempotent while running)."""
        if self._closed_by_user:
            raise ClientClosed("the client was closed")
        if self._task is None or self._task.done():
            self._closing = False
            self._closed.clear()
            self._task = asyncio.get_running_loop().create_task(self._run())
            # Said here, not in the task: from now on the client is not closed.
            self._set_state(ConnectionState.CONNECTING)

    async def connect(self, timeout: float | None = None) -> RealtimeClient:
        """Start if needed and wait until authenticated; `ClientClosed` if it cannot."""
        self.start()
        await self._wait_for(self._authenticated, timeout)
        return self

    async def close(self) -> None:
        """Close for good: no reconnect; pending requests fail with `ClientClosed`."""
        self._closing = self._closed_by_user = True
        if self._ws is not None:
            self._ws.close(1000, "client closed")
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except asyncio.TimeoutError:
                self._task.cancel()
        self._set_state(ConnectionState.CLOSED, reason="closed by the client")

    async def __aenter__(self) -> RealtimeClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- channels ------------------------------------------------------------------

    async def channel(
        self, name: str, *, history: bool = True, timeout: float | None = 30.0
    ) -> Channel:
        """Subscribe (once) and return the channel, with its history if `history`.

        Raises `RequestError` if the server refuses (forbidden, invalid name).
        """
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel(self, name, history, self.max_messages)
            self.start()
            if self._authenticated.is_set():
                await self._subscribe(channel, timeout)
        await channel._ready(timeout)
        return channel

    subscribe = channel

    async def _subscribe(self, channel: Channel, timeout: float | None) -> None:
        frame = channel._subscribe_frame()
        channel._asked_since = bool(frame.get("since"))
        # The server sends `subscribed` and then the whole replay in one go, and
        # answers frames in order: the pong to a ping sent right behind the
        # subscribe marks the end of the replay, so the channel is ready with
        # its history in place.
        subscribing = await self._start_request(frame)
        barrier = await self._start_request({"type": "ping"})
        try:
            await self._finish_request(subscribing, timeout)
        except RequestError as exc:
            self._channels.pop(channel.name, None)
            channel.active = False
            channel.failure = exc
            channel._failed.set()
            channel.emit("error", {"code": exc.code, "message": exc.message})
            raise
        finally:
            if not barrier[1].done():
                await asyncio.wait([barrier[1]], timeout=timeout)
            self._pending.pop(barrier[0], None)
        await self._finish_request(barrier, 0.001)
        await self._restore_presence(channel, timeout)
        channel.subscribed.set()

    async def _restore_presence(self, channel: Channel, timeout: float | None) -> None:
        """After a resubscribe, put back the status and meta this client had set.

        Before the channel counts as subscribed, so that an `update_status` made
        meanwhile is sent after it and wins.
        """
        if not channel._presence:
            return
        frame = {"type": "presence", "channel": channel.name, **channel._presence}
        try:
            reply = await self.request(frame, self._timeout(timeout))
        except RequestError as exc:
            channel.emit("error", {"code": exc.code, "message": exc.message})
            return
        channel._set_members(reply["members"])

    # -- requests --------------------------------------------------------------------

    async def request(self, frame: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send `frame` with a fresh `ref` and return the reply that echoes it.

        Waits `timeout` seconds for the reply (default: `request_timeout`, 10 s).
        """
        return await self._finish_request(await self._start_request(frame), self._timeout(timeout))

    async def _start_request(
        self, frame: dict[str, Any]
    ) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        ws = self._ws
        if ws is None or not self._authenticated.is_set():
            raise ConnectionLost("not connected")
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self._write(ws, {**frame, "ref": ref})
        except BaseException:
            self._pending.pop(ref, None)
            raise
        return ref, future

    async def _finish_request(
        self, started: tuple[int, asyncio.Future[dict[str, Any]]], timeout: float | None
    ) -> dict[str, Any]:
        ref, future = started
        try:
            reply = await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            self._pending.pop(ref, None)
        if reply.get("type") == "error":
            raise RequestError(str(reply.get("code")), str(reply.get("message")))
        return reply

    async def ping(self, timeout: float | None = None) -> int:
        """Round trip to the server; returns its clock (ms since epoch)."""
        return (await self.request({"type": "ping"}, timeout))["ts"]

    async def _write(self, ws: WebSocketClientConnection, frame: dict[str, Any]) -> None:
        try:
            await ws.write_message(orjson.dumps(frame).decode())
        except WebSocketClosedError:
            self._mark_down(ws)
            raise ConnectionLost("connection closed") from None

    def _mark_down(self, ws: WebSocketClientConnection) -> None:
        """The socket is gone: stop taking requests now, not when the reader notices.

        Otherwise a caller that retries after `ConnectionLost` would find the
        channel still "subscribed" and spin without ever yielding to the loop.
        """
        if self._ws is ws:
            self._ws = None
            self._authenticated.clear()
            for channel in self._channels.values():
                channel._on_disconnect()

    async def _wait_for(
        self, event: asyncio.Event, timeout: float | None, also: asyncio.Event | None = None
    ) -> None:
        """Wait for `event` (or `also`); `ClientClosed` when the client closes first."""
        if event.is_set() or (also is not None and also.is_set()):
            return
        if self._closed.is_set():
            raise ClientClosed(self.close_reason or "closed")
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._closed.wait())]
        if also is not None:
            waiters.append(asyncio.ensure_future(also.wait()))
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if event.is_set() or (also is not None and also.is_set()):
            return
        if self._closed.is_set():
            raise ClientClosed(self.close_reason or "closed")
        raise asyncio.TimeoutError()

    # -- state -------------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> float:
        return self.request_timeout if timeout is None else timeout

    def _set_state(self, state: ConnectionState, **info: Any) -> None:
        if state is ConnectionState.CLOSED:
            if self.state is ConnectionState.CLOSED and self._closed.is_set():
                return
            self.close_reason = info.get("reason")
            self._closed.set()
        elif state is not ConnectionState.OPEN:
            self.close_reason = None
        self.state = state
        self.emit("state", state, info)

    # -- the connection loop -------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0  # reconnect attempts since the last open connection
        step = 0  # the backoff window's attempt number: `attempt`, or more after a 4429
        try:
            while not self._closing:
                authenticated, code, reason = await self._connect_once()
                if self._closing:
                    break
                if not self.reconnect:
                    self._set_state(ConnectionState.CLOSED, reason=reason, code=code)
                    return
                if code == CLOSE_UNAUTHORIZED:
                    # A refused token is refused again: retry only with a new one.
                    fresh = await self._fresh_token()
                    if fresh is None:
                        self._set_state(ConnectionState.CLOSED, reason=reason, code=code)
                        return
                if authenticated:
                    attempt = step = 0
                attempt += 1
                step += 1
                if code == CLOSE_TOO_MANY:
                    # Cut for flooding or one connection too many: coming straight
                    # back would only repeat it. Not counted as extra attempts.
                    step = max(step, RATE_LIMITED_ATTEMPT)
                limit = self.max_reconnect_attempts
                if limit is not None and attempt > limit:
                    self._set_state(
                        ConnectionState.CLOSED,
                        reason=f"gave up after {limit} reconnect attempts: {reason}",
                        code=code,
                    )
                    return
                window = backoff_window(step, self.reconnect_delay, self.max_reconnect_delay)
                delay = self._random() * window  # full jitter
                self._set_state(
                    ConnectionState.RECONNECTING,
                    attempt=attempt,
                    delay=delay,
                    window=window,
                    reason=reason,
                    code=code,
                )
                await self._sleep_unless_closing(delay)
        finally:
            self._fail_pending(ClientClosed("client closed"))
        self._set_state(ConnectionState.CLOSED, reason="closed by the client")

    async def _sleep_unless_closing(self, delay: float) -> None:
        deadline = time.monotonic() + delay
        while not self._closing and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    async def _current_token(self) -> str | None:
        token = self._token
        if callable(token):
            value = token()
            if inspect.isawaitable(value):
                value = await value
            token = value
        self._last_token = token  # type: ignore[assignment]
        return token  # type: ignore[return-value]

    async def _fresh_token(self) -> str | None:
        """After a 4401: a token different from the refused one, or None."""
        if not callable(self._token):
            return None
        refused = self._last_token
        try:
            token = await self._current_token()
        except Exception:
            log.exception("nyo-realtime: the token provider raised")
            return None
        if token and token != refused:
            self._next_token = token  # the next connection uses it: no second call
            return token
        return None

    async def _connect_once(self) -> tuple[bool, int | None, str]:
        """One connection from handshake to close: (authenticated, close code, reason)."""
        token, self._next_token = self._next_token, None
        if token is None:
            try:
                token = await self._current_token()
            except Exception as exc:
                log.exception("nyo-realtime: the token provider raised")
                return False, None, f"token provider failed: {exc}"
        headers = dict(self.headers)
        if token:
            # A header, not `?token=`: URLs end up in logs.
            headers["Authorization"] = f"Bearer {token}"
        request = HTTPRequest(
            self.url,
            headers=headers,
            connect_timeout=self.connect_timeout,
            request_timeout=self.connect_timeout,
        )
        try:
            ws = await asyncio.wait_for(
                websocket_connect(request, max_message_size=64 * 1024 * 1024),
                self.connect_timeout,
            )
        except (OSError, HTTPClientError, asyncio.TimeoutError) as exc:
            return False, None, f"cannot connect: {exc!r}"
        self._last_received = time.monotonic()
        authenticated = False
        try:
            frame = await self._read(ws, self.connect_timeout)
            if frame is None or frame.get("type") != "authenticated":
                if frame is not None and frame.get("type") == "error":
                    # The server closes with 4401 right after; report its words.
                    try:
                        await self._read(ws, 5)
                    except asyncio.TimeoutError:
                        pass
                    return False, ws.close_code, f"{frame.get('code')}: {frame.get('message')}"
                return False, ws.close_code, self._close_text(ws, "closed before authenticating")
            authenticated = True
            self._ws = ws
            self._on_authenticated(frame)
            reader = asyncio.ensure_future(self._read_loop(ws))
            tasks = [
                asyncio.ensure_future(self._heartbeat(ws, frame, reader)),
                asyncio.ensure_future(self._resubscribe_all()),
            ]
            if callable(self._token):
                tasks.append(asyncio.ensure_future(self._refresh_token(ws)))
            self._local_close = None
            try:
                # Until the socket closes, or the heartbeat gives up on it (and
                # cancels the reader: a close handshake nobody answers takes 5 s).
                await asyncio.wait([reader])
            finally:
                reader.cancel()
                for task in tasks:
                    task.cancel()
            if not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
            if self._local_close is not None:
                return (True, *self._local_close)
            return True, ws.close_code, self._close_text(ws, "connection lost")
        except asyncio.TimeoutError:
            ws.close()
            return authenticated, None, "timed out waiting for the server"
        finally:
            self._mark_down(ws)
            self._authenticated.clear()
            self._fail_pending(ConnectionLost("connection lost before the reply"))
            ws.close()

    @staticmethod
    def _close_text(ws: WebSocketClientConnection, default: str) -> str:
        if ws.close_code is None:
            return default
        return f"closed by the server ({ws.close_code} {ws.close_reason or ''})".strip()

    async def _read(self, ws: WebSocketClientConnection, timeout: float) -> dict[str, Any] | None:
        data = await asyncio.wait_for(ws.read_message(), timeout)
        if data is None:
            return None
        self._last_received = time.monotonic()
        frame = orjson.loads(data)
        return frame if isinstance(frame, dict) else {}

    def _on_authenticated(self, frame: dict[str, Any]) -> None:
        self.user = frame.get("user")
        self.connection_id = frame.get("connectionId")
        self._authenticated.set()
        self._set_state(ConnectionState.OPEN, user=self.user)

    async def _resubscribe_all(self) -> None:
        for channel in list(self._channels.values()):
            try:
                await self._subscribe(channel, self.connect_timeout)
            except RequestError:
                pass  # reported on the channel's "error" event
            except (ConnectionLost, ClientClosed, asyncio.TimeoutError):
                return  # the connection went; the next one resubscribes

    async def _heartbeat(
        self, ws: WebSocketClientConnection, frame: dict[str, Any], reader: asyncio.Future[None]
    ) -> None:
        """Ping every `heartbeat_interval` (or the server's, if shorter); a connection
        from which no frame at all came for the server's `heartbeatTimeout` is dead."""
        interval = self.heartbeat_interval
        advertised = _milliseconds(frame.get("heartbeatInterval"))
        if advertised is not None:
            interval = min(interval, advertised)
        interval = max(interval, 0.01)
        dead_after = _milliseconds(frame.get("heartbeatTimeout")) or HEARTBEAT_TIMEOUT
        next_ping = time.monotonic() + interval
        while True:
            now = time.monotonic()
            silent_until = self._last_received + dead_after
            if now >= silent_until:
                # A half-open socket or a frozen server: only we can tell. Start over.
                self._local_close = (
                    CLOSE_HEARTBEAT,
                    f"no frame from the server for {dead_after:g} s",
                )
                ws.close(CLOSE_HEARTBEAT, "no answer to pings")
                reader.cancel()
                return
            if now >= next_ping:
                next_ping = now + interval
                try:
                    await self._write(ws, {"type": "ping"})
                except ConnectionLost:
                    return
            await asyncio.sleep(max(0.0, min(next_ping, silent_until) - time.monotonic()))

    async def _refresh_token(self, ws: WebSocketClientConnection) -> None:
        """Send a fresh token before the current one expires (in-band `auth`)."""
        while True:
            expires_at = _token_expiry(self._last_token)
            if expires_at is None:
                return
            await asyncio.sleep(max(1.0, expires_at - self.token_refresh_margin - time.time()))
            try:
                token = await self._current_token()
            except Exception:
                log.exception("nyo-realtime: the token provider raised")
                return
            if not token:
                return
            try:
                await self.request({"type": "auth", "token": token}, self.connect_timeout)
            except RequestError as exc:
                log.warning("nyo-realtime: token refresh refused: %s", exc)
                return
            except (ConnectionLost, ClientClosed, asyncio.TimeoutError):
                return

    async def _read_loop(self, ws: WebSocketClientConnection) -> None:
        while True:
            data = await ws.read_message()
            if data is None:
                return
            self._last_received = time.monotonic()
            try:
                frame = orjson.loads(data)
            except orjson.JSONDecodeError:
                log.warning("nyo-realtime: the server sent a frame that is not JSON")
                continue
            if isinstance(frame, dict):
                self._dispatch(frame)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        """Apply one frame; runs in order, so a channel's state never lags its replies."""
        type_ = frame.get("type")
        name = frame.get("channel")
        channel = self._channels.get(name) if isinstance(name, str) else None
        if type_ == "message":
            if channel is not None:
                channel._on_message(frame)
        elif type_ == "subscribed":
            if channel is not None:
                channel._on_subscribed(frame)
        elif type_ in ("user:joined", "user:left", "presence:updated"):
            if channel is not None and isinstance(frame.get("member"), dict):
                channel._on_member(type_, frame["member"])
        elif type_ == "unsubscribed" and frame.get("ref") is None:
            if channel is not None:  # not asked for: the server put us out
                channel._on_put_out(frame)
        elif type_ == "authenticated":
            self.user = frame.get("user", self.user)
        elif type_ == "error" and frame.get("ref") is None:
            if channel is not None:
                channel.emit("error", frame)
            self.emit("error", frame)
        ref = frame.get("ref")
        future = self._pending.get(ref) if ref is not None else None
        if future is not None and not future.done():
            future.set_result(frame)

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)


def _milliseconds(value: Any) -> float | None:
    """An advertised duration (ms on the wire) in seconds, or None if absent or bad."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return value / 1000


def _token_expiry(token: str | None) -> float | None:
    """The `exp` of a JWT, read without checking it (the server checks)."""
    if not token:
        return None
    try:
        import jwt

        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, (int, float)) else None


# -- the threaded face -------------------------------------------------------------


class ThreadedClient:
    """A `RealtimeClient` on its own event loop in a daemon thread.

    Every method may be called from any thread; blocking ones wait for the
    client's loop. Callbacks given to `on` run on the client's thread, so they
    should be quick and must not block on this client.
    """

    def __init__(self, url: str, token: str | TokenProvider | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nyo-realtime-client", daemon=True
        )
        self._thread.start()
        auto_connect = options.pop("auto_connect", True)

        async def make() -> RealtimeClient:
            client = RealtimeClient(url, token, auto_connect=False, **options)
            if auto_connect:
                client.start()
            return client

        self.client: RealtimeClient = self._call(make(), None)
        self._channels: dict[str, SyncChannel] = {}

    def _call(self, coro: Awaitable[Any], timeout: float | None) -> Any:
        if threading.current_thread() is self._thread:
            coro.close()  # type: ignore[attr-defined]
            raise RuntimeError("a blocking ThreadedClient call from its own callback would hang")
        return self._submit(coro).result(timeout)

    def _submit(self, coro: Awaitable[Any]) -> concurrent.futures.Future[Any]:
        if self.closed:
            # A stopped loop would never run it: the caller would wait forever.
            coro.close()  # type: ignore[attr-defined]
            raise ClientClosed("the client was closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    @property
    def closed(self) -> bool:
        """True once `close()` stopped the client's thread."""
        return self._stopped or not self._thread.is_alive()

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def state(self) -> ConnectionState:
        return self.client.state

    @property
    def close_reason(self) -> str | None:
        return self.client.close_reason

    @property
    def user(self) -> dict[str, Any] | None:
        return self.client.user

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Client events (``state``, ``error``); the callback runs on the client's thread."""
        return self._call_soon(self.client.on, event, callback)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return self._call(call(), None)

    def connect(self, timeout: float | None = 30.0) -> ThreadedClient:
        """Wait until authenticated (starts connecting if `auto_connect` was False)."""
        self._call(self.client.connect(timeout), None)
        return self

    def channel(
        self, name: str, *, history: bool = True, timeout: float | None = 30.0
    ) -> SyncChannel:
        """Subscribe (once) and return the channel; blocks until subscribed."""
        existing = self._channels.get(name)
        if existing is not None and existing._channel.active:
            return existing
        channel = self._call(self.client.channel(name, history=history, timeout=timeout), None)
        self._channels[name] = SyncChannel(self, channel)
        return self._channels[name]

    subscribe = channel

    def ping(self, timeout: float | None = None) -> int:
        return self._call(self.client.ping(timeout), None)

    def close(self) -> None:
        """Close the connection and stop the thread."""
        if self.closed:
            return
        try:
            self._call(self.client.close(), 15)
        finally:
            self._stopped = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self) -> ThreadedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ThreadedClient {self.url} {self.state.value}>"


class SyncChannel:
    """The thread-safe face of a `Channel`; see `Channel` for the events."""

    def __init__(self, client: ThreadedClient, channel: Channel) -> None:
        self._client = client
        self._channel = channel
        self.name = channel.name

    @property
    def client(self) -> ThreadedClient:
        return self._client

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self._channel.messages)

    @property
    def members(self) -> list[dict[str, Any]]:
        return list(self._channel.members)

    @property
    def recovered(self) -> bool:
        return self._channel.recovered

    @property
    def last_id(self) -> str | None:
        return self._channel.last_id

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call `callback` on `event` (on the client's thread); returns a remover."""
        off = self._client._call_soon(self._channel.on, event, callback)

        def remove() -> None:
            if not self._client.closed:
                self._client._loop.call_soon_threadsafe(off)

        return remove

    def send(self, event: str, payload: Any = None, timeout: float | None = None) -> str:
        """Publish and block until the `ack`; returns the message id (see `Channel.send`)."""
        return self._client._call(self._channel.send(event, payload, timeout), None)

    def send_nowait(self, event: str, payload: Any = None) -> concurrent.futures.Future[str]:
        """Publish without blocking; the future holds the id or the error."""
        return self._client._submit(self._channel.send(event, payload))

    def update_status(
        self,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        return self._client._call(self._channel.update_status(status, meta, timeout), None)

    def update_status_nowait(
        self, status: str | None = None, meta: dict[str, Any] | None = None
    ) -> concurrent.futures.Future[list[dict[str, Any]]]:
        return self._client._submit(self._channel.update_status(status, meta))

    def unsubscribe(self) -> None:
        self._client._channels.pop(self.name, None)
        if not self._client.closed:
            self._client._call(self._channel.unsubscribe(), 15)

    def unsubscribe_nowait(self) -> None:
        """Unsubscribe without waiting (safe from any thread, even the kernel's shutdown)."""
        self._client._channels.pop(self.name, None)
        if not self._client.closed:
            self._client._submit(self._channel.unsubscribe())

    def wait_for(
        self, predicate: Callable[[SyncChannel], bool], timeout: float = 30.0
    ) -> SyncChannel:
        """Block until `predicate(channel)` holds, re-checked whenever something arrives."""
        changed = threading.Event()
        offs = [self.on(name, lambda *_: changed.set()) for name in ("message", "members")]
        try:
            deadline = time.monotonic() + timeout
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met on {self.name!r} within {timeout} s")
                changed.wait(min(remaining, 0.5))
                changed.clear()
            return self
        finally:
            for off in offs:
                off()

    def __repr__(self) -> str:
        return f"<SyncChannel {self.name!r} messages={len(self._channel.messages)} members={len(self._channel.members)}>"


# -- finding the server from a kernel ------------------------------------------------


def discover() -> tuple[str, str | None, dict[str, str]]:
    """(url, token, headers) for a kernel: environment first, then the running server.

    The extension puts `NYO_REALTIME_URL` and `NYO_REALTIME_TOKEN` in the
    environment of the kernels its server starts (`kernel_env.py`). Failing
    that, the server that started this kernel (`JPY_PARENT_PID`) is looked up
    among the running-server files, and its Jupyter token is used: the
    realtime endpoint accepts Jupyter's own login.
    """
    url = os.environ.get(ENV_URL)
    token = os.environ.get(ENV_TOKEN) or None
    if url:
        return url, token, {}
    info = _parent_server_info()
    if info is None:
        raise RealtimeError(
            f"no realtime server found: pass a URL, set {ENV_URL}, or run in a kernel "
            "started by a Jupyter server that has the nyo_realtime_ext extension"
        )
    base = str(info.get("url", "")).rstrip("/") + "/"
    base_url = str(info.get("base_url", "/"))
    if base_url != "/" and not base.endswith(base_url):
        base = base.rstrip("/") + base_url
    ws_url = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    headers = {}
    if info.get("token"):
        headers["Authorization"] = f"token {info['token']}"
    return f"{ws_url}{WS_PATH}", token, headers


def _parent_server_info() -> dict[str, Any] | None:
    parent = os.environ.get("JPY_PARENT_PID")
    if not parent:
        return None
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return None
    path = Path(jupyter_runtime_dir()) / f"jpserver-{parent}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def connect(
    url: str | None = None, token: str | TokenProvider | None = None, **options: Any
) -> ThreadedClient:
    """A `ThreadedClient`; with no `url`, the server found by `discover()`.

    Explicit arguments win over `NYO_REALTIME_URL` / `NYO_REALTIME_TOKEN`,
    which win over the running-server files.
    """
    headers = dict(options.pop("headers", None) or {})
    if url is None:
        url, found_token, found_headers = discover()
        if token is None:
            token = found_token
            headers = {**found_headers, **headers}
    elif token is None:
        token = os.environ.get(ENV_TOKEN) or None
    return ThreadedClient(url, token, headers=headers, **options)


_shared: dict[str, ThreadedClient] = {}
_shared_lock = threading.Lock()


def shared_client(options: dict[str, Any] | None = None) -> ThreadedClient:
    """One `ThreadedClient` per set of options, reused by widgets and `use_realtime_channel`."""
    options = dict(options or {})
    key = orjson.dumps(
        {k: v for k, v in options.items() if not callable(v)}, option=orjson.OPT_SORT_KEYS
    ).decode()
    with _shared_lock:
        client = _shared.get(key)
        gone = client is not None and (
            client.closed or (client.state is ConnectionState.CLOSED and client.close_reason)
        )
        if client is None or gone:
            client = _shared[key] = connect(**options)
        return client


def use_realtime_channel(options: dict[str, Any] | None, channel: str) -> SyncChannel:
    """One call from nothing to a live channel, like the seed's `useRealtimeChannel`.

    `options` are `connect()`'s (url, token, reconnect, ...); clients are shared
    between calls with the same options. The channel has `messages`,
    `members`, `send`, `update_status`, `on` and `unsubscribe`.
    """
    options = dict(options or {})
    history = options.pop("history", True)
    return shared_client(options).channel(channel, history=history)
