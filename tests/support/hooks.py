"""Hooks given to a server as import strings (`--Realtime.verify_token=tests.support.hooks:verify`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nyo_realtime_ext.auth import AuthError

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


# Issue 23, findings 11 and 19: hooks that raise what no hook should, or will not stop.
# What they do is in the channel's (or the event's) first word: `exit:room`, `interrupt`.

UNRULY: dict[str, Callable[[], BaseException]] = {
    "exit": lambda: SystemExit(3),
    "interrupt": KeyboardInterrupt,
    "cancel": asyncio.CancelledError,
    "long": lambda: RuntimeError("the application's bug " + "x" * 100_000),
}


def _unruly(word: str) -> None:
    make = UNRULY.get(word.split(":")[0])
    if make is not None:
        raise make()


async def unruly_subscribe(client: Any, channel: str) -> bool:
    """Async: raises on `exit:…`, `interrupt:…`, `cancel:…`, `long:…` channels; and
    on `stubborn:…` ones ignores its cancellation and answers True a second later."""
    await asyncio.sleep(0)
    if channel.startswith("stubborn:"):
        return await stubborn(after=0.5)
    _unruly(channel)
    return True


def unruly_publish(client: Any, channel: str, event: str, payload: Any) -> bool:
    """Sync: raises on the events `exit`, `interrupt`, `cancel` and `long`."""
    _unruly(event)
    return True


async def stubborn(*args: Any, after: float = 1.0) -> bool:
    """A hook that swallows its cancellation, runs on for `after` seconds, and allows."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        await asyncio.sleep(after)
    return True


def readers_all_writers_ada(identity: Any, channel: str, action: str) -> bool:
    """`private-notes`: everyone of the tenant may read it, only Ada may write."""
    return channel == "private-notes" and (action == "subscribe" or identity.user_id == "ada")


class Untruthful:
    """An answer whose truth test raises: nobody may take it for yes."""

    def __bool__(self) -> bool:
        raise RuntimeError("no truth in me")


def unruly_verify(token: str) -> Any:
    """`verify_token` that raises SystemExit for the token `exit`, KeyboardInterrupt for
    `interrupt`, answers a string for `string` and a list for `list`, refuses `banned`
    with a reason of its own; else `verify`."""
    if token == "banned":
        raise AuthError("banned until Monday")
    answers: dict[str, Callable[[], Any]] = {"string": lambda: "ada", "list": lambda: ["ada"]}
    _unruly(token)
    if token in answers:
        return answers[token]()
    return verify(token)


def unruly_authorize(identity: Any, channel: str, action: str) -> Any:
    """`authorize` for `private-<word>` channels: `exit` and `interrupt` raise, `yes`
    answers the string "yes", `untruthful` an Untruthful; `open` answers True."""
    word = channel.removeprefix("private-")
    _unruly(word)
    return {"open": True, "yes": "yes", "untruthful": Untruthful()}.get(word, False)
