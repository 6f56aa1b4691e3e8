"""The SQLite store on a real file: channels and their members, messages with their
retention and group commit, presence records, collection of idle channels, and the lock
that keeps a second process off the same database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from nyo_realtime_ext.engines.ids import message_id, parse_message_id
from nyo_realtime_ext.engines.memory import Store, StoreInUse
from nyo_realtime_ext.models import ChannelKey, ChannelRecord, Member, Message

ROOM = ChannelKey("acme", "room")
EPOCH = "e1"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "realtime.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    opened = Store(str(db))
    yield opened
    opened.close()


def other_reader(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """What another connection sees: only what is committed."""
    with sqlite3.connect(db) as other:
        return other.execute(sql, params).fetchall()


def message(seq: int, ts: float = 100.0, event: str = "e", payload: object = None) -> Message:
    sender = {"userId": "ada", "connectionId": "c1"}
    return Message(ROOM.name, message_id(EPOCH, seq), event, payload, sender, ts)


def append(store: Store, *seqs: int, keep: int = 100, ts: float = 100.0) -> None:
    for seq in seqs:
        store.append_message(ROOM, seq, message(seq, ts, payload={"n": seq}), keep)
    store.commit()


def test_a_channel_is_created_once_with_its_members(store: Store, db: Path) -> None:
    ops = ChannelRecord(
        ChannelKey("acme", "private-ops"), "private", "ada", 5.0, ("bob", "ada"), "ada"
    )
    assert store.create_channel(ops, EPOCH)
    assert not store.create_channel(ops, "another-epoch")  # the first one stays
    channel, epoch, last_seq = store.get_channel(ops.key)  # type: ignore[misc]
    assert channel == ChannelRecord(
        ops.key, "private", "ada", 5.0, ("ada", "bob")
    )  # members sorted
    assert channel.created_by == "ada"
    assert (epoch, last_seq) == (EPOCH, 0)
    assert store.get_channel(ChannelKey("globex", "private-ops")) is None  # tenants are walls
    assert other_reader(db, "SELECT name FROM channels") == [("private-ops",)]  # committed
    assert store.count_created("acme", "ada") == 1 and store.count_created("acme", "bob") == 0


def test_member_lists_are_replaced_whole(store: Store) -> None:
    key = ChannelKey("acme", "private-team")
    store.create_channel(ChannelRecord(key, "private", "ada", 1.0, ("ada", "bob")), EPOCH)
    store.set_channel_members(key, ["carl", "ada", "carl"])
    assert store.channel_members(key) == ["ada", "carl"]
    store.set_channel_members(key, [])
    assert store.channel_members(key) == []


def test_channels_are_listed_by_name_a_page_at_a_time(store: Store) -> None:
    for name in ("c", "a", "b", "d"):
        store.create_channel(ChannelRecord(ChannelKey("acme", name), "public", None, 1.0), EPOCH)
    store.create_channel(ChannelRecord(ChannelKey("globex", "a"), "public", None, 1.0), EPOCH)
    store.set_channel_members(ChannelKey("acme", "b"), ["zoe", "al"])
    assert [c.key.name for c in store.list_channels("acme")] == ["a", "b", "c", "d"]
    page = store.list_channels("acme", after="a", limit=2)
    assert [(c.key.name, c.members) for c in page] == [("b", ("al", "zoe")), ("c", ())]
    assert store.list_channels("acme", after="d") == []


def test_messages_are_read_back_in_order_after_an_id(store: Store) -> None:
    store.create_channel(ChannelRecord(ROOM, "public", None, 1.0), EPOCH)
    append(store, 1, 2, 3)
    read, more = store.read_messages(ROOM, EPOCH, after_seq=1, not_before=0.0, limit=10)
    assert [seq for seq, _ in read] == [2, 3] and not more
    seq, first = read[0]
    assert first == message(2, payload={"n": 2})
    assert first.id == "e1-2" and first.sender == {"userId": "ada", "connectionId": "c1"}
    assert store.get_channel(ROOM)[2] == 3  # type: ignore[index]


def test_reads_stop_at_the_limit_or_the_byte_budget_and_say_so(store: Store) -> None:
    store.create_channel(ChannelRecord(ROOM, "public", None, 1.0), EPOCH)
    for seq in range(1, 6):
        store.append_message(ROOM, seq, message(seq, payload="x" * 1000), keep=100)
    store.commit()
    oldest, more = store.read_messages(ROOM, EPOCH, 0, 0.0, limit=2)
    assert [s for s, _ in oldest] == [1, 2] and more
    newest, more = store.read_messages(ROOM, EPOCH, 0, 0.0, limit=2, newest=True)
    assert [s for s, _ in newest] == [4, 5] and more  # still oldest first
    cut, more = store.read_messages(ROOM, EPOCH, 0, 0.0, limit=10, max_bytes=2500)
    assert [s for s, _ in cut] == [1, 2] and more
    one, more = store.read_messages(ROOM, EPOCH, 0, 0.0, limit=10, max_bytes=1)
    assert [s for s, _ in one] == [1] and more  # one message always comes
    everything, more = store.read_messages(ROOM, EPOCH, 0, 0.0, limit=10)
    assert len(everything) == 5 and not more


def test_only_the_last_messages_are_kept_and_ids_never_repeat(store: Store) -> None:
    store.create_channel(ChannelRecord(ROOM, "public", None, 1.0), EPOCH)
    append(store, 1, 2, 3, 4, keep=2)
    assert [s for s, _ in store.read_messages(ROOM, EPOCH, 0, 0.0, 10)[0]] == [3, 4]
    append(store, 5, keep=0)  # no history: only the sequence is recorded
    assert [s for s, _ in store.read_messages(ROOM, EPOCH, 0, 0.0, 10)[0]] == [3, 4]
    assert store.get_channel(ROOM)[2] == 5  # type: ignore[index]


def test_old_messages_expire_in_each_channel_and_history_says_where_it_starts(
    store: Store,
) -> None:
    quiet, elsewhere = ChannelKey("acme", "quiet"), ChannelKey("globex", "room")
    for key in (ROOM, quiet, elsewhere):
        store.create_channel(ChannelRecord(key, "public", None, 1.0), EPOCH)
    for seq, ts in ((1, 10.0), (2, 20.0), (3, 30.0)):
        store.append_message(ROOM, seq, message(seq, ts=ts), keep=100)
    store.append_message(quiet, 1, message(1, ts=40.0), keep=100)
    store.append_message(elsewhere, 1, message(1, ts=12.0), keep=100)
    store.commit()
    assert [s for s, _ in store.read_messages(ROOM, EPOCH, 0, 25.0, 10)[0]] == [3]

    assert store.drop_expired(not_before=25.0) == 3
    assert [s for s, _ in store.read_messages(ROOM, EPOCH, 0, 0.0, 10)[0]] == [3]
    assert [s for s, _ in store.read_messages(quiet, EPOCH, 0, 0.0, 10)[0]] == [1]
    assert store.read_messages(elsewhere, EPOCH, 0, 0.0, 10)[0] == []
    # A recovery from before the cut is told it missed something; after it, not.
    assert [store.history_cut(key, 0.0) for key in (ROOM, quiet, elsewhere)] == [2, 0, 1]
    assert store.drop_expired(not_before=25.0) == 0


def test_after_the_clock_went_back_expiry_keeps_history_a_run_of_seqs(store: Store) -> None:
    store.create_channel(ChannelRecord(ROOM, "public", None, 1.0), EPOCH)
    for seq, ts in ((1, 30.0), (2, 5.0), (3, 40.0)):  # the clock went back before seq 2
        store.append_message(ROOM, seq, message(seq, ts=ts), keep=100)
    store.commit()
    assert store.drop_expired(not_before=25.0) == 0  # the oldest, seq 1, is not expired
    assert store.drop_expired(not_before=35.0) == 2
    assert [s for s, _ in store.read_messages(ROOM, EPOCH, 0, 0.0, 10)[0]] == [3]
    assert store.history_cut(ROOM, 0.0) == 2


def test_appends_are_group_committed(store: Store, db: Path) -> None:
    store.create_channel(ChannelRecord(ROOM, "public", None, 1.0), EPOCH)
    booked: list[None] = []
    store.on_append = lambda: booked.append(None)
    store.append_message(ROOM, 1, message(1), keep=100)
    store.append_message(ROOM, 2, message(2), keep=100)
    assert len(booked) == 2  # the caller books the commit that must follow
    assert other_reader(db, "SELECT seq FROM messages") == []  # nothing durable yet
    store.commit()
    assert other_reader(db, "SELECT seq FROM messages ORDER BY seq") == [(1,), (2,)]
    store.append_message(ROOM, 3, message(3), keep=100)
    store.rollback()  # say, the commit's caller failed
    assert [s for s, _ in store.read_messages(ROOM, EPOCH, 0, 0.0, 10)[0]] == [1, 2]


def test_any_other_write_commits_the_pending_appends_first(store: Store, db: Path) -> None:
    store.create_channel(ChannelRecord(ROOM, "public", None, 1.0), EPOCH)
    store.append_message(ROOM, 1, message(1), keep=100)
    store.save_presence(ROOM, Member("ada", "Ada"), online=True)
    assert other_reader(db, "SELECT seq FROM messages") == [(1,)]


def test_presence_records_remember_who_was_here(store: Store) -> None:
    ada = Member("ada", "Ada", "busy", {"x": 1}, joined_at=1.0, last_seen=2.0, color="#123")
    store.save_presence(ROOM, ada, online=True)
    store.save_presence(ROOM, Member("bob", "Bob", "away", last_seen=3.0), online=False)
    records = store.presence_records(ROOM)
    assert [(m.user_id, m.status, m.meta) for m in records] == [
        ("ada", "busy", {"x": 1}),
        ("bob", "offline", {}),  # an offline record says so, whatever the status was
    ]
    assert records[0].color == "#123" and records[0].joined_at == 1.0
    assert [m.user_id for m in store.presence_records(ROOM, online=True)] == ["ada"]
    assert [m.user_id for m in store.presence_records(ROOM, online=False)] == ["bob"]
    store.mark_all_offline(now=9.0)  # a restart: nobody is connected any more
    assert [(m.status, m.last_seen) for m in store.presence_records(ROOM, online=False)] == [
        ("offline", 9.0),
        ("offline", 3.0),
    ]


def test_idle_channels_are_collected_with_everything_theirs(store: Store, db: Path) -> None:
    idle, busy, owned, live = (ChannelKey("acme", n) for n in ("idle", "busy", "owned", "live"))
    for key in (idle, busy, live):
        store.create_channel(ChannelRecord(key, "public", None, 1.0), EPOCH)
    store.create_channel(ChannelRecord(owned, "public", "ada", 1.0), EPOCH)  # made on purpose
    store.append_message(idle, 1, Message("idle", "e1-1", "e", None, None, 5.0), keep=10)
    store.append_message(busy, 1, Message("busy", "e1-1", "e", None, None, 50.0), keep=10)
    store.save_presence(idle, Member("ada", "Ada", last_seen=5.0), online=False)
    assert store.collect_idle(not_used_since=20.0, live={live}) == 1
    assert store.get_channel(idle) is None
    assert all(store.get_channel(key) is not None for key in (busy, owned, live))
    assert other_reader(db, "SELECT channel FROM messages") == [("busy",)]
    assert other_reader(db, "SELECT channel FROM presence") == []


def test_a_second_store_cannot_open_the_same_database(db: Path) -> None:
    # As a second process would not: the lock belongs to the open file, not the process.
    first = Store(str(db))
    with pytest.raises(StoreInUse, match="in use by another nyo-realtime process"):
        Store(str(db))
    first.close()
    Store(str(db)).close()  # closing released the lock


def test_durable_across_reopening(db: Path) -> None:
    first = Store(str(db))
    first.create_channel(ChannelRecord(ROOM, "public", None, 1.0), EPOCH)
    first.append_message(ROOM, 1, message(1, payload=[1, "two"]), keep=10)
    first.close()  # closing commits what is pending
    first.close()  # and closing twice is harmless (shutdown paths may both close)
    again = Store(str(db))
    try:
        assert again.read_messages(ROOM, EPOCH, 0, 0.0, 10)[0][0][1].payload == [1, "two"]
    finally:
        again.close()


def test_message_ids() -> None:
    assert message_id("a-b", 12) == "a-b-12"
    assert parse_message_id("a-b-12") == ("a-b", 12)
    for bad in ("12", "-12", "e-", "e-x", "e-²", "e-" + "9" * 19, ""):
        assert parse_message_id(bad) is None, bad
