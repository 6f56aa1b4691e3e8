"""The shared engine: many processes or machines (nodes), one Redis (or a cluster).

Learned from centrifuge's Redis broker and presence manager, written for this
protocol:

- **One order per channel.** A Lua script gives a message its sequence number,
  appends it to the channel's stream (trimmed to `history_size`, expired after
  `history_ttl`) and publishes it, atomically: every node sees one order, with
  the same ids. An id is `epoch-seq`; the epoch is made when the channel's
  sequence is (re)created, so if Redis loses it, an old `since` is unknown and
  its client gets `recovered: false`.
- **Encode once.** The publishing node encodes the frame with frames.py, as the
  bytes before the id and after it; the script puts the id between them; every
  node writes the bytes it receives to its subscribers as they are.
- **Publishes pipelined.** A publish takes its place in line when asked for, and
  every publish waiting when a round trip ends goes in the next one (pipeline.py):
  a client's burst costs a few round trips, not one each, and the other nodes
  read it as a burst. Ids keep the order publishes were asked in.
- **Presence across nodes.** A member is one user per channel, however many
  connections on however many nodes; joins and leaves are scripts too, so
  exactly one `user:joined` and one `user:left` go out, on the channel's
  pub/sub, in order with its messages. A node renews its lease on each channel
  it has connections on; the connections of a node whose lease there ran out are
  removed by whichever node visits the channel first (one script, so once). HTTP
  members have leases of their own.
- **One Redis, a Cluster, or Sentinel** (connect.py). Every key of a script is in
  its KEYS under one hash tag (keys.py), so each step is atomic on one shard; on a
  cluster of Redis >= 7 delivery is sharded pub/sub, one listener per master
  (shards.py). docs/architecture.md lists what is atomic and what is eventual.
- **A bounded pool.** A node holds at most `redis_max_connections` connections for
  its commands (and two more: the pub/sub listener, the collection of idle
  channels). A command that finds them all busy queues for one, up to
  `POOL_WAIT`; past that it is refused as `unavailable` with "busy", logged once
  in a while, and nothing about Redis being gone: the pool stays as it is.
- **Outages.** A command Redis does not answer raises `EngineUnavailable`
  (`unavailable` to the client, nothing published). The listener reconnects
  with backoff, subscribes again, and fills each channel's gap from its stream;
  where the stream no longer covers it, the channel's subscribers on this node
  are closed so that they reconnect and learn `recovered: false`.
- **Redis that comes back older.** Each node remembers the newest id it has seen
  of each channel and gives it to every publish: where Redis's sequence is behind
  it (a restart from an older snapshot, a failover to a lagging replica), the
  script starts a new epoch instead of giving out used ids again. A listener that
  sees a channel's sequence go back closes that channel's subscribers (1011).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from redis.exceptions import MaxConnectionsError, RedisError

from ... import frames
from ...constants import PERSON
from ...lograte import Occasional
from ...models import ChannelKey, ChannelRecord, Identity, Member, Message, Profile
from ...profiles import effective
from ..base import (
    Engine,
    EngineEvents,
    EngineUnavailable,
    History,
    OutcomeUnknown,
    ProfileChange,
    StateSnapshot,
)
from ..ids import parse_message_id
from ..meta import json_key
from .connect import UNAVAILABLE, UNAVAILABLE_ERRORS, client_for, drop_idle, node_client, parse
from .keys import Keys
from .pipeline import Pipeline, Unanswered
from .scripts import SCRIPTS
from .shards import Shard
from .state import RedisState

log = logging.getLogger(__name__)

# A node's lease on its connections, at least; renewed at every maintenance tick.
MIN_NODE_LEASE = 3.0
# How long a subscription may wait for the listener's connection, then for Redis
# to confirm it, before the caller is told the engine is unavailable.
SUBSCRIBE_TIMEOUT = 5.0
# Entries reaped per maintenance call: a dead node with more finishes next time.
REAP_BATCH = 1000
# How long a command may queue for one of the node's Redis connections when they
# are all in use, then it is refused as `unavailable` (busy). A storm of
# reconnections (thousands of clients, a few commands each) drains well within it.
POOL_WAIT = 10.0
# Connections beyond `redis_max_connections`: the pub/sub listener's, the scan of
# idle channels'.
POOL_RESERVE = 2
# Channels whose newest id a node remembers (for publishes to notice a Redis that
# came back older); past that many, the least recently seen are forgotten.
SEEN_MAX = 100_000
# Records of channels not listened to that a node keeps before it lets them go.
KNOWN_SLACK = 10_000


async def _nothing() -> None:
    return None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


_UNANSWERED = (
    "the server lost touch with its engine (Redis) after sending the request: it may "
    "have been done; look (the channel's history, its state) before trying again"
)
_BUSY = "the server is busy (all its Redis connections are in use); retry later"


def _exhausted(exc: BaseException | None) -> bool:
    """The pool had no connection to give: not that Redis is gone. (`_Slot` keeps
    commands within the pool; this is for whatever took one outside it.)"""
    return isinstance(exc, MaxConnectionsError)


class _Reachable:
    """`async with redis.reachable:` Redis not answering in the block raises
    EngineUnavailable. One instance, no state: nothing is made per command."""

    __slots__ = ("client", "busy")

    def __init__(self, client: Any, busy: Occasional) -> None:
        self.client = client
        self.busy = busy

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        await _translate(self.client, self.busy, exc)
        return False


async def _translate(client: Any, busy: Occasional, exc: BaseException | None) -> None:
    """Raise what the hub understands for a Redis failure `exc`, if it is one."""
    if exc is None:
        return
    if _exhausted(exc):
        # Every connection is busy with other commands: Redis is fine, so nothing
        # is dropped and nobody is told that Redis went.
        busy.note()
        raise EngineUnavailable(_BUSY) from exc
    if isinstance(exc, Unanswered):
        await drop_idle(client)
        raise OutcomeUnknown(_UNANSWERED) from exc.__cause__
    if isinstance(exc, UNAVAILABLE_ERRORS):
        # One broken connection means the others in the pool are likely broken
        # too (Redis restarted): drop them all, so that each request after
        # Redis is back gets a fresh one instead of failing once per stale one.
        await drop_idle(client)
        raise EngineUnavailable(UNAVAILABLE) from exc


class _Slot:
    """`async with redis.slot:` one of the node's `redis_max_connections` for the
    block, waited for in order (up to POOL_WAIT); errors translated as by
    `_Reachable`. One instance: nothing is made per command while one is free."""

    __slots__ = ("client", "busy", "free")

    def __init__(self, client: Any, busy: Occasional, size: int) -> None:
        self.client = client
        self.busy = busy
        self.free = asyncio.Semaphore(size)

    async def __aenter__(self) -> None:
        if not self.free.locked():
            await self.free.acquire()  # returns at once
            return
        try:
            await asyncio.wait_for(self.free.acquire(), POOL_WAIT)
        except asyncio.TimeoutError:
            self.busy.note()
            raise EngineUnavailable(_BUSY) from None

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        self.free.release()
        await _translate(self.client, self.busy, exc)
        return False


class _Redis:
    """The connection and scripts the three parts share."""

    def __init__(self, config: Any) -> None:
        self.prefix = config.redis_prefix
        self.keys = Keys(self.prefix)
        self.target = parse(config.redis_url)
        size = max(1, config.redis_max_connections)
        # Commands queue for one of `size` connections at `slot` (redis-py's pool
        # would refuse at once); the pool has room beyond them for the listener and
        # the scan, which take theirs outside `slot`.
        self.pool_size = size + POOL_RESERVE
        self.client: Any = client_for(self.target, self.pool_size)
        self._nodes: dict[tuple[str, int], Any] = {}  # see `node`
        self._refreshed = 0.0  # when the cluster's topology was last asked for
        self.cluster = self.target.mode == "cluster"
        # Sharded pub/sub: SPUBLISH from the scripts, SSUBSCRIBE per shard. Decided at
        # `start` (a cluster of Redis >= 7), before anything is published or listened.
        self.sharded = False
        self.pub = "PUBLISH"
        self.events: EngineEvents | None = None
        self.node_id = secrets.token_hex(6)
        self.busy = Occasional(
            log,
            "%d request(s) answered `unavailable` since the last report: Redis is reachable "
            f"but all {size} connections of this node were busy for {POOL_WAIT:g} s; raise "
            "Realtime.redis_max_connections if Redis has room",
        )
        self.reachable = _Reachable(self.client, self.busy)
        self.slot = _Slot(self.client, self.busy, size)
        self._scripts = {
            name: self.client.register_script(source) for name, source in SCRIPTS.items()
        }

        # Publishes, many to a round trip and in the order they were asked for.
        self.pipeline = Pipeline(self)

    async def start(self) -> None:
        """Learn the cluster's topology and whether it has sharded pub/sub (Redis 7)."""
        if not self.cluster:
            return
        sharded = self.target.sharded
        try:
            async with self.reachable:
                await self.client.initialize()
                info = await self.client.execute_command(
                    "INFO", "server", target_nodes=self.client.get_random_node()
                )
            if isinstance(info, dict):
                version = str(info.get("redis_version", "7"))
                sharded = sharded and int(version.split(".")[0]) >= 7
        except EngineUnavailable:
            # Not reachable yet: every node of a deployment must agree, and a
            # cluster is Redis 7 today; `sharded=no` in the URL says otherwise.
            log.warning("Redis Cluster not reachable yet; assuming Redis >= 7")
        self.sharded = sharded
        self.pub = "SPUBLISH" if sharded else "PUBLISH"

    async def run(self, script: str, keys: list[str], *args: Any) -> Any:
        async with self.slot:
            return await self._scripts[script](keys=keys, args=[self.pub, *args])

    def sha(self, script: str) -> str:
        return self._scripts[script].sha

    async def load(self, script: str) -> None:
        """Give Redis `script` again (it restarted, or its script cache was flushed)."""
        await self.client.script_load(SCRIPTS[script])

    async def call(self, *command: Any) -> Any:
        async with self.slot:
            return await self.client.execute_command(*command)

    async def publish(self, channel: str, data: bytes) -> None:
        await self.call(self.pub, channel, data)

    def key(self, kind: str, key: ChannelKey) -> str:
        return self.keys.channel(kind, key)

    def node(self, host: str, port: int) -> Any:
        """A plain client of one cluster master (pipelines of scripts go through it)."""
        client = self._nodes.get((host, port))
        if client is None:
            client = self._nodes[(host, port)] = node_client(
                self.target, host, port, self.pool_size, socket_timeout=5
            )
        return client

    async def refresh_topology(self) -> None:
        """Ask the cluster again who serves which slots; at most twice a second."""
        now = time.monotonic()
        if now - self._refreshed < 0.5:
            return
        self._refreshed = now
        try:
            await self.client.nodes_manager.initialize()
        except Exception as exc:  # still failing over: the next failure asks again
            log.debug("cluster topology not refreshed: %s", exc)

    def owner(self, name: bytes) -> tuple[str, int]:
        """The cluster master that owns `name`'s slot, as the client last learned it."""
        node = self.client.get_node_from_key(name)
        return (node.host, node.port)

    def make_pubsub(self, address: tuple[str, int] | None) -> Any:
        if not self.cluster:
            return self.client.pubsub()
        if address is None:
            # Plain pub/sub on a cluster: PUBLISH reaches every node, so any one.
            node = self.client.get_random_node()
            address = (node.host, node.port)
        return node_client(self.target, *address).pubsub()


