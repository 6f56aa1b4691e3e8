"""A channel's shared state as a live mapping (docs/protocol.md, "Shared state").

Reads are local: the mapping holds what the server's `state` snapshot and every
`state:changed` since said. Writes (`set`, `delete`, `compare_and_set`) go through
the server, which numbers them in the channel's one order; the mapping changes when
the server says so (the `state:changed` of one's own write, or its `ack`, whichever
comes first), never before, so every client shows the same value for the same
version.

After a reconnect the channel is resubscribed with `since` (the last id seen, of a
message or a `state:changed`), and the server sends what changed meanwhile, or the
whole state. Each entry is applied only when its version is newer than the one held
(versions are numbers of the channel's sequence), so a change is never applied
twice, nor an older one over a newer, and an `observe` callback runs once per change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import RequestError
from .events import Emitter

if TYPE_CHECKING:
    from .channel import Channel

#: The event `observe` listens to for every key.
ANY_KEY = None


class Conflict(RequestError):
    """A `compare_and_set` whose version was not the entry's: nothing changed.
    `entry` is the entry as the server has it now (None: the key is absent)."""

    def __init__(self, message: str, entry: dict[str, Any] | None) -> None:
        super().__init__("conflict", message)
        self.entry = entry


def _position(version: str) -> tuple[str, int]:
    epoch, _, seq = version.rpartition("-")
    return epoch, int(seq) if seq.isdigit() else -1


def newer(version: str, than: str | None) -> bool:
    """Whether `version` comes after `than` in the channel's order (a version of
    another epoch is taken as newer: the server's sequence started over)."""
    if than is None:
        return True
    (epoch, seq), (held_epoch, held_seq) = _position(version), _position(than)
    return epoch != held_epoch or seq > held_seq


class SharedState(Mapping[str, Any], Emitter):
    """The live state of one channel; use it on the client's loop (see `SyncState`
    for the threaded face). A mapping of key to value, plus `entry(key)` (value,
    version and writer), `version(key)`, the writes, and `observe`."""

    def __init__(self, channel: Channel) -> None:
        Emitter.__init__(self)
        self.channel = channel
        self._entries: dict[str, dict[str, Any]] = {}
        # The version of every key this client knows of, deleted keys included, so
        # that a late echo of an older write never brings a value back.
        self._versions: dict[str, str] = {}
        #: True once the first snapshot arrived.
        self.loaded = False

    # -- reads ------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._entries[key]["value"]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, key: str) -> dict[str, Any] | None:
        """`{"key", "value", "version", "from"}` of `key`, or None."""
        found = self._entries.get(key)
        return dict(found) if found is not None else None

    def version(self, key: str) -> str | None:
        found = self._entries.get(key)
        return found["version"] if found is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {key: entry["value"] for key, entry in self._entries.items()}

    def __repr__(self) -> str:
        return f"<SharedState {self.channel.name!r} {self.to_dict()!r}>"

    # -- writes -------------------------------------------------------------------------

    async def set(self, key: str, value: Any, timeout: float | None = None) -> str:
        """Set `key` (None deletes it) and wait for the server; returns the version.
        Raises `RequestError` when refused (forbidden, payload_too_large, ...)."""
        return await self._write(key, value, None, timeout)

    async def delete(self, key: str, timeout: float | None = None) -> str:
        return await self._write(key, None, None, timeout)

    async def compare_and_set(
        self, key: str, value: Any, if_version: str | None, timeout: float | None = None
    ) -> str:
        """Set `key` only if its version is `if_version` (None: only if it is absent);
        raises `Conflict`, with the entry as it is, otherwise."""
        return await self._write(key, value, if_version or "", timeout)

    async def _write(
        self, key: str, value: Any, if_version: str | None, timeout: float | None
    ) -> str:
        client = self.channel.client
        timeout = client._timeout(timeout)
        await self.channel._ready(timeout)
        frame: dict[str, Any] = {
            "type": "state:set",
            "channel": self.channel.name,
            "key": key,
            "value": value,
        }
        if if_version is not None:
            frame["ifVersion"] = if_version
        ref, future = await client._start_request(frame)
        try:
            reply = await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            client._pending.pop(ref, None)
        if reply.get("type") == "error":
            code, message = str(reply.get("code")), str(reply.get("message"))
            if code == "conflict":
                raise Conflict(message, reply.get("entry"))
            raise RequestError(code, message)
        version = str(reply["id"])
        sender = {"userId": (client.user or {}).get("userId"), "connectionId": client.connection_id}
        # Applied now if its `state:changed` has not come yet (it says the same).
        self._apply({"key": key, "value": value, "version": version, "from": sender})
        return version

    # -- observing ----------------------------------------------------------------------

    def observe(
        self, key: str | None, callback: Callable[[str, Any, dict[str, Any]], Any]
    ) -> Callable[[], None]:
        """Call `callback(key, value, entry)` on each change of `key` (None: of any key),
        after the mapping holds it; a deletion has value None. Returns a remover."""
        return self.on(_event(key), callback)

    # -- frames from the channel ---------------------------------------------------------

    def _on_snapshot(self, frame: dict[str, Any]) -> None:
        entries = [e for e in frame.get("entries", ()) if isinstance(e, dict)]
        if frame.get("complete", True):
            present = {e.get("key") for e in entries}
            for key in [k for k in self._entries if k not in present]:
                # Gone while we were away (or forgotten deletions): deleted here too.
                gone = self._entries[key]
                self._apply(
                    {"key": key, "value": None, "version": gone["version"], "from": None},
                    force=True,
                )
        for entry in entries:
            self._apply(entry)
        self.loaded = True
        self.emit("loaded", self.to_dict())

    def _on_changed(self, frame: dict[str, Any]) -> None:
        self._apply({k: frame.get(k) for k in ("key", "value", "version", "from")})

    def _apply(self, entry: dict[str, Any], force: bool = False) -> None:
        key, version = entry.get("key"), entry.get("version")
        if not isinstance(key, str) or not isinstance(version, str):
            return
        if not force and not newer(version, self._versions.get(key)):
            return  # had already, or older than what is held
        self._versions[key] = version
        if entry.get("value") is None:
            if self._entries.pop(key, None) is None and not force:
                return  # a deletion of what we never had changes nothing we show
        else:
            self._entries[key] = dict(entry)
        self.emit(_event(key), key, entry.get("value"), dict(entry))
        self.emit(_event(None), key, entry.get("value"), dict(entry))


def _event(key: str | None) -> str:
    return "*" if key is None else f"key:{key}"
