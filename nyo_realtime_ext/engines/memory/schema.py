"""The SQLite schema of the embedded engine, and its versioned migrations.

nyo-realtime keeps its state in six tables of one SQLite file (`Realtime.db_path`):

- ``channels``: one row per channel of each tenant;
- ``channel_members``: the member list of a channel (who may join a private one);
- ``messages``: the history, the last `history_size` messages of each channel;
- ``presence``: the last known presence of each user on each channel;
- ``profiles``: the display name and colour each user chose;
- ``state``: the shared state of each channel, the latest value of each key.

`TABLES` describes every table, column and index as they are at `CURRENT_VERSION`,
for applications that read the file or keep tables of their own beside ours. The
schema changes only through `migrations`, a `sqlite_utils.Migrations` set named
``nyo-realtime`` and recorded in sqlite-utils' ``_sqlite_migrations`` table; an
application doing its own migrations in the same file uses a set of its own name
and never touches these tables' structure.

Migration *n* is schema version *n*, named ``000n_...``:

1. ``0001_first_release``: the four tables as the first release made them;
2. ``0002_channel_creator_and_activity``: ``channels.created_by`` (quotas),
   ``channels.last_active`` (collection of idle channels) and an index on
   ``(tenant, created_by)``;
3. ``0003_profiles``: the ``profiles`` table (names and colours users choose);
4. ``0004_shared_state``: the ``state`` table, ``channels.history_cut`` (where the
   history starts, now that state writes take sequence numbers too) and
   ``channels.state_floor`` (deletions forgotten up to there);
5. ``0005_history_in_key_order``: ``messages`` rebuilt ``WITHOUT ROWID`` (its rows
   stored in key order, each channel's history together) and without its index on
   ``ts``: a message's append then writes about three pages instead of seven.

`upgrade` brings a database to `CURRENT_VERSION`; `Store` calls it when it opens a
file, and ``nyo-realtime db status`` / ``nyo-realtime db upgrade`` run it by hand.

Databases made before migrations existed have the tables but no record of them.
`upgrade` *adopts* such a database first: it checks that the tables are ours,
records every migration whose changes are already there (finishing one that an
interrupted start left half done, such as a column added without its index),
and then runs the migrations still pending as usual. No row is read or rewritten.

A database that records a migration of this set that this code does not know was
written by a newer nyo-realtime; `upgrade` refuses it with `SchemaTooNew` rather
than run on a schema it cannot know.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import sqlite_utils
from sqlite_utils.db import Database

__all__ = [
    "CURRENT_VERSION",
    "MIGRATION_NAMES",
    "MIGRATION_SET",
    "TABLES",
    "Column",
    "Index",
    "SchemaError",
    "SchemaMismatch",
    "SchemaTooNew",
    "Status",
    "Table",
    "Upgrade",
    "migrations",
    "status",
    "upgrade",
]

#: The name of nyo-realtime's migration set in ``_sqlite_migrations``.
MIGRATION_SET = "nyo-realtime"

#: nyo-realtime's migrations; `upgrade` applies them (and adopts older databases).
migrations = sqlite_utils.Migrations(MIGRATION_SET)

#: The names of the migrations, in order: version *n* is ``MIGRATION_NAMES[n - 1]``.
MIGRATION_NAMES: list[str] = []


# -- the schema as it is today ------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column: its SQLite type, whether it may be NULL, the version that added it."""

    name: str
    type: str  # TEXT, INTEGER or REAL
    doc: str
    not_null: bool = False
    since: int = 1
    # NOT NULL from this version on (a key column of a table rebuilt WITHOUT ROWID).
    not_null_since: int | None = None

    def not_null_at(self, version: int) -> bool:
        return self.not_null or (self.not_null_since is not None and self.not_null_since <= version)


@dataclass(frozen=True)
class Index:
    """A (non-unique) index, named as sqlite-utils names it: ``idx_<table>_<columns>``."""

    columns: tuple[str, ...]
    doc: str
    since: int = 1
    until: int | None = None  # the version that dropped it

    def at(self, version: int) -> bool:
        """Whether the index exists at schema `version`."""
        return self.since <= version and (self.until is None or version < self.until)


