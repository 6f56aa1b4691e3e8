"""Hooks given to a server as import strings (`--Realtime.verify_token=tests.hooks:verify`)."""

from __future__ import annotations

from typing import Any

# A toy token scheme: "user@tenant" signed by nobody; the test checks the plumbing.
KNOWN = {"ticket-ada": {"userId": "ada", "tenantId": "acme", "name": "Ada"}}


def verify(token: str) -> dict[str, Any] | None:
    return KNOWN.get(token)


def authorize(identity: Any, channel: str, action: str) -> bool:
    return channel == "private-open-to-ada" and identity.user_id == "ada"


def refuse_everything(client: Any, channel: str, event: str, payload: Any) -> bool:
    return False
