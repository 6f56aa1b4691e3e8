"""Application hooks: code of the application's own that runs on connect, disconnect,
subscribe and publish.

Each hook is a callable or an import string (`package.module:function`), sync or
async, set as `Realtime.on_connect` etc. (so it works under Jupyter too) or given
to `create_server`. `on_subscribe` and `on_publish` decide: True, or None
(nothing returned), allows; False (or raising `Refused`) answers `forbidden`. Any
other answer ("no", 0, an object: answers are compared by identity) is the hook's
bug and refuses: like a hook that raises anything else (KeyboardInterrupt,
SystemExit and its own CancelledError too), or does not answer within
`Realtime.hook_timeout`, it is logged and costs the request one `internal` error
(HTTP 500), at `hook_timeout` at the latest (a hook that ignores its cancellation
runs on, detached); never the connection, never another client. `on_subscribe` is asked for every way to read a
channel or be present on it, over HTTP too (see `Rules.reader_refusal`). An async hook
is awaited while the event loop serves everyone else; a sync hook runs inline,
so keep sync hooks quick.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .models import Identity

log = logging.getLogger(__name__)

HOOK_NAMES = ("on_connect", "on_disconnect", "on_subscribe", "on_publish")


def resolve_hook(hook: Any) -> Callable[..., Any] | None:
    """A hook is a callable or an import string, 'package.module:function'."""
    if hook is None or hook == "":
        return None
    if callable(hook):
        return hook
    module_name, sep, attr = str(hook).partition(":")
    if not sep:
        module_name, _, attr = str(hook).rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


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
        # Async hooks that outlived `hook_timeout` and were left to run on: referenced
        # here so that they are not garbage-collected mid-way, logged when they end.
        self._detached: set[asyncio.Future[Any]] = set()

    def has(self, name: str) -> bool:
        return self._hooks[name] is not None

    async def call(self, name: str, *args: Any) -> Any:
        """Run the hook `name`; its answer (False for `Refused`), or HookFailed.

        Everything the hook raises is contained and logged, `KeyboardInterrupt`,
        `SystemExit` and its own `CancelledError` too: a hook is the application's
        code, and its failure costs the one request. Only the cancellation of the
        caller itself (a closing connection, the server shutting down) goes on: it
        cancels the hook and propagates.
        """
        hook = self._hooks[name]
        if hook is None:
            return None
        try:
            result = hook(*args)
        except Refused:
            return False
        except BaseException as exc:  # the application's code, all of it
            # A sync hook runs inline: a CancelledError here is the hook's own, never
            # the caller's (a cancellation reaches a task only where it awaits).
            raise _failed(name, exc) from None
        if not inspect.isawaitable(result):
            return result
        return await self._await(name, result)

    async def _await(self, name: str, awaitable: Any) -> Any:
        """The answer of an async hook, awaited in a task of its own for at most
        `hook_timeout`; at the timeout the request is answered at once and the hook,
        cancelled, is left to run on, detached, if it ignores its cancellation."""
        try:
            task = asyncio.ensure_future(_outcome(awaitable))
        except BaseException as exc:  # an awaitable of the application's
            raise _failed(name, exc) from None
        try:
            await asyncio.wait((task,), timeout=self.timeout)
        except asyncio.CancelledError:
            task.cancel()  # the caller is cancelled (at shutdown, say): so is its hook
            self._detach(name, task, awaitable)
            raise
        if not task.done():
            task.cancel()
            self._detach(name, task, awaitable)
            log.error("hook %s did not finish within %gs: cancelled", name, self.timeout)
            raise HookFailed(name)
        if task.cancelled():
            # Nobody cancelled it (the caller would not be here): it raised
            # CancelledError itself.
            raise _failed(name, asyncio.CancelledError())
        raised, value = task.result()
        if raised:
            if isinstance(value, Refused):
                return False
            raise _failed(name, value) from None
        return value

    def _detach(self, name: str, task: asyncio.Future[Any], awaitable: Any) -> None:
        """Leave the cancelled `task` of hook `name` to end as it will; log it if it
        ignored its cancellation."""
        started = time.monotonic()
        self._detached.add(task)

        def finished(task: asyncio.Future[Any]) -> None:
            self._detached.discard(task)
            if task.cancelled():  # it heeded its cancellation, or never started
                if inspect.iscoroutine(awaitable):
                    awaitable.close()  # no "never awaited" warning for one that never ran
                return
            raised, value = task.result()
            log.warning(
                "hook %s ignored its cancellation and ran on for %.1fs; its %s was not used: %s",
                name,
                time.monotonic() - started,
                "exception" if raised else "answer",
                _describe_exception(value) if raised else describe(value),
            )

        task.add_done_callback(finished)

    async def allows(self, name: str, *args: Any) -> bool:
        """For hooks that may refuse: exactly True or None allows, exactly False (or
        `Refused`) refuses.

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
            describe(answer),
        )
        raise HookFailed(name)

    async def notify(self, name: str, *args: Any) -> None:
        """For hooks that are only told: a failure is logged and goes no further."""
        try:
            await self.call(name, *args)
        except HookFailed:
            pass


def call_inline(
    name: str, hook: Callable[..., Any], *args: Any, passes: type[BaseException] | None = None
) -> Any:
    """The answer of the sync hook `name` (`verify_token`, `authorize`), run inline.

    Everything it raises is contained, logged and raised as HookFailed,
    `KeyboardInterrupt` and `SystemExit` too, which would otherwise stop the
    server: except `passes`, an exception the hook may raise as an answer.
    """
    try:
        return hook(*args)
    except BaseException as exc:  # the application's code, all of it
        if passes is not None and isinstance(exc, passes):
            raise
        raise _failed(name, exc) from None


def _failed(name: str, exc: BaseException) -> HookFailed:
    log.error("hook %s failed: %s", name, _describe_exception(exc))
    return HookFailed(name)


async def _outcome(awaitable: Any) -> tuple[bool, Any]:
    """(False, answer) or (True, what it raised), for anything but CancelledError.

    Caught inside the hook's task: asyncio re-raises a task's `KeyboardInterrupt` or
    `SystemExit` out of the event loop, which would stop the server."""
    try:
        return False, await awaitable
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # the application's code, all of it
        return True, exc


MAX_LOGGED = 500  # characters of a hook's answer or exception message in a log line
MAX_FRAMES = 20  # of a failed hook's traceback, the innermost


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} characters)"


def describe(answer: Any) -> str:
    """A short text for a log line, whatever the object (its repr may raise)."""
    try:
        text = repr(answer)
    except Exception:
        text = "?"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} (a {type(answer).__qualname__})"


def _describe_exception(exc: BaseException) -> str:
    """The exception's type, its message cut to MAX_LOGGED, and where it was raised.

    Its message is the application's and may be any length (or raise when made)."""
    try:
        message = str(exc)
    except Exception:
        message = "?"
    head = type(exc).__qualname__ + (f": {_cut(message, MAX_LOGGED)}" if message else "")
    try:
        stack = "".join(traceback.format_tb(exc.__traceback__, limit=-MAX_FRAMES))
    except Exception:
        stack = ""
    return f"{head}\n{stack}".rstrip("\n")
