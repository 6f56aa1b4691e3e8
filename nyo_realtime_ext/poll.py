"""`PollWidget`: a question and its options, voted on live by everyone on a channel.

Built on the channel's shared state (docs/protocol.md, "Shared state"):

- the poll itself (question, options, whether voters are shown) is the entry
  `poll/<poll_id>`, written by whoever opens the poll first (`ifVersion: ""`: a second
  opener takes the poll that is there instead of replacing it);
- each person's vote is the entry `~<userId>/poll/<poll_id>`, which only that user
  can write (the server refuses anyone else: nobody can forge another's vote); voting
  again changes one's vote, "Withdraw" deletes it;
- the counts are computed from those entries wherever the widget is shown, live.

Who voted: the entries name their voters (a `~<userId>/` key), and every reader of
the channel can read them. The widget shows names only when the poll says
`show_voters`; a poll that must be secret from the channel's readers needs a
channel of its own with the rights that say so.

The vote is the client's user's: the person's own on JupyterHub (where a kernel is
its user), the kernel's where kernels are users of their own (docs/protocol.md,
"People and kernels").
"""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
from traitlets import Dict, List, Unicode

from .client import Conflict, SyncState, ThreadedClient, shared_client

POLL_PREFIX = "poll/"


def poll_key(poll_id: str) -> str:
    return POLL_PREFIX + poll_id


def vote_key(user_id: str, poll_id: str) -> str:
    return f"~{user_id}/{POLL_PREFIX}{poll_id}"


def votes_of(state: Any, poll_id: str) -> dict[str, str]:
    """user id -> the option they voted for, from a channel's state (a mapping)."""
    suffix = "/" + POLL_PREFIX + poll_id
    votes = {}
    for key in list(state):
        if key.startswith("~") and key.endswith(suffix):
            choice = state.get(key)
            if isinstance(choice, str):
                votes[key[1 : -len(suffix)]] = choice
    return votes


class PollWidget(widgets.VBox):
    """A poll on `channel`: `question`, `options`, one vote per person.

    `counts` (option -> votes) and `voters` (option -> user ids, filled only when
    the poll shows voters) follow the channel live; `vote(option)` and `withdraw()`
    act for this client's user.
    """

    question = Unicode()
    options = List(Unicode())
    counts = Dict()
    voters = Dict()
    my_vote = Unicode(allow_none=True, default_value=None)

    def __init__(
        self,
        channel: str,
        question: str,
        options: Sequence[str],
        *,
        poll_id: str = "poll",
        show_voters: bool = False,
        client: ThreadedClient | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(set(options)) != len(options) or not options:
            raise ValueError("a poll needs options, each once")
        self.poll_id = poll_id
        self.client = client or shared_client()
        self.state: SyncState = self.client.shared_state(channel)
        self._lock = threading.RLock()
        self._title = widgets.HTML()
        self._buttons = widgets.VBox()
        self._withdraw = widgets.Button(description="Withdraw my vote", layout={"width": "auto"})
        self._withdraw.on_click(lambda _: self.withdraw())
        self.children = [self._title, self._buttons, self._withdraw]
        definition = {"question": question, "options": list(options), "showVoters": show_voters}
        try:
            self.state.compare_and_set(poll_key(poll_id), definition, None)
        except Conflict:
            pass  # someone opened it first: theirs is the poll
        self._off = self.state.observe(None, self._on_change)
        self._refresh()

    @property
    def user_id(self) -> str:
        return str((self.client.user or {}).get("userId"))

    @property
    def show_voters(self) -> bool:
        poll = self.state.get(poll_key(self.poll_id))
        return bool(isinstance(poll, dict) and poll.get("showVoters"))

    def vote(self, option: str) -> str:
        """Vote for `option` (replacing one's vote); returns the entry's version."""
        if option not in self.options:
            raise ValueError(f"{option!r} is not an option of this poll")
        return self.state.set(vote_key(self.user_id, self.poll_id), option)

    def withdraw(self) -> str:
        return self.state.delete(vote_key(self.user_id, self.poll_id))

    def close(self) -> None:
        self._off()
        super().close()

    def _on_change(self, key: str, value: Any, entry: dict[str, Any]) -> None:
        if key == poll_key(self.poll_id) or key.endswith("/" + POLL_PREFIX + self.poll_id):
            self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            poll = self.state.get(poll_key(self.poll_id))
            if not isinstance(poll, dict):
                return
            options = [str(o) for o in poll.get("options", [])]
            votes = votes_of(self.state, self.poll_id)
            counts = {o: 0 for o in options}
            names: dict[str, list[str]] = {o: [] for o in options}
            for user, choice in sorted(votes.items()):
                if choice in counts:
                    counts[choice] += 1
                    names[choice].append(user)
            shown = bool(poll.get("showVoters"))
            if self.question != poll.get("question") or self.options != options:
                self.question, self.options = str(poll.get("question", "")), options
                self._buttons.children = [self._button(o) for o in options]
            self.counts = counts
            self.voters = names if shown else {}
            self.my_vote = votes.get(self.user_id)
            total = sum(counts.values())
            self._title.value = (
                f"<b>{html.escape(self.question)}</b> "
                f'<span style="color:#757575">({total} vote{"" if total == 1 else "s"})</span>'
            )
            for button, option in zip(self._buttons.children, options, strict=False):
                label = f"{option}: {counts[option]}"
                if shown and names[option]:
                    label += f" ({', '.join(names[option])})"
                button.description = label
                button.button_style = "primary" if option == self.my_vote else ""
            self._withdraw.disabled = self.my_vote is None

    def _button(self, option: str) -> widgets.Button:
        button = widgets.Button(description=option, layout={"width": "auto"})
        button.on_click(lambda _: self.vote(option))
        return button
