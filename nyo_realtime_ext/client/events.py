"""Named callbacks, as both faces' objects offer them (`on`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Callback = Callable[..., Any]


def _callback_error(callback: Callback) -> None:
    log.exception("nyo-realtime: callback %r raised", callback)


class Emitter:
    """Named callbacks; a callback that raises is logged and the others still run."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {}

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call `callback` on `event`; returns a function that removes it."""
        callbacks = self._callbacks.setdefault(event, [])
        callbacks.append(callback)

        def off() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return off

    def emit(self, event: str, *args: Any) -> None:
        for callback in list(self._callbacks.get(event, ())):
            try:
                callback(*args)
            except Exception:
                _callback_error(callback)
