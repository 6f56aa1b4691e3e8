"""The hub: sessions, channels, subscriptions, fan-out, presence, heartbeat, limits.

Sans-I/O, in the manner of the `websockets` protocol core: transports hand it
raw frames (`receive`) and tell it when a connection opens or closes; it hands
back encoded bytes through `Connection.send` and asks for closes through
`Connection.close`. It owns no socket, no event loop and no clock (one is
injected), so every rule of PROTOCOL.md is testable with plain function calls.

A message is encoded once per publish; the same bytes go to every subscriber.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .auth import Authenticator, AuthError, TokenExpired
from .engines import Engine
from .models import Channel, ChannelKey, Identity, Member, Message
from .protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
    ProtocolError,
    channel_type_for,
    decode,
    encode,
    error,
    reply,
)
from .store import Store

log = logging.getLogger(__name__)

# Send-buffer room a recovery leaves for the `subscribed` frame before it and
# the live messages of the same loop pass.
RECOVERY_HEADROOM = 64 * 1024


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
    identity: Identity | None = None
    auth_deadline: float = 0.0
    subscriptions: set[ChannelKey] = field(default_factory=set)
    tokens: float = 0.0  # rate-limit bucket
    refilled_at: float = 0.0
    limited: bool = False
    rejected: int = 0
    closed: bool = False

    def send(self, frame: dict[str, Any]) -> None:
        self.conn.send(encode(frame))


@dataclass(eq=False)
class HttpMember:
    """A presence member kept alive by HTTP heartbeats instead of a socket."""

    connection_id: str  # "http-…": one per user and channel, however many clients
    last_seen: float


@dataclass(eq=False)
class ChannelState:
    channel: Channel
    subscribers: dict[str, Session] = field(default_factory=dict)
    waiters: list[Callable[[Message | None], None]] = field(default_factory=list)


class Hub:
    def __init__(
        self,
        config: Any,
        store: Store,
        engine: Engine,
        authenticator: Authenticator,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.auth = authenticator
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.stopped = False  # after shutdown: new connections are turned away
        self._channels: dict[ChannelKey, ChannelState] = {}
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(3)
        self._next_sweep = clock() + config.heartbeat_interval
        # Read on every frame: plain numbers, not traitlets lookups.
        self._rate = config.rate_limit
        self._burst = 2 * config.rate_limit
        # HTTP presence members: (channel, user) -> their pseudo-connection.
        self._http_members: dict[tuple[ChannelKey, str], HttpMember] = {}
        engine.start(self._deliver)

    # -- connection lifecycle -------------------------------------------------

    def connect(self, conn: Connection, identity: Identity | None = None) -> Session | None:
        """A transport opened a connection, already authenticated or not.

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
            auth_deadline=now + self.config.auth_timeout,
            tokens=self._burst,
            refilled_at=now,
        )
        self.sessions[session.id] = session
        if identity is not None:
            self._authenticate(session, identity, None)
        return session

    def reject(self, conn: Connection, exc: AuthError) -> None:
        """Credentials given at the handshake were refused."""
        conn.send(encode(error(_auth_error_code(exc), str(exc))))
        conn.close(CloseCode.UNAUTHORIZED, "unauthorized")

    def disconnect(self, session: Session) -> None:
        """The connection is gone (or about to be): leave every channel. Idempotent."""
        if self.sessions.pop(session.id, None) is None:
            return
        session.closed = True
        for key in list(session.subscriptions):
            try:
                self._leave(session, key)
            except Exception:  # one failure (say, a locked database) must not strand the rest
                log.exception("leaving %s on disconnect", key)

    def close(self, session: Session, code: int, reason: str) -> None:
        if session.closed:
            return
        if code != CloseCode.GOING_AWAY:
            log.info("closing %s (%s) with %d: %s", session.id, _who(session), code, reason)
        self.disconnect(session)
        session.conn.close(code, reason)

    def shutdown(self) -> None:
        """Close every connection with 1001 and record everyone as offline.

        Nobody is told that others leave: they all go at once, and telling
        each of N subscribers about the N-1 others would cost N² frames.
        """
        self.stopped = True
        sessions = list(self.sessions.values())
        self.sessions.clear()
        for state in self._channels.values():
            state.subscribers.clear()
            waiters, state.waiters = state.waiters, []
            for wake in waiters:
                wake(None)
        for session in sessions:
            session.closed = True
            session.conn.close(CloseCode.GOING_AWAY, "server shutting down")
        self.store.mark_all_offline(self.clock())

    # -- incoming frames ------------------------------------------------------

    def touch(self, session: Session) -> None:
        """The client showed it is alive without a frame (a WebSocket ping)."""
        session.last_seen = self.clock()

    def receive(self, session: Session, data: str | bytes) -> None:
        """One frame from a client."""
        if session.closed:
            return
        now = self.clock()
        session.last_seen = now
        if not self._admit(session, now):
            return
        frame: dict[str, Any] = {}
        try:
            frame = decode(data, authenticated=session.identity is not None)
            self._dispatch(session, frame, now)
        except ProtocolError as exc:
            session.send(exc.to_wire())
        except Exception:  # a bug or a failing hook costs one error frame, never the connection
            log.exception("internal error handling a frame")
            session.send(error(ErrorCode.INTERNAL, "internal server error", frame.get("ref")))

    def _dispatch(self, session: Session, frame: dict[str, Any], now: float) -> None:
        type_, ref = frame["type"], frame.get("ref")
        if type_ == "ping":
            session.send(reply("pong", ref, ts=int(now * 1000)))
            return
        if type_ == "auth":
            self._on_auth(session, frame["token"], ref)
            return
        identity = session.identity
        if identity is None:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "authenticate first", ref)
        name = frame["channel"]
        key = ChannelKey(identity.tenant_id, name)
        if type_ == "subscribe":
            self._on_subscribe(session, identity, key, frame.get("since"), ref, now)
        elif type_ == "unsubscribe":
            if key in session.subscriptions:
                self._leave(session, key)
            session.send(reply("unsubscribed", ref, channel=name))
        elif type_ == "broadcast":
            self._require_subscribed(session, key, ref)
            self.open_channel(identity, key, "publish", ref)
            sender = {"userId": identity.user_id, "connectionId": session.id}
            echo = frame.get("echo", True)
            message = self.engine.publish(
                key, frame["event"], frame.get("payload"), sender, now, echo
            )
            if ref is not None:
                session.send(reply("ack", ref, id=message.id))
        elif type_ == "presence":
            self._on_presence(session, identity, key, frame, ref, now)

    def _on_auth(self, session: Session, token: str, ref: Any) -> None:
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
        self._authenticate(session, identity, ref)

    def _authenticate(self, session: Session, identity: Identity, ref: Any) -> None:
        session.identity = identity
        session.send(
            reply(
                "authenticated",
                ref,
                connectionId=session.id,
                user=identity.to_wire(),
                heartbeatInterval=int(self.config.heartbeat_interval * 1000),
                heartbeatTimeout=int(self.config.heartbeat_timeout * 1000),
                protocol=PROTOCOL_VERSION,
            )
        )

    def _on_subscribe(
        self,
        session: Session,
        identity: Identity,
        key: ChannelKey,
        since: str | None,
        ref: Any,
        now: float,
    ) -> None:
        state = self.open_channel(identity, key, "subscribe", ref)
        channel = state.channel
        fields: dict[str, Any] = {"channel": key.name, "channelType": channel.type}
        missed: list[bytes] = []
        # A repeated subscribe gets no replay: the connection has had every
        # message since its first one, and replays are what a flood would ask for.
        if since is not None and key not in session.subscriptions:
            missed, fields["recovered"] = self._missed(session, key, since, now)
        if key not in session.subscriptions:
            if len(session.subscriptions) >= self.config.max_subscriptions:
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"at most {self.config.max_subscriptions} channels per connection",
                    ref,
                    key.name,
                )
            session.subscriptions.add(key)
            state.subscribers[session.id] = session
            if channel.type == "presence":
                member, joined = self.engine.presence.join(key, identity, session.id, now)
                self.store.save_presence(key, member, online=True)
                if joined:
                    self._broadcast_event(state, "user:joined", member, skip=session.id)
        if channel.type == "presence":
            fields["members"] = self._members_wire(key)
        session.send(reply("subscribed", ref, **fields))
        for data in missed:
            session.conn.send(data)

    def _missed(
        self, session: Session, key: ChannelKey, since: str, now: float
    ) -> tuple[list[bytes], bool]:
        """The encoded messages after `since` and whether that is all of them.

        A recovery is cut to what fits in the connection's send buffer (the
        newest messages, then): the client learns `recovered: false` and
        reloads history, instead of being cut off for asking.
        """
        history = self.engine.history(key, since, self.config.history_size, now)
        room = self.config.max_send_buffer - session.conn.backlog() - RECOVERY_HEADROOM
        frames: list[bytes] = []
        for message in reversed(history.messages):
            data = encode(message.to_wire())
            room -= len(data)
            if room < 0:
                return frames[::-1], False
            frames.append(data)
        return frames[::-1], history.recovered

    def _on_presence(
        self,
        session: Session,
        identity: Identity,
        key: ChannelKey,
        frame: dict[str, Any],
        ref: Any,
        now: float,
    ) -> None:
        self._require_subscribed(session, key, ref)
        state = self._channels[key]
        if state.channel.type != "presence":
            raise ProtocolError(ErrorCode.BAD_REQUEST, "not a presence channel", ref, key.name)
        self.update_presence(key, identity.user_id, frame.get("status"), frame.get("meta"), now)
        session.send(
            reply("presence:state", ref, channel=key.name, members=self._members_wire(key))
        )

    def _require_subscribed(self, session: Session, key: ChannelKey, ref: Any) -> None:
        if key not in session.subscriptions:
            raise ProtocolError(
                ErrorCode.NOT_SUBSCRIBED, "subscribe to the channel first", ref, key.name
            )

    # -- channels ---------------------------------------------------------------

    def open_channel(
        self, identity: Identity, key: ChannelKey, action: str, ref: Any = None
    ) -> ChannelState:
        """The channel `identity` may `action` on, created on first use if it may.

        Access is decided before anything is stored, so a refused request
        leaves no trace: nobody can block a name by being refused on it. A
        channel created this way has no owner; only an explicit creation
        (HTTP API) makes one.
        """
        state = self.find_channel(key)
        self._require_access(
            identity, state.channel if state is not None else self._new_channel(key), action, ref
        )
        return state if state is not None else self.channel_state(key)

    def _new_channel(
        self,
        key: ChannelKey,
        creator: Identity | None = None,
        type_: str | None = None,
        members: tuple[str, ...] = (),
    ) -> Channel:
        return Channel(
            key,
            type_ or channel_type_for(key.name, self.config.default_channel_type),
            creator.user_id if creator else None,
            self.clock(),
            members,
        )

    def channel_state(
        self,
        key: ChannelKey,
        creator: Identity | None = None,
        type_: str | None = None,
        members: tuple[str, ...] = (),
    ) -> ChannelState:
        """The channel, loaded from the store or created as given; no access check."""
        state = self._channels.get(key)
        if state is not None:
            return state
        found = self.store.get_channel(key)
        if found is None:
            channel = self._new_channel(key, creator, type_, members)
            self.store.create_channel(channel, secrets.token_hex(4))
            found = self.store.get_channel(key)
        channel, epoch, last_seq = found  # type: ignore[misc]
        self.engine.ensure_channel(key, epoch, last_seq)
        state = self._channels[key] = ChannelState(channel)
        return state

    def set_channel_members(self, key: ChannelKey, user_ids: list[str]) -> Channel:
        """Replace the member list; subscribers who lost their right are put out at once."""
        state = self.channel_state(key)
        self.store.set_channel_members(key, user_ids)
        state.channel = self.store.get_channel(key)[0]  # type: ignore[index]
        for session in list(state.subscribers.values()):
            identity = session.identity
            if identity is not None and not self.auth.may_access(
                identity, state.channel, "subscribe"
            ):
                self._leave(session, key)
                session.send({"type": "unsubscribed", "channel": key.name, "reason": "forbidden"})
        return state.channel

    def _leave(self, session: Session, key: ChannelKey) -> None:
        session.subscriptions.discard(key)
        state = self._channels.get(key)
        if state is None:
            return
        state.subscribers.pop(session.id, None)
        if state.channel.type == "presence" and session.identity is not None:
            self.leave_presence(key, session.identity.user_id, session.id)

    # -- presence -----------------------------------------------------------------

    def leave_presence(self, key: ChannelKey, user_id: str, connection_id: str) -> None:
        member = self.engine.presence.leave(key, user_id, connection_id, self.clock())
        if member is not None:
            # Tell the others first: the record is secondary to what they see.
            self._broadcast_event(self._channels[key], "user:left", member)
            self.store.save_presence(key, member, online=False)

    def update_presence(
        self, key: ChannelKey, user_id: str, status: str | None, meta: dict | None, now: float
    ) -> Member | None:
        member = self.engine.presence.update(key, user_id, now, status, meta)
        if member is not None:
            self.store.save_presence(key, member, online=True)
            self._broadcast_event(self._channels[key], "presence:updated", member)
        return member

    def _members_wire(self, key: ChannelKey) -> list[dict[str, Any]]:
        return [m.to_wire() for m in self.engine.presence.members(key)]

    def _broadcast_event(
        self, state: ChannelState, type_: str, member: Member, skip: str | None = None
    ) -> None:
        data = encode(
            {"type": type_, "channel": state.channel.key.name, "member": member.to_wire()}
        )
        for session_id, session in list(state.subscribers.items()):
            if session_id != skip:
                session.conn.send(data)

    # -- messages -----------------------------------------------------------------

    def _deliver(self, key: ChannelKey, message: Message, echo: bool) -> None:
        """Fan a message out to this process's subscribers: encoded once."""
        state = self._channels.get(key)
        if state is None:
            return
        data = encode(message.to_wire())
        skip = None if echo or message.sender is None else message.sender["connectionId"]
        for session_id, session in list(state.subscribers.items()):
            if session_id != skip:
                session.conn.send(data)
        if state.waiters:
            waiters, state.waiters = state.waiters, []
            for wake in waiters:
                wake(message)

    def wait_for_message(
        self, key: ChannelKey, wake: Callable[[Message | None], None]
    ) -> Callable[[], None]:
        """Call `wake` once with the next message of the channel (None at shutdown);
        returns a cancel."""
        waiters = self.channel_state(key).waiters
        waiters.append(wake)

        def cancel() -> None:
            if wake in waiters:
                waiters.remove(wake)

        return cancel

    # -- HTTP-facing --------------------------------------------------------------
    #
    # The REST transport (api.py) calls these with an identity it has already
    # authenticated. They apply the rules the frames above apply (the tenant is
    # in the key, private channels go through `may_access`) and raise
    # ProtocolError with the same codes, which the transport maps to statuses,
    # so the two transports cannot disagree about who may do what.

    def find_channel(self, key: ChannelKey) -> ChannelState | None:
        """The channel if it exists, in memory or in the store; never creates one."""
        if key in self._channels or self.store.get_channel(key) is not None:
            return self.channel_state(key)
        return None

    def accessible_channel(
        self, identity: Identity, key: ChannelKey, action: str = "subscribe"
    ) -> ChannelState:
        """An existing channel `identity` may `action` on: else not_found or forbidden."""
        state = self.find_channel(key)
        if state is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no channel named {key.name!r}")
        self._require_access(identity, state.channel, action)
        return state

    def _require_access(
        self, identity: Identity, channel: Channel, action: str, ref: Any = None
    ) -> None:
        if not self.auth.may_access(identity, channel, action):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"you may not {action} on this channel", ref, channel.key.name
            )

    def visible_channels(self, identity: Identity) -> list[Channel]:
        """The channels of the caller's tenant it may subscribe to, by name."""
        channels = self.store.list_channels(identity.tenant_id)
        return [c for c in channels if self.auth.may_access(identity, c, "subscribe")]

    def create_channel(
        self, identity: Identity, key: ChannelKey, type_: str, members: tuple[str, ...]
    ) -> Channel:
        """An explicit creation: the creator owns the channel; conflict if the name is taken."""
        if self.find_channel(key) is not None:
            raise ProtocolError(ErrorCode.CONFLICT, f"a channel named {key.name!r} exists")
        return self.channel_state(key, creator=identity, type_=type_, members=members).channel

    def change_members(self, identity: Identity, key: ChannelKey, user_ids: list[str]) -> Channel:
        """Replace a channel's member list; only its owner may."""
        state = self.accessible_channel(identity, key)
        if state.channel.owner != identity.user_id:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only the channel's owner changes members")
        return self.set_channel_members(key, user_ids)

    def publish_http(
        self, identity: Identity, key: ChannelKey, event: str, payload: Any
    ) -> Message:
        """Publish from the HTTP API: created on first publish as over WebSocket; `from` null."""
        self.open_channel(identity, key, "publish")
        message = self.engine.publish(key, event, payload, None, self.clock())
        # The HTTP answer leaves at once, not at the end of the loop pass where
        # WebSocket frames wait for the group commit: make the id durable first.
        self.store.commit()
        return message

    def read_history(
        self, identity: Identity, key: ChannelKey, since: str | None, limit: int
    ) -> list[Message]:
        self.accessible_channel(identity, key)
        self.store.commit()  # an id shown over HTTP must already be durable
        return self.engine.history(key, since, limit, self.clock()).messages

    def http_members(
        self, identity: Identity, key: ChannelKey, include_offline: bool = False
    ) -> list[Member]:
        """Who is here; with `include_offline`, also who left, from the store's records."""
        self.accessible_channel(identity, key)
        members = self.engine.presence.members(key)
        if include_offline:
            here = {m.user_id for m in members}
            gone = self.store.presence_records(key, online=False)
            members += [m for m in gone if m.user_id not in here]
        return members

    def http_presence(
        self, identity: Identity, key: ChannelKey, status: str | None, meta: dict | None
    ) -> Member:
        """Join as an HTTP member, or heartbeat (and update status/meta) if already one.

        An HTTP member is one more connection of its user, named `http-…`, so a
        user present over WebSocket and HTTP at once is still one member.
        """
        state = self.open_channel(identity, key, "subscribe")
        if state.channel.type != "presence":
            # A well-formed request that the channel's type refuses: HTTP's 409.
            raise ProtocolError(ErrorCode.CONFLICT, "not a presence channel")
        now = self.clock()
        http_member = self._http_members.get((key, identity.user_id))
        if http_member is None:
            connection_id = f"http-{self._id_prefix}{next(self._ids):x}"
            member, joined = self.engine.presence.join(
                key, identity, connection_id, now, status or "online", meta
            )
            self._http_members[(key, identity.user_id)] = HttpMember(connection_id, now)
            if joined:
                self.store.save_presence(key, member, online=True)
                self._broadcast_event(state, "user:joined", member)
                return member
        else:
            http_member.last_seen = now
        if self.update_presence(key, identity.user_id, status, meta, now) is None:
            # Nothing to announce, but the record's `lastSeen` must stay fresh.
            member = self.engine.presence.member(key, identity.user_id)
            self.store.save_presence(key, member, online=True)  # type: ignore[arg-type]
        return self.engine.presence.member(key, identity.user_id)  # type: ignore[return-value]

    def http_leave(self, identity: Identity, key: ChannelKey) -> None:
        """The HTTP member leaves at once; a no-op for a user who is not one.

        No rights are needed to leave: a member whose access was withdrawn may still go.
        """
        if self.find_channel(key) is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no channel named {key.name!r}")
        http_member = self._http_members.pop((key, identity.user_id), None)
        if http_member is not None:
            self.leave_presence(key, identity.user_id, http_member.connection_id)

    def expire_http_presence(self, now: float) -> None:
        """HTTP members silent for `heartbeat_timeout` leave as if a connection closed."""
        deadline = now - self.config.heartbeat_timeout
        expired = [k for k, m in self._http_members.items() if m.last_seen < deadline]
        for key, user_id in expired:
            http_member = self._http_members.pop((key, user_id))
            self.leave_presence(key, user_id, http_member.connection_id)

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
        self.expire_http_presence(now)
        if now >= self._next_sweep:
            self._next_sweep = now + self.config.heartbeat_interval
            deadline = now - self.config.heartbeat_timeout
            for session in list(self.sessions.values()):
                if session.last_seen < deadline:
                    self.close(session, CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
            self._evict_idle_channels()

    def _evict_idle_channels(self) -> None:
        """Forget channels nobody listens to; they reload from the store on next use,
        so memory follows the live channels, not every channel ever used."""
        idle = [
            key
            for key, state in self._channels.items()
            if not state.subscribers and not state.waiters and not self.engine.presence.members(key)
        ]
        for key in idle:
            del self._channels[key]
            self.engine.forget(key)

    # -- rate limit -----------------------------------------------------------------

    def _admit(self, session: Session, now: float) -> bool:
        """Token bucket per connection: `rate_limit`/s, bursts to twice that.

        The first frame over the limit gets one `rate_limited` error; the others
        are dropped. A client that keeps going for another full burst before its
        bucket has refilled is closed with 4429.
        """
        rate = self._rate
        if rate <= 0:
            return True
        session.tokens = min(self._burst, session.tokens + (now - session.refilled_at) * rate)
        session.refilled_at = now
        if session.limited and session.tokens >= self._burst:
            session.limited, session.rejected = False, 0
        if session.tokens >= 1:
            session.tokens -= 1
            return True
        if not session.limited:
            session.limited = True
            session.send(
                error(ErrorCode.RATE_LIMITED, f"more than {rate:g} frames per second; slow down")
            )
        session.rejected += 1
        if session.rejected > self._burst:
            self.close(session, CloseCode.TOO_MANY, "rate limit exceeded")
        return False


def _auth_error_code(exc: AuthError) -> str:
    return ErrorCode.TOKEN_EXPIRED if isinstance(exc, TokenExpired) else ErrorCode.UNAUTHORIZED


def _who(session: Session) -> str:
    identity = session.identity
    return f"{identity.tenant_id}/{identity.user_id}" if identity else "unauthenticated"
