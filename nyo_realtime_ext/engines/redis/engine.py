"""The shared engine: many processes or machines (nodes), one Redis.

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
  pub/sub, in order with its messages. A node renews its lease every second;
  the connections of a node whose lease ran out are removed by whichever node
  sees it first (one script, so once). HTTP members have leases of their own.
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
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ... import frames
from ...constants import PERSON
from ...lograte import Occasional
from ...models import Channel, ChannelKey, Identity, Member, Message, Profile
from ..base import Engine, EngineEvents, EngineUnavailable, History, StateSnapshot
from ..ids import parse_message_id
from ..meta import json_key
from .pipeline import Pipeline
from .scripts import SCRIPTS
from .state import RedisState

log = logging.getLogger(__name__)

# A node's lease on its connections, at least; renewed at every maintenance tick.
MIN_NODE_LEASE = 3.0
# Backoff of the listener between attempts to reach Redis.
RECONNECT_MIN, RECONNECT_MAX = 0.1, 5.0
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


def _channel_part(key: ChannelKey) -> str:
    """The key part of a channel: unambiguous whatever its tenant contains."""
    return f"{len(key.tenant)}:{key.tenant}:{key.name}"


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


_UNAVAILABLE = "the server cannot reach its engine (Redis); retry later"
_BUSY = "the server is busy (all its Redis connections are in use); retry later"


def _exhausted(exc: BaseException | None) -> bool:
    """The pool had no connection to give: not that Redis is gone. (`_Slot` keeps
    commands within the pool; this is for whatever took one outside it.)"""
    return isinstance(exc, MaxConnectionsError)


class _Reachable:
    """`async with redis.reachable:` Redis not answering in the block raises
    EngineUnavailable. One instance, no state: nothing is made per command."""

    __slots__ = ("client", "busy")

    def __init__(self, client: aioredis.Redis, busy: Occasional) -> None:
        self.client = client
        self.busy = busy

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        await _translate(self.client, self.busy, exc)
        return False


async def _translate(client: aioredis.Redis, busy: Occasional, exc: BaseException | None) -> None:
    """Raise what the hub understands for a Redis failure `exc`, if it is one."""
    if exc is None:
        return
    if _exhausted(exc):
        # Every connection is busy with other commands: Redis is fine, so nothing
        # is dropped and nobody is told that Redis went.
        busy.note()
        raise EngineUnavailable(_BUSY) from exc
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
        # One broken connection means the others in the pool are likely broken
        # too (Redis restarted): drop them all, so that each request after
        # Redis is back gets a fresh one instead of failing once per stale one.
        await client.connection_pool.disconnect(inuse_connections=False)
        raise EngineUnavailable(_UNAVAILABLE) from exc


class _Slot:
    """`async with redis.slot:` one of the node's `redis_max_connections` for the
    block, waited for in order (up to POOL_WAIT); errors translated as by
    `_Reachable`. One instance: nothing is made per command while one is free."""

    __slots__ = ("client", "busy", "free")

    def __init__(self, client: aioredis.Redis, busy: Occasional, size: int) -> None:
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
        size = max(1, config.redis_max_connections)
        # Commands queue for one of `size` connections at `slot` (redis-py's pool
        # would refuse at once); the pool has room beyond them for the listener and
        # the scan, which take theirs outside `slot`.
        pool = aioredis.ConnectionPool.from_url(
            config.redis_url,
            max_connections=size + POOL_RESERVE,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=10,
        )
        self.client = aioredis.Redis.from_pool(pool)
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

    async def run(self, script: str, *args: Any) -> Any:
        async with self.slot:
            return await self._scripts[script](args=[self.prefix, *args])

    async def run_keyed(self, script: str, keys: list[str], *args: Any) -> Any:
        """A script that gets every key it touches in KEYS (Redis Cluster needs them)."""
        async with self.slot:
            return await self._scripts[script](keys=keys, args=[self.prefix, *args])

    def sha(self, script: str) -> str:
        return self._scripts[script].sha

    async def load(self, script: str) -> None:
        """Give Redis `script` again (it restarted, or its script cache was flushed)."""
        await self.client.script_load(SCRIPTS[script])

    async def call(self, *command: Any) -> Any:
        async with self.slot:
            return await self.client.execute_command(*command)

    def key(self, kind: str, key: ChannelKey) -> str:
        return f"{self.prefix}:{kind}:{_channel_part(key)}"

    def tagged(self, kind: str, key: ChannelKey) -> str:
        """`<prefix>:{<channel part>}:<kind>`: a per-channel key with the channel's hash
        tag, so that Redis Cluster keeps every key of one channel in one slot."""
        return f"{self.prefix}:{{{_channel_part(key)}}}:{kind}"


class RedisBroker:
    def __init__(self, redis: _Redis, history_size: int, history_ttl: float) -> None:
        self.redis = redis
        self.history_size = history_size
        self.history_ttl = history_ttl
        # pub/sub channel name -> channel; and the last (epoch, seq) delivered here.
        self._listened: dict[bytes, ChannelKey] = {}
        self._last: dict[ChannelKey, tuple[bytes, int]] = {}
        # The last (epoch, seq) pub/sub brought on the listener's current connection,
        # which brings each channel's messages in order: a lower seq of the same
        # epoch means the channel's sequence went back.
        self._live: dict[ChannelKey, tuple[bytes, int]] = {}
        # The newest (epoch, seq) this node has seen of a channel, from any source
        # (acks, pub/sub, positions, history); given to every publish, whose script
        # starts a new epoch rather than give out again ids this node has seen.
        self._seen: dict[ChannelKey, tuple[bytes, int]] = {}
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        # pub/sub channel name -> its subscription under way (see `listen`).
        self._subscribing: dict[bytes, asyncio.Task[None]] = {}
        self._pubsub: Any = None
        self._connected = asyncio.Event()
        # Told of every presence event of a listened channel (RedisPresence.observe).
        self.on_presence: Callable[[ChannelKey, bytes], None] | None = None
        # Reads a channel's state since an id (RedisState.read), to fill gaps.
        self.read_state: Callable[[ChannelKey, str], Awaitable[StateSnapshot]] | None = None
        self._reader: asyncio.Task[None] | None = None

    # -- listening ------------------------------------------------------------

    def start(self) -> None:
        self._reader = asyncio.ensure_future(self._read_forever())

    async def stop(self) -> None:
        # Shielded subscriptions outlive their callers: end those under way too.
        tasks = [*self._subscribing.values(), *([self._reader] if self._reader else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()

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
        try:
            await asyncio.wait_for(self._connected.wait(), SUBSCRIBE_TIMEOUT)
            await self._pubsub.subscribe(name)
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT)
            # Where this node starts: the gap check of later messages counts from here.
            epoch, seq = await self._position(key)
            self._last.setdefault(key, (epoch, seq))
        except (asyncio.TimeoutError, RedisError, OSError, EngineUnavailable) as exc:
            if self._listened.get(name) is key:
                self._listened.pop(name)
            raise EngineUnavailable(_UNAVAILABLE) from exc
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
        if self._connected.is_set():
            try:
                await self._pubsub.unsubscribe(name)
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

    async def _read_forever(self) -> None:
        delay = RECONNECT_MIN
        while True:
            try:
                self._pubsub = self.redis.client.pubsub()
                await self._pubsub.ping()  # connect now, so a failure is seen here
                if self._listened:
                    await self._pubsub.subscribe(*self._listened)
                self._live.clear()
                self._connected.set()
                delay = RECONNECT_MIN
                await self._resync()
                while True:
                    item = await self._pubsub.get_message(timeout=1.0)
                    if item is not None:
                        await self._on_item(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away (or a bug): back off, reconnect
                if self._connected.is_set():
                    log.warning("lost Redis (%s); reconnecting", exc)
                self._connected.clear()
                try:
                    await self._pubsub.aclose()
                except Exception:
                    pass
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(RECONNECT_MAX, delay * 2)

    async def _on_item(self, item: dict[str, Any]) -> None:
        kind, name = item["type"], item["channel"]
        if kind == "subscribe":
            confirmed = self._confirmed.pop(name, None)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            return
        key = self._listened.get(name)
        if kind != "message" or key is None:
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

    async def _resync(self) -> None:
        """After (re)subscribing: what each channel published while this node was away."""
        events = self.redis.events
        for key, (epoch, seq) in list(self._last.items()):
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
            _channel_part(key),
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
        return self.redis.pipeline.run("publish", args, partial(self._published, key))

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
                "history", _channel_part(key), "latest", "", 0, *bounds
            )
            self._see(key, epoch, last_seq)
            return History(self._messages(key, entries[::-1]), True, bool(more))
        parsed = ("", 0) if since == "" else parse_message_id(since)
        since_epoch, after = parsed if parsed is not None else ("?", 0)
        epoch, last_seq, known, entries, more, complete = await self.redis.run(
            "history", _channel_part(key), "after", since_epoch, after, *bounds
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


class RedisPresence:
    def __init__(self, redis: _Redis, heartbeat_timeout: float) -> None:
        self.redis = redis
        self.lease = max(MIN_NODE_LEASE, heartbeat_timeout / 2)
        # This node's own presence connections, to put back if Redis forgot them.
        self._local: dict[tuple[ChannelKey, str], Identity] = {}
        # (channel, user) of those connections -> [status, meta, how many]: what the
        # user last showed there (changed on any node), so that they come back as
        # they were, not `online` with no meta, when Redis forgets them.
        self._shown: dict[tuple[ChannelKey, str], list[Any]] = {}
        self._healthy_since: float | None = None
        self._registered = False
        # The members read of a channel under way, and the one that follows it.
        self._reading: dict[ChannelKey, asyncio.Future[list[Member]]] = {}
        self._next_read: dict[ChannelKey, asyncio.Future[list[Member]]] = {}

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
        name = identity.name or identity.user_id
        head = frames.member_head(
            identity.user_id, name, identity.color, identity.avatar_url, _ms(now), identity.kind
        )
        member, joined, connections = await self.redis.run(
            "join",
            _channel_part(key),
            key.name,
            connection_id,
            identity.user_id,
            head,
            status,
            frames.encode(meta or {}),
            json_key(meta or {}),
            _ms(now),
            "" if lease is not None else self.redis.node_id,
            _ms(lease or 0),
            frames.encode(name),
            frames.encode(identity.color) if identity.color else "",
            frames.LUA_PIECES,
        )
        shown = _member(member, connections)
        if lease is None:
            if (key, connection_id) not in self._local:  # not a connection put back
                self._local[(key, connection_id)] = identity
                entry = self._shown.setdefault((key, identity.user_id), ["online", {}, 0])
                entry[2] += 1
            self._remember(key, shown)
        return shown, bool(joined)

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
        local = self._local.get((key, connection_id))
        member = await self.redis.run(
            "leave",
            _channel_part(key),
            key.name,
            connection_id,
            user_id,
            _ms(now),
            self.redis.node_id if local is not None else "",
            frames.LUA_PIECES,
        )
        if self._local.pop((key, connection_id), None) is not None:
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
            _channel_part(key),
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
        # redis-py answers HGETALL with a dict.
        fields = await self.redis.call("HGETALL", self.redis.key("users", key))
        by_user: dict[bytes, dict[bytes, bytes]] = {}
        for field, value in fields.items():
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
        """Renew this node's lease; reap dead nodes and expired leases, but only
        after this node has itself been in touch with Redis for a whole lease, so
        that nodes coming back together after an outage do not reap each other."""
        monotonic = time.monotonic()
        reap = self._healthy_since is not None and monotonic - self._healthy_since >= self.lease
        try:
            had = await self.redis.run(
                "maintain",
                self.redis.node_id,
                _ms(self.lease),
                int(reap),
                _ms(now),
                REAP_BATCH,
                frames.LUA_PIECES,
            )
        except EngineUnavailable:
            self._healthy_since = None
            raise
        if self._healthy_since is None:
            self._healthy_since = monotonic
        if not had and self._registered and self._local:
            # Reaped while away, or Redis lost its data: this node's people are
            # still here, so they join again (others see them come back).
            log.warning("this node's presence was lost in Redis; restoring %d", len(self._local))
            for (key, connection_id), identity in list(self._local.items()):
                status, meta, _ = self._shown.get((key, identity.user_id), ("online", {}, 0))
                await self.join(key, identity, connection_id, now, status, meta)
        self._registered = True

    async def retire(self, now: float) -> None:
        self._local.clear()
        self._shown.clear()
        await self.redis.run("retire", self.redis.node_id, _ms(now), frames.LUA_PIECES)


class RedisRegistry:
    def __init__(self, redis: _Redis) -> None:
        self.redis = redis

    def _hash(self, tenant: str) -> str:
        return f"{self.redis.prefix}:channels:{len(tenant)}:{tenant}"

    def _created(self, tenant: str) -> str:
        return f"{self.redis.prefix}:created:{len(tenant)}:{tenant}"

    async def get(self, key: ChannelKey) -> Channel | None:
        raw = await self.redis.call("HGET", self._hash(key.tenant), key.name)
        return _channel(key, raw) if raw else None

    async def create(self, channel: Channel) -> tuple[Channel, bool]:
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
        # One round trip: stored and counted, or the record that was there.
        created, stored = await self.redis.run(
            "create",
            _tenant_part(tenant),
            channel.key.name,
            record,
            channel.created_by if channel.created_by is not None else "",
        )
        return _channel(channel.key, stored), bool(created)

    async def list(self, tenant: str, after: str = "", limit: int | None = None) -> list[Channel]:
        raw = await self.redis.call("HGETALL", self._hash(tenant))
        names = sorted(n for n in (name.decode() for name in raw) if n > after)
        return [_channel(ChannelKey(tenant, name), raw[name.encode()]) for name in names[:limit]]

    async def count_created(self, tenant: str, user_id: str) -> int:
        return int(await self.redis.call("HGET", self._created(tenant), user_id) or 0)

    async def collect_idle(self, not_used_since: float, live: set[ChannelKey]) -> int:
        redis, gone = self.redis, 0
        pattern = f"{redis.prefix}:channels:*"
        async with redis.reachable:  # the scan's own commands too
            async for hash_key in redis.client.scan_iter(match=pattern, count=100):
                part = hash_key.decode()[len(redis.prefix) + len(":channels:") :]
                length, _, rest = part.partition(":")
                tenant = rest[: int(length)]
                for name in await redis.call("HKEYS", hash_key):
                    key = ChannelKey(tenant, name.decode())
                    if key in live:
                        continue
                    # Checked and forgotten in one script: between a check here and a
                    # deletion in later commands, a publish or join could be lost.
                    gone += await redis.run_keyed(
                        "collect",
                        [redis.tagged("state", key)],
                        _channel_part(key),
                        key.name,
                        not_used_since,
                    )
        return gone

    # `builtins.list`: inside this class, `list` names the method above.
    async def set_members(self, key: ChannelKey, user_ids: builtins.list[str]) -> Channel:
        raw = await self.redis.call("HGET", self._hash(key.tenant), key.name)
        record = orjson.loads(raw)
        record["members"] = sorted(set(user_ids))
        encoded = orjson.dumps(record)
        await self.redis.call("HSET", self._hash(key.tenant), key.name, encoded)
        # Every node re-checks its subscribers' rights (`channel_changed`).
        await self.redis.call("PUBLISH", self.redis.key("ps", key), b"c\n")
        return _channel(key, encoded)


class RedisProfiles:
    def __init__(self, redis: _Redis) -> None:
        self.redis = redis

    async def get(self, tenant: str, user_id: str) -> Profile:
        raw = await self.redis.call(
            "HGET", f"{self.redis.prefix}:profiles:{_tenant_part(tenant)}", user_id
        )
        return _profile(raw)

    async def update(
        self, identity: Identity, changes: dict[str, str | None], now: float
    ) -> Profile:
        # One script: the profile is stored and shown on every channel in one step,
        # so each channel gets one `presence:updated` however many nodes listen.
        raw = await self.redis.run(
            "profile",
            _tenant_part(identity.tenant_id),
            identity.user_id,
            orjson.dumps(changes),
            frames.encode(identity.name or identity.user_id),
            frames.encode(identity.color) if identity.color else "",
            # What is set, as it goes in members; '' where not set.
            frames.encode(changes["name"]) if changes.get("name") is not None else "",
            frames.encode(changes["color"]) if changes.get("color") is not None else "",
            frames.LUA_PIECES,
        )
        return _profile(raw)


def _tenant_part(tenant: str) -> str:
    """As in `_channel_part`: a tenant's part of a key, unambiguous whatever it contains."""
    return f"{len(tenant)}:{tenant}"


def _profile(raw: bytes | None) -> Profile:
    chosen = orjson.loads(raw) if raw else {}
    return Profile(chosen.get("name"), chosen.get("color"))


def _channel(key: ChannelKey, raw: bytes) -> Channel:
    record = orjson.loads(raw)
    return Channel(
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
        self.profiles = RedisProfiles(self.redis)
        self.state = RedisState(self.redis, self.broker)
        self.broker.on_presence = self.presence.observe
        self.broker.read_state = self.state.read

    @classmethod
    def from_config(cls, config: Any) -> RedisEngine:
        return cls(config)

    def bind(self, events: EngineEvents) -> None:
        self.redis.events = events

    async def start(self) -> None:
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
        await self.redis.client.aclose()
