"""The engine seam: the three interfaces the hub depends on, and nothing else.

Modelled on centrifuge's split of its `Node` from `Broker` and `PresenceManager`:

- a `Broker` gives each message its id (epoch + sequence) in the channel's one
  order, keeps history, and delivers messages *and* presence events to every
  node that listens to the channel, this one included;
- a `PresenceManager` tracks who is on a channel across nodes, one member per
  user however many connections (on however many nodes) it has, and lets the
  connections of a node that stops refreshing its liveness expire;
- a `ChannelRegistry` keeps channels: types, owners, member lists;
- a `ProfileStore` keeps the names and colours users chose (profiles.py), and
  shows a change on every channel its user is on, on every node;
- a `StateStore` keeps each channel's shared state (the latest value per key),
  numbers each write in the channel's one sequence, and delivers `state:changed`.

Every method that may cross a network is a coroutine. The memory engine never
suspends in them; the Redis engine does. Either way the hub calls them alike,
and one contract test suite (tests/test_engine_contract.py) holds both to the
same behaviour.

Delivery is push: the engine calls `EngineEvents` methods on the hub's side
with frames that are already encoded, once per publish, the same bytes for
every subscriber on every node.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

from ..models import ChannelKey, ChannelRecord, Identity, Member, Message, Profile, StateEntry


class EngineUnavailable(Exception):
    """The engine cannot store or deliver right now (say, Redis is down); nothing happened."""


class OutcomeUnknown(EngineUnavailable):
    """The request reached the engine (Redis), whose answer never came: it may have
    been done, or not. Only writes whose every byte may have left say so; an outage
    before that is EngineUnavailable, nothing happened."""


class StateConflict(Exception):
    """A compare-and-set found another version; nothing changed. `current` is the
    entry as it is (None: the key is absent)."""

    def __init__(self, current: StateEntry | None) -> None:
        super().__init__("the entry has another version")
        self.current = current


class StateLimitExceeded(Exception):
    """A write would pass a per-channel limit (`max_state_keys` or `max_state_bytes`,
    named by `setting`); nothing changed."""

    def __init__(self, setting: str) -> None:
        super().__init__(setting)
        self.setting = setting


class StateLimits(NamedTuple):
    max_keys: int  # live keys per channel
    max_bytes: int  # UTF-8 bytes of the keys plus encoded bytes of the values


class StateSnapshot(NamedTuple):
    """A channel's state as read in one step.

    `entries` by key; with `complete`, the live ones (the whole state), else the ones
    written after the `since` asked for, deletions included (value None). `epoch` and
    `seq` are where the channel's sequence stood at the read: a `state:changed` of
    this epoch numbered at or before `seq` is in it already."""

    entries: list[StateEntry]
    complete: bool
    epoch: str
    seq: int


class History(NamedTuple):
    messages: list[Message]
    recovered: bool  # False when some messages after `since` are gone
    # Cut short by `limit` or `max_bytes`: with `since`, more follow the last one
    # (ask again from it); without, older ones precede the first.
    more: bool = False


class EngineEvents(Protocol):
    """What an engine calls on the node that started it."""

    def deliver(
        self, key: ChannelKey, frame: bytes, message_id: str | None, skip: str | None
    ) -> None:
        """Send `frame` to this node's subscribers of `key`, except connection `skip`.

        `message_id` is set for messages (None for presence events); frames of
        one channel arrive in the channel's one order."""

    def deliver_state(self, key: ChannelKey, frame: bytes, version: str) -> None:
        """Send a `state:changed` frame to this node's subscribers of `key` that asked
        for state; in the channel's one order with its messages."""

    def channel_changed(self, key: ChannelKey) -> None:
        """The channel's record (its member list) was changed, maybe on another node."""

    def resync_failed(self, key: ChannelKey) -> None:
        """Messages of `key` were lost for this node (its link to the engine broke and
        history no longer covers the gap): its subscribers must reconnect and recover."""


