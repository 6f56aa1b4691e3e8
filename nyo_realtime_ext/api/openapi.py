"""`openapi.json`: the API's own description, public."""

from __future__ import annotations

from .base import ApiHandler


class OpenApiHandler(ApiHandler):
    public = True

    async def get(self) -> None:
        # The servers entry points back at this mount, so the document is right
        # standalone and under any Jupyter base_url alike.
        root = self.request.path[: -len("openapi.json")]
        self.reply(200, {**self.context.openapi, "servers": [{"url": root.rstrip("/")}]})
