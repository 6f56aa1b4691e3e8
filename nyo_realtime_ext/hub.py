"""The hub: sessions, subscriptions, fan-out, authorization, heartbeat, limits.

Sans-I/O in the manner of the `websockets` protocol core: transports hand it
raw frames (`receive`) and tell it when a connection opens or closes; it hands
back encoded bytes through `Connection.send` and asks for closes through
`Connection.close`. It owns no socket and no clock (one is injected), and
knows no SQL and no Redis: channels, messages and members live behind the
three interfaces of `engines.base`, so the same hub runs one process or many.

The engine pushes every message and presence event of a channel this node
listens to through `deliver`, already encoded: the same bytes go to every
subscriber. A subscriber still being set up (its `subscribed` not sent yet,
its recovery not read yet) has what arrives meanwhile held back for it, then
sent after its recovery without the messages the recovery already had, so a
reconnecting client sees no gap and no duplicate whatever the engine's latency.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from .audit import Audit, log_audit
from .auth import Authenticator, AuthError, TokenExpired
from .engines.base import Engine, EngineUnavailable, History
from .hooks import Client, HookFailed, Hooks
from .models import Channel, ChannelKey, Identity, Member, Message, Profile
from .profiles import check_profile_update, effective, profile_wire
from .protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
    ProtocolError,
    channel_type_for,
    check_event,
    decode,
    encode,
    error,
    reply,
)
from .ratelimit import RateLimiter, TokenBucket

log = logging.getLogger(__name__)

# Send-buffer room a recovery leaves for the `subscribed` frame before it and
# the live messages of the same burst.
RECOVERY_HEADROOM = 64 * 1024
# A leave the engine could not take is tried again after this long, doubled (and
# jittered) per failure up to the most; and the failures are logged at most once
# per LEAVE_LOG_EVERY seconds, with their count.
LEAVE_RETRY_MIN, LEAVE_RETRY_MAX = 0.2, 5.0
LEAVE_LOG_EVERY = 30.0


class _Retries:
    """Leaves retried since the last report: logged once in a while, not each."""

    __slots__ = ("count", "logged_at")

    def __init__(self) -> None:
        self.count = 0
        self.logged_at: float | None = None

    def note(self, exc: BaseException) -> None:
        self.count += 1
        now = time.monotonic()
        if self.logged_at is None or now - self.logged_at >= LEAVE_LOG_EVERY:
            log.warning(
                "%d presence leave(s) could not reach the engine (%s); retrying with backoff",
                self.count,
                exc,
            )
            self.logged_at, self.count = now, 0


# What a subscriber being set up holds back: (frame, message id or None).
Held = list[tuple[bytes, str | None]]


class Connection(Protocol):
    """What a transport gives the hub for one client."""

    def send(self, data: bytes) -> None:
        """Queue one text frame; the transport enforces `max_send_buffer`."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection; the transport calls `Hub.disconnect` when it is gone."""

    def backlog(self) -> int:
        """Bytes queued for this client and not yet taken by it."""


@dataclass(eq=False)
class Session:
    """One client connection as the hub sees it."""

    id: str
    conn: Connection
    last_seen: float
    bucket: TokenBucket
    identity: Identity | None = None
    auth_deadline: float = 0.0
    subscriptions: set[ChannelKey] = field(default_factory=set)
    # Channels whose `subscribed` has not been sent yet, with what arrived meanwhile.
    held: dict[ChannelKey, Held] | None = None
    limited: bool = False
    rejected: int = 0
    closed: bool = False

    def send(self, frame: dict[str, Any]) -> None:
        self.conn.send(encode(frame))


@dataclass(eq=False)
class ChannelState:
    """A channel this node listens to, with its local subscribers."""

    channel: Channel
    subscribers: dict[str, Session] = field(default_factory=dict)
    # Called with each message id (long-polls of the HTTP API).
    watchers: list[Callable[[str | None], None]] = field(default_factory=list)


