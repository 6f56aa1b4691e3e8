"""What the HTTP API and the application's own code ask of the hub.

The REST transport (api/) calls these with an identity it has already
authenticated. They apply the rules frames do (the tenant is in the key;
whoever reads a channel or is present on it passes `Rules.reader_refusal`, as a
WebSocket subscribe does) and raise ProtocolError with the same codes, which the
transport maps to statuses, so the two transports cannot disagree about who may
do what. `Hub` is a `Facade`: these are its methods, kept apart by job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engines.base import Engine, EngineUnavailable, History
from ..models import ChannelKey, ChannelRecord, Identity, Member, Profile, StateEntry
from ..profiles import check_profile_update, profile_wire, require_distinct_name
from ..protocol import (
    ErrorCode,
    ProtocolError,
    channel_type_for,
    check_event,
    check_if_version,
    check_state_key,
)
from ..ratelimit import RateLimiter

if TYPE_CHECKING:
    from .channels import Channels
    from .rules import Rules
    from .state import SharedState

log = logging.getLogger(__name__)


class Facade:
    """The hub's face for HTTP and server code (see the module's docstring)."""

    config: Any
    engine: Engine
    clock: Callable[[], float]
    channels: Channels
    rules: Rules
    state: SharedState
    limiter: RateLimiter
    replays: RateLimiter
    renames: RateLimiter

    def record(
        self, action: str, identity: Identity | None, connection_id: str | None, **fields: Any
    ) -> None:
        raise NotImplementedError  # the Hub's

    async def find_channel(self, key: ChannelKey) -> ChannelRecord | None:
        """The channel if it exists; never creates one."""
        state = self.channels.states.get(key)
        return state.channel if state is not None else await self.engine.channels.get(key)

    async def readable_channel(self, identity: Identity, key: ChannelKey) -> ChannelRecord:
        """An existing channel `identity` may read (`Rules.reader_refusal`, as a WebSocket
        subscribe would be asked): else not_found or forbidden."""
        channel = await self.find_channel(key)
        if channel is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no channel named {key.name!r}")
        await self.rules.require_reader(identity, channel, None)
        return channel

    async def visible_channels(
        self, identity: Identity, after: str = "", limit: int | None = None
    ) -> tuple[list[ChannelRecord], str | None]:
        """One page of the channels of the caller's tenant it may subscribe to, by
        name, and the name to page on from (None on the last page).

        Each is decided by the one rule (`Rules.reader_refusal`), one after the other, so
        that a failing hook fails the request once, with one logged error."""
        page = await self.engine.channels.list(identity.tenant_id, after, limit)
        next_after = page[-1].key.name if limit is not None and len(page) == limit else None
        visible = [c for c in page if await self.rules.reader_refusal(identity, c, None) is None]
        return visible, next_after

    async def create_channel(
        self, identity: Identity, key: ChannelKey, type_: str, members: tuple[str, ...]
    ) -> ChannelRecord:
        """An explicit creation: the creator owns the channel; conflict if the name is taken.

        A name's prefix and its type always agree, and a `private-` name needs the
        right to subscribe to it (a `channels` claim or the `authorize` hook), so
        nobody can squat a private name as a public channel, or as an owner; nor can
        anyone own another user's document channel (`Rules.document_refusal`).
        """
        prefixed = channel_type_for(key.name, "")
        if prefixed and prefixed != type_:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"a channel named {prefixed}-... is {prefixed}"
            )
        if prefixed == "private":
            await self.rules.require_reader(identity, self.channels.new(key), None)
        refusal = self.rules.document_refusal(identity, key.name)
        if refusal is not None:
            raise refusal
        self.rules.require_member_quota(members)
        if await self.find_channel(key) is None:
            await self.rules.require_creation_quota(identity)
            channel, created = await self.engine.channels.create(
                self.channels.new(key, owner=identity, type_=type_, members=members)
            )
            if created:
                return channel
        raise ProtocolError(ErrorCode.CONFLICT, f"a channel named {key.name!r} exists")

    async def change_members(
        self, identity: Identity, key: ChannelKey, user_ids: list[str]
    ) -> ChannelRecord:
        """Replace a channel's member list; only its owner may. Subscribers who lost
        their right, on any node, are put out at once (`channel_changed`)."""
        channel = await self.readable_channel(identity, key)
        if channel.owner != identity.user_id:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only the channel's owner changes members")
        self.rules.require_member_quota(user_ids)
        return await self.engine.channels.set_members(key, user_ids)

    async def publish_http(
        self, identity: Identity, key: ChannelKey, event: str, payload: Any
    ) -> str:
        """Publish from the HTTP API: created on first publish as over WebSocket."""

        async def ask_the_application(_: ChannelRecord) -> None:
            await self.rules.require_publish_allowed(identity, None, key, event, payload)

        await self.channels.open(identity, key, "publish", admit=ask_the_application)
        sender = {"userId": identity.user_id, "connectionId": None}
        message_id = await self.engine.broker.publish(key, event, payload, sender, self.clock())
        self.record("published", identity, None, channel=key.name, event=event)
        return message_id

    async def publish_from_server(self, key: ChannelKey, event: str, payload: Any = None) -> str:
        """Publish from the application's own code (`RealtimeServer.publish`): no
        user, so `from` is null; the channel is created on first use, without a quota."""
        check_event(event)
        state = self.channels.states.get(key)
        if state is None and await self.engine.channels.get(key) is None:
            await self.engine.channels.create(self.channels.new(key))
        message_id = await self.engine.broker.publish(key, event, payload, None, self.clock())
        self.record("published", None, None, tenant=key.tenant, channel=key.name, event=event)
        return message_id

    async def state_of(self, identity: Identity, key: ChannelKey) -> list[StateEntry]:
        """`GET channels/{name}/state`: the whole state, for whoever may read the channel."""
        await self.readable_channel(identity, key)
        return (await self.state.read(key)).entries

    async def set_state_http(
        self,
        identity: Identity,
        key: ChannelKey,
        entry_key: str,
        value: Any,
        if_version: str | None,
        create: bool = True,
    ) -> StateEntry:
        """`PUT` (value set; the channel is created on first use, as a publish does) or
        `DELETE` (value None; a channel that does not exist is not_found) of one key."""
        check_state_key(entry_key)
        if if_version is not None:
            check_if_version(if_version)
        self.state.check_value(value)

        async def as_a_writer(channel: ChannelRecord) -> None:
            await self.state.require_writer(identity, None, channel, entry_key, value)

        if not create and await self.find_channel(key) is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no channel named {key.name!r}")
        await self.channels.open(identity, key, "publish", admit=as_a_writer)
        sender = {"userId": identity.user_id, "connectionId": None}
        entry = await self.state.write(key, entry_key, value, sender, if_version)
        self.record("published", identity, None, channel=key.name, event="state:set")
        return entry

    async def set_state_from_server(
        self, key: ChannelKey, entry_key: str, value: Any
    ) -> StateEntry:
        """A write by the application's own code: no user (`from` null), no rights asked,
        the channel created on first use without a quota; the limits still hold."""
        check_state_key(entry_key)
        if self.channels.states.get(key) is None and await self.engine.channels.get(key) is None:
            await self.engine.channels.create(self.channels.new(key))
        return await self.state.write(key, entry_key, value, None, None)

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
        await self.readable_channel(identity, key)
        caller, now = (identity.tenant_id, identity.user_id), self.clock()
        available = self.replays.available(caller, now)
        if available <= 0:
            wait = math.ceil(self.replays.wait(caller, now))
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"more than {self.replays.rate:g} bytes of history per second; "
                f"try again in {wait} s",
                retry_after=wait,
            )
        if available != math.inf:
            max_bytes = int(available) if max_bytes is None else min(max_bytes, int(available))
        history = await self.engine.broker.history(key, since, limit, now, max_bytes)
        self.replays.spend(caller, sum(len(m.encoded()) for m in history.messages), now)
        return history

    async def http_members(
        self, identity: Identity, key: ChannelKey, include_offline: bool = False
    ) -> list[Member]:
        """Who is here; with `include_offline`, also who left, with `lastSeen`."""
        await self.readable_channel(identity, key)
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

        async def presence_only(channel: ChannelRecord) -> None:
            await self.rules.require_reader(
                identity, channel, None
            )  # before the type: 403, not 409
            if channel.type != "presence":
                # A well-formed request that the channel's type refuses: HTTP's 409.
                raise ProtocolError(ErrorCode.CONFLICT, "not a presence channel")

        await self.channels.open(identity, key, "subscribe", admit=presence_only)
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
        name another user, nor to choose a name that looks like another member's name
        or id (`conflict`; the try counts against the rate budget, so nobody probes
        the tenant's names fast). Checked whole before anything is stored; then every
        presence channel the user is on, on every node, gets one `presence:updated`."""
        changes = check_profile_update(body)
        if changes:
            caller, now = (identity.tenant_id, identity.user_id), self.clock()
            if not self.renames.admit(caller, now):
                wait = math.ceil(self.renames.wait(caller, now))
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {self.config.profile_changes_per_minute:g} profile changes "
                    f"per minute; try again in {wait} s",
                    retry_after=wait,
                )
            if changes.get("name"):
                known = await self.engine.profiles.names(identity.tenant_id)
                require_distinct_name(str(changes["name"]), identity.user_id, known)
            change = await self.engine.profiles.update(identity, changes, now)
            # Each channel it was shown on cost the others one `presence:updated`: the
            # user's budget pays for them as for that many requests, into debt if need
            # be (the next requests wait), so a rename is never cheaper than the frames.
            self.limiter.spend(caller, change.channels, now)
            chosen = change.profile
        else:
            chosen = await self.engine.profiles.get(identity.tenant_id, identity.user_id)
        return profile_wire(identity, chosen)


def http_connection_id(identity: Identity) -> str:
    """The one pseudo-connection of a user's HTTP presence, the same on every node."""
    return f"http-{identity.user_id}"
