"""The sending path both WebSocket transports share: frame once, commit, then
write once per client per burst.

The hub hands every subscriber of a message the same encoded bytes. Here they
are framed once (`Writer.framed`: a server's frames are unmasked and, with
compression off, the same bytes for every client), queued in each client's
`Outbox`, and written when the burst ends: one `write` per client for all the
frames the burst brought it, instead of one per frame. A write is a syscall,
and for a fan-out it is most of the cost: one per subscriber per publish made
a delivery cost several times what one per burst does.

A burst is what the event loop handles before the writer's turn comes: the
frames of one read from a client (`wire.WireSocket` handles every frame
parsed from a read in one task, so a read of publishes is one burst), or one
read from Redis. At low load a burst is one frame and nothing waits. With
`Realtime.write_delay` above 0 the writer's turn comes that much later instead,
so a busy server writes less often for the price of that latency on every frame.

The rules that hold whatever the transport:

* **Commit before write.** The writer commits what the engine handed out in the
  burst (the memory engine's group commit) before any frame of it leaves, so no
  client sees an id a crash could take back. If the commit fails, every waiting
  outbox is abandoned: its client is closed with 1011 and recovers.
* **Order per connection.** An outbox is written whole, in the order `send` was
  called, and an early write (`FLUSH_BYTES`, a close) writes what came before.
* **Bounded.** What is queued plus what the client has not taken never passes
  `max_send_buffer`: the client is cut with 4429 first, and the others are not
  held back (the hub sizes recoveries to fit, see `hub.dispatch.Dispatch._missed`).

A transport gives its `Outbox` a `Transport`: four methods that move bytes and
say how far behind the client is. It gives the hub a `Connection` whose `send`
and `backlog` are the outbox's.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Protocol

from .engines import Engine
from .protocol import CloseCode

log = logging.getLogger(__name__)

# An outbox this full is written at once rather than at the burst's end: a long
# burst reaches the client in pieces of about this size, and never waits whole.
FLUSH_BYTES = 256 * 1024


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked, uncompressed text frame (RFC 6455, section 5.2)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class Transport(Protocol):
    """What an `Outbox` needs of the connection it writes to."""

    def transmit(self, data: bytes) -> None:
        """Hand `data` to the socket (it may keep what the kernel does not take yet)."""

    def unsent(self) -> int:
        """Bytes handed to the socket that the client has not taken yet."""

    def sending(self) -> bool:
        """False once no data frame may follow (our close is out, or the socket is gone)."""

    def cut(self, code: int, reason: str) -> None:
        """The client must go (too slow, or its frames were lost): end it with `code`."""


class Writer:
    """One per process: ends each burst with one commit of what the engine handed
    out in it, then one write per outbox that has frames.

    The memory engine books the burst's end on every append (`book`), so a
    message nobody is sent is committed all the same.
    """

    def __init__(self, engine: Engine, write_delay: float = 0.0) -> None:
        self.engine = engine
        self.write_delay = write_delay
        self._waiting: list[Outbox] = []
        self._booked = False
        # The hub hands the same bytes object to every subscriber of a message in
        # a row, so remembering the last one frames each message once. Holding the
        # reference keeps `is` from matching a recycled object.
        self._last: tuple[bytes, bytes] = (b"", b"")

    def framed(self, payload: bytes) -> bytes:
        if self._last[0] is not payload:
            self._last = (payload, text_frame(payload))
        return self._last[1]

    def book(self) -> None:
        """Make sure this burst ends with a commit and the writes that wait for it."""
        if not self._booked:
            self._booked = True
            loop = asyncio.get_running_loop()
            if self.write_delay > 0:
                loop.call_later(self.write_delay, self._end_burst)
            else:
                loop.call_soon(self._end_burst)

    def wait(self, outbox: Outbox) -> None:
        """`outbox` has its first frame of this burst."""
        self._waiting.append(outbox)
        self.book()

    def commit_now(self) -> None:
        """For an answer that leaves at once rather than through an outbox (HTTP, the
        application's own code): make what the engine handed out so far durable
        first, so that no id is shown that a crash could take back. Raises if the
        commit fails (then nothing of it is shown: the caller answers an error)."""
        self.engine.commit()

    def write_now(self, outbox: Outbox) -> None:
        """Before the burst ends (the outbox is full, or its connection closes):
        what it holds goes out now, after the commit it depends on."""
        self._deliver(outbox, self._commit())

    def _end_burst(self) -> None:
        self._booked = False
        waiting, self._waiting = self._waiting, []
        committed = self._commit()
        for outbox in waiting:
            self._deliver(outbox, committed)

    def _commit(self) -> bool:
        try:
            self.engine.commit()
        except Exception:
            log.exception("commit failed: the messages of this burst are dropped")
            self.engine.rollback()
            return False
        return True

    @staticmethod
    def _deliver(outbox: Outbox, committed: bool) -> None:
        try:
            if committed:
                outbox.write()
            else:
                outbox.abandon()
        except Exception:  # one connection's trouble must not strand the others
            log.exception("writing to a client failed")


class Outbox:
    """One connection's frames waiting for the end of the burst."""

    # Slots, not a dict: a server keeps one per idle connection.
    __slots__ = ("_writer", "_transport", "_frames", "_queued", "_limit")

    def __init__(self, writer: Writer, transport: Transport, max_send_buffer: int) -> None:
        self._writer = writer
        self._transport = transport
        self._frames: list[bytes] | None = None  # None: nothing waits, not booked
        self._queued = 0  # bytes in _frames
        self._limit = max_send_buffer  # checked on every frame: a plain number

    def send(self, data: bytes) -> None:
        """Queue one frame (`data`, encoded JSON) for the end of the burst."""
        frames = self._frames
        if frames is None:
            if not self._transport.sending():
                return
            frames = self._frames = []
            self._queued = 0
            self._writer.wait(self)
        frame = self._writer.framed(data)
        frames.append(frame)
        self._queued += len(frame)
        if self._queued + self._transport.unsent() > self._limit:
            self.drop(CloseCode.TOO_MANY, "too slow to read")
        elif self._queued >= FLUSH_BYTES:
            self._writer.write_now(self)

    def backlog(self) -> int:
        """Bytes queued here or in the socket that the client has not taken."""
        return self._queued + self._transport.unsent()

    def flush(self) -> None:
        """Before a close: what the client was sent goes out first."""
        if self._frames:
            self._writer.write_now(self)

    def write(self) -> None:
        """The burst's commit is done: write what is queued, in one write."""
        frames, self._frames, self._queued = self._frames, None, 0
        if frames and self._transport.sending():
            self._transport.transmit(frames[0] if len(frames) == 1 else b"".join(frames))

    def abandon(self) -> None:
        """The burst's commit failed: its frames carry ids that do not exist."""
        self.drop(CloseCode.INTERNAL_ERROR, "internal error; reconnect and recover")

    def discard(self) -> None:
        """The connection is gone: nothing queued can be written."""
        self._frames, self._queued = None, 0

    def drop(self, code: int, reason: str) -> None:
        """Cut the client with `code`; what is queued is dropped."""
        self._frames, self._queued = None, 0
        self._transport.cut(code, reason)
