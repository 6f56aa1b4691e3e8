"""The schema module: versioned migrations, adoption of databases made before them,
refusal of newer ones, `TABLES` against the real thing, and `nyo-realtime db`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlite_utils

from nyo_realtime_ext.engines.memory import Store, schema
from nyo_realtime_ext.models import ChannelKey, ChannelRecord, Message

from .support.tokens import SECRET

V1, V2, V3, V4, V5 = schema.MIGRATION_NAMES

# The schema of the release before versioned migrations (git 34e2639), as its
# `Store._create_schema` left it in the file: copied here so that this test keeps
# meaning what it says whatever the code does later.
OLD_RELEASE_DDL = """
CREATE TABLE "channels" (
   "tenant" TEXT NOT NULL,
   "name" TEXT NOT NULL,
   "type" TEXT NOT NULL,
   "owner" TEXT,
   "created_at" REAL NOT NULL,
   "epoch" TEXT NOT NULL,
   "last_seq" INTEGER NOT NULL,
   PRIMARY KEY ("tenant", "name")
);
CREATE TABLE "channel_members" (
   "tenant" TEXT,
   "channel" TEXT,
   "user_id" TEXT,
   PRIMARY KEY ("tenant", "channel", "user_id")
);
CREATE TABLE "messages" (
   "tenant" TEXT,
   "channel" TEXT,
   "seq" INTEGER,
   "event" TEXT,
   "payload" TEXT,
   "sender" TEXT,
   "ts" REAL,
   PRIMARY KEY ("tenant", "channel", "seq")
);
CREATE INDEX "idx_messages_ts"
    ON "messages" ("ts");
