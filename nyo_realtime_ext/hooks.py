"""Application hooks: code of the application's own that runs on connect, disconnect,
subscribe and publish.

Each hook is a callable or an import string (`package.module:function`), sync or
async, set as `Realtime.on_connect` etc. (so it works under Jupyter too) or given
to `create_server`. `on_subscribe` and `on_publish` decide: True, or None
(nothing returned), allows; False (or raising `Refused`) answers `forbidden`. Any
other answer ("no", 0, an object) is the hook's bug and refuses: like a hook that
raises anything else, or does not finish within `Realtime.hook_timeout`, it is
logged and costs the request one `internal` error (HTTP 500); never the
connection, never another client. `on_subscribe` is asked for every way to read a
channel or be present on it, over HTTP too (see `Rules.reader_refusal`). An async hook
is awaited while the event loop serves everyone else; a sync hook runs inline,
so keep sync hooks quick.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any

from .auth import resolve_hook
from .models import Identity

log = logging.getLogger(__name__)

HOOK_NAMES = ("on_connect", "on_disconnect", "on_subscribe", "on_publish")


@dataclass(frozen=True)
class Client:
    """Who a hook is about. `connection_id` is None for a request over HTTP."""

    user_id: str
    tenant_id: str
    connection_id: str | None
    name: str

    @classmethod
    def of(cls, identity: Identity, connection_id: str | None) -> Client:
        return cls(
            identity.user_id, identity.tenant_id, connection_id, identity.name or identity.user_id
        )


class Refused(Exception):
    """Raised by an `on_subscribe` or `on_publish` hook: the request is `forbidden`."""


class HookFailed(Exception):
    """A hook raised or timed out; the request gets one `internal` error."""


class Hooks:
    def __init__(self, config: Any) -> None:
        self.timeout = config.hook_timeout
        self._hooks = {name: resolve_hook(getattr(config, name)) for name in HOOK_NAMES}

    def has(self, name: str) -> bool:
        return self._hooks[name] is not None

    async def call(self, name: str, *args: Any) -> Any:
        """Run the hook `name`; its answer, or HookFailed (logged) if it failed."""
        hook = self._hooks[name]
        if hook is None:
            return None
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.timeout)
            return result
        except Refused:
            return False
        except asyncio.TimeoutError:
            log.error("hook %s did not finish within %gs", name, self.timeout)
            raise HookFailed(name) from None
        except Exception as exc:
            log.exception("hook %s failed", name)
            raise HookFailed(name) from exc

    async def allows(self, name: str, *args: Any) -> bool:
        """For hooks that may refuse: True or None allows, False (or `Refused`) refuses.

        Any other answer fails closed: logged once, then HookFailed (`internal`).
        Answers are compared by identity, never tested for truth, which the
        application's object could get wrong or raise from.
        """
        answer = await self.call(name, *args)
        if answer is True or answer is None:
            return True
        if answer is False:
            return False
        log.error(
            "hook %s answered %s; only True, None (allow) or False (refuse) are answers: refused",
            name,
            _describe(answer),
        )
        raise HookFailed(name)

    async def notify(self, name: str, *args: Any) -> None:
        """For hooks that are only told: a failure is logged and goes no further."""
        try:
            await self.call(name, *args)
        except HookFailed:
            pass


def _describe(answer: Any) -> str:
    """A short text for a log line, whatever the object (its repr may raise)."""
    try:
        text = repr(answer)
    except Exception:
        text = "?"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} (a {type(answer).__qualname__})"
