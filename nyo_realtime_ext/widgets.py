"""Presence and chat in a notebook, from standard ipywidgets and one anywidget.

The widgets are boxes of `HTML`, `Dropdown`, `Text`, `Textarea` and `Button`,
and the chat's log is an anywidget (a few lines of JavaScript shipped in this
module): it shows times in the browser's locale, as the JupyterLab panel does,
and follows the newest message unless the reader scrolled up. Both render
wherever ipywidgets do (JupyterLab, Notebook 7, VS Code, Voilà) without a
front-end extension of ours. Messages are Markdown, sanitised, as in the panel
(`chat_render`).

People look the same here as in the JupyterLab extension: the name is the one the
server shows (what they chose, else their identity's), the colour the member's own,
else `colors.user_color(user_id)`, the function every client shares. Two people
whose names look alike (`names.collide`: case, homoglyphs, invisible characters)
are shown with their ids, "Sam (@bob)", in the member list and as chat authors;
anyone's id is on hover.

Kernels are not people (docs/protocol.md, "kind"). A member of kind `kernel` is
listed after the people, marked as a kernel, and never counted as a person.
When this kernel is itself a kernel (a single-user server with token login,
where browsers are anonymous people), whoever reads a widget is a person the
kernel cannot know: nothing is marked "(you)", and a message typed into a
`ChatWidget` is sent by the browser's own realtime connection, through the
JupyterLab extension (the `nyo-realtime:publish` DOM event, see `ChatLog`), so
that it is signed by the person who typed it. Without the extension such a
message is not sent (the kernel would sign it); `ChatWidget.send()`, code the
kernel runs, is the kernel's.

Threads: the client runs on its own thread (see `client.ThreadedClient`), and
its callbacks update these widgets there. ipykernel hands every IOPub message
to its IO thread, so a trait set from the client's thread reaches the front
end; one lock keeps our own updates from interleaving.
"""

from __future__ import annotations

import datetime as dt
import html
import threading
from collections.abc import Callable
from typing import Any

import anywidget
import ipywidgets as widgets
from traitlets import Bool, Dict, Enum, List, Unicode

from .chat_render import render_chat_text
from .client import SyncChannel, ThreadedClient, shared_client
from .colors import is_color, user_color
from .constants import CHAT_EVENT, PERSON, STATUSES
from .names import labelled, look_alikes

STATUS_COLORS = {"online": "#2e7d32", "away": "#f9a825", "busy": "#c62828", "offline": "#9e9e9e"}

_lock = threading.RLock()
# Widgets on the same client and channel share one subscription; the last one
# to close unsubscribes.
_channel_users: dict[tuple[int, str], int] = {}


def is_person(member: dict[str, Any]) -> bool:
    """Whether a member (or a `user`) is a person: `kind` absent or "person"."""
    return member.get("kind", PERSON) == PERSON


def kernel_tag() -> str:
    return '<span class="nyo-kernel-tag" style="color:#757575;font-size:85%">(kernel)</span>'


def initials(name: str) -> str:
    parts = [p for p in name.replace("_", " ").replace(".", " ").split() if p]
    if not parts:
        return "?"
    if len(parts) == 1:
        return parts[0][:2].upper()
    return (parts[0][0] + parts[-1][0]).upper()


__all__ = ["ChatLog", "ChatWidget", "PresenceWidget", "avatar_html", "initials", "user_color"]


