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


def keep_mallory_out(client: Any, channel: str) -> Any:
    """Issue 23's application: Mallory may read no channel with "admin" in its name.

    On `wrong:` channels it answers "no", which is no answer: the request fails closed.
    """
    if channel.startswith("wrong:"):
        return "no"
    return not (client.user_id == "mallory" and "admin" in channel)


def keep_mallory_quiet(client: Any, channel: str, event: str, payload: Any) -> bool:
    """The same decision for publishing."""
    return keep_mallory_out(client, channel)
