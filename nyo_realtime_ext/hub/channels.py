"""The channels this node listens to: their local subscribers, delivery, rights kept true."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import frames
from ..hooks import HookFailed
from ..models import ChannelKey, ChannelRecord, Identity
from ..protocol import CloseCode, ErrorCode, ProtocolError, channel_type_for
from .session import Held, Session

if TYPE_CHECKING:
    from .hub import Hub


@dataclass(eq=False)
class ChannelState:
    """A channel this node listens to, with its local subscribers."""

    channel: ChannelRecord
    subscribers: dict[str, Session] = field(default_factory=dict)
    # The subscribers (session ids) that asked for the channel's state (`state: true`).
    state_readers: set[str] = field(default_factory=set)
    # Told each message id, None at shutdown (the HTTP API's long-polls: see `observe`).
    observers: list[Callable[[str | None], None]] = field(default_factory=list)
    # What the engine delivered while this node was starting to listen, for the
    # subscribers that opened it (`take_early`); emptied once they are in.
    early: list[Early] = field(default_factory=list)


# A frame delivered before the channel had subscribers here: the frame, its message
# id, its state version (a `state:changed`), and the connection not to send it to.
Early = tuple[bytes, str | None, str | None, str | None]


class Channels:
    """The channels this node listens to, and what the engine tells of them (`EngineEvents`)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.config, self.engine, self.clock = hub.config, hub.engine, hub.clock
        self.auth = hub.auth
        self.states: dict[ChannelKey, ChannelState] = {}
        # Channels this node is starting to listen to: the engine may deliver their
        # frames before the listen returns (Redis: between the SUBSCRIBE's
        # confirmation and the position read), and those are kept for the
        # subscribers that asked, not lost because nobody was subscribed yet.
        self._opening: dict[ChannelKey, list[Early]] = {}

    def require_subscribed(self, session: Session, key: ChannelKey, ref: Any) -> ChannelState:
        state = self.states.get(key)
        if key not in session.subscriptions or state is None:
            raise ProtocolError(
                ErrorCode.NOT_SUBSCRIBED, "subscribe to the channel first", ref, key.name
            )
        return state

    def unsubscribe(self, session: Session, key: ChannelKey) -> bool:
        """Stop delivering `key` to the session; True when its presence must end."""
        if key not in session.subscriptions:
            return False
        session.subscriptions.discard(key)
        state = self.states.get(key)
        if state is None:
            return False
        state.subscribers.pop(session.id, None)
        state.state_readers.discard(session.id)
        return state.channel.type == "presence" and session.identity is not None

    async def listened(
        self, key: ChannelKey, create: ChannelRecord | None = None
    ) -> ChannelState | None:
        """The channel as this node listens to it; created as `create` if it does not exist."""
        state = self.states.get(key)
        if state is not None:
            return state
        channel = await self.engine.channels.get(key)
        if channel is None:
            if create is None:
                return None
            channel, _ = await self.engine.channels.create(create)
        early = self._opening.setdefault(key, [])
        try:
            await self.engine.broker.listen(key)
        finally:
            self._opening.pop(key, None)
        # Another request may have loaded it while the engine answered.
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = ChannelState(channel, early=early)
            if early:
                # Those who opened it resume in this pass of the loop (they await the
                # same listen) and take these; later subscribers came after them.
                asyncio.get_running_loop().call_soon(state.early.clear)
        return state

    def take_early(self, state: ChannelState, session: Session, held: Held) -> None:
        """What was delivered while the channel was being listened to, into the frames
        held for a subscriber that opened it: those published once this node listened."""
        for frame, message_id, version, skip in state.early:
            if skip == session.id or (
                version is not None and session.id not in state.state_readers
            ):
                continue
            held.append((frame, message_id, version))

    async def open(
        self,
        identity: Identity,
        key: ChannelKey,
        action: str,
        ref: Any = None,
        admit: Callable[[ChannelRecord], Awaitable[None]] | None = None,
    ) -> ChannelState:
        """The channel `identity` may `action` on, created on first use if it may.

        Access, the request's own checks (`admit`, given the channel as it is or
        would be: a hook, a type) and quotas are decided before anything is
        stored, so a refused request leaves no trace: nobody can block a name by
        being refused on it. A channel created this way has no owner; only an
        explicit creation (HTTP API) makes one.
        """
        state = self.states.get(key)
        channel = state.channel if state is not None else await self.engine.channels.get(key)
        new = channel is None
        if channel is None:
            channel = self.new(key, created_by=identity)
        self.hub.rules.require_access(identity, channel, action, ref)
        if admit is not None:
            await admit(channel)
        if new:
            await self.hub.rules.require_creation_quota(identity, ref, key.name)
        if state is None:
            state = await self.listened(key, create=channel)
            assert state is not None  # given `create`, `_state` always has one
            self.hub.rules.require_access(
                identity, state.channel, action, ref
            )  # if another made it
        return state

    def new(
        self,
        key: ChannelKey,
        owner: Identity | None = None,
        type_: str | None = None,
        members: tuple[str, ...] = (),
        created_by: Identity | None = None,
    ) -> ChannelRecord:
        creator = owner or created_by
        return ChannelRecord(
            key,
            type_ or channel_type_for(key.name, self.config.default_channel_type),
            owner.user_id if owner else None,
            self.clock(),
            members,
            creator.user_id if creator else None,
        )

    def recheck_rights(self, session: Session) -> None:
        """A subscriber who lost its right to a channel is put out at once."""
        identity = session.identity
        for key in list(session.subscriptions):
            state = self.states.get(key)
            if identity is None or state is None:
                continue
            if not self._still_allowed(identity, state.channel):
                if self.unsubscribe(session, key):
                    self.hub.spawn(self.hub.leave_all([key], identity.user_id, session.id))
                session.send({"type": "unsubscribed", "channel": key.name, "reason": "forbidden"})
                self.hub.record(
                    "unsubscribed", identity, session.id, channel=key.name, reason="forbidden"
                )

    def _still_allowed(self, identity: Identity, channel: ChannelRecord) -> bool:
        try:
            return self.auth.may_access(identity, channel, "subscribe")
        except HookFailed:  # logged where it failed; a right nobody can confirm is gone
            return False

    def deliver(
        self, key: ChannelKey, frame: bytes, message_id: str | None, skip: str | None
    ) -> None:
        """Fan a frame out to this node's subscribers: the same bytes for all."""
        state = self.states.get(key)
        if state is None:
            opening = self._opening.get(key)
            if opening is not None and message_id is not None:
                # Messages only: what presence changed meanwhile, the member list
                # a presence subscriber reads after its join already shows.
                opening.append((frame, message_id, None, skip))
            return
        for session_id, session in list(state.subscribers.items()):
            if session_id == skip:
                continue
            held = session.held
            if held is not None and key in held:
                held[key].append((frame, message_id, None))
            else:
                session.conn.send(frame)
        if message_id is not None and state.observers:
            for observer in list(state.observers):  # one may cancel itself
                observer(message_id)

    def deliver_state(self, key: ChannelKey, frame: bytes, version: str) -> None:
        """A `state:changed`, to this node's subscribers that asked for state only."""
        state = self.states.get(key)
        if state is None:
            opening = self._opening.get(key)
            if opening is not None:
                opening.append((frame, None, version, None))
            return
        if not state.state_readers:
            return
        for session_id in list(state.state_readers):
            session = state.subscribers.get(session_id)
            if session is None:
                continue
            held = session.held
            if held is not None and key in held:
                held[key].append((frame, None, version))
            else:
                session.conn.send(frame)

    def channel_changed(self, key: ChannelKey) -> None:
        if key in self.states:
            self.hub.spawn(self._reload(key))

    async def _reload(self, key: ChannelKey) -> None:
        channel = await self.engine.channels.get(key)
        state = self.states.get(key)
        if channel is None or state is None:
            return
        state.channel = channel
        for session in list(state.subscribers.values()):
            self.recheck_rights(session)

    def resync_failed(self, key: ChannelKey) -> None:
        state = self.states.get(key)
        for session in list(state.subscribers.values()) if state else []:
            self.hub.close(
                session, CloseCode.INTERNAL_ERROR, "messages were lost; reconnect and recover"
            )

    async def members_wire(self, key: ChannelKey) -> list[dict[str, Any]]:
        return frames.members_wire(await self.engine.presence.members(key))

    async def collect_idle(self) -> int:
        """Forget channels nobody has used for `channel_idle_ttl` (but not those
        listened to here); returns how many went."""
        ttl = self.config.channel_idle_ttl
        if ttl <= 0 or self.hub.stopped:
            return 0
        return await self.engine.channels.collect_idle(self.clock() - ttl, set(self.states))

    async def observe(
        self, key: ChannelKey, observer: Callable[[str | None], None]
    ) -> Callable[[], None]:
        """Tell `observer` the id of each message of the channel from now on, published
        on any node (None at shutdown), until the returned cancel is called.

        It decides nothing: who may see what is the observer's business (a long-poll
        reads the history after each wake, each read asking the one rule)."""
        state = await self.listened(key)
        if state is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no channel named {key.name!r}")
        observers = state.observers
        observers.append(observer)

        def cancel() -> None:
            if observer in observers:
                observers.remove(observer)

        return cancel

    def evict_idle(self) -> None:
        """Stop listening to channels nobody here listens to; they come back on next
        use, so memory follows the live channels, not every channel ever used."""
        idle = [
            key
            for key, state in self.states.items()
            if not state.subscribers and not state.observers
        ]
        for key in idle:
            del self.states[key]
            self.hub.spawn(self._unlisten(key))

    async def _unlisten(self, key: ChannelKey) -> None:
        if key not in self.states:  # unless a request brought it back meanwhile
            await self.engine.broker.unlisten(key)
