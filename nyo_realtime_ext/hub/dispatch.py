"""Frames from clients: decoded, rate-limited, and answered, one at a time per connection."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from .. import frames
from ..auth import AuthError, TokenExpired
from ..engines.base import EngineUnavailable, OutcomeUnknown, StateSnapshot
from ..engines.ids import parse_message_id
from ..frames import error, reply
from ..hooks import HookFailed
from ..models import ChannelKey, ChannelRecord, Identity, Message
from ..protocol import CloseCode, ErrorCode, ProtocolError, decode
from .session import Held, Session

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger(__name__)

# Send-buffer room a recovery leaves for the `subscribed` frame before it and
# the live messages of the same burst.
RECOVERY_HEADROOM = 64 * 1024


class Dispatch:
    """Decode each frame, check it against the rate budget, and do what it asks."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.config, self.engine, self.clock = hub.config, hub.engine, hub.clock
        self.auth = hub.auth

    async def receive(self, session: Session, data: str | bytes) -> None:
        """One frame from a client. Transports await it before reading the next
        frame of the same connection, so a client's requests keep their order.

        A publish that an engine pipelines (see `Broker.publish`) is answered when
        the engine answers, and the next frame is read meanwhile: publishes after it
        join it, and any other frame waits for its answer first, so the answers
        still come in the order of the requests."""
        if session.closed:
            return
        now = self.clock()
        session.last_seen = now
        if not self._within_rate(session, now):
            return
        frame: dict[str, Any] = {}
        try:
            frame = decode(data, authenticated=session.identity is not None)
            if session.inflight is not None and frame["type"] != "broadcast":
                await _settled(session)
            await self._dispatch(session, frame, now, len(data))
        except Exception as exc:
            if session.inflight is not None:
                await _settled(session)
            session.send(_error_frame(exc, frame))

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
            await self._on_subscribe(
                session, identity, key, frame.get("since"), ref, frame.get("state", False)
            )
        elif type_ == "unsubscribe":
            subscribed = key in session.subscriptions
            if self.hub.channels.unsubscribe(session, key):
                await self.engine.presence.leave(key, identity.user_id, session.id, self.clock())
            session.send(reply("unsubscribed", ref, channel=name))
            if subscribed:
                self.hub.record("unsubscribed", identity, session.id, channel=name)
        elif type_ == "broadcast":
            state = self.hub.channels.require_subscribed(session, key, ref)
            self.hub.rules.require_access(identity, state.channel, "publish", ref)
            await self.hub.rules.require_publish_allowed(
                identity, session.id, key, frame["event"], frame.get("payload"), ref
            )
            sender = {"userId": identity.user_id, "connectionId": session.id}
            skip = None if frame.get("echo", True) else session.id
            answer = self.engine.broker.publish(
                key, frame["event"], frame.get("payload"), sender, now, skip
            )
            if isinstance(answer, asyncio.Future):  # under way: answered when it is done
                session.inflight = answer
                answer.add_done_callback(partial(self._published, session, identity, frame, size))
                return
            self._acked(session, identity, frame, size, await answer)
        elif type_ == "presence":
            await self._on_presence(session, identity, key, frame, ref, now)
        elif type_ == "state:set":
            await self._on_state_set(session, identity, key, frame, ref, size)

    async def _on_state_set(
        self,
        session: Session,
        identity: Identity,
        key: ChannelKey,
        frame: dict[str, Any],
        ref: Any,
        size: int,
    ) -> None:
        state = self.hub.channels.require_subscribed(session, key, ref)
        entry_key, value = frame["key"], frame["value"]
        shared = self.hub.state
        await shared.require_writer(identity, session.id, state.channel, entry_key, value, ref)
        sender = {"userId": identity.user_id, "connectionId": session.id}
        entry = await shared.write(key, entry_key, value, sender, frame.get("ifVersion"), ref)
        if ref is not None:  # as for a broadcast: an answer only to who asks for one
            session.send(reply("ack", ref, id=entry.version))
        # Audited as what it is, a publish (audit.py's schema lists its actions).
        self.hub.record(
            "published", identity, session.id, channel=key.name, event="state:set", size=size
        )

    def _published(
        self,
        session: Session,
        identity: Identity,
        frame: dict[str, Any],
        size: int,
        answer: asyncio.Future[str],
    ) -> None:
        if session.inflight is answer:
            session.inflight = None
        if answer.cancelled():  # the engine is stopping, and so is the server
            return
        exc = answer.exception()
        if exc is not None:
            session.send(_error_frame(exc, frame))
        else:
            self._acked(session, identity, frame, size, answer.result())

    def _acked(
        self, session: Session, identity: Identity, frame: dict[str, Any], size: int, id: str
    ) -> None:
        ref = frame.get("ref")
        if ref is not None:
            session.send(reply("ack", ref, id=id))
        self.hub.record(
            "published",
            identity,
            session.id,
            channel=frame["channel"],
            event=frame["event"],
            size=size,
        )

    async def _on_auth(self, session: Session, token: str, ref: Any) -> None:
        try:
            identity = self.auth.identify(token)
        except AuthError as exc:
            session.send(error(auth_error_code(exc), str(exc), ref))
            self.hub.close(session, CloseCode.UNAUTHORIZED, "unauthorized")
            return
        current = session.identity
        if current is not None and not current.same_principal(identity):
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                "a refreshed token must be for the same user and tenant",
                ref,
            )
        profile = await self.hub.chosen_profile(identity)
        if session.closed:
            return
        if self.hub.authenticate(session, identity, ref, profile) and current is not None:
            self.hub.channels.recheck_rights(session)

    async def _on_subscribe(
        self,
        session: Session,
        identity: Identity,
        key: ChannelKey,
        since: str | None,
        ref: Any,
        with_state: bool = False,
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

        async def as_a_reader(channel: ChannelRecord) -> None:
            await self.hub.rules.require_reader(identity, channel, session.id, ref)

        # A repeated subscribe asks nothing new: the connection already is a reader.
        admit = None if key in session.subscriptions else as_a_reader
        state = await self.hub.channels.open(identity, key, "subscribe", ref, admit)
        channel = state.channel
        fields: dict[str, Any] = {"channel": key.name, "channelType": channel.type}
        if key in session.subscriptions:
            # A repeated subscribe gets no replay: the connection has had every
            # message since its first one, and replays are what a flood would ask for.
            if channel.type == "presence":
                fields["members"] = await self.hub.channels.members_wire(key)
            if not with_state:
                session.send(reply("subscribed", ref, **fields))
                return
            # The whole state, then what changes: what arrives while it is read is
            # held back, and what the snapshot already holds is not sent again.
            held = self._hold(session, key)
            state.state_readers.add(session.id)
            try:
                whole = await self.hub.state.read(key)
            finally:
                self._release(session, key)
            if session.closed:
                return
            session.send(reply("subscribed", ref, **fields))
            session.conn.send(frames.state_snapshot(key.name, whole.entries, True))
            self._flush(session, held, set(), whole)
            return
        if session.closed:
            return  # gone while the engine answered
        # From here the session gets every frame of the channel, held back
        # until `subscribed` and its recovery are out.
        session.subscriptions.add(key)
        state.subscribers[session.id] = session
        if with_state:
            state.state_readers.add(session.id)
        held = self._hold(session, key)
        self.hub.channels.take_early(state, session, held)
        try:
            missed: list[Message] = []
            if since is not None:
                missed, fields["recovered"] = await self._missed(session, key, since)
            if channel.type == "presence":
                await self.engine.presence.join(key, identity, session.id, self.clock())
                fields["members"] = await self.hub.channels.members_wire(key)
            # Read last: what changes after it arrives as `state:changed`, held meanwhile.
            snapshot = await self.hub.state.read(key, since) if with_state else None
        except BaseException:
            if self.hub.channels.unsubscribe(session, key):  # True only for a presence channel
                self.hub.spawn(self.hub.leave_all([key], identity.user_id, session.id))
            raise
        finally:
            self._release(session, key)
        if session.closed:
            return
        session.send(reply("subscribed", ref, **fields))
        self.hub.record("subscribed", identity, session.id, channel=key.name)
        if snapshot is not None:
            session.conn.send(frames.state_snapshot(key.name, snapshot.entries, snapshot.complete))
        sent = set()
        for message in missed:
            session.conn.send(message.encoded())
            sent.add(message.id)
        self._flush(session, held, sent, snapshot)

    @staticmethod
    def _hold(session: Session, key: ChannelKey) -> Held:
        """From now until `_release`, the channel's frames for `session` wait in the list."""
        held: Held = []
        if session.held is None:
            session.held = {}
        session.held[key] = held
        return held

    @staticmethod
    def _release(session: Session, key: ChannelKey) -> None:
        if session.held is not None:
            session.held.pop(key, None)
            if not session.held:
                session.held = None

    @staticmethod
    def _flush(
        session: Session, held: Held, sent: set[str], snapshot: StateSnapshot | None
    ) -> None:
        """What was held back, but the messages a recovery sent (`sent`) and the state
        changes the snapshot holds."""
        for frame, message_id, version in held:
            if version is not None:
                if snapshot is None or not _in_snapshot(version, snapshot):
                    session.conn.send(frame)
            elif message_id is None or message_id not in sent:
                session.conn.send(frame)

    async def _missed(
        self, session: Session, key: ChannelKey, since: str
    ) -> tuple[list[Message], bool]:
        """The messages after `since` and whether that is all of them.

        A recovery is cut to what fits in the connection's send buffer and in the
        user's `replay_rate` budget (the newest messages, then): the client learns
        `recovered: false` and reloads history, instead of being cut off for
        asking. The engine reads no more than that room, so a replay costs what it
        sends, and what it sends is charged to the asker.
        """
        limit, now = self.config.history_size, self.clock()
        assert session.identity is not None  # subscribed: authenticated
        caller = session.identity.tenant_id, session.identity.user_id
        room = self.config.max_send_buffer - session.conn.backlog() - RECOVERY_HEADROOM
        room = int(min(room, self.hub.replays.available(caller, now)))
        kept, recovered = await self._fitting(key, since, limit, now, room)
        self.hub.replays.spend(caller, sum(len(m.encoded()) for m in kept), now)
        return kept, recovered

    async def _fitting(
        self, key: ChannelKey, since: str, limit: int, now: float, room: int
    ) -> tuple[list[Message], bool]:
        """The newest messages after `since` that fit in `room` bytes, and whether
        they are all of them."""
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
        state = self.hub.channels.require_subscribed(session, key, ref)
        if state.channel.type != "presence":
            raise ProtocolError(ErrorCode.BAD_REQUEST, "not a presence channel", ref, key.name)
        status, meta = frame.get("status"), frame.get("meta")
        if status is not None or meta is not None:
            await self.engine.presence.update(key, identity.user_id, now, status, meta)
        members = await self.hub.channels.members_wire(key)
        session.send(reply("presence:state", ref, channel=key.name, members=members))

    def charge(self, session: Session) -> bool:
        """A frame the hub never sees whole (a WebSocket ping or pong, one fragment
        of a message): it shows the client is alive, and it costs the same budget as
        a frame that does, or a flood of them would cost the server, never the
        flooder. False when the budget is spent (the client has been told)."""
        if session.closed:
            return False
        now = self.clock()
        session.last_seen = now
        return self._within_rate(session, now)

    def _within_rate(self, session: Session, now: float) -> bool:
        """Token bucket per connection: `rate_limit`/s, bursts to twice that.

        The first frame over the limit gets one `rate_limited` error; the others
        are dropped. A client that keeps going for another full burst before its
        bucket has refilled is closed with 4429.
        """
        limiter = self.hub.limiter
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
            self.hub.close(session, CloseCode.TOO_MANY, "rate limit exceeded")
        return False


def _in_snapshot(version: str, snapshot: StateSnapshot) -> bool:
    """Whether a `state:changed` of this version was written before the snapshot was
    read (so the snapshot has it, or what came after it)."""
    parsed = parse_message_id(version)
    return parsed is not None and parsed[0] == snapshot.epoch and parsed[1] <= snapshot.seq


async def _settled(session: Session) -> None:
    """Once the connection's pipelined publishes are answered (whatever the answer)."""
    inflight = session.inflight
    if inflight is not None and not inflight.done():
        await asyncio.wait((inflight,))


def _error_frame(exc: BaseException, frame: dict[str, Any]) -> dict[str, Any]:
    """What the client is told when handling `frame` raised `exc`."""
    ref = frame.get("ref")
    if isinstance(exc, ProtocolError):
        return exc.to_wire()
    if isinstance(exc, orjson.JSONEncodeError):
        # orjson decodes nesting its encoder refuses; brokers encode before they
        # store or number anything, so nothing happened.
        return error(
            ErrorCode.BAD_REQUEST, "`payload` is nested too deep", ref, frame.get("channel")
        )
    if isinstance(exc, OutcomeUnknown):
        return error(ErrorCode.OUTCOME_UNKNOWN, str(exc), ref, frame.get("channel"))
    if isinstance(exc, EngineUnavailable):
        # With its channel, so that a client that subscribed without a ref (the
        # TypeScript client's resubscriptions) knows which to try again.
        return error(ErrorCode.UNAVAILABLE, str(exc), ref, frame.get("channel"))
    if not isinstance(exc, HookFailed):  # a failed hook was logged where it failed
        # A bug or a failing hook costs one error frame, never the connection.
        log.error("internal error handling a frame", exc_info=exc)
    return error(ErrorCode.INTERNAL, "internal server error", ref)


def auth_error_code(exc: AuthError) -> str:
    return ErrorCode.TOKEN_EXPIRED if isinstance(exc, TokenExpired) else ErrorCode.UNAUTHORIZED