@dataclass(frozen=True)
class Table:
    """One table: what a row is, its columns in order, primary key and indexes."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    pk: tuple[str, ...]
    indexes: tuple[Index, ...] = ()
    # The version from which its rows are stored in key order (`WITHOUT ROWID`).
    without_rowid_since: int | None = None

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


_TENANT = Column(
    "tenant", "TEXT", "The tenant the row belongs to: tenants never see each other's channels."
)
_CHANNEL = Column("channel", "TEXT", "The channel's name (`channels.name` in the same tenant).")

TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        Table(
            "channels",
            "One row per channel of each tenant. A channel exists from its first subscribe or "
            "publish, or from an explicit creation (HTTP `POST channels`), until it is "
            "forgotten as idle (`Realtime.channel_idle_ttl`) with its messages, members and "
            "presence records.",
            (
                Column("tenant", "TEXT", _TENANT.doc, not_null=True),
                Column(
                    "name",
                    "TEXT",
                    "The channel's name as clients write it: `room:1`, `private-…`, `presence-…`.",
                    not_null=True,
                ),
                Column("type", "TEXT", "`public`, `private` or `presence`.", not_null=True),
                Column(
                    "owner",
                    "TEXT",
                    "User id of whoever created the channel explicitly; only they change its "
                    "members. NULL for a channel made by a first subscribe or publish.",
                ),
                Column("created_at", "REAL", "Unix seconds of its creation.", not_null=True),
                Column(
                    "epoch",
                    "TEXT",
                    "Random, chosen at creation. A message id is `<epoch>-<seq>`, so the ids "
                    "of a forgotten and re-created channel never match the old ones.",
                    not_null=True,
                ),
                Column(
                    "last_seq",
                    "INTEGER",
                    "The last sequence number given out; kept even when no history is "
                    "(`history_size` 0), so an id is never given twice.",
                    not_null=True,
                ),
                Column(
                    "created_by",
                    "TEXT",
                    "User id of whoever made the channel exist (explicitly or by a first "
                    "subscribe or publish), counted against `max_channels_per_user`. NULL for "
                    "channels made before version 2.",
                    since=2,
                ),
                Column(
                    "last_active",
                    "REAL",
                    "Unix seconds of its last message (or of its creation): with presence, what "
                    "`channel_idle_ttl` looks at. NULL for channels untouched since before "
                    "version 2; `created_at` stands in.",
                    since=2,
                ),
                Column(
                    "history_cut",
                    "INTEGER",
                    "The highest seq of a message no longer in history (trimmed to "
                    "`history_size` or expired), 0 if none: a `since` at or after it recovers "
                    "every message. Needed because shared-state writes take sequence numbers "
                    "too, so the retained messages' seqs have gaps.",
                    since=4,
                ),
                Column(
                    "state_floor",
                    "TEXT",
                    "The version (`<epoch>-<seq>`) of the newest deletion of a state key that "
                    "was forgotten (see `state`), NULL if none: a resubscription from before it "
                    "gets the whole state.",
                    since=4,
                ),
            ),
            pk=("tenant", "name"),
            indexes=(
                Index(("tenant", "created_by"), "Counts a user's channels for the quota.", 2),
            ),
        ),
        Table(
            "channel_members",
            "The member list of a channel: the users allowed on a private channel, set at "
            "creation and by the owner (HTTP `PATCH`). One row per member.",
            (_TENANT, _CHANNEL, Column("user_id", "TEXT", "A member's user id.")),
            pk=("tenant", "channel", "user_id"),
        ),
        Table(
            "messages",
            "The history: the last `history_size` messages of each channel, none older than "
            "`history_ttl`. Message ids are not stored: a message's id is "
            "`<channels.epoch>-<seq>`. Since version 5 a `WITHOUT ROWID` table: rows in key "
            "order, each channel's messages together, oldest first.",
            (
                replace(_TENANT, not_null_since=5),
                replace(_CHANNEL, not_null_since=5),
                Column(
                    "seq",
                    "INTEGER",
                    "Its number in the channel's sequence, from 1 (shared with state writes, "
                    "so with gaps).",
                    not_null_since=5,
                ),
                Column("event", "TEXT", "The event name the publisher gave (`chat:message`)."),
                Column("payload", "TEXT", "The payload, as JSON text."),
                Column(
                    "sender",
                    "TEXT",
                    'JSON `{"userId", "connectionId"}` of the publisher (`connectionId` null '
                    "over HTTP); NULL for messages published by server-side code.",
                ),
                Column("ts", "REAL", "Unix seconds when it was published."),
            ),
            pk=("tenant", "channel", "seq"),
            indexes=(
                Index(
                    ("ts",),
                    "Found the messages older than `history_ttl`; each append paid two "
                    "pages for it. Since version 5 a channel's oldest message is the first "
                    "of its key instead.",
                    until=5,
                ),
            ),
            without_rowid_since=5,
        ),
        Table(
            "presence",
            "The last known presence of each user on each channel: one row per user, however "
            "many connections they have. `online` rows are the users connected to this "
            "process (all are set offline when it starts and stops); offline rows answer "
            "`members?include=offline` until `channel_idle_ttl` collects them.",
            (
                _TENANT,
                _CHANNEL,
                Column("user_id", "TEXT", "The user's id."),
                Column("name", "TEXT", "Display name."),
                Column(
                    "status",
                    "TEXT",
                    "What the user set (`online`, `away`, `busy`, …); `offline` once gone.",
                ),
                Column("meta", "TEXT", "JSON object the client attached (what it has open, …)."),
                Column("color", "TEXT", "Colour from the token, or NULL."),
                Column("avatar_url", "TEXT", "Avatar URL from the token, or NULL."),
                Column("joined_at", "REAL", "Unix seconds of their first connection."),
                Column("last_seen", "REAL", "Unix seconds they were last heard from."),
                Column("online", "INTEGER", "1 while connected, 0 after."),
            ),
            pk=("tenant", "channel", "user_id"),
        ),
        Table(
            "profiles",
            "What each user of each tenant chose to be shown as (HTTP `PUT profile`), over "
            "the name and colour of their identity (token or Jupyter). One row per user who "
            "chose something; a user who cleared both values has no row.",
            (
                Column("tenant", "TEXT", _TENANT.doc, not_null=True, since=3),
                Column("user_id", "TEXT", "The user's id (never chosen).", not_null=True, since=3),
                Column(
                    "name",
                    "TEXT",
                    "Chosen display name: trimmed, 1-64 characters, no control characters; "
                    "NULL shows the identity's name.",
                    since=3,
                ),
                Column(
                    "color",
                    "TEXT",
                    "Chosen colour, `#rrggbb` in lowercase; NULL shows the identity's colour, "
                    "else `colors.user_color(user_id)`.",
                    since=3,
                ),
                Column(
                    "updated_at",
                    "REAL",
                    "Unix seconds of the last change.",
                    not_null=True,
                    since=3,
                ),
            ),
            pk=("tenant", "user_id"),
        ),
        Table(
            "state",
            "The shared state of each channel: one row per key, its latest value, kept "
            "beyond `history_size` and `history_ttl`, as long as the channel is. A deleted "
            "key stays as a row with a NULL value (so that a resubscription learns of the "
            "deletion) until there are more such rows than `max_state_keys`; then they go "
            "and `channels.state_floor` moves up.",
            (
                Column("tenant", "TEXT", _TENANT.doc, not_null=True, since=4),
                Column("channel", "TEXT", _CHANNEL.doc, not_null=True, since=4),
                Column("key", "TEXT", "The key, as the writer gave it.", not_null=True, since=4),
                Column("value", "TEXT", "The value as JSON text; NULL: deleted.", since=4),
                Column(
                    "epoch",
                    "TEXT",
                    "The channel's epoch at the write: the version is `<epoch>-<seq>`.",
                    not_null=True,
                    since=4,
                ),
                Column(
                    "seq",
                    "INTEGER",
                    "The write's number in the channel's sequence (shared with messages).",
                    not_null=True,
                    since=4,
                ),
                Column(
                    "sender",
                    "TEXT",
                    'JSON `{"userId", "connectionId"}` of the writer; NULL for server code.',
                    since=4,
                ),
                Column(
                    "size",
                    "INTEGER",
                    "Bytes it counts against `max_state_bytes`: the key's UTF-8 bytes plus "
                    "the value's; 0 when deleted.",
                    not_null=True,
                    since=4,
                ),
            ),
            pk=("tenant", "channel", "key"),
        ),
    )
}


# -- the migrations -------------------------------------------------------------
#
# These are history: what each version did, as it did it. Never edit one that
# was released; add a migration instead (and update TABLES to match).

# Version 1: the tables of the first release, exactly as its `create()` calls made them.
_V1_TABLES: dict[str, dict[str, Any]] = {
    "channels": {
        "columns": {
            "tenant": str,
            "name": str,
            "type": str,
            "owner": str,
            "created_at": float,
            "epoch": str,
            "last_seq": int,
        },
        "pk": ("tenant", "name"),
        "not_null": {"tenant", "name", "type", "created_at", "epoch", "last_seq"},
    },
    "channel_members": {
        "columns": {"tenant": str, "channel": str, "user_id": str},
        "pk": ("tenant", "channel", "user_id"),
    },
    "messages": {
        "columns": {
            "tenant": str,
            "channel": str,
            "seq": int,
            "event": str,
            "payload": str,
            "sender": str,
            "ts": float,
        },
        "pk": ("tenant", "channel", "seq"),
    },
    "presence": {
        "columns": {
            "tenant": str,
            "channel": str,
            "user_id": str,
            "name": str,
            "status": str,
            "meta": str,
            "color": str,
            "avatar_url": str,
            "joined_at": float,
            "last_seen": float,
            "online": int,
        },
        "pk": ("tenant", "channel", "user_id"),
    },
}
_V1_INDEXES = {"messages": ("ts",)}

# Version 2: who made a channel and when it was last used.
_V2_COLUMNS = {"created_by": str, "last_active": float}
_V2_INDEX = ("tenant", "created_by")

# Version 3: the names and colours users choose.
_V3_PROFILES: dict[str, Any] = {
    "columns": {"tenant": str, "user_id": str, "name": str, "color": str, "updated_at": float},
    "pk": ("tenant", "user_id"),
    "not_null": {"tenant", "user_id", "updated_at"},
}


# Version 4: shared state.
_V4_STATE: dict[str, Any] = {
    "columns": {
        "tenant": str,
        "channel": str,
        "key": str,
        "value": str,
        "epoch": str,
        "seq": int,
        "sender": str,
        "size": int,
    },
    "pk": ("tenant", "channel", "key"),
    "not_null": {"tenant", "channel", "key", "epoch", "seq", "size"},
}
_V4_COLUMNS = {"history_cut": int, "state_floor": str}


def _migration(name: str) -> Callable[[Callable[[Database], None]], Callable[[Database], None]]:
    """Register a migration under `name`; its version is its place in `MIGRATION_NAMES`."""
    version = len(MIGRATION_NAMES) + 1
    assert _version_of(name) == version, f"migration {name!r} should be numbered {version:04d}"

    def register(fn: Callable[[Database], None]) -> Callable[[Database], None]:
        MIGRATION_NAMES.append(name)
        return migrations(name=name)(fn)

    return register


def _version_of(name: str) -> int | None:
    match = re.match(r"(\d+)_", name)
    return int(match.group(1)) if match else None


@_migration("0001_first_release")
def first_release(db: Database) -> None:
    """Version 1: `channels`, `channel_members`, `messages` (indexed by `ts`), `presence`."""
    for name, spec in _V1_TABLES.items():
        db.table(name).create(spec["columns"], pk=spec["pk"], not_null=spec.get("not_null"))
    for name, columns in _V1_INDEXES.items():
        db.table(name).create_index(list(columns))


@_migration("0002_channel_creator_and_activity")
def channel_creator_and_activity(db: Database) -> None:
    """Version 2: `channels.created_by`, `channels.last_active`, index on (tenant, created_by)."""
    channels = db.table("channels")
    for column, type_ in _V2_COLUMNS.items():
        channels.add_column(column, type_)
    channels.create_index(list(_V2_INDEX))


@_migration("0003_profiles")
def profiles(db: Database) -> None:
    """Version 3: `profiles`, the display name and colour each user chose."""
    db.table("profiles").create(
        _V3_PROFILES["columns"], pk=_V3_PROFILES["pk"], not_null=_V3_PROFILES["not_null"]
    )


@_migration("0004_shared_state")
def shared_state(db: Database) -> None:
    """Version 4: `state`, `channels.history_cut`, `channels.state_floor`."""
    db.table("state").create(
        _V4_STATE["columns"], pk=_V4_STATE["pk"], not_null=_V4_STATE["not_null"]
    )
    channels = db.table("channels")
    for column, type_ in _V4_COLUMNS.items():
        channels.add_column(column, type_)
    # Until now every sequence number was a message's, trimmed oldest first: history
    # starts right after the oldest retained message, or after the last if none is.
    db.execute(
        "UPDATE channels SET history_cut = coalesce((SELECT min(seq) - 1 FROM messages m"
        " WHERE m.tenant = channels.tenant AND m.channel = channels.name), last_seq)"
    )


@_migration("0005_history_in_key_order")
def history_in_key_order(db: Database) -> None:
    """Version 5: `messages` in key order (`WITHOUT ROWID`), without its index on `ts`.

    A rowid table kept each row in the order of arrival and its key in an index of its
    own, so an append wrote the row's page, the key's, the `ts` index's, and for the
    message it trimmed the same three again elsewhere. In key order a channel's
    messages sit together: the append and the trim touch its one or two pages.
    """
    db.execute(
        'CREATE TABLE "messages_v5" ("tenant" TEXT NOT NULL, "channel" TEXT NOT NULL,'
        ' "seq" INTEGER NOT NULL, "event" TEXT, "payload" TEXT, "sender" TEXT, "ts" REAL,'
        ' PRIMARY KEY ("tenant", "channel", "seq")) WITHOUT ROWID'
    )
    # A key column may be NULL in a rowid table, never WITHOUT ROWID; no such row was
    # ever written or could be read by its key.
    db.execute(
        'INSERT INTO "messages_v5" SELECT tenant, channel, seq, event, payload, sender, ts'
        " FROM messages WHERE tenant IS NOT NULL AND channel IS NOT NULL AND seq IS NOT NULL"
    )
    db.execute('DROP TABLE "messages"')  # and its index
    db.execute('ALTER TABLE "messages_v5" RENAME TO "messages"')


#: The schema version this code writes: the number of its migrations.
CURRENT_VERSION = len(MIGRATION_NAMES)


# -- status, adoption, upgrade ------------------------------------------------------


class SchemaError(RuntimeError):
    """The database's schema is not one this nyo-realtime can use."""


