"""A warning that can recur thousands of times a second, logged once in a while with
how many times it happened meanwhile: a flood of failures must not become a flood
of log lines (a traceback each once grew a log by 58 MB in a minute)."""

from __future__ import annotations

import logging
import time


class Occasional:
    """`note(*args)` counts; at most once per `every` seconds it logs `message`
    (a %-format whose first argument is the count) with the args of that call."""

    __slots__ = ("log", "message", "every", "count", "logged_at")

    def __init__(self, log: logging.Logger, message: str, every: float = 30.0) -> None:
        self.log, self.message, self.every = log, message, every
        self.count = 0
        self.logged_at: float | None = None

    def note(self, *args: object) -> None:
        self.count += 1
        now = time.monotonic()
        if self.logged_at is None or now - self.logged_at >= self.every:
            self.log.warning(self.message, self.count, *args)
            self.logged_at, self.count = now, 0
