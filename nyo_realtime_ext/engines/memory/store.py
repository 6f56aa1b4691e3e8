"""Durable state in SQLite through sqlite-utils: channels, members, messages, presence,
profiles, shared state.

sqlite-utils owns the schema (tables, keys, indexes, versioned migrations: see
`nyo_realtime_ext.schema`, which documents every table); the hot paths (append
a message, read history) use the same connection with plain parameterised SQL.
WAL mode lets readers run beside the writer.

Messages are group-committed: `append_message` leaves its transaction open,
tells `on_append`, and the writer (`outbox.Writer`) calls `commit` once per burst,
before it writes any frame of that burst to a socket, so a client never sees an
id (in an `ack` or a `message`) that a crash could take back. A shared-state
write (`put_state`) is group-committed the same way, as it takes a sequence
number too. Every other
write first commits what is pending and then runs in a transaction of its
own, so its failure can only undo itself.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import sqlite_utils

from ...models import ChannelKey, ChannelRecord, Member, Message, Profile
from ..ids import message_id
from . import schema

log = logging.getLogger(__name__)


# Frames (pages) in the WAL past which a checkpoint makes it start over (see
# `Store.checkpoint`): SQLite's own autocheckpoint size, ~4 MB.
RESTART_FRAMES = 1000
# Milliseconds that checkpoint waits for the write lock and for readers elsewhere.
RESTART_WAIT_MS = 20


class StoreInUse(RuntimeError):
    """Another process holds the database: two would hand out the same message ids."""


class Store:
    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock: Any = None
        self._closed = False
        # Told after each append: the caller books the commit that must follow.
        self.on_append: Callable[[], None] = lambda: None
        if path == ":memory:":
            self.db = sqlite_utils.Database(memory=True)
        else:
            self._lock = _lock_exclusively(path + ".lock")
            self.db = sqlite_utils.Database(path)
            self.db.enable_wal()
        self.conn: sqlite3.Connection = self.db.conn
        # A checkpoint copies the WAL into the file and syncs it: tens of ms on a
        # slow disk. SQLite runs one inside the commit that crosses 1000 pages, on
        # the event loop; instead `checkpoint` runs from a worker thread.
        self._checkpointer: sqlite3.Connection | None = None
        if path != ":memory:":
            self.conn.execute("PRAGMA wal_autocheckpoint=0")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        # The schema lives in `schema`: versioned migrations, and adoption of
        # files made before them. A file of a newer release is refused here.
        try:
            self.upgraded = schema.upgrade(self.db, path)
        except BaseException:
            self.close()
            raise
        for name in self.upgraded.adopted:
            log.info("%s: migration %s was already there; recorded as applied", path, name)
        for name in self.upgraded.applied:
            log.info("%s: applied migration %s", path, name)

    def commit(self) -> None:
        """Make the appended messages durable; cheap when there are none."""
        if self.conn.in_transaction:
            self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    @contextmanager
    def _own_transaction(self) -> Iterator[None]:
        self.commit()
        with self.conn:
            yield

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, from any thread.

        PASSIVE: it neither waits for nor blocks the event loop's commits (it
        copies what was committed when it began). Its own connection, as SQLite
        connections are not to be shared across threads; one call at a time.

        The WAL starts over only once everything in it was copied, which a passive
        checkpoint never sees on a server that does not stop writing: the WAL grew
        by every commit, without bound (~10 MB a second under the mixed benchmark).
        Past `RESTART_FRAMES` a RESTART follows the passive pass: it copies the few
        frames committed meanwhile and leaves the WAL to start over at the next
        commit, holding the event loop's commits for that long.
        """
        if self.path == ":memory:":
            return
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None
            )
            # A RESTART holds the write lock while it waits for readers: another
            # process reading (a backup, a shell) would hold the loop's commits
            # for all that time. It gives up soon instead and is tried next time.
            self._checkpointer.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
        _, frames, _ = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames >= RESTART_FRAMES:
            self._checkpointer.execute("PRAGMA wal_checkpoint(RESTART)")

    def close(self) -> None:
        """Commit and close; closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.commit()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.conn.close()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock

    # -- channels -----------------------------------------------------------

    def get_channel(self, key: ChannelKey) -> tuple[ChannelRecord, str, int] | None:
        """The channel, its epoch and its last sequence number, or None."""
        row = self.conn.execute(
            "SELECT type, owner, created_at, epoch, last_seq, created_by FROM channels"
            " WHERE tenant=? AND name=?",
            key,
        ).fetchone()
        if row is None:
            return None
        type_, owner, created_at, epoch, last_seq, created_by = row
        members = tuple(self.channel_members(key))
        return ChannelRecord(key, type_, owner, created_at, members, created_by), epoch, last_seq

    def create_channel(self, channel: ChannelRecord, epoch: str) -> bool:
        """Insert a channel; False when one of that name exists already."""
        with self._own_transaction():
            cursor = self.conn.execute(
                "INSERT OR IGNORE INTO channels (tenant, name, type, owner, created_at, epoch,"
                " last_seq, created_by, last_active) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    *channel.key,
                    channel.type,
                    channel.owner,
                    channel.created_at,
                    epoch,
                    channel.created_by,
                    channel.created_at,
                ),
            )
            if cursor.rowcount and channel.members:
                self._insert_members(channel.key, channel.members)
        return bool(cursor.rowcount)

    def count_created(self, tenant: str, user_id: str) -> int:
        (count,) = self.conn.execute(
            "SELECT COUNT(*) FROM channels WHERE tenant=? AND created_by=?", (tenant, user_id)
        ).fetchone()
        return count

    def list_channels(self, tenant: str, after: str = "", limit: int = -1) -> list[ChannelRecord]:
        """The tenant's channels by name, from the first after `after`; at most `limit`."""
        rows = self.conn.execute(
            "SELECT name, type, owner, created_at, created_by FROM channels"
            " WHERE tenant=? AND name>? ORDER BY name LIMIT ?",
            (tenant, after, limit),
        ).fetchall()
        members: dict[str, list[str]] = {}
        names = [row[0] for row in rows]
        for start in range(0, len(names), 500):  # SQLite's cap on parameters
            chunk = names[start : start + 500]
            for channel, user_id in self.conn.execute(
                "SELECT channel, user_id FROM channel_members WHERE tenant=? AND channel IN"
                f" ({','.join('?' * len(chunk))}) ORDER BY user_id",
                (tenant, *chunk),
            ):
                members.setdefault(channel, []).append(user_id)
        return [
            ChannelRecord(
                ChannelKey(tenant, name),
                type_,
                owner,
                created_at,
                tuple(members.get(name, ())),
                created_by,
            )
            for name, type_, owner, created_at, created_by in rows
        ]

    def collect_idle(self, not_used_since: float, live: set[ChannelKey]) -> int:
        """Forget channels nobody uses any more: made by a first subscribe or publish
        (no owner), no message and no presence since `not_used_since`, nobody on them
        now (`live`: what the process listens to). Offline presence records that old
        go too. Returns how many channels went."""
        candidates = self.conn.execute(
            "SELECT tenant, name FROM channels c WHERE owner IS NULL"
            " AND coalesce(last_active, created_at) < ?"
            " AND NOT EXISTS (SELECT 1 FROM presence p WHERE p.tenant=c.tenant"
            " AND p.channel=c.name AND (p.online=1 OR p.last_seen>=?))",
            (not_used_since, not_used_since),
        ).fetchall()
        idle = [key for key in map(ChannelKey._make, candidates) if key not in live]
        with self._own_transaction():
            for table, column in (
                ("channels", "name"),
                ("messages", "channel"),
                ("channel_members", "channel"),
                ("presence", "channel"),
                ("state", "channel"),
            ):
                self.conn.executemany(f"DELETE FROM {table} WHERE tenant=? AND {column}=?", idle)
            self.conn.execute(
                "DELETE FROM presence WHERE online=0 AND last_seen<?", (not_used_since,)
            )
        return len(idle)

    def channel_members(self, key: ChannelKey) -> list[str]:
        rows = self.conn.execute(
            "SELECT user_id FROM channel_members WHERE tenant=? AND channel=? ORDER BY user_id", key
        )
        return [user_id for (user_id,) in rows]

    def set_channel_members(self, key: ChannelKey, user_ids: Iterable[str]) -> None:
        with self._own_transaction():
            self.conn.execute("DELETE FROM channel_members WHERE tenant=? AND channel=?", key)
            self._insert_members(key, user_ids)

    def _insert_members(self, key: ChannelKey, user_ids: Iterable[str]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO channel_members (tenant, channel, user_id) VALUES (?, ?, ?)",
            [(*key, user_id) for user_id in user_ids],
        )

    # -- messages -----------------------------------------------------------

    def append_message(
        self,
        key: ChannelKey,
        seq: int,
        message: Message,
        keep: int,
        retained: deque[int] | None = None,
    ) -> None:
        """Store a message and drop what falls out of the last `keep` of its channel.

        With `keep` 0 only the sequence is recorded, so ids never repeat. The
        transaction stays open until `commit` (see the module's docstring).

        State writes take sequence numbers too, so the seqs of messages have gaps
        and the `keep`-th newest is looked up, not computed: in `retained` (the
        caller's record of the channel's retained seqs, kept up to date here), or
        else in the table. The seqs that leave are where history now starts
        (`history_cut`), in the same statement as the sequence.
        """
        cut: int | None
        if keep <= 0:
            cut = seq  # kept nowhere: missing at once
        elif retained is not None:
            retained.append(seq)
            cut = None
            while len(retained) > keep:
                cut = retained.popleft()
        else:
            row = self.conn.execute(
                "SELECT seq FROM messages WHERE tenant=? AND channel=?"
                " ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (*key, keep - 1),
            ).fetchone()
            cut = row[0] if row is not None else None
        self.conn.execute(
            "UPDATE channels SET last_seq=?, last_active=?,"
            " history_cut=max(coalesce(history_cut, 0), ?) WHERE tenant=? AND name=?",
            (seq, message.ts, cut or 0, *key),
        )
        if keep > 0:
            self.conn.execute(
                "INSERT INTO messages (tenant, channel, seq, event, payload, sender, ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    *key,
                    seq,
                    message.event,
                    orjson.dumps(message.payload).decode(),
                    orjson.dumps(message.sender).decode() if message.sender else None,
                    message.ts,
                ),
            )
            if cut is not None:
                self.conn.execute(
                    "DELETE FROM messages WHERE tenant=? AND channel=? AND seq<=?", (*key, cut)
                )
        self.on_append()

    def retained_seqs(self, key: ChannelKey, keep: int) -> deque[int]:
        """The seqs of the channel's newest `keep` messages, oldest first: what
        `append_message` is given as `retained` by a caller that keeps it."""
        rows = self.conn.execute(
            "SELECT seq FROM messages WHERE tenant=? AND channel=? ORDER BY seq DESC LIMIT ?",
            (*key, max(keep, 0)),
        ).fetchall()
        return deque(seq for (seq,) in reversed(rows))

    def history_cut(self, key: ChannelKey, not_before: float) -> int:
        """The highest seq of a message of `key` that is no longer in history (trimmed,
        or older than `not_before`), 0 if none: history is whole after it."""
        (cut,) = self.conn.execute(
            "SELECT max(coalesce((SELECT history_cut FROM channels WHERE tenant=? AND name=?),"
            " 0), coalesce((SELECT max(seq) FROM messages WHERE tenant=? AND channel=?"
            " AND ts<?), 0))",
            (*key, *key, not_before),
        ).fetchone()
        return int(cut)

    def read_messages(
        self,
        key: ChannelKey,
        epoch: str,
        after_seq: int,
        not_before: float,
        limit: int,
        max_bytes: int | None = None,
        newest: bool = False,
    ) -> tuple[list[tuple[int, Message]], bool]:
        """Messages after `after_seq` and not older than `not_before`, oldest first,
        and whether more such messages were left out.

        At most `limit` of them, and no more than `max_bytes` (the first one always
        comes): the oldest ones, or with `newest` the newest ones. Sizes are summed
        by SQLite, so only the rows returned are read and decoded.
        """
        order = "DESC" if newest else "ASC"
        # A frame's size: its stored fields plus the envelope (type, channel, id, ts).
        size = "length(payload) + length(event) + coalesce(length(sender), 4) + ?"
        rows = self.conn.execute(
            "SELECT seq, event, payload, sender, ts, total FROM ("
            f" SELECT seq, event, payload, sender, ts, COUNT(*) OVER () AS total,"
            f" ROW_NUMBER() OVER (ORDER BY seq {order}) AS n,"
            f" SUM({size}) OVER (ORDER BY seq {order}) AS running"
            " FROM messages WHERE tenant=? AND channel=? AND seq>? AND ts>=?"
            f") WHERE n <= ? AND (n = 1 OR running <= ?) ORDER BY seq",
            (
                len(key.name) + len(epoch) + 90,
                *key,
                after_seq,
                not_before,
                limit,
                max_bytes if max_bytes is not None else 2**62,
            ),
        ).fetchall()
        more = bool(rows) and len(rows) < rows[0][5]
        messages = [
            (
                seq,
                Message(
                    key.name,
                    message_id(epoch, seq),
                    event,
                    orjson.loads(payload),
                    orjson.loads(sender) if sender else None,
                    ts,
                ),
            )
            for seq, event, payload, sender, ts, _ in rows
        ]
        return messages, more

    def drop_expired(self, not_before: float) -> int:
        """Drop the messages older than `not_before`, moving each channel's
        `history_cut` past them; returns how many went.

        Without an index on `ts` (each append would pay two pages for it), a
        channel with something to drop is found by its oldest message, the first
        of its key: one lookup per channel. Messages are appended in time order, so
        the oldest is the first to expire. Should the clock have gone back, history
        stays a run of seqs: whatever precedes the newest expired message goes with
        it, and nothing goes while the channel's oldest has not expired.
        """
        with self._own_transaction():
            expiring = self.conn.execute(
                "SELECT tenant, name FROM channels c WHERE (SELECT ts FROM messages m"
                " WHERE m.tenant=c.tenant AND m.channel=c.name ORDER BY seq LIMIT 1) < ?",
                (not_before,),
            ).fetchall()
            dropped = 0
            for key in expiring:
                (cut,) = self.conn.execute(
                    "SELECT max(seq) FROM messages WHERE tenant=? AND channel=? AND ts<?",
                    (*key, not_before),
                ).fetchone()
                self.conn.execute(
                    "UPDATE channels SET history_cut=max(coalesce(history_cut, 0), ?)"
                    " WHERE tenant=? AND name=?",
                    (cut, *key),
                )
                dropped += self.conn.execute(
                    "DELETE FROM messages WHERE tenant=? AND channel=? AND seq<=?", (*key, cut)
                ).rowcount
            return dropped

    # -- shared state ---------------------------------------------------------

    def state_row(self, key: ChannelKey, entry_key: str) -> tuple[Any, ...] | None:
        """(key, value JSON or None, epoch, seq, sender JSON, size) of one key, or None."""
        row: tuple[Any, ...] | None = self.conn.execute(
            "SELECT key, value, epoch, seq, sender, size FROM state"
            " WHERE tenant=? AND channel=? AND key=?",
            (*key, entry_key),
        ).fetchone()
        return row

    def state_rows(self, key: ChannelKey) -> list[tuple[Any, ...]]:
        """Every row of the channel's state, deletions too, by key."""
        return self.conn.execute(
            "SELECT key, value, epoch, seq, sender, size FROM state"
            " WHERE tenant=? AND channel=? ORDER BY key",
            key,
        ).fetchall()

    def state_totals(self, key: ChannelKey) -> tuple[int, int]:
        """(live keys, their bytes) of the channel's state."""
        count, total = self.conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM state"
            " WHERE tenant=? AND channel=? AND value IS NOT NULL",
            key,
        ).fetchone()
        return count, total

    def state_floor(self, key: ChannelKey) -> str | None:
        row = self.conn.execute(
            "SELECT state_floor FROM channels WHERE tenant=? AND name=?", key
        ).fetchone()
        return row[0] if row else None

    def put_state(
        self,
        key: ChannelKey,
        epoch: str,
        seq: int,
        now: float,
        entry_key: str,
        value: str | None,
        sender: dict[str, Any] | None,
        size: int,
        max_deleted: int,
    ) -> None:
        """Keep `entry_key`'s value (None: deleted) as the channel's write `seq`.

        Like `append_message`, the transaction stays open until `commit`. Past
        `max_deleted` deleted keys, they all go, and `state_floor` is this version.
        """
        self.conn.execute(
            "UPDATE channels SET last_seq=?, last_active=? WHERE tenant=? AND name=?",
            (seq, now, *key),
        )
        self.conn.execute(
            "INSERT OR REPLACE INTO state (tenant, channel, key, value, epoch, seq, sender, size)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *key,
                entry_key,
                value,
                epoch,
                seq,
                orjson.dumps(sender).decode() if sender else None,
                size,
            ),
        )
        if value is None:
            (deleted,) = self.conn.execute(
                "SELECT count(*) FROM state WHERE tenant=? AND channel=? AND value IS NULL", key
            ).fetchone()
            if deleted > max_deleted:
                self.conn.execute(
                    "DELETE FROM state WHERE tenant=? AND channel=? AND value IS NULL", key
                )
                self.conn.execute(
                    "UPDATE channels SET state_floor=? WHERE tenant=? AND name=?",
                    (message_id(epoch, seq), *key),
                )
        self.on_append()

    # -- presence records ---------------------------------------------------

    def save_presence(self, key: ChannelKey, member: Member, online: bool) -> None:
        with self._own_transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO presence (tenant, channel, user_id, name, status, meta,"
                " color, avatar_url, joined_at, last_seen, online) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    *key,
                    member.user_id,
                    member.name,
                    member.status if online else "offline",
                    orjson.dumps(member.meta).decode(),
                    member.color,
                    member.avatar_url,
                    member.joined_at,
                    member.last_seen,
                    int(online),
                ),
            )

    def presence_records(self, key: ChannelKey, online: bool | None = None) -> list[Member]:
        sql = (
            "SELECT user_id, name, status, meta, color, avatar_url, joined_at, last_seen"
            " FROM presence WHERE tenant=? AND channel=?"
        )
        params: list[Any] = [*key]
        if online is not None:
            sql += " AND online=?"
            params.append(int(online))
        rows = self.conn.execute(sql + " ORDER BY user_id", params).fetchall()
        return [
            Member(
                user_id=user_id,
                name=name,
                status=status,
                meta=orjson.loads(meta),
                color=color,
                avatar_url=avatar_url,
                joined_at=joined_at,
                last_seen=last_seen,
            )
            for user_id, name, status, meta, color, avatar_url, joined_at, last_seen in rows
        ]

    # -- profiles -----------------------------------------------------------

    def get_profile(self, tenant: str, user_id: str) -> Profile:
        row = self.conn.execute(
            "SELECT name, color FROM profiles WHERE tenant=? AND user_id=?", (tenant, user_id)
        ).fetchone()
        return Profile(*row) if row else Profile()

    def shown_names(self, tenant: str) -> list[tuple[str, str]]:
        """(user id, name) of every user with a presence record in `tenant` (the name
        it was last shown with) or a chosen name: the members a new name must not
        look like. Read within the transaction, so a join not yet committed counts."""
        rows = self.conn.execute(
            "SELECT user_id, name FROM presence WHERE tenant=? AND name IS NOT NULL"
            " UNION SELECT user_id, name FROM profiles WHERE tenant=? AND name IS NOT NULL",
            (tenant, tenant),
        ).fetchall()
        return [(user_id, name) for user_id, name in rows]

    def save_profile(self, tenant: str, user_id: str, profile: Profile, now: float) -> None:
        """Keep `profile`; a profile with nothing chosen keeps no row."""
        with self._own_transaction():
            if profile.name is None and profile.color is None:
                self.conn.execute(
                    "DELETE FROM profiles WHERE tenant=? AND user_id=?", (tenant, user_id)
                )
                return
            self.conn.execute(
                "INSERT OR REPLACE INTO profiles (tenant, user_id, name, color, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (tenant, user_id, profile.name, profile.color, now),
            )

    def mark_all_offline(self, now: float) -> None:
        """After a restart or at shutdown nobody is connected to this process any more."""
        with self._own_transaction():
            self.conn.execute(
                "UPDATE presence SET online=0, status='offline', last_seen=? WHERE online=1", (now,)
            )


def _lock_exclusively(lock_path: str) -> Any:
    """Hold an advisory lock on `lock_path` for as long as the file stays open.

    The memory engine numbers messages in memory, so two processes on one
    database would give out the same ids; the second one is refused instead.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one process per file is on the user
        log.warning("cannot lock %s here: run one nyo-realtime process per database", lock_path)
        return None
    handle = open(os.path.realpath(lock_path), "a")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreInUse(
            f"{lock_path[: -len('.lock')]} is in use by another nyo-realtime process; "
            "give each process its own database (--db)"
        ) from None
    except OSError as exc:  # say, a file system without locks (some NFS)
        log.warning(
            "cannot lock %s (%s): run one nyo-realtime process per database", lock_path, exc
        )
    return handle