class SchemaTooNew(SchemaError):
    """The database records migrations this code does not know: a newer nyo-realtime wrote it."""


class SchemaMismatch(SchemaError):
    """The database has tables of our names that are not ours."""


@dataclass
class Status:
    """Where a database stands; read without writing anything (see `status`)."""

    applied: list[tuple[str, str]] = field(default_factory=list)  # (name, applied_at)
    pending: list[str] = field(default_factory=list)
    # Pending migrations whose changes the database already has (made before versioned
    # migrations): `upgrade` records them instead of running them.
    adoptable: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # recorded, not known here: newer

    @property
    def version(self) -> int:
        """The highest version recorded (0 for none), unknown newer ones included."""
        versions = [_version_of(name) or 0 for name, _ in self.applied]
        return max(versions, default=0)

    def refuse_if_newer(self, path: str) -> None:
        if not self.unknown:
            return
        version = self.version
        at = f"at version {version}" if version > CURRENT_VERSION else "of another version"
        raise SchemaTooNew(
            f"{path} was written by a newer nyo-realtime: its schema is {at} (migration(s) "
            f"{', '.join(self.unknown)} unknown here), and this nyo-realtime knows schema "
            f"versions 1 to {CURRENT_VERSION}. Run the newer nyo-realtime on it, or give this "
            "one another database (--db)."
        )