class Broker(Protocol):
    async def listen(self, key: ChannelKey) -> None:
        """Deliver the channel's messages and events to this node from now on."""

    async def unlisten(self, key: ChannelKey) -> None:
        """This node has nobody on the channel any more."""

    def publish(
        self,
        key: ChannelKey,
        event: str,
        payload: Any,
        sender: dict[str, Any] | None,
        now: float,
        skip: str | None = None,
    ) -> Awaitable[str]:
        """Give the message its id, keep it in history, deliver it everywhere; the id.

        `skip` is a connection that must not get the message back (`echo: false`).
        Raises EngineUnavailable when the message could not be stored.

        An engine whose publish takes a round trip may return an `asyncio.Future`
        already under way: its ids must then follow the order of the calls. The hub
        reads a connection's next frame without waiting for it (answering in order),
        so a burst of publishes can share round trips. A coroutine is awaited first."""

    async def history(
        self,
        key: ChannelKey,
        since: str | None,
        limit: int,
        now: float,
        max_bytes: int | None = None,
    ) -> History:
        """Retained messages, oldest first: the first `limit` after `since`, or the
        newest `limit` when `since` is None; `""` is "since the channel began". No
        more than `max_bytes` of encoded frames (but always one), read and decoded
        in proportion to what is returned."""


