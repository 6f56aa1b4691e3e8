"""`channels/<name>/messages`: history, long-polls for what comes next, and publishing.

A long-poll waits on an asyncio Future that the hub resolves from its fan-out;
a waiting request costs a future and a timer, never a thread, but it holds a
socket: at most `max_long_polls_per_user` of one user wait at once, and
`MAX_LONG_POLLS` in all (the share of `standalone.FD_RESERVE` kept for them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..models import ChannelKey
from ..protocol import ErrorCode, check_event
from .base import ApiError, ApiHandler

# Longest a long-poll may be held; proxies commonly cut idle requests at 60 s.
MAX_WAIT = 55.0
MAX_LIMIT = 1000
# A history answer stops before this many bytes of messages (one message always
# comes, however large), and says `"more": true`.
MAX_ANSWER_BYTES = 1024 * 1024
# Long-polls one process holds at once, whoever asks: counted in the file descriptors
# `serve` keeps beyond its WebSockets (`standalone.FD_RESERVE`).
MAX_LONG_POLLS = 1024
# What a refused long-poll tells the client to wait before it tries again.
LONG_POLL_RETRY_AFTER = "5"


class MessagesHandler(ApiHandler):
    query_parameters = ("since", "limit", "wait")
    _wake: Callable[[Any], None] | None = None
    _gone = False

    async def get(self, name: str) -> None:
        key = self.channel_key(name)
        since = self.get_query_argument("since", None, strip=False)
        if since is not None and not 1 <= len(since) <= 200:
            raise ApiError(ErrorCode.BAD_REQUEST, "`since` must be a message id")
        limit = self.whole_number_argument("limit", MAX_LIMIT, 1, MAX_LIMIT)
        wait = self.number_argument("wait", 0.0, 0.0, MAX_WAIT)
        history = await self.hub.read_history(self.identity, key, since, limit, MAX_ANSWER_BYTES)
        if not history.messages and wait > 0:
            await self._wait_for_message(key, since, wait)
            if self._gone:
                return
            history = await self.hub.read_history(
                self.identity, key, since, limit, MAX_ANSWER_BYTES
            )
        answer: dict[str, Any] = {"messages": [m.to_wire() for m in history.messages]}
        if history.more:
            answer["more"] = True  # cut by `limit` or size: ask again from the last id
        self.service.writer.commit_now()  # an id shown over HTTP must already be durable
        self.reply(200, answer)

    async def post(self, name: str) -> None:
        key = self.channel_key(name)
        body = self.json_body(("event", "payload"), required=("event",))
        check_event(body["event"])  # a ProtocolError is a 400 (api_error_for)
        message_id = await self.hub.publish_http(
            self.identity, key, body["event"], body.get("payload")
        )
        # The answer leaves now, not at the end of the burst where WebSocket frames
        # wait for the group commit: the id must be durable first.
        self.service.writer.commit_now()
        self.reply(201, {"id": message_id})

    async def _wait_for_message(self, key: ChannelKey, since: str | None, wait: float) -> None:
        """Until a message after `since` exists, `wait` seconds pass, or the client leaves.

        The watch starts before history is read again, so a message published
        (on any node) between the first read and the watch is not missed.
        """
        release = self._hold()
        try:
            await self._wait(key, since, wait)
        finally:
            release()

    def _hold(self) -> Callable[[], None]:
        """Count one more long-poll of the caller, or refuse it (nothing else changes)."""
        context, caller = self.context, (self.identity.tenant_id, self.identity.user_id)
        limit = self.service.config.max_long_polls_per_user
        if limit and context.long_polls.get(caller, 0) >= limit:
            raise ApiError(
                ErrorCode.LIMIT_EXCEEDED,
                f"at most {limit} long-polls per user are held at once "
                "(max_long_polls_per_user); try again later",
                429,
                {"Retry-After": LONG_POLL_RETRY_AFTER},
            )
        if context.long_polls_held >= MAX_LONG_POLLS:
            raise ApiError(
                ErrorCode.UNAVAILABLE,
                f"this server holds its maximum of {MAX_LONG_POLLS} long-polls; try again later",
                headers={"Retry-After": LONG_POLL_RETRY_AFTER},
            )
        context.long_polls[caller] = context.long_polls.get(caller, 0) + 1
        context.long_polls_held += 1

        def release() -> None:
            context.long_polls_held -= 1
            left = context.long_polls.pop(caller, 1) - 1
            if left > 0:
                context.long_polls[caller] = left

        return release

    async def _wait(self, key: ChannelKey, since: str | None, wait: float) -> None:
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake(_message_id: Any) -> None:
            if not woken.done():
                woken.set_result(None)

        cancel = await self.hub.channels.observe(key, wake)
        timer = loop.call_later(wait, wake, None)
        self._wake = wake
        try:
            if (await self.hub.read_history(self.identity, key, since, 1)).messages:
                wake(None)
            await woken
        finally:
            self._wake = None
            timer.cancel()
            cancel()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._gone = True
        if self._wake is not None:
            self._wake(None)  # free the long-poll now, not when its timer fires
