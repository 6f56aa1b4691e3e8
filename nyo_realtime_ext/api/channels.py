"""The channel routes: list and create channels, read one, change its members, list them."""

from __future__ import annotations

from typing import Any

from ..protocol import CHANNEL_TYPES, ErrorCode
from .base import ApiError, ApiHandler

# Most channels in one answer of `GET channels`, and how many when `limit` says nothing.
MAX_LIMIT = 1000
CHANNELS_PAGE = 100


class ChannelsHandler(ApiHandler):
    """`channels`: the caller's channels a page at a time, and new channels."""

    query_parameters = ("limit", "after")

    async def get(self) -> None:
        limit = self.whole_number_argument("limit", CHANNELS_PAGE, 1, MAX_LIMIT)
        after = self.get_query_argument("after", "", strip=False)
        if len(after) > 200:
            raise ApiError(ErrorCode.BAD_REQUEST, "`after` must be a channel name")
        channels, next_after = await self.hub.visible_channels(self.identity, after, limit)
        answer: dict[str, Any] = {"channels": [c.to_wire() for c in channels]}
        if next_after is not None:
            answer["next"] = next_after  # the next page: `?after=<next>`
        self.reply(200, answer)

    async def post(self) -> None:
        body = self.json_body(("name", "type", "members"), required=("name", "type"))
        name, type_ = body["name"], body["type"]
        if not isinstance(name, str):
            raise ApiError(ErrorCode.BAD_REQUEST, "`name` must be a string")
        if type_ not in CHANNEL_TYPES:
            raise ApiError(
                ErrorCode.BAD_REQUEST, f"`type` must be one of {', '.join(CHANNEL_TYPES)}"
            )
        members = user_ids(body.get("members", []))
        key = self.channel_key(name)
        channel = await self.hub.create_channel(self.identity, key, type_, members)
        self.reply(201, {"channel": channel.to_wire()})


class ChannelHandler(ApiHandler):
    """`channels/<name>`: one channel, and changes to its member list."""

    async def get(self, name: str) -> None:
        channel = await self.hub.readable_channel(self.identity, self.channel_key(name))
        self.reply(200, {"channel": channel.to_wire()})

    async def patch(self, name: str) -> None:
        key = self.channel_key(name)
        body = self.json_body(("members",), required=("members",))
        channel = await self.hub.change_members(self.identity, key, list(user_ids(body["members"])))
        self.reply(200, {"channel": channel.to_wire()})


class MembersHandler(ApiHandler):
    """`channels/<name>/members`: who is there, and with `include=offline` who was."""

    query_parameters = ("include",)

    async def get(self, name: str) -> None:
        key = self.channel_key(name)
        include = self.get_query_argument("include", None)
        if include not in (None, "offline"):
            raise ApiError(ErrorCode.BAD_REQUEST, "`include` may only be `offline`")
        members = await self.hub.http_members(
            self.identity, key, include_offline=include == "offline"
        )
        self.reply(200, {"members": [m.to_wire() for m in members]})


def user_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(u, str) and u for u in value):
        raise ApiError(ErrorCode.BAD_REQUEST, "`members` must be a list of user ids (strings)")
    return tuple(dict.fromkeys(value))  # unique, in the order given
