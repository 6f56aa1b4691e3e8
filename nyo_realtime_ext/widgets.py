"""Presence and chat in a notebook, from standard ipywidgets only.

No custom JavaScript: the widgets are boxes of `HTML`, `Dropdown`, `Text` and
`Button`, so they render wherever ipywidgets do (JupyterLab, Notebook 7,
VS Code, Voilà) without installing a front-end extension.

Threads: the client runs on its own thread (see `client.ThreadedClient`), and
its callbacks update these widgets there. ipykernel hands every IOPub message
to its IO thread, so a trait set from the client's thread reaches the front
end; one lock keeps our own updates from interleaving.
"""

from __future__ import annotations

import colorsys
import datetime as dt
import hashlib
import html
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from traitlets import Dict, Enum, List, Unicode

from .client import SyncChannel, ThreadedClient, shared_client
from .constants import STATUSES

STATUS_COLORS = {"online": "#2e7d32", "away": "#f9a825", "busy": "#c62828", "offline": "#9e9e9e"}
CHAT_EVENT = "chat:message"

_lock = threading.RLock()
# Widgets on the same client and channel share one subscription; the last one
# to close unsubscribes.
_channel_users: dict[tuple[int, str], int] = {}


def initials(name: str) -> str:
    parts = [p for p in name.replace("_", " ").replace(".", " ").split() if p]
    if not parts:
        return "?"
    if len(parts) == 1:
        return parts[0][:2].upper()
    return (parts[0][0] + parts[-1][0]).upper()


