"""The end of each burst: group commit first, then one write per connection."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.service import RealtimeService

from .support.tokens import SECRET, make_token


class Outbox:
    """A connection's side of the writer, recording what happened to it."""

    def __init__(self, service: RealtimeService) -> None:
        self.service = service
        self.frames: list[bytes] = []
        self.pending: list[bytes] = []
        self.outcome: str | None = None

    def send(self, data: bytes) -> None:
        if not self.pending:
            self.service.writer.wait(self)
        self.pending.append(data)

    def close(self, code: int, reason: str) -> None:
        self.outcome = f"closed {code}"

    def backlog(self) -> int:
        return 0

    def write(self) -> None:
        self.frames += self.pending
        self.pending = []
        self.outcome = self.outcome or "written"

    def abandon(self) -> None:
        self.pending = []
        self.outcome = "abandoned"


def text(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def open_service(tmp_path: Path) -> RealtimeService:
    return RealtimeService(Realtime(jwt_secret=SECRET, db_path=str(tmp_path / "db.sqlite")))


def stored_ids(path: Path) -> list[int]:
    with sqlite3.connect(path) as other:  # another connection sees only what is committed
        return [seq for (seq,) in other.execute("SELECT seq FROM messages ORDER BY seq")]


async def join(service: RealtimeService, user: str) -> tuple[Any, Outbox]:
    outbox = Outbox(service)
    session = service.hub.connect(outbox)
    await service.hub.receive(session, text({"type": "auth", "token": make_token(user)}))
    return session, outbox


async def test_a_message_nobody_is_sent_is_committed_at_the_end_of_the_pass(tmp_path: Path) -> None:
    service = open_service(tmp_path)
    ada, _ = await join(service, "ada")
    await service.hub.receive(ada, text({"type": "subscribe", "channel": "room"}))
    await asyncio.sleep(0.01)
    # echo off, no ref, no other subscriber: not one frame goes out for it
    frame = {"type": "broadcast", "channel": "room", "event": "e", "payload": 1, "echo": False}
    await service.hub.receive(ada, text(frame))
    assert stored_ids(tmp_path / "db.sqlite") == []  # not yet: the pass has not ended
    await asyncio.sleep(0.01)
    assert stored_ids(tmp_path / "db.sqlite") == [1]
    service.release()


async def test_frames_wait_for_the_commit_and_a_failed_commit_sends_none(tmp_path: Path) -> None:
    service = open_service(tmp_path)
    ada, ada_box = await join(service, "ada")
    bob, bob_box = await join(service, "bob")
    for session in (ada, bob):
        await service.hub.receive(session, text({"type": "subscribe", "channel": "room"}))
    await asyncio.sleep(0.01)
    ada_box.frames.clear()
    bob_box.frames.clear()

    commit = service.engine.commit

    def failing_commit() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    service.engine.commit = failing_commit  # type: ignore[method-assign]
    frame = {"type": "broadcast", "channel": "room", "event": "e", "payload": "lost", "ref": 1}
    await service.hub.receive(ada, text(frame))
    await asyncio.sleep(0.01)
    assert ada_box.outcome == bob_box.outcome == "abandoned"
    assert ada_box.frames == bob_box.frames == []  # no ack, no message for an id that is gone

    service.engine.commit = commit  # type: ignore[method-assign]
    carl, carl_box = await join(service, "carl")
    await service.hub.receive(carl, text({"type": "subscribe", "channel": "room"}))
    frame = {"type": "broadcast", "channel": "room", "event": "e", "payload": "kept", "ref": 2}
    await service.hub.receive(carl, text(frame))
    await asyncio.sleep(0.01)
    assert carl_box.outcome == "written"
    ack = [orjson.loads(f) for f in carl_box.frames if b'"ack"' in f][0]
    assert ack["id"].endswith("-2")  # the lost id is never handed out again
    assert stored_ids(tmp_path / "db.sqlite") == [2]
    service.release()
