"""The threaded face: a `RealtimeClient` on an event loop in a thread of its own.

The face for notebooks: ipykernel 7 may not run background asyncio tasks between
cells (ipykernel issue 1510), so a client that lived on the kernel's loop would
go deaf whenever no cell is running. Calls are thread-safe; callbacks run on the
client's thread. `connect()` builds one and, in a kernel, finds the server
(`discovery.discover`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import orjson

from ..constants import ENV_TOKEN
from .aio import ConnectionState, RealtimeClient, TokenProvider
from .channel import Channel
from .discovery import discover
from .errors import ClientClosed
from .events import Callback
from .state import SharedState


class ThreadedClient:
    """A `RealtimeClient` on its own event loop in a daemon thread.

    Every method may be called from any thread; blocking ones wait for the
    client's loop. Callbacks given to `on` run on the client's thread, so they
    should be quick and must not block on this client.
    """

    def __init__(self, url: str, token: str | TokenProvider | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nyo-realtime-client", daemon=True
        )
        self._thread.start()
        auto_connect = options.pop("auto_connect", True)

        async def make() -> RealtimeClient:
            client = RealtimeClient(url, token, auto_connect=False, **options)
            if auto_connect:
                client.start()
            return client

        self.client: RealtimeClient = self._call(make(), None)
        self._channels: dict[str, SyncChannel] = {}
        self._states: dict[str, SyncState] = {}

    def _call(self, coro: Awaitable[Any], timeout: float | None) -> Any:
        if threading.current_thread() is self._thread:
            coro.close()  # type: ignore[attr-defined]
            raise RuntimeError("a blocking ThreadedClient call from its own callback would hang")
        return self._submit(coro).result(timeout)

    def _submit(self, coro: Awaitable[Any]) -> concurrent.futures.Future[Any]:
        if self.closed:
            # A stopped loop would never run it: the caller would wait forever.
            coro.close()  # type: ignore[attr-defined]
            raise ClientClosed("the client was closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    @property
    def closed(self) -> bool:
        """True once `close()` stopped the client's thread."""
        return self._stopped or not self._thread.is_alive()

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def state(self) -> ConnectionState:
        return self.client.state

    @property
    def close_reason(self) -> str | None:
        return self.client.close_reason

    @property
    def user(self) -> dict[str, Any] | None:
        return self.client.user

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Client events (``state``, ``error``); the callback runs on the client's thread."""
        return self._call_soon(self.client.on, event, callback)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return self._call(call(), None)

    def connect(self, timeout: float | None = 30.0) -> ThreadedClient:
        """Wait until authenticated (starts connecting if `auto_connect` was False)."""
        self._call(self.client.connect(timeout), None)
        return self

    def channel(
        self, name: str, *, history: bool = True, timeout: float | None = 30.0
    ) -> SyncChannel:
        """Subscribe (once) and return the channel; blocks until subscribed."""
        existing = self._channels.get(name)
        if existing is not None and existing._channel.active:
            return existing
        channel = self._call(self.client.channel(name, history=history, timeout=timeout), None)
        self._channels[name] = SyncChannel(self, channel)
        return self._channels[name]

    subscribe = channel

    def shared_state(self, name: str, *, timeout: float | None = 30.0) -> SyncState:
        """The channel's shared state, a live mapping; blocks until its snapshot is in."""
        existing = self._states.get(name)
        if existing is not None and existing._channel.active:
            return existing
        shared = self._call(self.client.shared_state(name, timeout=timeout), None)
        self._states[name] = SyncState(self, shared)
        return self._states[name]

    def ping(self, timeout: float | None = None) -> int:
        return self._call(self.client.ping(timeout), None)

    def close(self) -> None:
        """Close the connection and stop the thread."""
        if self.closed:
            return
        try:
            self._call(self.client.close(), 15)
        finally:
            self._stopped = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self) -> ThreadedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ThreadedClient {self.url} {self.state.value}>"


