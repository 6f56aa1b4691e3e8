"""`link(widget, channel)`: traits of any ipywidget kept equal in every kernel, of any
user on any server that shares the engine, linking the same channel and key.

The traits live as one entry of the channel's shared state (docs/protocol.md, "Shared
state"): `{name: value}` under `key`. The server's order decides: every kernel ends
showing the entry's latest version.

- **A local change is sent**, coalesced: at most `rate` writes a second while a
  slider is dragged, each carrying the traits as they are when it leaves, so the last
  value always wins; nothing waits in a queue.
- **A remote change is applied** to the widget, unless a local change is still on
  its way (the next write carries it, and then the widget shows what the server has).
  Applying it does not send it back: the change handler sees the values it was just
  given.
- **A kernel that links late** starts from the entry; the first kernel to link a key
  puts its widget's values there.
- `unlink()` stops both directions.

Threads: writes go from the client's thread (`client.ThreadedClient`), and remote
changes are applied there too; ipykernel sends trait changes from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from .client import SyncState, ThreadedClient, shared_client

log = logging.getLogger(__name__)

#: Writes a second while a linked trait changes continuously (a dragged slider).
DEFAULT_RATE = 10.0


class Link:
    """What `link` made: `unlink()` ends it. `key` is the state entry it keeps."""

    def __init__(
        self,
        widget: Any,
        state: SyncState,
        client: ThreadedClient,
        names: tuple[str, ...],
        key: str,
        rate: float,
    ) -> None:
        self.widget = widget
        self.state = state
        self.names = names
        self.key = key
        self._client = client
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._lock = threading.Lock()
        self._applying: dict[str, Any] | None = None  # values being set from the entry
        self._dirty = False  # a local change not sent yet
        self._sending = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_sent = 0.0
        self.linked = True
        #: Writes sent, for whoever wants to see the coalescing at work.
        self.writes = 0
        current = state.get(key)
        if isinstance(current, dict):
            self._show(current)
        widget.observe(self._on_local, names=list(names))
        self._off = state.observe(key, self._on_remote)
        if not isinstance(current, dict):
            self._on_local(None)  # the first to link: the widget's values are the entry

    # -- local changes -> the server --------------------------------------------------

    def _values(self) -> dict[str, Any]:
        return {name: _wire(getattr(self.widget, name)) for name in self.names}

    def _on_local(self, change: Any) -> None:
        with self._lock:
            if not self.linked:
                return
            if self._applying is not None and self._values() == self._applying:
                return  # the entry being shown, not a change of ours
            self._dirty = True
        self._client._loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        """On the client's loop: send now, or at the next slot the rate allows."""
        if not self.linked or self._sending or self._timer is not None or not self._dirty:
            return
        wait = self._last_sent + self._interval - time.monotonic()
        if wait > 0:
            self._timer = asyncio.get_running_loop().call_later(wait, self._send)
        else:
            self._send()

    def _send(self) -> None:
        self._timer = None
        if not self.linked or not self._dirty:
            return
        with self._lock:
            self._dirty = False
            values = self._values()
        self._sending = True
        self._last_sent = time.monotonic()
        self.writes += 1
        task = asyncio.ensure_future(self.state._shared.set(self.key, values))
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Future[str]) -> None:
        self._sending = False
        if not task.cancelled() and task.exception() is not None:
            log.warning("nyo-realtime: link %r could not write: %s", self.key, task.exception())
        if self._dirty:
            self._kick()
        else:
            self._catch_up()

    # -- the server's changes -> the widget ------------------------------------------------

    def _on_remote(self, key: str, value: Any, entry: dict[str, Any]) -> None:
        self._catch_up()

    def _catch_up(self) -> None:
        """Show the entry's latest value, unless a local change is still to be sent."""
        if not self.linked or self._dirty or self._sending:
            return
        current = self.state.get(self.key)
        if isinstance(current, dict):
            self._show(current)

    def _show(self, values: dict[str, Any]) -> None:
        wanted = {name: values[name] for name in self.names if name in values}
        with self._lock:
            if all(_wire(getattr(self.widget, n)) == v for n, v in wanted.items()):
                return
            self._applying = {**self._values(), **wanted}
        try:
            with self.widget.hold_trait_notifications():
                for name, value in wanted.items():
                    current = getattr(self.widget, name)
                    setattr(
                        self.widget, name, tuple(value) if isinstance(current, tuple) else value
                    )
        except Exception:
            log.exception("nyo-realtime: link %r could not apply %r", self.key, wanted)
        finally:
            with self._lock:
                self._applying = None

    # -- the end --------------------------------------------------------------------------

    def unlink(self) -> None:
        """Stop: local changes are no longer sent, remote ones no longer applied."""
        with self._lock:
            if not self.linked:
                return
            self.linked = False
        self.widget.unobserve(self._on_local, names=list(self.names))
        self._off()
        if not self._client.closed:
            self._client._loop.call_soon_threadsafe(self._cancel_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __repr__(self) -> str:
        return f"<Link {self.key!r} on {self.state.name!r} linked={self.linked}>"


def link(
    widget: Any,
    channel: str,
    names: Sequence[str] = ("value",),
    key: str | None = None,
    *,
    client: ThreadedClient | None = None,
    rate: float = DEFAULT_RATE,
) -> Link:
    """Keep `names` (traits) of `widget` equal in every kernel that links `channel`
    and `key` (default: ``"link/" + "+".join(names)``: give each widget of one channel a
    key of its own). `client` defaults to the kernel's shared client (`connect()`'s:
    in a kernel, the Jupyter server it runs under). Returns a `Link`; `unlink()` it."""
    names = tuple(names)
    if not names:
        raise ValueError("link needs at least one trait name")
    for name in names:
        if not widget.has_trait(name):
            raise ValueError(f"{type(widget).__name__} has no trait {name!r}")
    client = client or shared_client()
    state = client.shared_state(channel)
    return Link(widget, state, client, names, key or "link/" + "+".join(names), rate)


def _wire(value: Any) -> Any:
    """A trait value as it comes back from JSON (tuples are lists there)."""
    if isinstance(value, tuple):
        return [_wire(v) for v in value]
    return value
