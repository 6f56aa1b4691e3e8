"""`profile`: the caller's display name and colour, as chosen and as shown.

There is no user in the path: a request reads or changes the profile of whoever
sent it, so nobody can change another user's (see profiles.py).
"""

from __future__ import annotations

from .base import ApiHandler


class ProfileHandler(ApiHandler):
    async def get(self) -> None:
        self.reply(200, {"profile": await self.hub.profile(self.identity)})

    async def put(self) -> None:
        # Omitted keys stay as they are; null clears back to the identity's value.
        body = self.json_body(("name", "color"))
        self.reply(200, {"profile": await self.hub.set_profile(self.identity, body)})