class RedisBroker:
    def __init__(self, redis: _Redis, history_size: int, history_ttl: float) -> None:
        self.redis = redis
        self.history_size = history_size
        self.history_ttl = history_ttl
        # pub/sub channel name -> channel; and the last (epoch, seq) delivered here.
        self._listened: dict[bytes, ChannelKey] = {}
        self._last: dict[ChannelKey, tuple[bytes, int]] = {}
        # The last (epoch, seq) pub/sub brought on the current connection of its
        # shard, which brings each channel's messages in order: a lower seq of the
        # same epoch means the channel's sequence went back.
        self._live: dict[ChannelKey, tuple[bytes, int]] = {}
        # The newest (epoch, seq) this node has seen of a channel, from any source
        # (acks, pub/sub, positions, history); given to every publish, whose script
        # starts a new epoch rather than give out again ids this node has seen.
        self._seen: dict[ChannelKey, tuple[bytes, int]] = {}
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        # pub/sub channel name -> its subscription under way (see `listen`).
        self._subscribing: dict[bytes, asyncio.Task[None]] = {}
        # The pub/sub connections: one (key None), or one per cluster master.
        self._shards: dict[tuple[str, int] | None, Shard] = {}
        self._moving: asyncio.Task[None] | None = None
        # Told of every presence event of a listened channel (RedisPresence.observe).
        self.on_presence: Callable[[ChannelKey, bytes], None] | None = None
        # Reads a channel's state since an id (RedisState.read), to fill gaps.
        self.read_state: Callable[[ChannelKey, str], Awaitable[StateSnapshot]] | None = None

    # -- the pub/sub connections (shards.Owner) ------------------------------------

    @property
    def sharded(self) -> bool:
        return self.redis.sharded

    def make_pubsub(self, address: tuple[str, int] | None) -> Any:
        return self.redis.make_pubsub(address)

    @property
    def _connected(self) -> asyncio.Event:
        """The first shard's: with one Redis, whether the listener is connected."""
        first = next(iter(self._shards.values()), None)
        return first.connected if first is not None else asyncio.Event()

    @property
    def _pubsub(self) -> Any:
        first = next(iter(self._shards.values()), None)
        return first.pubsub if first is not None else None

    def listened(self) -> builtins.list[ChannelKey]:
        return list(self._listened.values())

    def _shard_for(self, name: bytes) -> Shard:
        address = self.redis.owner(name) if self.sharded else None
        shard = self._shards.get(address)
        if shard is None or shard.retired:
            shard = self._shards[address] = Shard(self, address)
            shard.start()
        return shard

    async def connected_again(self, shard: Shard) -> None:
        """A shard (re)subscribed its channels: what each published meanwhile."""
        keys = [self._listened[n] for n in shard.names if n in self._listened]
        for key in keys:
            self._live.pop(key, None)
        await self._resync(keys)

    async def lost(self, shard: Shard) -> None:
        """A cluster's pub/sub connection broke: learn the topology again (a replica
        may have taken over); sharded, move each channel to the shard of its owner now."""
        if not self.redis.cluster:
            return  # one Redis, or Sentinel: the pool finds the master again
        await self.redis.client.nodes_manager.initialize()
        if self.sharded:
            await self._move(shard)

    async def _move(self, shard: Shard) -> None:
        moved = [n for n in sorted(shard.names) if self.redis.owner(n) != shard.address]
        for name in moved:
            shard.names.discard(name)
            if name not in self._listened:
                continue
            target = self._shard_for(name)
            target.names.add(name)
            if target.connected.is_set():
                # Not yet connected: it subscribes to its names, and fills them, then.
                await target.subscribe(name)
                await self._resync([self._listened[name]])
        primaries = {(n.host, n.port) for n in self.redis.client.get_primaries()}
        if not shard.names and shard.address not in primaries:
            shard.retired = True
            if self._shards.get(shard.address) is shard:
                del self._shards[shard.address]
            asyncio.ensure_future(shard.stop())

    def _start_move(self, shard: Shard) -> None:
        """Redis took a shard channel from us (its slot moved): subscribe it at its
        new owner, in the background, once at a time."""
        if self._moving is not None and not self._moving.done():
            return

        async def move() -> None:
            try:
                await self.lost(shard)
            except Exception as exc:  # the cluster is still changing: next time
                log.warning("could not follow a moved slot yet (%s)", exc)

        self._moving = asyncio.ensure_future(move())

    # -- listening ------------------------------------------------------------

    def start(self) -> None:
        if not self.sharded:
            self._shard_for(b"")  # the one listener, connected from the start

    async def stop(self) -> None:
        # Shielded subscriptions outlive their callers: end those under way too.
        tasks = [*self._subscribing.values(), *([self._moving] if self._moving else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for shard in list(self._shards.values()):
            await shard.stop()

    async def listen(self, key: ChannelKey) -> None:
        name = self.redis.key("ps", key).encode()
        task = self._subscribing.get(name)
        if task is None:
            if name in self._listened:
                return  # subscribed and confirmed earlier
            self._listened[name] = key
            task = self._subscribing[name] = asyncio.ensure_future(self._subscribe(name, key))
            # Retrieved here, so that it is never "never retrieved" when every caller
            # was cancelled meanwhile.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        # One subscription per channel that every concurrent caller awaits, shielded:
        # a caller cancelled midway neither cancels it for the others nor leaves the
        # channel half set up, and each caller gets its outcome (EngineUnavailable).
        await asyncio.shield(task)

    async def _subscribe(self, name: bytes, key: ChannelKey) -> None:
        confirmed = self._confirmed[name] = asyncio.get_running_loop().create_future()
        shard: Shard | None = None
        try:
            try:
                shard = self._shard_for(name)
            except UNAVAILABLE_ERRORS:  # the cluster's topology is not known yet
                async with self.redis.reachable:
                    await self.redis.client.initialize()
                shard = self._shard_for(name)
            shard.names.add(name)
            await asyncio.wait_for(shard.connected.wait(), SUBSCRIBE_TIMEOUT)
            await shard.subscribe(name)
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT)
            # Where this node starts: the gap check of later messages counts from here.
            epoch, seq = await self._position(key)
            self._last.setdefault(key, (epoch, seq))
        except (asyncio.TimeoutError, EngineUnavailable, *UNAVAILABLE_ERRORS, RedisError) as exc:
            if self._listened.get(name) is key:
                self._listened.pop(name)
                if shard is not None:
                    shard.names.discard(name)
            raise EngineUnavailable(UNAVAILABLE) from exc
        finally:
            if self._confirmed.get(name) is confirmed:
                del self._confirmed[name]
            if not confirmed.done():
                confirmed.cancel()
            self._subscribing.pop(name, None)

    async def unlisten(self, key: ChannelKey) -> None:
        name = self.redis.key("ps", key).encode()
        if name in self._subscribing:
            return  # someone is subscribing to it again: they want it
        if self._listened.pop(name, None) is None:
            return
        self._last.pop(key, None)
        self._live.pop(key, None)
        for shard in self._shards.values():
            if name in shard.names:
                shard.names.discard(name)
                if shard.connected.is_set():
                    try:
                        await shard.unsubscribe(name)
                    except (RedisError, OSError):
                        pass  # the next reconnection subscribes to what is listened to only

    async def _position(self, key: ChannelKey) -> tuple[bytes, int]:
        epoch, seq = await self.redis.call("HMGET", self.redis.key("meta", key), "epoch", "seq")
        self._see(key, epoch or b"", int(seq or 0))
        return epoch or b"", int(seq or 0)

    def seen(self, key: ChannelKey) -> tuple[bytes, int]:
        """The newest (epoch, seq) of `key` this node has seen, for a script that
        numbers a write (publish.lua, state.lua) to start a new epoch if Redis is behind."""
        return self._seen.get(key, (b"", 0))

    def see(self, key: ChannelKey, epoch: bytes, seq: int) -> None:
        self._see(key, epoch, seq)

    def _see(self, key: ChannelKey, epoch: bytes, seq: int) -> None:
        """Remember (epoch, seq) of `key` if it is newer than what this node has seen:
        a lower seq of the same epoch never replaces a higher one."""
        seen = self._seen.pop(key, None)  # back in at the end: the oldest go first
        if seen is not None and seen[0] == epoch and seen[1] > seq:
            self._seen[key] = seen
            return
        self._seen[key] = (epoch, seq)
        if len(self._seen) > SEEN_MAX:
            del self._seen[next(iter(self._seen))]

    def _rewound(self, key: ChannelKey, epoch: bytes, seq: int, was: int) -> None:
        """The sequence of `key` went back from `was` to `seq` (Redis came back older
        than what this node delivered): the ids this node's subscribers hold may name
        other messages now, so they are closed (1011) to recover, and are told
        `recovered: false`. This node's next publish starts a new epoch."""
        log.warning(
            "Redis is behind what this node saw of a channel (seq %d, had %d): "
            "it lost writes; the channel's subscribers here must recover",
            seq,
            was,
        )
        self._last[key] = (epoch, seq)
        if self.redis.events is not None:
            self.redis.events.resync_failed(key)

    async def on_item(self, shard: Shard, item: dict[str, Any]) -> None:
        kind, name = item["type"], item["channel"]
        if kind in ("subscribe", "ssubscribe"):
            confirmed = self._confirmed.pop(name, None)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            return
        key = self._listened.get(name)
        if kind == "sunsubscribe" and key is not None and name in shard.names:
            # Not asked for: Redis moved the channel's slot to another master.
            self._start_move(shard)
            return
        if kind not in ("message", "smessage") or key is None:
            return
        head, _, frame = item["data"].partition(b"\n")
        events = self.redis.events
        if events is None:
            return
        if head[0:1] == b"m":
            _, epoch, seq_text, skip = head.split(b" ")
            seq = int(seq_text)
            if not await self._in_order(key, epoch, seq):
                return
            message_id = f"{epoch.decode()}-{seq}"
            events.deliver(key, frame, message_id, None if skip == b"-" else skip.decode())
        elif head[0:1] == b"s":  # a state write: numbered in the same sequence
            _, epoch, seq_text = head.split(b" ")
            seq = int(seq_text)
            if not await self._in_order(key, epoch, seq):
                return
            events.deliver_state(key, frame, f"{epoch.decode()}-{seq}")
        elif head[0:1] == b"p":
            if self.on_presence is not None:
                self.on_presence(key, frame)
            skip = head[2:]
            events.deliver(key, frame, None, None if skip == b"-" else skip.decode())
        elif head[0:1] == b"c":
            events.channel_changed(key)

    async def _in_order(self, key: ChannelKey, epoch: bytes, seq: int) -> bool:
        """Whether the message or state write numbered (epoch, seq) that pub/sub just
        brought is to be delivered now (after filling any gap before it)."""
        self._see(key, epoch, seq)
        live = self._live.get(key)
        self._live[key] = (epoch, seq)
        if live is not None and live[0] == epoch and seq <= live[1]:
            self._rewound(key, epoch, seq, live[1])
            return False
        last = self._last.get(key)
        if last is not None:
            if last[0] != epoch:
                # A new epoch (the old sequence was lost, or went back): its
                # messages count from the first.
                last = self._last[key] = (epoch, 0)
            if seq <= last[1]:
                return False  # already delivered (by a resync)
            if seq > last[1] + 1 and not await self._fill(key, last[1], seq):
                return False
        self._last[key] = (epoch, seq)
        return True

    async def _fill(self, key: ChannelKey, after: int, upto: int) -> bool:
        """Deliver what `key` numbered after seq `after` and before `upto`: messages
        from its stream and the state writes still current; False (and the
        subscribers told to recover) if messages are gone."""
        epoch = self._last[key][0]
        since = f"{epoch.decode()}-{after}"
        history = await self.history(key, since, upto - after - 1, time.time())
        events = self.redis.events
        if not history.recovered and len(history.messages) < upto - after - 1:
            self._last.pop(key, None)
            if events is not None:
                events.resync_failed(key)
            return False
        # A key written twice in the gap shows its last value only: that is the state.
        written = await self.read_state(key, since) if self.read_state is not None else None
        gap: list[tuple[int, bytes, str, bool]] = [
            (int(m.id.rpartition("-")[2]), m.encoded(), m.id, False) for m in history.messages
        ]
        if written is not None and not written.complete:
            for entry in written.entries:
                gap.append(
                    (
                        int(entry.version.rpartition("-")[2]),
                        frames.state_changed(key.name, entry),
                        entry.version,
                        True,
                    )
                )
        for seq, frame, id_, is_state in sorted(gap):
            if seq >= upto:
                break
            self._last[key] = (epoch, seq)
            if events is None:
                continue
            if is_state:
                events.deliver_state(key, frame, id_)
            else:
                events.deliver(key, frame, id_, None)
        return True

    async def _resync(self, keys: builtins.list[ChannelKey]) -> None:
        """After (re)subscribing: what each channel published while this node was away."""
        events = self.redis.events
        for key in keys:
            if key not in self._last:
                continue
            epoch, seq = self._last[key]
            now_epoch, now_seq = await self._position(key)
            if now_epoch == epoch and now_seq == seq:
                continue
            if now_epoch != epoch:
                self._last[key] = (now_epoch, now_seq)
                if events is not None and epoch:
                    events.resync_failed(key)  # history was lost: ids start over
                continue
            if now_seq < seq:
                self._rewound(key, now_epoch, now_seq, seq)
                continue
            await self._fill(key, seq, now_seq + 1)

    # -- publishing and history -------------------------------------------------

    def publish(
        self,
        key: ChannelKey,
        event: str,
        payload: Any,
        sender: dict[str, Any] | None,
        now: float,
        skip: str | None = None,
    ) -> asyncio.Future[str]:
        """Under way at once, in line behind this node's earlier publishes (see
        pipeline.py): the hub need not wait for the id to read the next frame."""
        # Encoded once, here; the script puts the id between head and tail.
        head, tail = frames.message_pieces(key.name, event, payload, sender, _ms(now))
        seen_epoch, seen_seq = self._seen.get(key, (b"", 0))
        args = (
            secrets.token_hex(4),
            self.history_size,
            max(1, int(self.history_ttl)),
            head,
            skip or "-",
            _ms(now),
            seen_epoch,
            seen_seq,
            tail,
        )
        return self.redis.pipeline.run(
            "publish", self.redis.keys.publish(key), args, partial(self._published, key)
        )

    def _published(self, key: ChannelKey, message_id: bytes) -> str:
        epoch, _, seq = message_id.rpartition(b"-")
        self._see(key, epoch, int(seq))
        return message_id.decode()

    async def history(
        self,
        key: ChannelKey,
        since: str | None,
        limit: int,
        now: float,
        max_bytes: int | None = None,
    ) -> History:
        # -1: no bound; 0 is a bound (a full send buffer), and still one message comes.
        budget = -1 if max_bytes is None else max_bytes
        bounds = (limit, budget, _ms(now - self.history_ttl))
        if since is None:
            epoch, last_seq, _, entries, more = await self.redis.run(
                "history", self.redis.keys.history(key), "latest", "", 0, *bounds
            )
            self._see(key, epoch, last_seq)
            return History(self._messages(key, entries[::-1]), True, bool(more))
        parsed = ("", 0) if since == "" else parse_message_id(since)
        since_epoch, after = parsed if parsed is not None else ("?", 0)
        epoch, last_seq, known, entries, more, complete = await self.redis.run(
            "history", self.redis.keys.history(key), "after", since_epoch, after, *bounds
        )
        self._see(key, epoch, last_seq)
        # Complete when nothing after `since` left history (history.lua): the seqs of
        # messages have gaps where state writes took theirs.
        return History(self._messages(key, entries), bool(known and complete), bool(more))

    def _messages(self, key: ChannelKey, entries: list[Any]) -> list[Message]:
        messages = []
        for _, fields in entries:
            wire = fields[1]  # 'f', frame, 't', ts
            frame = orjson.loads(wire)
            messages.append(
                Message(
                    key.name,
                    frame["id"],
                    frame["event"],
                    frame["payload"],
                    frame["from"],
                    frame["ts"] / 1000,
                    wire,
                )
            )
        return messages


class RedisNames:
    """The tenant's members by the name last shown for them (one hash per tenant,
    `names`: user -> name), for `ProfileStore.names`. Noted at each join and profile
    change, as a command apart: a channel's scripts may not touch the tenant's slot.
    Each node writes a (user, name) once; the hash never shrinks."""

    MAX_NOTED = 100_000  # what this node remembers having written, then starts over

    def __init__(self, redis: _Redis) -> None:
        self.redis = redis
        self._noted: dict[tuple[str, str], str] = {}

    async def note(self, tenant: str, user_id: str, name: str) -> None:
        if self._noted.get((tenant, user_id)) == name:
            return
        await self.redis.call("HSET", self.redis.keys.tenant("names", tenant), user_id, name)
        if len(self._noted) >= self.MAX_NOTED:
            self._noted.clear()
        self._noted[(tenant, user_id)] = name

    async def all(self, tenant: str) -> list[tuple[str, str]]:
        raw = await self.redis.call("HGETALL", self.redis.keys.tenant("names", tenant))
        return [(user.decode(), name.decode()) for user, name in (raw or {}).items()]


class RedisPresence:
    def __init__(self, redis: _Redis, heartbeat_timeout: float) -> None:
        self.redis = redis
        self.names = RedisNames(redis)
        self.lease = max(MIN_NODE_LEASE, heartbeat_timeout / 2)
        # This node's own presence connections, to put back if Redis forgot them.
        self._local: dict[tuple[ChannelKey, str], Identity] = {}
        # How many of them each channel has: the channels whose lease this node renews.
        self._mine: dict[ChannelKey, int] = {}
        # (channel, user) of those connections -> [status, meta, how many]: what the
        # user last showed there (changed on any node), so that they come back as
        # they were, not `online` with no meta, when Redis forgets them.
        self._shown: dict[tuple[ChannelKey, str], list[Any]] = {}
        # When this node last renewed and reaped each channel (time.monotonic()).
        self._visited: dict[ChannelKey, float] = {}
        # The channels this node listens to (RedisBroker.listened): reaped here too.
        self.listened: Callable[[], builtins.list[ChannelKey]] = list
        # Redis lost its data (this node's key is gone): the channel records go back
        # first (RedisRegistry.restore), then the presence connections.
        self.on_lost: Callable[[], Awaitable[None]] = _nothing
        self._healthy_since: float | None = None
        self._registered = False
        # The members read of a channel under way, and the one that follows it.
        self._reading: dict[ChannelKey, asyncio.Future[list[Member]]] = {}
        self._next_read: dict[ChannelKey, asyncio.Future[list[Member]]] = {}

    def _reaping(self) -> bool:
        """Only once this node has been in touch with Redis for a whole lease, so that
        nodes coming back together after an outage do not reap each other."""
        since = self._healthy_since
        return since is not None and time.monotonic() - since >= self.lease

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
        keys = self.redis.keys
        user_keys = keys.profile(identity.tenant_id, identity.user_id)
        shown, version, join_keys = identity, 0, keys.presence(key)
        if self.redis.cluster:
            # Two steps, each on its own slot: the channel is noted among the user's,
            # and the profile read; then the join shows it. A profile change between
            # the two reaches the channel first and is kept there for the join
            # (reprofile.lua). On one Redis, join.lua does both in one step.
            chosen, read = await self.redis.run("enter", user_keys, key.name)
            shown, version = effective(identity, _profile(chosen)), int(read or 0)
        else:
            join_keys = [*join_keys, *user_keys]
        head = frames.member_head(
            identity.user_id,
            shown.name or identity.user_id,
            shown.color,
            identity.avatar_url,
            _ms(now),
            identity.kind,
        )
        member, joined, connections = await self.redis.run(
            "join",
            join_keys,
            key.name,
            connection_id,
            identity.user_id,
            head,
            status,
            frames.encode(meta or {}),
            json_key(meta or {}),
            _ms(now),
            "" if lease is not None else self.redis.node_id,
            _ms(lease if lease is not None else self.lease),
            version,
            frames.encode(identity.name or identity.user_id),
            frames.encode(identity.color) if identity.color else "",
            frames.LUA_PIECES,
        )
        shown_member = _member(member, connections)
        if lease is None:
            if (key, connection_id) not in self._local:  # not a connection put back
                self._local[(key, connection_id)] = identity
                self._mine[key] = self._mine.get(key, 0) + 1
                self._visited.setdefault(key, time.monotonic())  # join renewed the lease
                entry = self._shown.setdefault((key, identity.user_id), ["online", {}, 0])
                entry[2] += 1
            self._remember(key, shown_member)
        await self.names.note(key.tenant, shown_member.user_id, shown_member.name)
        return shown_member, bool(joined)

    def _remember(self, key: ChannelKey, member: Member) -> None:
        entry = self._shown.get((key, member.user_id))
        if entry is not None:
            entry[0], entry[1] = member.status, member.meta

    def observe(self, key: ChannelKey, frame: bytes) -> None:
        """A presence event of a channel this node listens to (from any node)."""
        # Only while this node has people, and only updates: joins and leaves do not
        # change what a user shows, and most presence frames are those.
        if self._shown and frame.startswith(frames.PRESENCE_UPDATED_START):
            wire = orjson.loads(frame)["member"]
            entry = self._shown.get((key, wire["userId"]))
            if entry is not None:
                entry[0], entry[1] = wire["status"], wire["meta"]

    async def leave(
        self, key: ChannelKey, user_id: str, connection_id: str, now: float
    ) -> Member | None:
        # Forgotten here only once Redis has it: a leave that fails is retried (the
        # hub does) as this node's, and until then the node's lease covers it.
        member = await self.redis.run(
            "leave",
            self.redis.keys.presence(key),
            key.name,
            connection_id,
            user_id,
            _ms(now),
            frames.LUA_PIECES,
        )
        if self._local.pop((key, connection_id), None) is not None:
            self._mine[key] -= 1
            if not self._mine[key]:
                del self._mine[key]
            entry = self._shown[(key, user_id)]
            entry[2] -= 1
            if not entry[2]:
                del self._shown[(key, user_id)]
        return _member(member) if member else None

    async def update(
        self,
        key: ChannelKey,
        user_id: str,
        now: float,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Member | None:
        changed = await self.redis.run(
            "update",
            self.redis.keys.presence(key),
            key.name,
            user_id,
            _ms(now),
            status or "",
            frames.encode(meta) if meta is not None else "",
            # Compared as text by the script: the text `same_json` agrees with, as the
            # memory engine compares (1 and 1.0 are one JSON number; true and 1 are not).
            json_key(meta) if meta is not None else "",
            frames.LUA_PIECES,
        )
        if not changed:
            return None
        member = _member(*changed)
        self._remember(key, member)
        return member

    async def members(self, key: ChannelKey) -> list[Member]:
        # Callers that ask while a read of the channel is under way share the next
        # one, which starts after it: each gets a list read after it asked, and a
        # crowd subscribing to one channel costs a few reads, not one each (N
        # members read N times).
        read = self._next_read.get(key)
        if read is None:
            read = self._next_read[key] = asyncio.ensure_future(
                self._read_members(key, self._reading.get(key))
            )
            read.add_done_callback(lambda t: t.cancelled() or t.exception())
        return list(await asyncio.shield(read))

    async def _read_members(
        self, key: ChannelKey, previous: asyncio.Future[list[Member]] | None
    ) -> list[Member]:
        if previous is not None:
            await asyncio.wait([previous])
        me = self._next_read.pop(key)  # later callers wait for the read after this one
        self._reading[key] = me
        try:
            return await self._members(key)
        finally:
            if self._reading.get(key) is me:
                del self._reading[key]

    async def _members(self, key: ChannelKey) -> list[Member]:
        # Reaped first, in the same step: a channel that no live node maintains
        # (nobody listens to it) shows no member of a dead node either.
        flat = await self.redis.run(
            "members",
            self.redis.keys.presence(key),
            key.name,
            int(self._reaping()),
            _ms(time.time()),
            REAP_BATCH,
            frames.LUA_PIECES,
        )
        by_user: dict[bytes, dict[bytes, bytes]] = {}
        for field, value in zip(flat[::2], flat[1::2], strict=True):
            by_user.setdefault(field[2:], {})[field[:1]] = value
        members = []
        for _, parts in sorted(by_user.items()):
            if b"p" not in parts:
                continue
            wire = frames.stored_member(
                parts[b"p"],
                parts.get(b"s", b"online"),
                parts.get(b"m", b"{}"),
                parts.get(b"l", b"0"),
                0,
            )
            members.append(_member(wire, orjson.loads(parts.get(b"c", b"[]"))))
        return members

    async def offline(self, key: ChannelKey) -> list[Member]:
        gone = await self.redis.call("HGETALL", self.redis.key("gone", key))
        return sorted((_member(v) for v in gone.values()), key=lambda m: m.user_id)

    async def maintain(self, now: float) -> None:
        """Renew this node's lease, and per channel its lease on its connections there;
        reap, per channel, the connections of dead nodes and expired HTTP leases.

        Each channel this node has connections on or listens to is visited every
        third of a lease (one script on the channel's shard), not every tick: a node
        on many channels spreads them out. Where a channel had lost this node's lease
        (reaped while away, or Redis lost its data), its people there join again."""
        monotonic = time.monotonic()
        try:
            # The node's own key: gone means Redis lost its data, or this node was away
            # longer than a lease; then every channel is visited now, not in turn.
            had = await self.redis.call(
                "SET", self.redis.keys.node(self.redis.node_id), 1, "PX", _ms(self.lease), "GET"
            )
        except EngineUnavailable:
            self._healthy_since = None
            raise
        if self._healthy_since is None:
            self._healthy_since = monotonic
        lost = had is None and self._registered
        if lost:
            await self.on_lost()
        if lost and self._local:
            log.warning("this node's presence was lost in Redis; restoring %d", len(self._local))
        self._registered = True
        reap = self._reaping()
        watched = {*self._mine, *self.listened()}
        for key in [k for k in self._visited if k not in watched]:
            del self._visited[key]  # neither here nor listened to: visited no more
        due = [
            key
            for key in watched
            if lost or monotonic - self._visited.get(key, 0.0) >= self.lease / 3
        ]
        await asyncio.gather(*(self._visit(key, now, reap) for key in due))

    async def _visit(self, key: ChannelKey, now: float, reap: bool) -> None:
        self._visited[key] = time.monotonic()
        mine = key in self._mine
        had = await self.redis.run(
            "renew",
            self.redis.keys.presence(key),
            key.name,
            self.redis.node_id,
            _ms(self.lease),
            int(mine),
            int(reap),
            _ms(now),
            REAP_BATCH,
            frames.LUA_PIECES,
        )
        if had or not mine:
            return
        # This node's connections here were reaped while it was away, or Redis lost
        # them: they join again (others see them come back), as they were.
        for (channel, connection_id), identity in list(self._local.items()):
            if channel == key:
                status, meta, _ = self._shown.get((key, identity.user_id), ("online", {}, 0))
                await self.join(key, identity, connection_id, now, status, meta)

    async def retire(self, now: float) -> None:
        channels = list(self._mine)
        self._local.clear()
        self._shown.clear()
        self._mine.clear()
        await asyncio.gather(
            *(
                self.redis.run(
                    "retire",
                    self.redis.keys.presence(key),
                    key.name,
                    self.redis.node_id,
                    _ms(now),
                    frames.LUA_PIECES,
                )
                for key in channels
            )
        )
        await self.redis.call("DEL", self.redis.keys.node(self.redis.node_id))


class RedisRegistry:
    """Channel records, one hash per tenant.

    A node remembers the records of the channels it listens to (`_known`) and puts
    them back when Redis lost them (a restart without persistence, FLUSHALL): found
    missing when read, or all at once when the node's presence sees the loss
    (`restore`). Otherwise the next subscribe would make the channel anew with the
    name's default type, no owner and no members, and a members-only channel would be
    open to all.
    """

    def __init__(self, redis: _Redis) -> None:
        self.redis = redis
        self._reaping: Callable[[], bool] = lambda: False
        self.listened: Callable[[], builtins.list[ChannelKey]] = list
        self._known: dict[ChannelKey, ChannelRecord] = {}
        self._prune_at = KNOWN_SLACK

    def _hash(self, tenant: str) -> str:
        return self.redis.keys.tenant("channels", tenant)

    def _created(self, tenant: str) -> str:
        return self.redis.keys.tenant("created", tenant)

    async def get(self, key: ChannelKey) -> ChannelRecord | None:
        raw = await self.redis.call("HGET", self._hash(key.tenant), key.name)
        if raw:
            return self._remember(_channel(key, raw))
        known = self._known.get(key)
        if known is None or key not in self.listened():
            return None
        log.warning("the record of channel %r was lost in Redis; putting it back", key.name)
        channel, _ = await self.create(known)
        return channel

    async def restore(self) -> None:
        """Redis lost its data: put back the records of the channels listened to here."""
        self._forget_unlistened()
        if self._known:
            log.warning("channel records were lost in Redis; restoring %d", len(self._known))
        for known in list(self._known.values()):
            await self.create(known)

    def _remember(self, channel: ChannelRecord) -> ChannelRecord:
        # Read before the channel is listened to (a subscribe reads, then listens), so
        # every record read is kept, and those of channels not listened to are let go
        # once they are many (HTTP reads of channels nobody here subscribes to).
        self._known[channel.key] = channel
        if len(self._known) > self._prune_at:
            self._forget_unlistened()
        return channel

    def _forget_unlistened(self) -> None:
        listened = set(self.listened())
        for key in [k for k in self._known if k not in listened]:
            del self._known[key]
        self._prune_at = len(self._known) + KNOWN_SLACK

    async def create(self, channel: ChannelRecord) -> tuple[ChannelRecord, bool]:
        record = orjson.dumps(
            {
                "type": channel.type,
                "owner": channel.owner,
                "createdAt": channel.created_at,
                "members": sorted(channel.members),
                "createdBy": channel.created_by,
            }
        )
        tenant = channel.key.tenant
        # The tenant first, so that the collection of idle channels walks it; then,
        # in one round trip, stored and counted, or the record that was there.
        await self.redis.call("SADD", self.redis.keys.tenants(), tenant)
        created, stored = await self.redis.run(
            "create",
            self.redis.keys.registry(tenant),
            channel.key.name,
            record,
            channel.created_by if channel.created_by is not None else "",
        )
        return self._remember(_channel(channel.key, stored)), bool(created)

    async def list(
        self, tenant: str, after: str = "", limit: int | None = None
    ) -> list[ChannelRecord]:
        raw = await self.redis.call("HGETALL", self._hash(tenant))
        names = sorted(n for n in (name.decode() for name in raw) if n > after)
        return [_channel(ChannelKey(tenant, name), raw[name.encode()]) for name in names[:limit]]

    async def count_created(self, tenant: str, user_id: str) -> int:
        return int(await self.redis.call("HGET", self._created(tenant), user_id) or 0)

    async def collect_idle(self, not_used_since: float, live: set[ChannelKey]) -> int:
        redis, gone = self.redis, 0
        # The tenants set, not a SCAN of key names: one key on one slot, whatever the
        # number of shards; each tenant's records are one hash on its own slot.
        tenants = await redis.call("SMEMBERS", redis.keys.tenants())
        for raw_tenant in sorted(tenants):
            tenant = raw_tenant.decode()
            async with redis.reachable:  # the scan's own commands too
                records = [
                    (name, record)
                    async for name, record in redis.client.hscan_iter(self._hash(tenant), count=100)
                ]
            for name, record in records:
                key = ChannelKey(tenant, name.decode())
                if key not in live:
                    gone += await self.collect_one(key, not_used_since, record)
        return gone

    async def collect_one(
        self, key: ChannelKey, not_used_since: float, record: bytes | None = None
    ) -> int:
        """Forget `key` (its record as read: `record`, else read now) if it is idle:
        its data in one step on its own slot (collect.lua: the check and the deletion
        together), then its record on the tenant's (unlist.lua), unless the record
        changed meanwhile. Returns 1 when it went."""
        if record is None:
            record = await self.redis.call("HGET", self._hash(key.tenant), key.name)
        if record is None:
            return 0
        parsed = orjson.loads(record)
        if parsed["owner"] is not None:
            return 0
        gone = await self.redis.run(
            "collect",
            self.redis.keys.collect(key),
            key.name,
            not_used_since,
            parsed["createdAt"],
            int(self._reaping()),
            _ms(time.time()),
            REAP_BATCH,
            frames.LUA_PIECES,
        )
        if not gone:
            return 0
        # A publish or join that lands between the two steps keeps its message and
        # member; its record is made anew on the channel's next use (docs/architecture.md).
        creator = parsed.get("createdBy")
        await self.redis.run(
            "unlist",
            self.redis.keys.registry(key.tenant),
            key.name,
            record,
            creator if creator is not None else "",
        )
        return 1

    # `builtins.list`: inside this class, `list` names the method above.
    async def set_members(self, key: ChannelKey, user_ids: builtins.list[str]) -> ChannelRecord:
        raw = await self.redis.call("HGET", self._hash(key.tenant), key.name)
        record = orjson.loads(raw)
        record["members"] = sorted(set(user_ids))
        encoded = orjson.dumps(record)
        await self.redis.call("HSET", self._hash(key.tenant), key.name, encoded)
        # Every node re-checks its subscribers' rights (`channel_changed`).
        await self.redis.publish(self.redis.key("ps", key), b"c\n")
        return self._remember(_channel(key, encoded))


class RedisProfiles:
    def __init__(self, redis: _Redis, directory: RedisNames) -> None:
        self.redis = redis
        self.directory = directory

    async def names(self, tenant: str) -> list[tuple[str, str]]:
        return await self.directory.all(tenant)

    async def get(self, tenant: str, user_id: str) -> Profile:
        raw = await self.redis.call("HGET", self.redis.keys.user("profile", tenant, user_id), "j")
        return _profile(raw)

    async def update(
        self, identity: Identity, changes: dict[str, str | None], now: float
    ) -> ProfileChange:
        # Stored (with a new version) in one step on the user's slot; then shown on
        # each channel the user entered, one step on each channel's slot, so each
        # channel gets one `presence:updated` however many nodes listen. An older
        # version reaching a channel after a newer one changes nothing there.
        tenant, user_id = identity.tenant_id, identity.user_id
        user_keys = self.redis.keys.profile(tenant, user_id)
        raw, version, entered = await self.redis.run(
            "profile",
            user_keys,
            orjson.dumps(changes),
            # What is set, as it goes in members; '' where not set.
            frames.encode(changes["name"]) if changes.get("name") is not None else "",
            frames.encode(changes["color"]) if changes.get("color") is not None else "",
        )
        profile = _profile(raw)
        shown = effective(identity, profile)
        await self.directory.note(tenant, user_id, shown.name or user_id)
        piece = frames.shown_piece(shown.name or user_id, shown.color)
        stamps = dict(zip(entered[::2], entered[1::2], strict=True))
        names = sorted(stamps)
        present = await asyncio.gather(
            *(
                self.redis.run(
                    "reprofile",
                    self.redis.keys.presence(ChannelKey(tenant, name.decode())),
                    name,
                    user_id,
                    version,
                    piece,
                    frames.LUA_PIECES,
                )
                for name in names
            )
        )
        # The channels the user left since: forgotten, unless entered again meanwhile.
        absent = [
            part
            for name, here in zip(names, present, strict=True)
            if not here
            for part in (name, stamps[name])
        ]
        if absent:
            await self.redis.run("forget", user_keys, *absent)
        return ProfileChange(profile, len(names) - len(absent) // 2)


def _profile(raw: bytes | None) -> Profile:
    chosen = orjson.loads(raw) if raw else {}
    return Profile(chosen.get("name"), chosen.get("color"))


def _channel(key: ChannelKey, raw: bytes) -> ChannelRecord:
    record = orjson.loads(raw)
    return ChannelRecord(
        key,
        record["type"],
        record["owner"],
        record["createdAt"],
        tuple(record["members"]),
        record.get("createdBy"),
    )


def _member(raw: bytes, connections: list[Any] | None = None) -> Member:
    """A member from its wire JSON and, where known, its connection ids."""
    wire = orjson.loads(raw)
    return Member(
        user_id=wire["userId"],
        name=wire["name"],
        status=wire["status"],
        meta=wire["meta"],
        joined_at=wire["joinedAt"] / 1000,
        last_seen=wire["lastSeen"] / 1000,
        color=wire.get("color"),
        avatar_url=wire.get("avatar_url"),
        kind=wire.get("kind", PERSON),
        connections={c.decode() if isinstance(c, bytes) else c for c in connections or ()},
    )


class RedisEngine(Engine):
    broker: RedisBroker
    presence: RedisPresence
    channels: RedisRegistry
    state: RedisState

    def __init__(self, config: Any) -> None:
        self.redis = _Redis(config)
        self.broker = RedisBroker(self.redis, config.history_size, config.history_ttl)
        self.presence = RedisPresence(self.redis, config.heartbeat_timeout)
        self.channels = RedisRegistry(self.redis)
        self.profiles = RedisProfiles(self.redis, self.presence.names)
        self.state = RedisState(self.redis, self.broker)
        self.broker.on_presence = self.presence.observe
        self.broker.read_state = self.state.read
        self.presence.listened = self.channels.listened = self.broker.listened
        self.presence.on_lost = self.channels.restore
        self.channels._reaping = self.presence._reaping

    @classmethod
    def from_config(cls, config: Any) -> RedisEngine:
        return cls(config)

    def bind(self, events: EngineEvents) -> None:
        self.redis.events = events

    async def start(self) -> None:
        await self.redis.start()
        self.broker.start()
        try:
            await self.presence.maintain(time.time())
        except EngineUnavailable:
            log.warning("Redis is not reachable yet; retrying in the background")

    async def close(self) -> None:
        try:
            await self.presence.retire(time.time())
        except EngineUnavailable:
            log.warning("Redis is not reachable: this node's members leave when its lease ends")
        await self.broker.stop()
        for node in self.redis._nodes.values():
            await node.aclose()
        await self.redis.client.aclose()