def user_color(user_id: str) -> str:
    """A stable colour per user: the same person looks the same everywhere."""
    hue = int(hashlib.sha1(user_id.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hls_to_rgb(hue, 0.42, 0.55)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def avatar_html(member: dict[str, Any], size: int = 28) -> str:
    user_id = str(member.get("userId", ""))
    name = str(member.get("name") or user_id)
    color = html.escape(str(member.get("color") or user_color(user_id)))
    status = member.get("status")
    title = html.escape(f"{name} ({status})" if status else name)
    dot = ""
    if status:  # only presence knows a status; a chat line's avatar has none
        dot = (
            f'<span style="position:absolute;right:-1px;bottom:-1px;width:{size // 3}px;'
            f"height:{size // 3}px;border-radius:50%;"
            f"background:{STATUS_COLORS.get(str(status), STATUS_COLORS['offline'])};"
            f'border:2px solid white"></span>'
        )
    return (
        f'<span title="{title}" style="position:relative;'
        f"display:inline-flex;align-items:center;justify-content:center;width:{size}px;"
        f"height:{size}px;border-radius:50%;background:{color};color:white;"
        f'font:600 {size * 0.42:.0f}px sans-serif;flex:none">{html.escape(initials(name))}'
        f"{dot}</span>"
    )


class _ChannelWidget(widgets.VBox):
    """A box bound to one channel of a `ThreadedClient`; closing it unsubscribes."""

    channel_name = Unicode(read_only=True)

    def __init__(
        self, channel: str | SyncChannel, client: ThreadedClient | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(channel, SyncChannel):
            self._client = channel.client
            self._channel = channel
        else:
            self._client = client if client is not None else shared_client()
            self._channel = self._client.channel(channel)
        self.set_trait("channel_name", self._channel.name)
        self._key = (id(self._client), self._channel.name)
        with _lock:
            _channel_users[self._key] = _channel_users.get(self._key, 0) + 1
        self._offs: list[Callable[[], None]] = []
        self._closed = False

    @property
    def channel(self) -> SyncChannel:
        return self._channel

    @property
    def client(self) -> ThreadedClient:
        return self._client

    def _listen(self, event: str, callback: Callable[..., None]) -> None:
        def guarded(*args: Any) -> None:
            with _lock:
                if not self._closed:
                    callback(*args)

        self._offs.append(self._channel.on(event, guarded))

    def close(self) -> None:
        with _lock:
            if self._closed:
                super().close()
                return
            self._closed = True
            users = _channel_users.get(self._key, 1) - 1
            if users <= 0:
                _channel_users.pop(self._key, None)
            else:
                _channel_users[self._key] = users
        for off in self._offs:
            off()
        if users <= 0:
            self._channel.unsubscribe_nowait()
        for child in self.children:
            child.close()
        super().close()


class PresenceWidget(_ChannelWidget):
    """Who is on a presence channel, with initials-and-colour avatars, a status
    dot each, and a picker for one's own status.

    `members` is the member list of docs/protocol.md; setting `status` (or using the
    picker) updates one's own status on the channel.
    """

    members = List(Dict())
    status = Enum(STATUSES, default_value="online")

    def __init__(
        self, channel: str | SyncChannel, client: ThreadedClient | None = None, **kwargs: Any
    ) -> None:
        super().__init__(channel, client, **kwargs)
        self._title = widgets.HTML()
        self._list = widgets.HTML()
        self._picker = widgets.Dropdown(
            options=list(STATUSES), value="online", description="Me:", layout={"width": "180px"}
        )
        self.children = [self._title, self._list, self._picker]
        self._picker.observe(self._picked, "value")
        self.observe(self._status_changed, "status")
        with _lock:
            self._listen("members", self._on_members)
            self._on_members(self._channel.members)

    @property
    def me(self) -> str | None:
        user = self._client.user
        return user.get("userId") if user else None

    def _on_members(self, members: list[dict[str, Any]]) -> None:
        members = sorted(members, key=lambda m: (str(m.get("name", "")).lower(), m.get("userId")))
        self.members = members
        mine = next((m for m in members if m.get("userId") == self.me), None)
        if mine is not None and mine.get("status") in STATUSES:
            self._updating_from_server = True
            try:
                self.status = mine["status"]
            finally:
                self._updating_from_server = False
        self._render()

    def _render(self) -> None:
        name = html.escape(self._channel.name)
        count = len(self.members)
        self._title.value = (
            f"<b>{name}</b> &middot; {count} {'person' if count == 1 else 'people'} here"
        )
        rows = []
        for member in self.members:
            label = html.escape(str(member.get("name") or member.get("userId")))
            you = " <i>(you)</i>" if member.get("userId") == self.me else ""
            status = html.escape(str(member.get("status", "")))
            rows.append(
                '<div style="display:flex;align-items:center;gap:8px;margin:3px 0">'
                f"{avatar_html(member)}<span>{label}{you}</span>"
                f'<span style="color:#757575;font-size:85%">{status}</span></div>'
            )
        self._list.value = "".join(rows) or "<i>nobody yet</i>"

    _updating_from_server = False

    def _picked(self, change: dict[str, Any]) -> None:
        self.status = change["new"]

    def _status_changed(self, change: dict[str, Any]) -> None:
        status = change["new"]
        self._picker.value = status
        if not self._updating_from_server:
            self._channel.update_status_nowait(status)


class ChatWidget(_ChannelWidget):
    """A channel's chat: its history on open, then live messages with author and
    time, a text box and a send button.

    `messages` holds the channel's `chat:message` messages (dicts of
    docs/protocol.md); `send(text)` publishes one and returns its id.
    """

    messages = List(Dict())

    def __init__(
        self,
        channel: str | SyncChannel,
        client: ThreadedClient | None = None,
        *,
        height: str = "240px",
        max_messages: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(channel, client, **kwargs)
        # Every message re-renders the log: keep it to what a person scrolls through.
        self._max_messages = max_messages
        self._log = widgets.HTML(layout={"height": height, "overflow_y": "auto"})
        self._text = widgets.Text(placeholder="Say something", layout={"flex": "1"})
        self._button = widgets.Button(description="Send", button_style="primary")
        self._notice = widgets.HTML()
        self.children = [self._log, widgets.HBox([self._text, self._button]), self._notice]
        self._button.on_click(self._clicked)
        self._ids: set[str] = set()
        with _lock:
            self._listen(CHAT_EVENT, self._on_message)
            self._listen("subscribed", self._on_subscribed)
            self._listen("members", lambda members: self._render())
            history = [m for m in self._channel.messages if m.get("event") == CHAT_EVENT]
            history = history[-max_messages:]
            self._ids = {m["id"] for m in history}
            self.messages = history
            self._render()

    def send(self, text: str, timeout: float | None = None) -> str:
        """Publish `chat:message` with `{"text": text}`; returns the message id once acked."""
        return self._channel.send(CHAT_EVENT, {"text": text}, timeout)

    def _clicked(self, _button: Any) -> None:
        text = self._text.value.strip()
        if not text:
            return
        self._text.value = ""
        # Not `send`: a click handler must not block the kernel on the network.
        future = self._channel.send_nowait(CHAT_EVENT, {"text": text})
        future.add_done_callback(self._sent)

    def _sent(self, future: Any) -> None:
        error = future.exception()
        with _lock:
            self._notice.value = (
                f'<span style="color:#c62828">not sent: {html.escape(str(error))}</span>'
                if error
                else ""
            )

    def _on_message(self, message: dict[str, Any]) -> None:
        if message["id"] in self._ids:
            return
        self._ids.add(message["id"])
        kept = [*self.messages, message][-self._max_messages :]
        if len(kept) <= len(self.messages):
            self._ids.discard(self.messages[0]["id"])
        self.messages = kept
        self._render()

    def _on_subscribed(self, frame: dict[str, Any]) -> None:
        if frame.get("recovered") is False:
            self._notice.value = "<i>Reconnected; some earlier messages could not be recovered.</i>"

    def _names(self) -> dict[str, str]:
        return {m["userId"]: str(m.get("name") or m["userId"]) for m in self._channel.members}

    def _render(self) -> None:
        names = self._names()
        rows = []
        for message in self.messages:
            sender = message.get("from") or {}
            user_id = str(sender.get("userId", "server"))
            author = names.get(user_id, user_id)
            when = dt.datetime.fromtimestamp(message.get("ts", 0) / 1000).strftime("%H:%M")
            payload = message.get("payload")
            text = payload.get("text", "") if isinstance(payload, dict) else payload
            rows.append(
                '<div style="display:flex;gap:8px;margin:4px 0;align-items:flex-start">'
                f"{avatar_html({'userId': user_id, 'name': author}, 22)}<div>"
                f"<b>{html.escape(author)}</b> "
                f'<span style="color:#757575;font-size:80%">{when}</span><br>'
                f"{html.escape(str(text))}</div></div>"
            )
        self._log.value = "".join(rows) or "<i>no messages yet</i>"
