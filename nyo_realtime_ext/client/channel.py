"""One subscribed channel of a `RealtimeClient`: its messages (each once, in order),
its members, and what the application calls on it."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from .errors import ClientClosed, ConnectionLost, RealtimeError, RequestError
from .events import Emitter
from .state import SharedState

if TYPE_CHECKING:  # the client makes its channels; a channel only calls back
    from .aio import RealtimeClient

#: `since` that no server knows: the server answers with every message it still
#: retains (docs/protocol.md, "Messages, ids and recovery"). A first subscribe uses it
#: to learn the channel's history and its last id, so that a reconnect right
#: after can ask for exactly what it missed.
FROM_START = ""

#: Events a channel emits about itself; any other name passed to `Channel.on`
#: is a message event (`chat:message`, ...).
CHANNEL_EVENTS = frozenset(
    {"message", "members", "user:joined", "user:left", "presence:updated", "subscribed", "error"}
)


class Channel(Emitter):
    """One subscribed channel of a `RealtimeClient`; use it on the client's loop.

    `messages` holds what arrived (history first when asked for), at most
    `max_messages` of them; `members` the presence list. Events for `on`:
    ``message`` (every message), an event name such as ``chat:message`` (the
    messages of that event), ``user:joined`` / ``user:left`` /
    ``presence:updated`` (a member dict), ``members`` (the whole list after any
    change), ``subscribed`` (the `subscribed` frame, after every (re)subscribe;
    check its ``recovered``) and ``error``.
    """

    def __init__(self, client: RealtimeClient, name: str, history: bool, max_messages: int) -> None:
        super().__init__()
        self.client = client
        self.name = name
        self.type: str | None = None
        self.messages: list[dict[str, Any]] = []
        self.members: list[dict[str, Any]] = []
        self.last_id: str | None = None
        #: False after a resubscribe the server could not fully replay.
        self.recovered = True
        self.subscribed = asyncio.Event()
        self.active = True
        #: Why the server refused the subscription, if it did.
        self.failure: RequestError | None = None
        self._failed = asyncio.Event()
        self._history = history
        self._first_subscribe = True
        self._max_messages = max_messages
        # Ids delivered lately: a replay after `recovered: false` resends what
        # the server still has, and none of it may reach the application twice.
        self._seen: deque[str] = deque(maxlen=max(1000, max_messages))
        self._seen_set: set[str] = set()
        # One's own status and meta as last set here: put back after a reconnect,
        # when the server has made us a fresh member ("online", empty meta).
        self._presence: dict[str, Any] = {}
        #: The channel's shared state, once asked for (`RealtimeClient.shared_state`).
        self.state: SharedState | None = None

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} subscribed={self.subscribed.is_set()}>"

    # -- application calls -------------------------------------------------------

    async def send(self, event: str, payload: Any = None, timeout: float | None = None) -> str:
        """Publish and wait for the server's `ack`; returns the message id.

        Waits for the connection first if it is down. `timeout` (default: the
        client's `request_timeout`, 10 s) bounds that wait and the wait for the
        ack. Raises `ConnectionLost` when the connection drops before the ack
        (the outcome is then unknown), `RequestError` when the server refuses,
        `ClientClosed` when the client is closed.
        """
        timeout = self.client._timeout(timeout)
        await self._ready(timeout)
        reply = await self.client.request(
            {"type": "broadcast", "channel": self.name, "event": event, "payload": payload},
            timeout,
        )
        return reply["id"]

    async def update_status(
        self,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Set one's own status (one of `STATUSES`) and/or meta; returns the members.

        Remembered, so that a reconnect puts them back instead of "online".
        """
        timeout = self.client._timeout(timeout)
        update: dict[str, Any] = {}
        if status is not None:
            update["status"] = status
        if meta is not None:
            update["meta"] = meta
        before = dict(self._presence)
        self._presence.update(update)
        try:
            await self._ready(timeout)
            reply = await self.client.request(
                {"type": "presence", "channel": self.name, **update}, timeout
            )
        except RequestError:
            self._presence = before  # refused: nothing to put back later
            raise
        self._set_members(reply["members"])
        return self.members

    async def unsubscribe(self, timeout: float | None = None) -> None:
        """Leave the channel; it is not resubscribed after a reconnect."""
        self.active = False
        self.client._channels.pop(self.name, None)
        if self.subscribed.is_set():
            self.subscribed.clear()
            try:
                await self.client.request(
                    {"type": "unsubscribe", "channel": self.name}, self.client._timeout(timeout)
                )
            except (ConnectionLost, ClientClosed):
                pass  # the server forgets the subscription with the connection

    async def _ready(self, timeout: float | None) -> None:
        if self.failure is not None and not self.active:  # refused, or put out
            raise self.failure
        if not self.active:
            raise RealtimeError(f"channel {self.name!r} was unsubscribed")
        if not self.subscribed.is_set():
            await self.client._wait_for(self.subscribed, timeout, self._failed)
        if self.failure is not None:
            raise self.failure

    # -- frames from the client's reader -------------------------------------------

    def _subscribe_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "channel": self.name}
        if self.state is not None:
            frame["state"] = True
        if self.last_id is not None:
            frame["since"] = self.last_id
        elif self._history or not self._first_subscribe:
            # Nothing seen yet: everything the server retains is new to us.
            # After a reconnect this may include messages from before the
            # first subscribe of a channel opened without history.
            frame["since"] = FROM_START
        return frame

    def _on_subscribed(self, frame: dict[str, Any]) -> None:
        self.type = frame.get("channelType")
        first = self._first_subscribe
        self._first_subscribe = False
        # Only a resubscribe from a real id can tell that something was lost;
        # FROM_START is always "unrecovered" to the server, yet loses nothing.
        self.recovered = bool(frame.get("recovered", True)) if self._asked_since else True
        if "members" in frame:
            self._set_members(frame["members"])
        self.emit("subscribed", {**frame, "recovered": self.recovered, "resubscribed": not first})

    def _on_put_out(self, frame: dict[str, Any]) -> None:
        """The server ended the subscription (rights withdrawn): not resubscribed."""
        reason = frame.get("reason") or "unsubscribed"
        self.active = False
        self.subscribed.clear()
        self.client._channels.pop(self.name, None)
        self.failure = RequestError(reason, f"the server ended the subscription ({reason})")
        self._failed.set()
        self.emit("unsubscribed", frame)

    def _on_message(self, frame: dict[str, Any]) -> None:
        message_id = frame.get("id")
        if not isinstance(message_id, str) or message_id in self._seen_set:
            return
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(message_id)
        self._seen_set.add(message_id)
        self.last_id = message_id
        message = {k: v for k, v in frame.items() if k != "type"}
        self.messages.append(message)
        if len(self.messages) > self._max_messages:
            del self.messages[: len(self.messages) - self._max_messages]
        self.emit("message", message)
        event = message.get("event")
        if isinstance(event, str) and event not in CHANNEL_EVENTS:
            self.emit(event, message)

    def _on_state(self, frame: dict[str, Any]) -> None:
        if self.state is not None:
            self.state._on_snapshot(frame)

    def _on_state_changed(self, frame: dict[str, Any]) -> None:
        if self.state is None:
            return
        version = frame.get("version")
        if isinstance(version, str):
            # Numbered in the channel's one sequence, as message ids: resubscribing
            # from it asks for the messages and the state written after it.
            self.last_id = version
        self.state._on_changed(frame)

    def _on_member(self, type_: str, member: dict[str, Any]) -> None:
        others = [m for m in self.members if m.get("userId") != member.get("userId")]
        if type_ != "user:left":
            others.append(member)
        self.members = others
        self.emit(type_, member)
        self.emit("members", list(self.members))

    def _set_members(self, members: list[dict[str, Any]]) -> None:
        self.members = list(members)
        self.emit("members", list(self.members))

    def _on_disconnect(self) -> None:
        self.subscribed.clear()

    _asked_since = False