CREATE TABLE "presence" (
   "tenant" TEXT,
   "channel" TEXT,
   "user_id" TEXT,
   "name" TEXT,
   "status" TEXT,
   "meta" TEXT,
   "color" TEXT,
   "avatar_url" TEXT,
   "joined_at" REAL,
   "last_seen" REAL,
   "online" INTEGER,
   PRIMARY KEY ("tenant", "channel", "user_id")
);
"""

T0 = 1_790_000_000.0
OLD_CHANNELS = [
    ("acme", "room:1", "public", None, T0, "ep1", 3),
    ("acme", "private-team", "private", "ada", T0 + 1, "ep2", 1),
    ("acme", "presence-lobby", "presence", None, T0 + 2, "ep3", 0),
    ("globex", "room:1", "public", None, T0 + 3, "ep4", 1),  # same name, other tenant
]
OLD_MEMBERS = [
    ("acme", "private-team", "ada"),
    ("acme", "private-team", "bob"),
    ("acme", "private-team", "cy"),
]


def _sender(user: str) -> str:
    return orjson.dumps({"userId": user, "connectionId": f"c-{user}"}).decode()


OLD_MESSAGES = [
    ("acme", "room:1", 1, "chat:message", '{"text":"first"}', _sender("ada"), T0 + 10),
    ("acme", "room:1", 2, "chat:message", '{"text":"second"}', _sender("bob"), T0 + 11),
    ("acme", "room:1", 3, "tick", '[1,2,{"deep":null}]', None, T0 + 12),  # server-side
    ("acme", "private-team", 1, "chat:message", '"secret plans"', _sender("ada"), T0 + 13),
    ("globex", "room:1", 1, "chat:message", '{"text":"other tenant"}', _sender("zed"), T0 + 14),
]
OLD_PRESENCE = [
    ("acme", "presence-lobby", "ada", "Ada", "away", '{"doc":"a.ipynb"}', "#f00", None,
     T0 + 20, T0 + 30, 1),
    ("acme", "presence-lobby", "bob", "Bob", "offline", "{}", None, "https://x/b.png",
     T0 + 21, T0 + 25, 0),
    ("acme", "room:1", "ada", "Ada", "online", "{}", None, None, T0 + 22, T0 + 22, 1),
]  # fmt: skip
OLD_ROWS = {
    "channels": OLD_CHANNELS,
    "channel_members": OLD_MEMBERS,
    "messages": OLD_MESSAGES,
    "presence": OLD_PRESENCE,
}


def make_old_release_db(path: Path, ddl: str = OLD_RELEASE_DDL) -> None:
    """A database as the release before migrations wrote it, with some rows."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=wal")  # as that release set it
    conn.executescript(ddl)
    with conn:
        for table, rows in OLD_ROWS.items():
            marks = ",".join("?" * len(rows[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.close()


def old_columns_of_every_row(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in the columns the old release had."""
    rows = {}
    for table, spec in schema._V1_TABLES.items():
        columns = ", ".join(spec["columns"])
        order = ", ".join(spec["pk"])
        rows[table] = conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}").fetchall()
    return rows


def recorded(path: Path) -> list[str]:
    db = sqlite_utils.Database(path)
    try:
        return [m.name for m in schema.migrations.applied(db)]
    finally:
        db.close()


def actual_schema(db: sqlite_utils.Database) -> dict[str, Any]:
    """Columns (name, type, not null), primary key and explicit indexes of our tables
    that exist."""
    found = {}
    for name in schema.TABLES:
        table = db.table(name)
        if not table.exists():
            continue
        found[name] = {
            "columns": [(c.name, c.type, bool(c.notnull)) for c in table.columns],
            "pk": tuple(table.pks),
            "indexes": sorted(tuple(i.columns) for i in table.indexes if i.origin == "c"),
            "without_rowid": "WITHOUT ROWID" in (table.schema or "").upper(),
        }
    return found


def described_schema(version: int = schema.CURRENT_VERSION) -> dict[str, Any]:
    """The same, as `TABLES` describes it at `version` (a table exists from the version
    of its first column)."""
    return {
        name: {
            "columns": [
                (c.name, c.type, c.not_null_at(version))
                for c in table.columns
                if c.since <= version
            ],
            "pk": table.pk,
            "indexes": sorted(i.columns for i in table.indexes if i.at(version)),
            "without_rowid": table.without_rowid_since is not None
            and table.without_rowid_since <= version,
        }
        for name, table in schema.TABLES.items()
        if min(c.since for c in table.columns) <= version
    }


def db_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nyo_realtime_ext.server", "db", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


# -- a fresh database ---------------------------------------------------------------


def test_a_fresh_database_gets_every_migration_and_the_documented_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = Store(str(path))
    assert store.upgraded == schema.Upgrade([], [V1, V2, V3, V4, V5], 5)
    assert actual_schema(store.db) == described_schema()
    store.close()
    assert recorded(path) == [V1, V2, V3, V4, V5]

    again = Store(str(path))  # nothing left to do the second time
    assert again.upgraded == schema.Upgrade([], [], 5)
    again.close()
    assert recorded(path) == [V1, V2, V3, V4, V5]


def test_tables_describe_each_version_and_every_column_is_documented() -> None:
    db = sqlite_utils.Database(memory=True)
    schema.migrations.apply(db, stop_before=V2)
    assert actual_schema(db) == described_schema(version=1)
    schema.migrations.apply(db, stop_before=V3)
    assert actual_schema(db) == described_schema(version=2)
    assert "profiles" not in actual_schema(db)
    schema.migrations.apply(db, stop_before=V4)
    assert actual_schema(db) == described_schema(version=3)
    assert "state" not in actual_schema(db)
    schema.migrations.apply(db, stop_before=V5)
    assert actual_schema(db) == described_schema(version=4)
    assert actual_schema(db)["messages"]["indexes"] == [("ts",)]
    schema.migrations.apply(db)
    assert actual_schema(db) == described_schema(version=5)
    assert actual_schema(db)["messages"] == {
        **actual_schema(db)["messages"],
        "indexes": [],
        "without_rowid": True,
    }
    for table in schema.TABLES.values():
        assert table.doc
        assert all(column.doc for column in table.columns), table.name
        assert all(index.doc for index in table.indexes), table.name
    assert schema.CURRENT_VERSION == len(schema.MIGRATION_NAMES) == 5
    assert schema.__doc__ and "adopt" in schema.__doc__


# -- databases of the release before migrations ----------------------------------


def test_the_old_release_database_upgrades_without_losing_anything(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_old_release_db(path)
    conn = sqlite3.connect(path)
    before = old_columns_of_every_row(conn)
    conn.close()
    assert {table: len(rows) for table, rows in before.items()} == {
        table: len(rows) for table, rows in OLD_ROWS.items()
    }

    store = Store(str(path))
    # Version 1 was there already: recorded, not run. Versions 2 and 3 ran.
    assert store.upgraded == schema.Upgrade([V1], [V2, V3, V4, V5], 5)
    assert actual_schema(store.db) == described_schema()
    assert old_columns_of_every_row(store.conn) == before  # every row, every value

    # And the store reads them as it reads its own.
    acme = "acme"
    team, lobby = ChannelKey(acme, "private-team"), ChannelKey(acme, "presence-lobby")
    channel, epoch, last_seq = store.get_channel(team)  # type: ignore[misc]
    assert (channel.type, channel.owner, channel.members) == (
        "private",
        "ada",
        ("ada", "bob", "cy"),
    )
    assert (epoch, last_seq, channel.created_by) == ("ep2", 1, None)
    assert [c.key for c in store.list_channels(acme)] == [
        ChannelKey(acme, "presence-lobby"),
        ChannelKey(acme, "private-team"),
        ChannelKey(acme, "room:1"),
    ]
    room = ChannelKey(acme, "room:1")
    messages, more = store.read_messages(room, "ep1", 0, 0.0, 100)
    assert not more
    assert [(seq, m.id, m.event, m.payload, m.sender, m.ts) for seq, m in messages] == [
        (1, "ep1-1", "chat:message", {"text": "first"}, orjson.loads(_sender("ada")), T0 + 10),
        (2, "ep1-2", "chat:message", {"text": "second"}, orjson.loads(_sender("bob")), T0 + 11),
        (3, "ep1-3", "tick", [1, 2, {"deep": None}], None, T0 + 12),
    ]
    other, _ = store.read_messages(ChannelKey("globex", "room:1"), "ep4", 0, 0.0, 100)
    assert [m.payload for _, m in other] == [{"text": "other tenant"}]
    members = store.presence_records(lobby)
    assert [(m.user_id, m.status, m.meta, m.color, m.avatar_url) for m in members] == [
        ("ada", "away", {"doc": "a.ipynb"}, "#f00", None),
        ("bob", "offline", {}, None, "https://x/b.png"),
    ]
    assert [m.user_id for m in store.presence_records(lobby, online=True)] == ["ada"]

    # The new columns work on old channels and new ones alike.
    store.append_message(
        room, 4, Message("room:1", "ep1-4", "chat:message", "later", None, T0 + 40), 100
    )
    store.commit()
    assert [seq for seq, _ in store.read_messages(room, "ep1", 0, 0.0, 100)[0]] == [1, 2, 3, 4]
    assert store.conn.execute(
        "SELECT last_active FROM channels WHERE tenant=? AND name=?", room
    ).fetchone() == (T0 + 40,)
    assert store.count_created(acme, "ada") == 0  # nobody is charged for old channels
    new = ChannelRecord(ChannelKey(acme, "room:2"), "public", None, T0 + 50, (), created_by="ada")
    assert store.create_channel(new, "ep5")
    assert store.count_created(acme, "ada") == 1
    store.close()

    assert recorded(path) == [V1, V2, V3, V4, V5]
    reopened = Store(str(path))
    assert reopened.upgraded == schema.Upgrade([], [], 5)
    reopened.close()


def test_a_pre_migration_database_with_the_new_columns_is_adopted_whole(tmp_path: Path) -> None:
    # The releases between 34e2639 and versioned migrations added version 2's
    # columns and index at each start, without recording anything.
    path = tmp_path / "between.db"
    make_old_release_db(path)
    conn = sqlite3.connect(path)
    conn.executescript(
        'ALTER TABLE channels ADD COLUMN "created_by" TEXT;'
        'ALTER TABLE channels ADD COLUMN "last_active" REAL;'
        'CREATE INDEX "idx_channels_tenant_created_by" ON "channels" ("tenant", "created_by");'
        "UPDATE channels SET created_by='ada', last_active=created_at WHERE name='room:1';"
    )
    conn.close()
    store = Store(str(path))
    assert store.upgraded == schema.Upgrade([V1, V2], [V3, V4, V5], 5)
    assert actual_schema(store.db) == described_schema()
    assert store.count_created("acme", "ada") == 1  # their values are kept
    store.close()
    assert recorded(path) == [V1, V2, V3, V4, V5]


def test_a_half_made_pre_migration_database_is_finished_and_adopted(tmp_path: Path) -> None:
    # A start of those releases that stopped after the first new column: the rest
    # of version 2 is completed instead of run (its first column exists already).
    path = tmp_path / "half.db"
    make_old_release_db(path)
    conn = sqlite3.connect(path)
    conn.execute('ALTER TABLE channels ADD COLUMN "created_by" TEXT')
    conn.execute("DROP TABLE presence")  # and a table that was never made
    conn.commit()
    conn.close()
    store = Store(str(path))
    assert store.upgraded == schema.Upgrade([V1, V2], [V3, V4, V5], 5)
    assert actual_schema(store.db) == described_schema()
    assert store.presence_records(ChannelKey("acme", "presence-lobby")) == []
    assert len(store.read_messages(ChannelKey("acme", "room:1"), "ep1", 0, 0.0, 100)[0]) == 3
    store.close()


def test_tables_of_our_names_that_are_not_ours_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO messages (body) VALUES ('theirs')")
    conn.commit()
    conn.close()
    with pytest.raises(schema.SchemaMismatch, match=r"foreign\.db has a table 'messages'"):
        Store(str(path))
    conn = sqlite3.connect(path)
    names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert names == {"messages"}  # nothing written
    conn.close()


def test_other_migration_sets_and_tables_in_the_same_file_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    app = sqlite_utils.Migrations("my-app")

    @app()
    def notes(db: sqlite_utils.Database) -> None:
        db.table("notes").create({"id": int, "text": str}, pk="id")

    db = sqlite_utils.Database(path)
    app.apply(db)
    db.close()
    store = Store(str(path))  # not a pre-migration database: only others' tables
    assert store.upgraded == schema.Upgrade([], [V1, V2, V3, V4, V5], 5)
    assert [m.name for m in app.applied(store.db)] == ["notes"]
    assert app.pending(store.db) == []
    store.close()


# -- a database of a newer release ------------------------------------------------


def _make_newer_db(path: Path) -> None:
    Store(str(path)).close()
    db = sqlite_utils.Database(path)
    db.table(schema.migrations.migrations_table).insert(
        {"migration_set": schema.MIGRATION_SET, "name": "0006_from_the_future", "applied_at": "x"}
    )
    db.close()


def test_a_newer_database_is_refused_with_the_file_and_the_versions(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    _make_newer_db(path)
    with pytest.raises(schema.SchemaTooNew) as refused:
        Store(str(path))
    message = str(refused.value)
    assert str(path) in message
    assert "version 6" in message and "versions 1 to 5" in message
    assert "0006_from_the_future" in message
    # The refused store let go of the file: once the record is gone, it opens.
    db = sqlite_utils.Database(path)
    db.execute("DELETE FROM _sqlite_migrations WHERE name='0006_from_the_future'")
    db.close()
    Store(str(path)).close()


def test_serve_exits_with_the_refusal(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    _make_newer_db(path)
    result = subprocess.run(
        [sys.executable, "-m", "nyo_realtime_ext.server", "serve", "--port", "0",
         "--jwt-secret", SECRET, "--db", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"nyo-realtime: {path} was written by a newer nyo-realtime" in result.stderr
    assert "versions 1 to 5" in result.stderr


# -- nyo-realtime db status / upgrade -------------------------------------------------


def test_db_status_and_upgrade_on_an_old_release_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_old_release_db(path)
    conn = sqlite3.connect(path)
    before = old_columns_of_every_row(conn)
    conn.close()

    status = db_cli("status", "--db", str(path))
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        f"{path}: no migration recorded; this nyo-realtime writes version 5",
        "applied:",
        "  (none)",
        "pending:",
        f"  {V1}  (already there, from before versioned migrations: upgrade records it)",
        f"  {V2}",
        f"  {V3}",
        f"  {V4}",
        f"  {V5}",
    ]
    assert not sqlite_utils.Database(path).table("_sqlite_migrations").exists()  # read only

    upgrade = db_cli("upgrade", "--db", str(path))
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.splitlines() == [
        f"recorded {V1} (already there, from before versioned migrations)",
        f"applied {V2}",
        f"applied {V3}",
        f"applied {V4}",
        f"applied {V5}",
        f"{path}: version 5",
    ]
    conn = sqlite3.connect(path)
    assert old_columns_of_every_row(conn) == before
    conn.close()

    status = db_cli("status", "--db", str(path))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"{path}: version 5; this nyo-realtime writes version 5"
    assert [line.split()[0] for line in lines[2:7]] == [V1, V2, V3, V4, V5]
    assert lines[7:] == ["pending:", "  (none)"]

    again = db_cli("upgrade", "--db", str(path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"{path}: version 5 (nothing to do)"]


def test_db_commands_refuse_newer_missing_and_busy_databases(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    _make_newer_db(newer)
    status = db_cli("status", "--db", str(newer))
    assert status.returncode != 0
    assert "0006_from_the_future  x  (unknown here: written by a newer nyo-realtime)" in (
        status.stdout
    )
    assert f"{newer} was written by a newer nyo-realtime" in status.stderr
    upgrade = db_cli("upgrade", "--db", str(newer))
    assert upgrade.returncode != 0
    assert "versions 1 to 5" in upgrade.stderr
    assert recorded(newer) == [V1, V2, V3, V4, V5, "0006_from_the_future"]

    missing = db_cli("status", "--db", str(tmp_path / "nothing.db"))
    assert missing.returncode != 0 and "no database at" in missing.stderr
    assert not (tmp_path / "nothing.db").exists()

    busy = tmp_path / "busy.db"
    make_old_release_db(busy)
    store = Store(str(busy))  # a running server holds the file
    try:
        upgrade = db_cli("upgrade", "--db", str(busy))
        assert upgrade.returncode != 0
        assert "in use by a running nyo-realtime process" in upgrade.stderr
        status = db_cli("status", "--db", str(busy))  # reading is fine meanwhile
        assert status.returncode == 0, status.stderr
        assert "pending:\n  (none)" in status.stdout
    finally:
        store.close()