@dataclass
class Upgrade:
    """What `upgrade` did: migrations recorded as already there, and migrations run."""

    adopted: list[str]
    applied: list[str]
    version: int


def status(db: Database) -> Status:
    """Applied, pending, adoptable and unknown migrations of `db`. Writes nothing."""
    recorded = [(m.name, m.applied_at) for m in migrations.applied(db)]
    known = set(MIGRATION_NAMES)
    pending = [m.name for m in migrations.pending(db)]
    return Status(
        applied=recorded,
        pending=pending,
        adoptable=_present_unrecorded(db) if not recorded else [],
        unknown=[name for name, _ in recorded if name not in known],
    )


def upgrade(db: Database, path: str) -> Upgrade:
    """Bring `db` (the file at `path`, named in errors) to `CURRENT_VERSION`.

    A database made before versioned migrations is adopted first (see the module's
    docstring). Each migration runs in a transaction with its record, so a failure
    leaves the database at the last version that completed.

    :raises SchemaTooNew: the database records a migration this code does not know
    :raises SchemaMismatch: tables of our names are not ours (another program's file)
    """
    before = status(db)
    before.refuse_if_newer(path)
    adopted: list[str] = []
    if before.adoptable:
        _check_ours(db, path)
        with db.atomic():
            migrations.ensure_migrations_table(db)
            for name in before.adoptable:
                _ADOPTABLE[name](db)
                _record(db, name)
        adopted = before.adoptable
    migrations.apply(db)
    applied = [name for name in before.pending if name not in adopted]
    return Upgrade(adopted, applied, CURRENT_VERSION)