class Hub:
    def __init__(
        self,
        config: Any,
        engine: Engine,
        authenticator: Authenticator,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.engine = engine
        self.auth = authenticator
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        # Authenticated connections per (tenant, user), for `max_connections_per_user`.
        self._per_user: dict[tuple[str, str], int] = {}
        self.stopped = False  # after shutdown: new connections are turned away
        self.limiter = RateLimiter(config.rate_limit)
        self.hooks = Hooks(config)
        # Facts for administrators (audit.py): log lines, or Jupyter events under Jupyter.
        self.audit: Audit = log_audit
        self._channels: dict[ChannelKey, ChannelState] = {}
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(3)
        self._next_sweep = clock() + config.heartbeat_interval
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leave_retries = _Retries()
        engine.bind(self)

    async def start(self) -> None:
        await self.engine.start()

    # -- connection lifecycle -------------------------------------------------

    def connect(
        self, conn: Connection, identity: Identity | None = None, profile: Profile | None = None
    ) -> Session | None:
        """A transport opened a connection, already authenticated or not (and then
        with the user's `profile`, from `chosen_profile`).

        None when the hub has shut down: the connection is closed with 1001.
        """
        if self.stopped:
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
            return None
        now = self.clock()
        session = Session(
            id=f"c-{self._id_prefix}{next(self._ids):x}",
            conn=conn,
            last_seen=now,
            bucket=self.limiter.bucket(now),
            auth_deadline=now + self.config.auth_timeout,
        )
        self.sessions[session.id] = session
        if identity is not None:
            self._authenticate(session, identity, None, profile)
        return session

    def reject(self, conn: Connection, exc: AuthError) -> None:
        """Credentials given at the handshake were refused."""
        conn.send(encode(error(_auth_error_code(exc), str(exc))))
        conn.close(CloseCode.UNAUTHORIZED, "unauthorized")

    def disconnect(self, session: Session, code: int | None = None) -> None:
        """The connection is gone (or about to be), with close `code` if known: leave
        every channel. Idempotent.

        Nothing is delivered to it from now on; its presence ends in the
        background, in the engine (which may be a network away).
        """
        if self.sessions.pop(session.id, None) is None:
            return
        session.closed = True
        if session.identity is not None:
            user = (session.identity.tenant_id, session.identity.user_id)
            remaining = self._per_user.pop(user, 1) - 1
            if remaining > 0:
                self._per_user[user] = remaining
            self._ended(session, code)
        left = [key for key in list(session.subscriptions) if self._unsubscribe(session, key)]
        session.subscriptions.clear()
        if left and session.identity is not None:
            self.spawn(self._leave_all(left, session.identity.user_id, session.id))

    def _ended(self, session: Session, code: int | None) -> None:
        """An authenticated connection is over: the audit and the hook hear it."""
        if session.identity is None:
            return
        self._audit("disconnected", session.identity, session.id, code=code)
        if self.hooks.has("on_disconnect"):
            client = Client.of(session.identity, session.id)
            self.spawn(self.hooks.notify("on_disconnect", client, code))

    async def _leave_all(self, keys: list[ChannelKey], user_id: str, connection_id: str) -> None:
        now = self.clock()  # when they left, however long the engine takes to hear it
        for key in keys:
            delay = LEAVE_RETRY_MIN
            while True:
                try:
                    await self.engine.presence.leave(key, user_id, connection_id, now)
                    break
                except EngineUnavailable as exc:
                    # Never lost: tried again until the engine takes it. A node that
                    # stops meanwhile ends its connections (and a dead one's lease does).
                    if self.stopped:
                        return
                    self._leave_retries.note(exc)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(LEAVE_RETRY_MAX, delay * 2)
                except Exception:  # a bug: one failure must not strand the rest
                    log.exception("leaving %s on disconnect", key)
                    break

    def close(self, session: Session, code: int, reason: str) -> None:
        if session.closed:
            return
        if code != CloseCode.GOING_AWAY:
            log.info("closing %s (%s) with %d: %s", session.id, _who(session), code, reason)
        self.disconnect(session, code)
        session.conn.close(code, reason)

    async def shutdown(self) -> None:
        """Close every connection with 1001; this node's members leave everywhere.

        Local subscribers are not told that the others leave: they all go at
        once, and telling each of N subscribers about the N-1 others would cost
        N² frames. Other nodes' subscribers are told, by the engine.
        """
        self.stopped = True
        sessions = list(self.sessions.values())
        self.sessions.clear()
        for state in self._channels.values():
            state.subscribers.clear()
            watchers, state.watchers = state.watchers, []
            for wake in watchers:
                wake(None)
        for session in sessions:
            session.closed = True
            session.conn.close(CloseCode.GOING_AWAY, "server shutting down")
            self._ended(session, CloseCode.GOING_AWAY)
        self._per_user.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.engine.close()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run engine work in the background, logging what fails."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background engine work failed", exc_info=task.exception())

    # -- incoming frames ------------------------------------------------------

    def touch(self, session: Session) -> None:
        """The client showed it is alive without a frame (a WebSocket ping)."""
        session.last_seen = self.clock()

    async def receive(self, session: Session, data: str | bytes) -> None:
        """One frame from a client. Transports await it before reading the next
        frame of the same connection, so a client's requests keep their order."""
        if session.closed:
            return
        now = self.clock()
        session.last_seen = now
        if not self._admit(session, now):
            return
        frame: dict[str, Any] = {}
        try:
            frame = decode(data, authenticated=session.identity is not None)
            await self._dispatch(session, frame, now, len(data))
        except ProtocolError as exc:
            session.send(exc.to_wire())
        except orjson.JSONEncodeError:
            # orjson decodes nesting its encoder refuses; brokers encode before they
            # store or number anything, so nothing happened.
            error_frame = error(
                ErrorCode.BAD_REQUEST,
                "`payload` is nested too deep",
                frame.get("ref"),
                frame.get("channel"),
            )
            session.send(error_frame)
        except EngineUnavailable as exc:
            # With its channel, so that a client that subscribed without a ref (the
            # TypeScript client's resubscriptions) knows which to try again.
            session.send(
                error(ErrorCode.UNAVAILABLE, str(exc), frame.get("ref"), frame.get("channel"))
            )
        except HookFailed:  # logged where it failed
            session.send(error(ErrorCode.INTERNAL, "internal server error", frame.get("ref")))
        except Exception:  # a bug or a failing hook costs one error frame, never the connection
            log.exception("internal error handling a frame")
            session.send(error(ErrorCode.INTERNAL, "internal server error", frame.get("ref")))

    async def _dispatch(
        self, session: Session, frame: dict[str, Any], now: float, size: int
    ) -> None:
        type_, ref = frame["type"], frame.get("ref")
        if type_ == "ping":
            session.send(reply("pong", ref, ts=int(now * 1000)))
            return
        if type_ == "auth":
            await self._on_auth(session, frame["token"], ref)
            return
        identity = session.identity
        if identity is None:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "authenticate first", ref)
        name = frame["channel"]
        key = ChannelKey(identity.tenant_id, name)
        if type_ == "subscribe":
            await self._on_subscribe(session, identity, key, frame.get("since"), ref)
        elif type_ == "unsubscribe":
            subscribed = key in session.subscriptions
            if self._unsubscribe(session, key):
                await self.engine.presence.leave(key, identity.user_id, session.id, self.clock())
            session.send(reply("unsubscribed", ref, channel=name))
            if subscribed:
                self._audit("unsubscribed", identity, session.id, channel=name)
        elif type_ == "broadcast":
            state = self._require_subscribed(session, key, ref)
            self._require_access(identity, state.channel, "publish", ref)
            await self._allow_publish(
                identity, session.id, key, frame["event"], frame.get("payload"), ref
            )
            sender = {"userId": identity.user_id, "connectionId": session.id}
            skip = None if frame.get("echo", True) else session.id
            message_id = await self.engine.broker.publish(
                key, frame["event"], frame.get("payload"), sender, now, skip
            )
            if ref is not None:
                session.send(reply("ack", ref, id=message_id))
            self._audit(
                "published", identity, session.id, channel=name, event=frame["event"], size=size
            )
        elif type_ == "presence":
            await self._on_presence(session, identity, key, frame, ref, now)

    async def _on_auth(self, session: Session, token: str, ref: Any) -> None:
        try:
            identity = self.auth.identify(token)
        except AuthError as exc:
            session.send(error(_auth_error_code(exc), str(exc), ref))
            self.close(session, CloseCode.UNAUTHORIZED, "unauthorized")
            return
        current = session.identity
        if current is not None and not current.same_principal(identity):
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                "a refreshed token must be for the same user and tenant",
                ref,
            )
        profile = await self.chosen_profile(identity)
        if session.closed:
            return
        if self._authenticate(session, identity, ref, profile) and current is not None:
            self._recheck_rights(session)

    def _authenticate(
        self, session: Session, identity: Identity, ref: Any, profile: Profile | None = None
    ) -> bool:
        """Accept `identity` for the session; False (and closed) if its user has no
        room left for one more connection.

        The session keeps `identity` as the token or Jupyter made it; `authenticated`
        shows the user with their `profile` over it. (The engine applies the
        profile to presence itself, so it is never stale there.)"""
        if session.identity is None and not self._admit_user(session, identity, ref):
            return False
        if session.identity is None:
            self._audit("connected", identity, session.id)
            if self.hooks.has("on_connect"):
                self.spawn(self.hooks.notify("on_connect", Client.of(identity, session.id)))
        session.identity = identity
        # From now on the user's one budget, shared with their other connections.
        session.bucket = self.limiter.bucket_for(
            (identity.tenant_id, identity.user_id), self.clock()
        )
        session.send(
            reply(
                "authenticated",
                ref,
                connectionId=session.id,
                user=effective(identity, profile).to_wire(),
                heartbeatInterval=int(self.config.heartbeat_interval * 1000),
                heartbeatTimeout=int(self.config.heartbeat_timeout * 1000),
                protocol=PROTOCOL_VERSION,
            )
        )
        return True

    def _admit_user(self, session: Session, identity: Identity, ref: Any) -> bool:
        """Count one more connection of the user, if `max_connections_per_user` allows."""
        user = (identity.tenant_id, identity.user_id)
        limit = self.config.max_connections_per_user
        if limit and self._per_user.get(user, 0) >= limit:
            message = f"max_connections_per_user: at most {limit} connections per user"
            session.send(error(ErrorCode.LIMIT_EXCEEDED, message, ref))
            self.close(session, CloseCode.TOO_MANY, "too many connections")
            return False
        self._per_user[user] = self._per_user.get(user, 0) + 1
        return True

    async def _on_subscribe(
        self, session: Session, identity: Identity, key: ChannelKey, since: str | None, ref: Any
    ) -> None:
        if (
            key not in session.subscriptions
            and len(session.subscriptions) >= self.config.max_subscriptions
        ):  # checked first: a refused subscribe creates no channel
            raise ProtocolError(
                ErrorCode.LIMIT_EXCEEDED,
                f"max_subscriptions: at most {self.config.max_subscriptions} channels per connection",
                ref,
                key.name,
            )

        async def as_a_reader(channel: Channel) -> None:
            await self._require_reader(identity, channel, session.id, ref)

        # A repeated subscribe asks nothing new: the connection already is a reader.
        admit = None if key in session.subscriptions else as_a_reader
        state = await self.open_channel(identity, key, "subscribe", ref, admit)
        channel = state.channel
        fields: dict[str, Any] = {"channel": key.name, "channelType": channel.type}
        if key in session.subscriptions:
            # A repeated subscribe gets no replay: the connection has had every
            # message since its first one, and replays are what a flood would ask for.
            if channel.type == "presence":
                fields["members"] = await self._members_wire(key)
            session.send(reply("subscribed", ref, **fields))
            return
        if session.closed:
            return  # gone while the engine answered
        # From here the session gets every frame of the channel, held back
        # until `subscribed` and its recovery are out.
        session.subscriptions.add(key)
        state.subscribers[session.id] = session
        held: Held = []
        if session.held is None:
            session.held = {}
        session.held[key] = held
        try:
            missed: list[Message] = []
            if since is not None:
                missed, fields["recovered"] = await self._missed(session, key, since)
            if channel.type == "presence":
                await self.engine.presence.join(key, identity, session.id, self.clock())
                fields["members"] = await self._members_wire(key)
        except BaseException:
            if self._unsubscribe(session, key):  # True only for a presence channel
                self.spawn(self._leave_all([key], identity.user_id, session.id))
            raise
        finally:
            if session.held is not None:
                session.held.pop(key, None)
                if not session.held:
                    session.held = None
        if session.closed:
            return
        session.send(reply("subscribed", ref, **fields))
        self._audit("subscribed", identity, session.id, channel=key.name)
        sent = set()
        for message in missed:
            session.conn.send(message.encoded())
            sent.add(message.id)
        for frame, message_id in held:
            if message_id is None or message_id not in sent:
                session.conn.send(frame)

    async def _missed(
        self, session: Session, key: ChannelKey, since: str
    ) -> tuple[list[Message], bool]:
        """The messages after `since` and whether that is all of them.

        A recovery is cut to what fits in the connection's send buffer (the
        newest messages, then): the client learns `recovered: false` and
        reloads history, instead of being cut off for asking. The engine reads
        no more than that room, so a replay costs what it sends.
        """
        room = self.config.max_send_buffer - session.conn.backlog() - RECOVERY_HEADROOM
        limit, now = self.config.history_size, self.clock()
        history = await self.engine.broker.history(key, since, limit, now, max(room, 0))
        recovered = history.recovered and not history.more
        messages = history.messages
        if history.more:  # the newest that fit join up with what comes live
            messages = (
                await self.engine.broker.history(key, None, limit, now, max(room, 0))
            ).messages
        kept: list[Message] = []
        for message in reversed(messages):  # sizes above were estimates; these are exact
            room -= len(message.encoded())
            if room < 0:
                return kept[::-1], False
            kept.append(message)
        return kept[::-1], recovered

    async def _on_presence(
        self,
        session: Session,
        identity: Identity,
        key: ChannelKey,
        frame: dict[str, Any],
        ref: Any,
        now: float,
    ) -> None:
        state = self._require_subscribed(session, key, ref)
        if state.channel.type != "presence":
            raise ProtocolError(ErrorCode.BAD_REQUEST, "not a presence channel", ref, key.name)
        status, meta = frame.get("status"), frame.get("meta")
        if status is not None or meta is not None:
            await self.engine.presence.update(key, identity.user_id, now, status, meta)
        members = await self._members_wire(key)
        session.send(reply("presence:state", ref, channel=key.name, members=members))

    async def _allow_publish(
        self,
        identity: Identity,
        connection_id: str | None,
        key: ChannelKey,
        event: str,
        payload: Any,
        ref: Any = None,
    ) -> None:
        if self.hooks.has("on_publish"):
            client = Client.of(identity, connection_id)
            if not await self.hooks.allows("on_publish", client, key.name, event, payload):
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, "refused by the application", ref, key.name
                )

    def _audit(
        self, action: str, identity: Identity | None, connection_id: str | None, **fields: Any
    ) -> None:
        data = {"user": None, "connection": connection_id}
        if identity is not None:  # None: the application's own code
            data.update(user=identity.user_id, tenant=identity.tenant_id)
        try:
            self.audit(action, {**data, **fields})
        except Exception:  # an audit sink's trouble is not the client's
            log.exception("recording %s failed", action)

    def _require_subscribed(self, session: Session, key: ChannelKey, ref: Any) -> ChannelState:
        state = self._channels.get(key)
        if key not in session.subscriptions or state is None:
            raise ProtocolError(
                ErrorCode.NOT_SUBSCRIBED, "subscribe to the channel first", ref, key.name
            )
        return state

    def _unsubscribe(self, session: Session, key: ChannelKey) -> bool:
        """Stop delivering `key` to the session; True when its presence must end."""
        if key not in session.subscriptions:
            return False
        session.subscriptions.discard(key)
        state = self._channels.get(key)
        if state is None:
            return False
        state.subscribers.pop(session.id, None)
        return state.channel.type == "presence" and session.identity is not None

    # -- channels ---------------------------------------------------------------

    async def _state(self, key: ChannelKey, create: Channel | None = None) -> ChannelState | None:
        """The channel as this node listens to it; created as `create` if it does not exist."""
        state = self._channels.get(key)
        if state is not None:
            return state
        channel = await self.engine.channels.get(key)
        if channel is None:
            if create is None:
                return None
            channel, _ = await self.engine.channels.create(create)
        await self.engine.broker.listen(key)
        # Another request may have loaded it while the engine answered.
        return self._channels.setdefault(key, ChannelState(channel))

    async def open_channel(
        self,
        identity: Identity,
        key: ChannelKey,
        action: str,
        ref: Any = None,
        admit: Callable[[Channel], Awaitable[None]] | None = None,
    ) -> ChannelState:
        """The channel `identity` may `action` on, created on first use if it may.

        Access, the request's own checks (`admit`, given the channel as it is or
        would be: a hook, a type) and quotas are decided before anything is
        stored, so a refused request leaves no trace: nobody can block a name by
        being refused on it. A channel created this way has no owner; only an
        explicit creation (HTTP API) makes one.
        """
        state = self._channels.get(key)
        channel = state.channel if state is not None else await self.engine.channels.get(key)
        new = channel is None
        if channel is None:
            channel = self._new_channel(key, created_by=identity)
        self._require_access(identity, channel, action, ref)
        if admit is not None:
            await admit(channel)
        if new:
            await self._require_creation_quota(identity, ref, key.name)
        if state is None:
            state = await self._state(key, create=channel)
            assert state is not None  # given `create`, `_state` always has one
            self._require_access(identity, state.channel, action, ref)  # if another made it
        return state

    def _new_channel(
        self,
        key: ChannelKey,
        owner: Identity | None = None,
        type_: str | None = None,
        members: tuple[str, ...] = (),
        created_by: Identity | None = None,
    ) -> Channel:
        creator = owner or created_by
        return Channel(
            key,
            type_ or channel_type_for(key.name, self.config.default_channel_type),
            owner.user_id if owner else None,
            self.clock(),
            members,
            creator.user_id if creator else None,
        )

    async def _require_creation_quota(
        self, identity: Identity, ref: Any = None, channel: str | None = None
    ) -> None:
        quota = self.config.max_channels_per_user
        if (
            quota
            and await self.engine.channels.count_created(identity.tenant_id, identity.user_id)
            >= quota
        ):
            raise ProtocolError(
                ErrorCode.LIMIT_EXCEEDED,
                f"max_channels_per_user: you have made {quota} channels exist already",
                ref,
                channel,
            )

    def _require_member_quota(self, members: tuple[str, ...] | list[str]) -> None:
        quota = self.config.max_channel_members
        if quota and len(members) > quota:
            raise ProtocolError(
                ErrorCode.LIMIT_EXCEEDED,
                f"max_channel_members: a member list holds at most {quota} users",
            )

    async def _reader_refusal(
        self, identity: Identity, channel: Channel, connection_id: str | None, ref: Any = None
    ) -> ProtocolError | None:
        """THE rule for reading a channel or being present on it, for both transports:
        None if `identity` may, else the refusal to raise.

        A WebSocket subscribe asks it, and so does every HTTP way to read a channel or
        be on it: its record, its place in the channel list, its members, its history
        and long-polls, an HTTP presence (each heartbeat too), and the creation of a
        `private-` name. First the right to subscribe (private channels: member list,
        owner, `channels` claim, `authorize`), then the application's `on_subscribe`
        (`connection_id` None over HTTP). A hook that fails, or answers anything but
        True, None or False, raises HookFailed: the request fails closed with `internal`.
        """
        if not self.auth.may_access(identity, channel, "subscribe"):
            return ProtocolError(
                ErrorCode.FORBIDDEN, "you may not subscribe on this channel", ref, channel.key.name
            )
        if self.hooks.has("on_subscribe"):
            client = Client.of(identity, connection_id)
            if not await self.hooks.allows("on_subscribe", client, channel.key.name):
                return ProtocolError(
                    ErrorCode.FORBIDDEN, "refused by the application", ref, channel.key.name
                )
        return None

    async def _require_reader(
        self, identity: Identity, channel: Channel, connection_id: str | None, ref: Any = None
    ) -> None:
        """`_reader_refusal`, raised: forbidden unless `identity` may read `channel`."""
        refusal = await self._reader_refusal(identity, channel, connection_id, ref)
        if refusal is not None:
            raise refusal

    def _require_access(
        self, identity: Identity, channel: Channel, action: str, ref: Any = None
    ) -> None:
        if not self.auth.may_access(identity, channel, action):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"you may not {action} on this channel", ref, channel.key.name
            )

    def _recheck_rights(self, session: Session) -> None:
        """A subscriber who lost its right to a channel is put out at once."""
        identity = session.identity
        for key in list(session.subscriptions):
            state = self._channels.get(key)
            if identity is None or state is None:
                continue
            if not self.auth.may_access(identity, state.channel, "subscribe"):
                if self._unsubscribe(session, key):
                    self.spawn(self._leave_all([key], identity.user_id, session.id))
                session.send({"type": "unsubscribed", "channel": key.name, "reason": "forbidden"})
                self._audit(
                    "unsubscribed", identity, session.id, channel=key.name, reason="forbidden"
                )

    # -- what the engine calls ------------------------------------------------------

    def deliver(
        self, key: ChannelKey, frame: bytes, message_id: str | None, skip: str | None
    ) -> None:
        """Fan a frame out to this node's subscribers: the same bytes for all."""
        state = self._channels.get(key)
        if state is None:
            return
        for session_id, session in list(state.subscribers.items()):
            if session_id == skip:
                continue
            held = session.held
            if held is not None and key in held:
                held[key].append((frame, message_id))
            else:
                session.conn.send(frame)
        if message_id is not None and state.watchers:
            watchers, state.watchers = state.watchers, []
            for wake in watchers:
                wake(message_id)

    def channel_changed(self, key: ChannelKey) -> None:
        if key in self._channels:
            self.spawn(self._reload(key))

    async def _reload(self, key: ChannelKey) -> None:
        channel = await self.engine.channels.get(key)
        state = self._channels.get(key)
        if channel is None or state is None:
            return
        state.channel = channel
        for session in list(state.subscribers.values()):
            self._recheck_rights(session)

    def resync_failed(self, key: ChannelKey) -> None:
        state = self._channels.get(key)
        for session in list(state.subscribers.values()) if state else []:
            self.close(
                session, CloseCode.INTERNAL_ERROR, "messages were lost; reconnect and recover"
            )

    # -- presence -----------------------------------------------------------------

    async def _members_wire(self, key: ChannelKey) -> list[dict[str, Any]]:
        return [m.to_wire() for m in await self.engine.presence.members(key)]

    # -- HTTP-facing --------------------------------------------------------------
    #
    # The REST transport (api/) calls these with an identity it has already
    # authenticated. They apply the rules the frames above apply (the tenant is
    # in the key; whoever reads a channel or is present on it passes
    # `_reader_refusal`, as a WebSocket subscribe does) and raise
    # ProtocolError with the same codes, which the transport maps to statuses,
    # so the two transports cannot disagree about who may do what.

    async def find_channel(self, key: ChannelKey) -> Channel | None:
        """The channel if it exists; never creates one."""
        state = self._channels.get(key)
        return state.channel if state is not None else await self.engine.channels.get(key)

    async def accessible_channel(self, identity: Identity, key: ChannelKey) -> Channel:
        """An existing channel `identity` may read (`_reader_refusal`, as a WebSocket
        subscribe would be asked): else not_found or forbidden."""
        channel = await self.find_channel(key)
        if channel is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no channel named {key.name!r}")
        await self._require_reader(identity, channel, None)
        return channel

    async def visible_channels(
        self, identity: Identity, after: str = "", limit: int | None = None
    ) -> tuple[list[Channel], str | None]:
        """One page of the channels of the caller's tenant it may subscribe to, by
        name, and the name to page on from (None on the last page).

        Each is decided by the one rule (`_reader_refusal`), one after the other, so
        that a failing hook fails the request once, with one logged error."""
        page = await self.engine.channels.list(identity.tenant_id, after, limit)
        next_after = page[-1].key.name if limit is not None and len(page) == limit else None
        visible = [c for c in page if await self._reader_refusal(identity, c, None) is None]
        return visible, next_after

    async def collect_idle(self) -> int:
        """Forget channels nobody has used for `channel_idle_ttl` (but not those
        listened to here); returns how many went."""
        ttl = self.config.channel_idle_ttl
        if ttl <= 0 or self.stopped:
            return 0
        return await self.engine.channels.collect_idle(self.clock() - ttl, set(self._channels))

    async def create_channel(
        self, identity: Identity, key: ChannelKey, type_: str, members: tuple[str, ...]
    ) -> Channel:
        """An explicit creation: the creator owns the channel; conflict if the name is taken.

        A name's prefix and its type always agree, and a `private-` name needs the
        right to subscribe to it (a `channels` claim or the `authorize` hook), so
        nobody can squat a private name as a public channel, or as an owner.
        """
        prefixed = channel_type_for(key.name, "")
        if prefixed and prefixed != type_:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"a channel named {prefixed}-... is {prefixed}"
            )
        if prefixed == "private":
            await self._require_reader(identity, self._new_channel(key), None)
        self._require_member_quota(members)
        if await self.find_channel(key) is None:
            await self._require_creation_quota(identity)
            channel, created = await self.engine.channels.create(
                self._new_channel(key, owner=identity, type_=type_, members=members)
            )
            if created:
                return channel
        raise ProtocolError(ErrorCode.CONFLICT, f"a channel named {key.name!r} exists")

    async def change_members(
        self, identity: Identity, key: ChannelKey, user_ids: list[str]
    ) -> Channel:
        """Replace a channel's member list; only its owner may. Subscribers who lost
        their right, on any node, are put out at once (`channel_changed`)."""
        channel = await self.accessible_channel(identity, key)
        if channel.owner != identity.user_id:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only the channel's owner changes members")
        self._require_member_quota(user_ids)
        return await self.engine.channels.set_members(key, user_ids)

    async def publish_http(
        self, identity: Identity, key: ChannelKey, event: str, payload: Any
    ) -> str:
        """Publish from the HTTP API: created on first publish as over WebSocket."""

        async def ask_the_application(_: Channel) -> None:
            await self._allow_publish(identity, None, key, event, payload)

        await self.open_channel(identity, key, "publish", admit=ask_the_application)
        sender = {"userId": identity.user_id, "connectionId": None}
        message_id = await self.engine.broker.publish(key, event, payload, sender, self.clock())
        self._audit("published", identity, None, channel=key.name, event=event)
        # The HTTP answer leaves at once, not at the end of the loop pass where
        # WebSocket frames wait for the group commit: make the id durable first.
        self.engine.commit()
        return message_id

    async def publish_from_server(self, key: ChannelKey, event: str, payload: Any = None) -> str:
        """Publish from the application's own code (`RealtimeServer.publish`): no
        user, so `from` is null; the channel is created on first use, without a quota."""
        check_event(event)
        state = self._channels.get(key)
        if state is None and await self.engine.channels.get(key) is None:
            await self.engine.channels.create(self._new_channel(key))
        message_id = await self.engine.broker.publish(key, event, payload, None, self.clock())
        self._audit("published", None, None, tenant=key.tenant, channel=key.name, event=event)
        self.engine.commit()
        return message_id

    async def members_of(self, key: ChannelKey) -> list[Member]:
        """Who is on a channel, for the application's own code; no access check."""
        return await self.engine.presence.members(key)

    async def read_history(
        self,
        identity: Identity,
        key: ChannelKey,
        since: str | None,
        limit: int,
        max_bytes: int | None = None,
    ) -> History:
        await self.accessible_channel(identity, key)
        self.engine.commit()  # an id shown over HTTP must already be durable
        return await self.engine.broker.history(key, since, limit, self.clock(), max_bytes)

    async def watch(
        self, key: ChannelKey, wake: Callable[[str | None], None]
    ) -> Callable[[], None]:
        """Call `wake` once with the id of the channel's next message, published on
        any node (None at shutdown); returns a cancel.

        It decides nothing: a long-poll reads the history first and after
        (`read_history`), each read asking the one rule, and shows only those."""
        state = await self._state(key)
        if state is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no channel named {key.name!r}")
        watchers = state.watchers
        watchers.append(wake)

        def cancel() -> None:
            if wake in watchers:
                watchers.remove(wake)

        return cancel

    async def http_members(
        self, identity: Identity, key: ChannelKey, include_offline: bool = False
    ) -> list[Member]:
        """Who is here; with `include_offline`, also who left, with `lastSeen`."""
        await self.accessible_channel(identity, key)
        members = await self.engine.presence.members(key)
        if include_offline:
            here = {m.user_id for m in members}
            members += [m for m in await self.engine.presence.offline(key) if m.user_id not in here]
        return members

    async def http_presence(
        self, identity: Identity, key: ChannelKey, status: str | None, meta: dict | None
    ) -> Member:
        """Join as an HTTP member, or heartbeat (and update status/meta) if already one.

        An HTTP member is one more connection of its user, `http-<user>`, with a
        lease of `heartbeat_timeout` that each heartbeat renews, on whichever
        node it lands; a user present over WebSocket and HTTP at once is one member.
        """

        async def presence_only(channel: Channel) -> None:
            await self._require_reader(identity, channel, None)  # before the type: 403, not 409
            if channel.type != "presence":
                # A well-formed request that the channel's type refuses: HTTP's 409.
                raise ProtocolError(ErrorCode.CONFLICT, "not a presence channel")

        await self.open_channel(identity, key, "subscribe", admit=presence_only)
        now = self.clock()
        member, joined = await self.engine.presence.join(
            key,
            identity,
            http_connection_id(identity),
            now,
            status or "online",
            meta,
            lease=self.config.heartbeat_timeout,
        )
        if not joined and (status is not None or meta is not None):
            member = (
                await self.engine.presence.update(key, identity.user_id, now, status, meta)
                or member
            )
        return member

    async def http_leave(self, identity: Identity, key: ChannelKey) -> None:
        """The HTTP member leaves at once; a no-op for a user who is not one.

        No rights are needed to leave: a member whose access was withdrawn may still go.
        """
        if await self.find_channel(key) is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no channel named {key.name!r}")
        await self.engine.presence.leave(
            key, identity.user_id, http_connection_id(identity), self.clock()
        )

    # -- profiles ----------------------------------------------------------------

    async def chosen_profile(self, identity: Identity) -> Profile | None:
        """The profile to show a new connection of `identity` with; None when the
        engine cannot say now: a name is no reason to refuse a connection."""
        try:
            return await self.engine.profiles.get(identity.tenant_id, identity.user_id)
        except EngineUnavailable:
            log.warning(
                "no profile for %s/%s: engine unavailable", identity.tenant_id, identity.user_id
            )
            return None

    async def profile(self, identity: Identity) -> dict[str, Any]:
        """The caller's profile (HTTP `GET profile`): effective values and chosen ones."""
        chosen = await self.engine.profiles.get(identity.tenant_id, identity.user_id)
        return profile_wire(identity, chosen)

    async def set_profile(self, identity: Identity, body: dict[str, Any]) -> dict[str, Any]:
        """Change the caller's own profile (HTTP `PUT profile`): there is no way to
        name another user. Checked whole before anything is stored; then every
        presence channel the user is on, on every node, gets one `presence:updated`."""
        changes = check_profile_update(body)
        if changes:
            chosen = await self.engine.profiles.update(identity, changes, self.clock())
        else:
            chosen = await self.engine.profiles.get(identity.tenant_id, identity.user_id)
        return profile_wire(identity, chosen)

    # -- time -------------------------------------------------------------------

    def tick(self) -> None:
        """Called by the transport about once a second: auth timeouts, token expiry, heartbeat."""
        now = self.clock()
        for session in list(self.sessions.values()):
            identity = session.identity
            if identity is None and now >= session.auth_deadline:
                session.send(error(ErrorCode.UNAUTHORIZED, "authentication timed out"))
                self.close(session, CloseCode.UNAUTHORIZED, "authentication timed out")
            elif (
                identity is not None
                and identity.expires_at is not None
                and now >= identity.expires_at
            ):
                session.send(error(ErrorCode.TOKEN_EXPIRED, "token expired; send a fresh one"))
                self.close(session, CloseCode.UNAUTHORIZED, "token expired")
        if now >= self._next_sweep:
            self._next_sweep = now + self.config.heartbeat_interval
            deadline = now - self.config.heartbeat_timeout
            for session in list(self.sessions.values()):
                if session.last_seen < deadline:
                    self.close(session, CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
            self._evict_idle_channels()

    async def maintain(self) -> None:
        """Periodic engine work: liveness, expired leases, dead nodes."""
        if not self.stopped:
            await self.engine.presence.maintain(self.clock())

    def _evict_idle_channels(self) -> None:
        """Stop listening to channels nobody here listens to; they come back on next
        use, so memory follows the live channels, not every channel ever used."""
        idle = [
            key
            for key, state in self._channels.items()
            if not state.subscribers and not state.watchers
        ]
        for key in idle:
            del self._channels[key]
            self.spawn(self._unlisten(key))

    async def _unlisten(self, key: ChannelKey) -> None:
        if key not in self._channels:  # unless a request brought it back meanwhile
            await self.engine.broker.unlisten(key)

    # -- rate limit -----------------------------------------------------------------

    def _admit(self, session: Session, now: float) -> bool:
        """Token bucket per connection: `rate_limit`/s, bursts to twice that.

        The first frame over the limit gets one `rate_limited` error; the others
        are dropped. A client that keeps going for another full burst before its
        bucket has refilled is closed with 4429.
        """
        limiter = self.limiter
        if limiter.take(session.bucket, now):
            if session.limited and session.bucket.tokens >= limiter.burst - 1:
                session.limited, session.rejected = False, 0
            return True
        if not session.limited:
            session.limited = True
            session.send(
                error(
                    ErrorCode.RATE_LIMITED,
                    f"more than {limiter.rate:g} frames per second; slow down",
                )
            )
        session.rejected += 1
        if session.rejected > limiter.burst:
            self.close(session, CloseCode.TOO_MANY, "rate limit exceeded")
        return False


def http_connection_id(identity: Identity) -> str:
    """The one pseudo-connection of a user's HTTP presence, the same on every node."""
    return f"http-{identity.user_id}"


def _auth_error_code(exc: AuthError) -> str:
    return ErrorCode.TOKEN_EXPIRED if isinstance(exc, TokenExpired) else ErrorCode.UNAUTHORIZED


def _who(session: Session) -> str:
    identity = session.identity
    return f"{identity.tenant_id}/{identity.user_id}" if identity else "unauthenticated"