class PresenceManager(Protocol):
    async def join(
        self,
        key: ChannelKey,
        identity: Identity,
        connection_id: str,
        now: float,
        status: str = "online",
        meta: dict[str, Any] | None = None,
        lease: float | None = None,
    ) -> tuple[Member, bool]:
        """Add (or refresh) a connection; the member and whether the user just joined.

        A user who just joined shows with the name and colour of their profile
        (`ProfileStore`) over those of `identity`, read in the same step as the
        join, so that no concurrent change of the profile can be missed.
        A connection with a `lease` (seconds) leaves by itself when it is not
        joined again within it (HTTP members); one without lives as long as
        this node does. The engine delivers `user:joined` to every node, with
        `skip` set to the joining connection."""

    async def leave(
        self, key: ChannelKey, user_id: str, connection_id: str, now: float
    ) -> Member | None:
        """Remove a connection; the member when it was the user's last one anywhere,
        after delivering `user:left` and keeping an offline record."""

    async def update(
        self,
        key: ChannelKey,
        user_id: str,
        now: float,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Member | None:
        """Change status and/or meta; the member when something changed (after
        delivering `presence:updated`)."""

    async def members(self, key: ChannelKey) -> list[Member]:
        """Who is on the channel now, on every node, by user id."""

    async def offline(self, key: ChannelKey) -> list[Member]:
        """Users who were on the channel and left, with `lastSeen`, by user id."""

    async def maintain(self, now: float) -> None:
        """Periodic: refresh this node's liveness; let expired leases and the
        connections of dead nodes leave (each with exactly one `user:left`)."""


class ChannelRegistry(Protocol):
    async def get(self, key: ChannelKey) -> ChannelRecord | None: ...

    async def create(self, channel: ChannelRecord) -> tuple[ChannelRecord, bool]:
        """Create the channel unless one of that name exists; the channel that is,
        and whether this call created it."""

    async def list(
        self, tenant: str, after: str = "", limit: int | None = None
    ) -> list[ChannelRecord]:
        """The tenant's channels by name, from the first after `after`; at most `limit`."""

    async def count_created(self, tenant: str, user_id: str) -> int:
        """How many of the tenant's channels `user_id` made exist (a quota)."""

    async def collect_idle(self, not_used_since: float, live: set[ChannelKey]) -> int:
        """Forget ownerless channels with no message and nobody present since
        `not_used_since`, except the `live` ones; their offline presence records too.
        How many went."""

    # `builtins.list`: inside this class, `list` names the method above.
    async def set_members(self, key: ChannelKey, user_ids: builtins.list[str]) -> ChannelRecord:
        """Replace the member list and tell every node (`channel_changed`)."""


class ProfileChange(NamedTuple):
    profile: Profile  # what the user chose, after the change
    # The presence channels the user is on, each visited to show the change (one
    # `presence:updated` where what shows changed): what the change cost.
    channels: int


class ProfileStore(Protocol):
    """The profile (chosen name and colour) of each user of each tenant."""

    async def get(self, tenant: str, user_id: str) -> Profile:
        """What the user chose; an empty `Profile` when nothing."""

    async def names(self, tenant: str) -> list[tuple[str, str]]:
        """The members of `tenant` this engine knows, as (user id, name shown) pairs:
        whoever joined a presence channel of the tenant (with the name they were last
        shown with there) and whoever chose a name. What a chosen name must not look
        like (profiles.require_distinct_name); a user may come more than once."""

    async def update(
        self, identity: Identity, changes: dict[str, str | None], now: float
    ) -> ProfileChange:
        """Apply `changes` (keys `name` and/or `color`; None clears one) to the
        caller's profile and return it, with how many channels it was shown on. Then every presence channel the user is a
        member of (any connection, any node, HTTP members too) whose member shows
        other values than the effective ones (profiles.effective over `identity`)
        gets them, and exactly one `presence:updated`, in the same step: a join
        racing with the change shows either the old values and gets the event, or
        the new ones."""


class StateStore(Protocol):
    """The shared state of each channel: the latest value of each key.

    A write takes the next number of the channel's own sequence (the one messages
    take ids from), so its version is a message id, and `state:changed` reaches every
    node in order with the channel's messages. State outlives history: it is kept
    however many messages come after it, and as long as its channel is."""

    async def write(
        self,
        key: ChannelKey,
        entry_key: str,
        value: Any,
        sender: dict[str, Any] | None,
        now: float,
        if_version: str | None,
        limits: StateLimits,
    ) -> StateEntry:
        """Set `entry_key` to `value` (None deletes it), deliver `state:changed`, and
        return the entry with its new version. With `if_version`, only if the entry's
        version is that one (`""`: only if the key is absent), else StateConflict.
        A new key past `limits.max_keys`, or a write that makes the channel's state
        pass `limits.max_bytes`, raises StateLimitExceeded. Either way nothing changed."""

    async def read(self, key: ChannelKey, since: str | None = None) -> StateSnapshot:
        """The whole state (`since` None, `""`, unknown, of another epoch, or from before
        deletions that were forgotten), or only what changed after `since`."""


# Periodic work an engine needs: every `seconds`, call `work` (which may return an
# awaitable; a failure is logged and the next round tries again).
Timer = tuple[float, Callable[[], Any]]


class Engine:
    """One engine: the four parts, sharing whatever connection they need.

    An engine is made from the configuration by `from_config`, and
    `engines.make_engine` picks the class by the URL's scheme.
    """

    broker: Broker
    presence: PresenceManager
    channels: ChannelRegistry
    profiles: ProfileStore
    state: StateStore

    @classmethod
    def from_config(cls, config: Any) -> Engine:
        """The engine the `Realtime` configuration describes."""
        raise NotImplementedError

    def bind(self, events: EngineEvents) -> None:
        """Deliver to `events` (the hub) from now on."""
        raise NotImplementedError

    def on_commit_due(self, book: Callable[[], None]) -> None:
        """Call `book` whenever something was handed out that `commit` must make
        durable (the writer then commits before the burst's frames leave)."""

    def timers(self) -> list[Timer]:
        """The engine's own periodic work, which the service runs."""
        return []

    async def start(self) -> None:
        """Start what runs in the background (the Redis engine's listener, its
        node's liveness); requests made before it are served all the same."""

    def commit(self) -> None:
        """Make what was handed out in this burst durable before frames carrying it
        leave the process (the memory engine's group commit; see `outbox.Writer`);
        cheap when nothing is."""

    def rollback(self) -> None:
        """The burst's `commit` failed: forget what it would have made durable."""

    async def close(self) -> None:
        """This node stops: its connections leave everywhere; release resources."""
        raise NotImplementedError

    def release(self) -> None:
        """After `close` and the last frames: free what the engine holds open to the
        end (the memory engine's database file). Twice does nothing."""
