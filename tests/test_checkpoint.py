"""SQLite checkpoints run off the event loop (`Store.checkpoint`, `service.CHECKPOINT_SECONDS`).

With SQLite's own checkpoint (every 1000 pages, inside a commit) a burst of
history writes stalled delivery while the WAL was copied and synced. Now the
commit never checkpoints and a worker thread does it; these check that the WAL
then starts over instead of growing, and that what was written stays readable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from nyo_realtime_ext.engines.ids import message_id
from nyo_realtime_ext.engines.memory import Store
from nyo_realtime_ext.models import ChannelKey, ChannelRecord, Message

KEY = ChannelKey("acme", "busy")
ROUND = 400  # messages of ~4 KB: ~1.6 MB of WAL a round


def write_round(store: Store, first_seq: int) -> None:
    for seq in range(first_seq, first_seq + ROUND):
        message = Message(KEY.name, message_id("e", seq), "note", "x" * 4000, None, time.time())
        store.append_message(KEY, seq, message, keep=100)
        store.commit()


async def commit_while_checkpointing(
    store: Store, seq: int, at_least: int = 0, size: int = 4000, pause: float = 0.0
) -> tuple[int, float]:
    """Commit one message after another, as the event loop does, while the thread
    checkpoints, and `at_least` of them; returns the next seq and the slowest commit."""
    checkpoint = asyncio.ensure_future(asyncio.to_thread(store.checkpoint))
    written, slowest = 0, 0.0
    while not checkpoint.done() or written < at_least:
        started = time.monotonic()
        message = Message(KEY.name, message_id("e", seq), "n", "x" * size, None, 1.0)
        store.append_message(KEY, seq, message, keep=100)
        store.commit()
        slowest = max(slowest, time.monotonic() - started)
        seq, written = seq + 1, written + 1
        await asyncio.sleep(pause)
    await checkpoint
    return seq, slowest


def wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_checkpoints_in_a_thread_keep_the_wal_from_growing(tmp_path):
    path = tmp_path / "realtime.db"
    store = Store(str(path))
    try:
        store.create_channel(ChannelRecord(KEY, "public", None, time.time()), "e")
        write_round(store, 1)
        one_round = wal_size(path)
        for n in range(1, 6):
            await asyncio.to_thread(store.checkpoint)
            write_round(store, 1 + n * ROUND)
        # Each round reuses the WAL from its start once the thread copied it.
        assert wal_size(path) < 2 * one_round, (wal_size(path), one_round)
        messages, _ = store.read_messages(KEY, "e", 0, 0.0, 1000)
        assert [seq for seq, _ in messages] == list(range(6 * ROUND - 99, 6 * ROUND + 1))
    finally:
        store.close()


async def test_a_wal_written_to_all_the_time_still_starts_over(tmp_path):
    # A busy server commits while the thread checkpoints: a passive checkpoint
    # then never copies the last frames, and the WAL never started over (it grew
    # by every commit, ~10 MB a second under the mixed benchmark).
    path = tmp_path / "realtime.db"
    store = Store(str(path))
    try:
        store.create_channel(ChannelRecord(KEY, "public", None, time.time()), "e")
        seq, sizes = 1, []
        for _ in range(10):
            # Up to 2,000 commits a second (the mixed benchmark makes 1,000), the
            # lock free between them.
            seq, _ = await commit_while_checkpointing(store, seq, at_least=ROUND, pause=0.0005)
            sizes.append(wal_size(path))
        # The file keeps its largest size, about two rounds; it grew by a round each.
        assert sizes[-1] < 4 * sizes[0], sizes
        messages, _ = store.read_messages(KEY, "e", 0, 0.0, 1000)
        assert [s for s, _ in messages] == list(range(seq - 100, seq))
    finally:
        store.close()


async def test_a_reader_elsewhere_never_holds_the_commits_for_long(tmp_path):
    # The RESTART waits for readers while it holds the write lock; another process
    # in a read transaction (a backup, a shell) would otherwise hold each commit of
    # the event loop for SQLite's default 5 s.
    path = tmp_path / "realtime.db"
    store = Store(str(path))
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        store.create_channel(ChannelRecord(KEY, "public", None, time.time()), "e")
        write_round(store, 1)  # past RESTART_FRAMES
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchone()  # holds its snapshot
        write_round(store, 1 + ROUND)
        _, slowest = await commit_while_checkpointing(store, 1 + 2 * ROUND, size=1)
        assert slowest < 2.0, slowest
    finally:
        reader.close()
        store.close()


async def test_without_checkpoints_the_commit_leaves_the_wal_alone(tmp_path):
    # The other half of the bargain: the event loop's commits never copy the WAL
    # (a server's timer does, see the test above), so it grows until one runs.
    path = tmp_path / "realtime.db"
    store = Store(str(path))
    try:
        store.create_channel(ChannelRecord(KEY, "public", None, time.time()), "e")
        write_round(store, 1)
        one_round = wal_size(path)
        write_round(store, 1 + ROUND)
        write_round(store, 1 + 2 * ROUND)
        assert wal_size(path) > 2.5 * one_round
    finally:
        store.close()
