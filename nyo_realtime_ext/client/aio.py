"""The asyncio face: `RealtimeClient` and its `Channel`s, for code that owns a loop.

Delivery guarantee: the client remembers the last message id it saw on every
channel. After a reconnect it authenticates again and subscribes with
`since` = that id, so the server replays exactly what was missed; ids already
seen are dropped, so the application sees every message once, in order. When
the server cannot replay everything (`recovered: false`) the channel says so,
and the application can reload.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import itertools
import logging
import random as _random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from .backoff import (
    MAX_RECONNECT_ATTEMPTS,
    MAX_RECONNECT_DELAY,
    MAX_RESUBSCRIBE_DELAY,
    RATE_LIMITED_ATTEMPT,
    RECONNECT_DELAY,
    RESUBSCRIBE_DELAY,
    backoff_delay,
    backoff_window,
)
from .channel import Channel
from .errors import ClientClosed, ConnectionLost, RequestError
from .events import Emitter
from .state import SharedState

log = logging.getLogger(__name__)

TokenProvider = Callable[[], "str | None | Awaitable[str | None]"]
#: Close codes of docs/protocol.md that change what the client does next.
CLOSE_UNAUTHORIZED = 4401
CLOSE_HEARTBEAT = 4408
CLOSE_TOO_MANY = 4429

#: Seconds between pings, unless the server advertises a shorter `heartbeatInterval`.
HEARTBEAT_INTERVAL = 25.0
#: Seconds of silence that mean a dead connection when the server advertises no
#: `heartbeatTimeout`.
HEARTBEAT_TIMEOUT = 60.0
#: Seconds a request waits for its reply.
REQUEST_TIMEOUT = 10.0


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


class RealtimeClient(Emitter):
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

    async def shared_state(self, name: str, *, timeout: float | None = 30.0) -> SharedState:
        """The channel's shared state, a live mapping (subscribes with `state: true`,
        or asks for it on a channel already subscribed); returns once the snapshot is in.
        (Not `state`: that is the connection's state.)

        Raises `RequestError` if the server refuses (forbidden, invalid name).
        """
        channel = self._channels.get(name)
        if channel is not None and channel.state is not None:
            await channel._ready(timeout)
            return channel.state
        if channel is None:
            channel = self._channels[name] = Channel(self, name, False, self.max_messages)
            channel.state = SharedState(channel)
            self.start()
            if self._authenticated.is_set():
                await self._subscribe(channel, timeout)
        else:
            channel.state = SharedState(channel)
            await channel._ready(timeout)
            await self._subscribe(channel, timeout)  # a repeated subscribe: the snapshot
        await channel._ready(timeout)
        return channel.state

    async def _subscribe(
        self, channel: Channel, timeout: float | None, retrying: bool = False
    ) -> None:
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
            if not (retrying and exc.code == "unavailable"):  # else kept, and tried again
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
        self._last_token = token
        return token

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
        """Every channel again, on a new connection. Those answered `unavailable`
        (the server's engine busy or away: nothing wrong with the request) are
        tried again after a jittered, growing delay until they get through."""
        waiting, attempt = list(self._channels.values()), 0
        while waiting:
            again = []
            for channel in waiting:
                if self._channels.get(channel.name) is not channel:
                    continue  # left meanwhile
                try:
                    await self._subscribe(channel, self.connect_timeout, retrying=True)
                except RequestError as exc:
                    if exc.code == "unavailable":
                        again.append(channel)
                    # anything else is reported on the channel's "error" event
                except (ConnectionLost, ClientClosed, asyncio.TimeoutError):
                    return  # the connection went; the next one resubscribes
            if not again:
                return
            attempt += 1
            await asyncio.sleep(
                backoff_delay(attempt, RESUBSCRIBE_DELAY, MAX_RESUBSCRIBE_DELAY, self._random)
            )
            waiting = again

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
        elif type_ == "state:changed":
            if channel is not None:
                channel._on_state_changed(frame)
        elif type_ == "state":
            if channel is not None:
                channel._on_state(frame)
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