class SyncChannel:
    """The thread-safe face of a `Channel`; see `Channel` for the events."""

    def __init__(self, client: ThreadedClient, channel: Channel) -> None:
        self._client = client
        self._channel = channel
        self.name = channel.name

    @property
    def client(self) -> ThreadedClient:
        return self._client

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self._channel.messages)

    @property
    def members(self) -> list[dict[str, Any]]:
        return list(self._channel.members)

    @property
    def recovered(self) -> bool:
        return self._channel.recovered

    @property
    def last_id(self) -> str | None:
        return self._channel.last_id

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call `callback` on `event` (on the client's thread); returns a remover."""
        off = self._client._call_soon(self._channel.on, event, callback)

        def remove() -> None:
            if not self._client.closed:
                self._client._loop.call_soon_threadsafe(off)

        return remove

    def send(self, event: str, payload: Any = None, timeout: float | None = None) -> str:
        """Publish and block until the `ack`; returns the message id (see `Channel.send`)."""
        return self._client._call(self._channel.send(event, payload, timeout), None)

    def send_nowait(self, event: str, payload: Any = None) -> concurrent.futures.Future[str]:
        """Publish without blocking; the future holds the id or the error."""
        return self._client._submit(self._channel.send(event, payload))

    def update_status(
        self,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        return self._client._call(self._channel.update_status(status, meta, timeout), None)

    def update_status_nowait(
        self, status: str | None = None, meta: dict[str, Any] | None = None
    ) -> concurrent.futures.Future[list[dict[str, Any]]]:
        return self._client._submit(self._channel.update_status(status, meta))

    def unsubscribe(self) -> None:
        self._client._channels.pop(self.name, None)
        if not self._client.closed:
            self._client._call(self._channel.unsubscribe(), 15)

    def unsubscribe_nowait(self) -> None:
        """Unsubscribe without waiting (safe from any thread, even the kernel's shutdown)."""
        self._client._channels.pop(self.name, None)
        if not self._client.closed:
            self._client._submit(self._channel.unsubscribe())

    def wait_for(
        self, predicate: Callable[[SyncChannel], bool], timeout: float = 30.0
    ) -> SyncChannel:
        """Block until `predicate(channel)` holds, re-checked whenever something arrives."""
        changed = threading.Event()
        offs = [self.on(name, lambda *_: changed.set()) for name in ("message", "members")]
        _wait_until(lambda: predicate(self), changed, self.name, timeout, offs)
        return self

    def __repr__(self) -> str:
        return f"<SyncChannel {self.name!r} messages={len(self._channel.messages)} members={len(self._channel.members)}>"


class SyncState(Mapping[str, Any]):
    """The thread-safe face of a `SharedState`: reads are local (a copy of what the
    client's thread holds, taken at once), writes block until the server answers,
    and `observe` callbacks run on the client's thread."""

    def __init__(self, client: ThreadedClient, shared: SharedState) -> None:
        self._client = client
        self._shared = shared
        self._channel = shared.channel
        self.name = shared.channel.name

    @property
    def client(self) -> ThreadedClient:
        return self._client

    def __getitem__(self, key: str) -> Any:
        return self._shared._entries[key]["value"]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._shared._entries))

    def __len__(self) -> int:
        return len(self._shared._entries)

    def entry(self, key: str) -> dict[str, Any] | None:
        return self._shared.entry(key)

    def version(self, key: str) -> str | None:
        return self._shared.version(key)

    def to_dict(self) -> dict[str, Any]:
        return {key: entry["value"] for key, entry in list(self._shared._entries.items())}

    def set(self, key: str, value: Any, timeout: float | None = None) -> str:
        return self._client._call(self._shared.set(key, value, timeout), None)

    def set_nowait(self, key: str, value: Any) -> concurrent.futures.Future[str]:
        """Write without blocking; the future holds the version or the error."""
        return self._client._submit(self._shared.set(key, value))

    def delete(self, key: str, timeout: float | None = None) -> str:
        return self._client._call(self._shared.delete(key, timeout), None)

    def compare_and_set(
        self, key: str, value: Any, if_version: str | None, timeout: float | None = None
    ) -> str:
        """See `SharedState.compare_and_set`; raises `Conflict`."""
        return self._client._call(
            self._shared.compare_and_set(key, value, if_version, timeout), None
        )

    def observe(
        self, key: str | None, callback: Callable[[str, Any, dict[str, Any]], Any]
    ) -> Callable[[], None]:
        """Call `callback(key, value, entry)` on the client's thread on each change of
        `key` (None: any key); returns a remover, safe from any thread."""
        off = self._client._call_soon(self._shared.observe, key, callback)

        def remove() -> None:
            if not self._client.closed:
                self._client._loop.call_soon_threadsafe(off)

        return remove

    def wait_for(self, predicate: Callable[[SyncState], bool], timeout: float = 30.0) -> SyncState:
        """Block until `predicate(state)` holds, re-checked at every change."""
        changed = threading.Event()
        offs = [self.observe(None, lambda *_: changed.set())]
        _wait_until(lambda: predicate(self), changed, self.name, timeout, offs)
        return self

    def __repr__(self) -> str:
        return f"<SyncState {self.name!r} {self.to_dict()!r}>"


def connect(
    url: str | None = None, token: str | TokenProvider | None = None, **options: Any
) -> ThreadedClient:
    """A `ThreadedClient`; with no `url`, the server found by `discover()`.

    Explicit arguments win over `NYO_REALTIME_URL` / `NYO_REALTIME_TOKEN`,
    which win over the running-server files.
    """
    headers = dict(options.pop("headers", None) or {})
    if url is None:
        url, found_token, found_headers = discover()
        if token is None:
            token = found_token
            headers = {**found_headers, **headers}
    elif token is None:
        token = os.environ.get(ENV_TOKEN) or None
    return ThreadedClient(url, token, headers=headers, **options)


_shared: dict[str, ThreadedClient] = {}
_shared_lock = threading.Lock()


def shared_client(options: dict[str, Any] | None = None) -> ThreadedClient:
    """One `ThreadedClient` per set of options, reused by widgets and `use_realtime_channel`."""
    options = dict(options or {})
    key = orjson.dumps(
        {k: v for k, v in options.items() if not callable(v)}, option=orjson.OPT_SORT_KEYS
    ).decode()
    with _shared_lock:
        client = _shared.get(key)
        gone = client is not None and (
            client.closed or (client.state is ConnectionState.CLOSED and client.close_reason)
        )
        if client is None or gone:
            client = _shared[key] = connect(**options)
        return client


def use_realtime_channel(options: dict[str, Any] | None, channel: str) -> SyncChannel:
    """One call from nothing to a live channel, like the seed's `useRealtimeChannel`.

    `options` are `connect()`'s (url, token, reconnect, ...); clients are shared
    between calls with the same options. The channel has `messages`,
    `members`, `send`, `update_status`, `on` and `unsubscribe`.
    """
    options = dict(options or {})
    history = options.pop("history", True)
    return shared_client(options).channel(channel, history=history)


def _wait_until(
    holds: Callable[[], bool],
    changed: threading.Event,
    name: str,
    timeout: float,
    offs: list[Callable[[], None]],
) -> None:
    """Block until `holds()`, re-checked each time `changed` is set (and twice a
    second, in case a change came between a check and the wait); then remove `offs`,
    the observers that set it."""
    try:
        deadline = time.monotonic() + timeout
        while not holds():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met on {name!r} within {timeout} s")
            changed.wait(min(remaining, 0.5))
            changed.clear()
    finally:
        for off in offs:
            off()
