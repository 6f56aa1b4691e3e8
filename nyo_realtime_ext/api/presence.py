"""`channels/<name>/presence`: an HTTP client's presence, kept alive by repeating the POST."""

from __future__ import annotations

from ..protocol import check_presence_update
from .base import ApiHandler


class PresenceHandler(ApiHandler):
    async def post(self, name: str) -> None:
        key = self.channel_key(name)
        body = self.json_body(("status", "meta"))
        check_presence_update(body)  # a ProtocolError is a 400 (api_error_for)
        member = await self.hub.http_presence(
            self.identity, key, body.get("status"), body.get("meta")
        )
        self.reply(200, {"member": member.to_wire()})

    async def delete(self, name: str) -> None:
        await self.hub.http_leave(self.identity, self.channel_key(name))
        self.set_status(204)
        self.finish()
