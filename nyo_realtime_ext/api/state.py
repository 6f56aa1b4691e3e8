"""`channels/<name>/state` and `channels/<name>/state/<key>`: a channel's shared state
over HTTP, with the rules of `state:set` (hub/state.py): the publish right to write,
`~<userId>/` keys for their user only, the limits, and compare-and-set (409 with the
entry as it is)."""

from __future__ import annotations

from ..protocol import check_if_version
from .base import ApiHandler


class StateHandler(ApiHandler):
    async def get(self, name: str) -> None:
        entries = await self.hub.state_of(self.identity, self.channel_key(name))
        self.service.writer.commit_now()  # a version shown over HTTP must be durable
        self.reply(200, {"entries": [entry.to_wire() for entry in entries]})


class StateEntryHandler(ApiHandler):
    async def put(self, name: str, entry_key: str) -> None:
        body = self.json_body(("value", "ifVersion"), required=("value",))
        if "ifVersion" in body:
            check_if_version(body["ifVersion"])
        entry = await self.hub.set_state_http(
            self.identity, self.channel_key(name), entry_key, body["value"], body.get("ifVersion")
        )
        self.service.writer.commit_now()
        self.reply(200, {"entry": entry.to_wire()})

    async def delete(self, name: str, entry_key: str) -> None:
        await self.hub.set_state_http(
            self.identity, self.channel_key(name), entry_key, None, None, create=False
        )
        self.service.writer.commit_now()
        self.set_status(204)
        self.finish()