def avatar_html(member: dict[str, Any], size: int = 28) -> str:
    user_id = str(member.get("userId", ""))
    name = str(member.get("name") or user_id)
    # Only a colour goes into the style, whatever a member record says (the server
    # accepts no other, but a widget may show members of an older or foreign one).
    own = member.get("color")
    color = html.escape(str(own) if is_color(own) else user_color(user_id), quote=True)
    status = member.get("status")
    # The id on hover: two people may have chosen the same name (and initials).
    who = name if name == user_id else f"{name} ({user_id})"
    title = html.escape(f"{who}, {status}" if status else who)
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

    @property
    def is_kernel(self) -> bool:
        """Whether this kernel is a kernel (not a person's): see the module's docstring."""
        user = self._client.user
        return user is not None and not is_person(user)

    def _on_members(self, members: list[dict[str, Any]]) -> None:
        # People first, then kernels: each by name.
        members = sorted(
            members,
            key=lambda m: (not is_person(m), str(m.get("name", "")).lower(), m.get("userId")),
        )
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
        count = sum(1 for m in self.members if is_person(m))
        kernels = len(self.members) - count
        also = f" &middot; {kernels} kernel{'' if kernels == 1 else 's'}" if kernels else ""
        self._title.value = (
            f"<b>{name}</b> &middot; {count} {'person' if count == 1 else 'people'} here{also}"
        )
        self._picker.description = "Kernel:" if self.is_kernel else "Me:"
        rows = []
        names = [str(m.get("name") or m.get("userId")) for m in self.members]
        people = [(str(m.get("userId")), name) for m, name in zip(self.members, names, strict=True)]
        for member, name in zip(self.members, names, strict=True):
            label = html.escape(name)
            # Two names that look alike (names.py: case, homoglyphs, invisible
            # characters): their ids, which nobody chooses, tell them apart.
            if look_alikes(name, str(member.get("userId")), people):
                label += (
                    f' <span style="color:#757575">(@{html.escape(str(member["userId"]))})</span>'
                )
            mine = member.get("userId") == self.me
            # A kernel cannot know which person reads it: it marks itself, not "you".
            you = (" <i>(this kernel)</i>" if self.is_kernel else " <i>(you)</i>") if mine else ""
            if not is_person(member):
                label += " " + kernel_tag()
            kind = "kernel" if not is_person(member) else "person"
            status = html.escape(str(member.get("status", "")))
            rows.append(
                f'<div class="nyo-widget-member nyo-widget-{kind}" '
                'style="display:flex;align-items:center;gap:8px;margin:3px 0">'
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


class ChatLog(anywidget.AnyWidget):
    """The chat's log: `value` is its HTML (already sanitised). In the browser,
    each `<time data-ts>` shows in the browser's locale, and the log follows the
    newest line while the reader is at the bottom, also once a message has
    grown (an image loaded) or the log is shown again."""

    _esm = """
    const TIME = { hour: 'numeric', minute: '2-digit' };
    export default {
      render({ model, el: view }) {
        // The scrolled box is ours, inside the view's element: ipywidgets applies
        // the widget's Layout to that element after this runs, and an unset
        // `overflow` there removes any overflow set on it (the log then spilled
        // over the text box, and nothing scrolled).
        const el = document.createElement('div');
        el.className = 'nyo-chat-widget-log';
        el.style.overflowY = 'auto';
        view.appendChild(el);
        const content = document.createElement('div');
        el.appendChild(content);
        let atBottom = true;
        let lastTop = 0;
        el.addEventListener('scroll', () => {
          if (el.clientHeight === 0) {
            return;
          }
          // Only scrolling up leaves the bottom; a message that grew does not.
          if (el.scrollHeight - el.scrollTop - el.clientHeight < 20) {
            atBottom = true;
          } else if (el.scrollTop < lastTop) {
            atBottom = false;
          }
          lastTop = el.scrollTop;
        });
        const follow = () => {
          if (atBottom && el.clientHeight > 0) {
            el.scrollTop = el.scrollHeight;
          }
        };
        const draw = () => {
          el.style.height = model.get('height');
          content.innerHTML = model.get('value');
          for (const time of content.querySelectorAll('time[data-ts]')) {
            time.textContent = new Date(Number(time.dataset.ts)).toLocaleTimeString(
              undefined, TIME
            );
          }
          follow();
        };
        const observer = new ResizeObserver(follow);
        observer.observe(el);
        observer.observe(content);
        model.on('change:value', draw);
        model.on('change:height', draw);
        draw();
        // A kernel that is not a person (`relay` names the channel): a message typed
        // here goes out on this browser's own connection, through the JupyterLab
        // extension, signed by whoever typed it. Without the extension nobody takes
        // the event, and the widget's kernel says why it does not send.
        const relay = event => {
          const channel = model.get('relay');
          const root = view.closest('.nyo-chat-widget');
          if (!channel || !root || !root.contains(event.target)) {
            return;
          }
          let box;
          if (event.type === 'keydown') {
            if (event.key !== 'Enter' || event.target.tagName !== 'INPUT'
                || !event.target.closest('.nyo-chat-box')) {
              return;
            }
            box = event.target;
          } else {
            if (!event.target.closest('.nyo-chat-send')) {
              return;
            }
            box = root.querySelector('.nyo-chat-box input, .nyo-chat-box textarea');
          }
          const text = box ? box.value.trim() : '';
          if (!text) {
            return;
          }
          const detail = { channel, event: 'chat:message', payload: { text }, result: null };
          const request = new CustomEvent('nyo-realtime:publish', { detail, cancelable: true });
          document.dispatchEvent(request);
          if (!request.defaultPrevented) {
            return;
          }
          event.preventDefault();
          event.stopImmediatePropagation();
          box.value = '';
          box.dispatchEvent(new Event('input', { bubbles: true }));
          Promise.resolve(detail.result).then(
            () => model.send({ event: 'relayed' }),
            error => model.send({ event: 'relay-error', message: String(error?.message ?? error) })
          );
        };
        document.addEventListener('keydown', relay, true);
        document.addEventListener('click', relay, true);
        return () => {
          el.remove();
          observer.disconnect();
          model.off('change:value', draw);
          model.off('change:height', draw);
          document.removeEventListener('keydown', relay, true);
          document.removeEventListener('click', relay, true);
        };
      }
    };
    """
    value = Unicode("").tag(sync=True)
    height = Unicode("240px").tag(sync=True)
    # The channel a message typed in the browser is published on by the browser
    # itself (the JupyterLab extension); "" while the kernel is a person.
    relay = Unicode("").tag(sync=True)


class ChatWidget(_ChannelWidget):
    """A channel's chat: its history on open, then live messages with author and
    time, a text box and a send button.

    `messages` holds the channel's `chat:message` messages (dicts of
    docs/protocol.md); `send(text)` publishes one and returns its id.

    Typing, as far as ipywidgets allows without front-end code of our own:

    - In the one-line box (the default), **Enter sends**, as does the Send button.
      ipywidgets gives Python no key events, only the `Text` box's "submit" on
      Enter, and it cannot tell Shift+Enter from Enter: **Shift+Enter sends too**
      and cannot add a line.
    - For a message of several lines, the ¶ toggle (or `multiline = True`) turns
      the box into a `Textarea`: there **Enter and Shift+Enter add a line** and
      **only the Send button sends** (a textarea sends no key event at all).
      Turning it off again joins the lines with spaces.

    The log shows each message as the JupyterLab panel does: Markdown, sanitised
    (nothing that runs; an image from another site shows as a link), each newline
    a line break, plain text past 16 KiB; times in the browser's locale. It
    follows the newest message unless one has scrolled up. Authors show with the name and colour others
    see on the channel (renames show live), with the user id where two names look
    alike; one who is not on it, by user id.
    """

    messages = List(Dict())
    multiline = Bool(False, help="A text area (Enter adds a line; Send sends) instead of one line.")

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
        self._log = ChatLog(height=height)
        # Each message's text as HTML, rendered once: a log of many re-renders often.
        self._rendered: dict[str, str] = {}
        self._text = widgets.Text(placeholder="Say something (Enter sends)", layout={"flex": "1"})
        self._area = widgets.Textarea(
            placeholder="Say something (Enter adds a line; Send sends)",
            rows=3,
            layout={"flex": "1"},
        )
        self._lines = widgets.ToggleButton(
            icon="paragraph",
            tooltip="Several lines: Enter adds a line, Send sends",
            layout={"width": "40px"},
        )
        self._button = widgets.Button(description="Send", button_style="primary")
        self._notice = widgets.HTML()
        self._input = widgets.HBox([self._text, self._lines, self._button])
        self.children = [self._log, self._input, self._notice]
        # What the log's front end finds to relay a typed message (see `ChatLog`).
        self.add_class("nyo-chat-widget")
        self._text.add_class("nyo-chat-box")
        self._area.add_class("nyo-chat-box")
        self._button.add_class("nyo-chat-send")
        self._log.on_msg(self._log_message)
        self._button.on_click(self._clicked)
        # The front end of `Text` sends {"event": "submit"} on Enter. Listened to
        # directly: `on_submit` is deprecated, and its replacement
        # (`continuous_update=False`) would also send when the box loses focus.
        self._text.on_msg(self._text_message)
        widgets.link((self._lines, "value"), (self, "multiline"))
        self.observe(self._multiline_changed, "multiline")
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

    @property
    def is_kernel(self) -> bool:
        """Whether this kernel is a kernel (not a person's): see the module's docstring."""
        user = self._client.user
        return user is not None and not is_person(user)

    def _update_relay(self) -> None:
        self._log.relay = self._channel.name if self.is_kernel else ""

    def _log_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        with _lock:
            if content.get("event") == "relayed":
                self._notice.value = ""
            elif content.get("event") == "relay-error":
                message = html.escape(str(content.get("message", "")))
                self._notice.value = f'<span style="color:#c62828">not sent: {message}</span>'

    def _text_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if content.get("event") == "submit" and not self.multiline:
            self._submit()

    def _clicked(self, _button: Any) -> None:
        self._submit()

    def _multiline_changed(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._area.value, self._text.value = self._text.value, ""
            self._input.children = [self._area, self._lines, self._button]
        else:
            self._text.value, self._area.value = " ".join(self._area.value.splitlines()), ""
            self._input.children = [self._text, self._lines, self._button]

    def _submit(self) -> None:
        box = self._area if self.multiline else self._text
        text = box.value.strip()
        if not text:
            return
        if self.is_kernel:
            # The browser did not send it (no JupyterLab extension there): the kernel
            # would sign a person's words. The text stays in the box.
            self._notice.value = (
                '<span style="color:#c62828">not sent: this kernel is not a person, and '
                "what you type is sent by your browser's own connection, which needs the "
                "nyo-realtime JupyterLab extension</span>"
            )
            return
        box.value = ""
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

    def _text_html(self, message: dict[str, Any]) -> str:
        key = str(message.get("id"))
        if key not in self._rendered:
            payload = message.get("payload")
            text = payload.get("text", "") if isinstance(payload, dict) else payload
            self._rendered[key] = render_chat_text(str(text if text is not None else ""))
        return self._rendered[key]

    def _render(self) -> None:
        self._update_relay()  # the client's user is known once subscribed
        people = {m["userId"]: m for m in self._channel.members}
        named = [(str(u), str(m.get("name") or u)) for u, m in people.items()]
        rows = []
        for message in self.messages:
            sender = message.get("from") or {}
            user_id = str(sender.get("userId", "server"))
            person = people.get(user_id, {})
            author = str(person.get("name") or user_id)
            shown = labelled(author, user_id, named)  # "Sam (@bob)" where names look alike
            tag = "" if is_person(person) else " " + kernel_tag()
            ts = message.get("ts", 0)
            when = dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc)
            rows.append(
                '<div class="nyo-chat-entry" style="display:flex;gap:8px;margin:4px 0;'
                'align-items:flex-start">'
                f"{avatar_html({'userId': user_id, 'name': author, 'color': person.get('color')}, 22)}"
                f'<div style="min-width:0;overflow-wrap:anywhere">'
                f'<b title="{html.escape(user_id)}">{html.escape(shown)}</b>{tag} '
                # The browser writes the time in its locale (ChatLog); until then, UTC.
                f'<time class="nyo-chat-time" data-ts="{int(ts)}" datetime="{when.isoformat()}"'
                f' style="color:#757575;font-size:80%">{when.strftime("%H:%M")} UTC</time>'
                f'<div class="nyo-chat-text">{self._text_html(message)}</div></div></div>'
            )
        kept = {str(m.get("id")) for m in self.messages}
        for key in [k for k in self._rendered if k not in kept]:
            del self._rendered[key]
        self._log.value = (
            "<style>.nyo-chat-widget-log .nyo-chat-text p{margin:0 0 4px}"
            ".nyo-chat-widget-log .nyo-chat-text pre{overflow-x:auto;"
            "margin:2px 0;padding:4px;background:rgba(127,127,127,.12)}"
            ".nyo-chat-widget-log .nyo-chat-text img{max-width:100%}</style>" + "".join(rows)
            if rows
            else "<i>no messages yet</i>"
        )