def _present_unrecorded(db: Database) -> list[str]:
    """The migrations a database without records already has, wholly or in part.

    Only for databases that record none of our migrations: those were made by the
    releases before versioned migrations, which created everything at each start.
    """
    if not any(db.table(name).exists() for name in _V1_TABLES):
        return []  # an empty file, or only other programs' tables: a new database
    present = ["0001_first_release"]
    channels = db.table("channels")
    columns = channels.columns_dict if channels.exists() else {}
    if any(column in columns for column in _V2_COLUMNS) or _has_index(db, "channels", _V2_INDEX):
        present.append("0002_channel_creator_and_activity")
    return present


def _check_ours(db: Database, path: str) -> None:
    for name, spec in _V1_TABLES.items():
        table = db.table(name)
        if not table.exists():
            continue
        missing = [column for column in spec["columns"] if column not in table.columns_dict]
        if missing:
            raise SchemaMismatch(
                f"{path} has a table {name!r} without the column(s) {', '.join(missing)} "
                "that nyo-realtime's has: it is not a nyo-realtime database. Give nyo-realtime "
                "a file of its own (--db)."
            )


def _finish_first_release(db: Database) -> None:
    """What the first release's start would have made of a half-made database."""
    for name, spec in _V1_TABLES.items():
        if not db.table(name).exists():
            db.table(name).create(spec["columns"], pk=spec["pk"], not_null=spec.get("not_null"))
    for name, columns in _V1_INDEXES.items():
        db.table(name).create_index(list(columns), if_not_exists=True)


def _finish_channel_creator_and_activity(db: Database) -> None:
    channels = db.table("channels")
    for column, type_ in _V2_COLUMNS.items():
        if column not in channels.columns_dict:
            channels.add_column(column, type_)
    channels.create_index(list(_V2_INDEX), if_not_exists=True)


# The migrations that releases before versioned migrations made without recording
# them, and how to complete each on a database that may have part of it. Later
# migrations are always recorded: they need no entry here.
_ADOPTABLE: dict[str, Callable[[Database], None]] = {
    "0001_first_release": _finish_first_release,
    "0002_channel_creator_and_activity": _finish_channel_creator_and_activity,
}


def _has_index(db: Database, table: str, columns: tuple[str, ...]) -> bool:
    return db.table(table).exists() and any(
        tuple(index.columns) == columns for index in db.table(table).indexes
    )


def _record(db: Database, name: str) -> None:
    """Record `name` as applied, as `Migrations.apply` records what it runs."""
    db.table(migrations.migrations_table).insert(
        {
            "migration_set": MIGRATION_SET,
            "name": name,
            "applied_at": str(datetime.datetime.now(datetime.timezone.utc)),
        }
    )
