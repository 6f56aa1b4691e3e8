"""Scripts run in the order they were asked for, as many to a round trip as are waiting.

A publish is one script and one round trip. Awaited one by one, a client's burst of
publishes would cost a round trip each, and pub/sub would bring the other nodes one
message per read, so each of their subscribers would get one write per message.
Here every script asked for while a batch is out joins the next batch: one
pipeline, one round trip, and Redis runs and publishes the whole batch before it
answers, so the other nodes read it as one burst too.

Batches go out one after another, never side by side: that is what keeps the
order of a connection's publishes (and of the ids they are given) the order they
were asked in. At low load a batch is the one script just asked for: nothing waits
for company.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from .engine import _Redis

# Scripts per round trip: a bound on the bytes a batch holds on both sides.
MAX_BATCH = 256

# One asked-for script: its name, its ARGV after the prefix, what turns Redis's
# answer into the caller's, and the caller's future.
_Call = tuple[str, tuple[Any, ...], Callable[[Any], Any], "asyncio.Future[Any]"]


class Pipeline:
    __slots__ = ("redis", "_waiting", "_runner")

    def __init__(self, redis: _Redis) -> None:
        self.redis = redis
        self._waiting: list[_Call] = []
        self._runner: asyncio.Task[None] | None = None

    def run(
        self, script: str, args: tuple[Any, ...], then: Callable[[Any], Any]
    ) -> asyncio.Future[Any]:
        """`script` with `args`, after every script asked for before it; a future of
        `then(answer)`. The place in line is taken now, not when the future is awaited."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((script, args, then, future))
        if self._runner is None:
            self._runner = asyncio.ensure_future(self._run_batches())
        return future

    async def _run_batches(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
                try:
                    answers = await self._execute(batch)
                except Exception as exc:  # Redis is gone or busy: none of them ran
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # the engine stops: callers are told it is gone
                    for *_, future in batch:
                        future.cancel()
                    raise
                for (_, _, then, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # its caller gave up
                        continue
                    if isinstance(answer, Exception):  # the script's own error reply
                        future.set_exception(answer)
                        continue
                    try:
                        result = then(answer)
                    except Exception as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
        finally:
            self._runner = None
            for *_, future in self._waiting:  # only left when cancelled
                future.cancel()
            self._waiting.clear()

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        """Every script of `batch`, in one pipeline; their answers or errors, in order.
        Scripts Redis does not have (it restarted) are loaded and those calls made
        again, still in their order."""
        redis = self.redis
        answers: list[Any] = [None] * len(batch)
        todo: list[int] = list(range(len(batch)))
        for attempt in (1, 2):
            async with redis.slot:
                pipe = redis.client.pipeline(transaction=False)
                for i in todo:
                    name, args, _, _ = batch[i]
                    pipe.evalsha(redis.sha(name), 0, redis.prefix, *args)
                results = await pipe.execute(raise_on_error=False)
                for i, answer in zip(todo, results, strict=True):
                    answers[i] = answer
                todo = [i for i in todo if isinstance(answers[i], NoScriptError)]
                if not todo or attempt == 2:
                    break
                for name in {batch[i][0] for i in todo}:
                    await redis.load(name)
        return answers
