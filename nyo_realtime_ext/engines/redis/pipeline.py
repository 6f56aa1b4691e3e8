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

from redis.exceptions import AskError, ClusterDownError, NoScriptError

from ..base import EngineUnavailable
from .connect import UNAVAILABLE, UNAVAILABLE_ERRORS

if TYPE_CHECKING:
    from .engine import _Redis

# Scripts per round trip: a bound on the bytes a batch holds on both sides.
MAX_BATCH = 256

# One asked-for script: its name, its KEYS, its ARGV after the pub/sub command, what
# turns Redis's answer into the caller's, and the caller's future.
_Call = tuple[str, list[str], tuple[Any, ...], Callable[[Any], Any], "asyncio.Future[Any]"]


# Replies by which Redis refused to run a script, still so after the retry: a cluster
# failing over (CLUSTERDOWN, TRYAGAIN, a slot still moving), a demoted master
# (READONLY). Nothing ran, as when Redis is gone: `unavailable`, and the client retries.
_NOT_RUN = (*UNAVAILABLE_ERRORS, AskError)


def _unavailable(refusal: Exception) -> EngineUnavailable:
    error = EngineUnavailable(UNAVAILABLE)
    error.__cause__ = refusal
    return error


class Unanswered(Exception):
    """A batch was written to Redis, whose answer never came (a timeout, a dropped
    connection): its scripts may have run. The engine says `OutcomeUnknown`."""


class Pipeline:
    __slots__ = ("redis", "_waiting", "_runner")

    def __init__(self, redis: _Redis) -> None:
        self.redis = redis
        self._waiting: list[_Call] = []
        self._runner: asyncio.Task[None] | None = None

    def run(
        self, script: str, keys: list[str], args: tuple[Any, ...], then: Callable[[Any], Any]
    ) -> asyncio.Future[Any]:
        """`script` with `keys` and `args`, after every script asked for before it; a
        future of `then(answer)`. The place in line is taken now, not when the future is
        awaited."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((script, keys, args, then, future))
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
                for (_, _, _, then, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # its caller gave up
                        continue
                    if isinstance(answer, _NOT_RUN):  # a failing-over cluster's refusal
                        future.set_exception(_unavailable(answer))
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
        if self.redis.cluster:
            return await self._execute_sharded(batch)
        return await self._pipelined(self.redis.client, batch, list(range(len(batch))))

    async def _pipelined(self, client: Any, batch: list[_Call], todo: list[int]) -> list[Any]:
        """The scripts `todo` of `batch` in one pipeline on `client`; answers by index."""
        redis = self.redis
        answers: list[Any] = [None] * len(batch)
        for attempt in (1, 2):
            async with redis.slot:
                pipe = client.pipeline(transaction=False)
                for i in todo:
                    name, keys, args, _, _ = batch[i]
                    pipe.evalsha(redis.sha(name), len(keys), *keys, redis.pub, *args)
                # The connection first, on its own: a failure to get one sent nothing.
                # Once it is ours, the scripts may have run whatever fails next.
                pipe.connection = await client.connection_pool.get_connection()
                try:
                    results = await pipe.execute(raise_on_error=False)
                except UNAVAILABLE_ERRORS as exc:
                    raise Unanswered() from exc
                for i, answer in zip(todo, results, strict=True):
                    answers[i] = answer
                todo = [i for i in todo if isinstance(answers[i], NoScriptError)]
                if not todo or attempt == 2:
                    break
                for name in {batch[i][0] for i in todo}:
                    await redis.load(name)
        return answers

    async def _execute_sharded(self, batch: list[_Call]) -> list[Any]:
        """On a cluster (whose client pipelines no EVALSHA): one pipeline per master,
        on a plain connection to it, all at once. A shard's scripts keep their order,
        and so does each channel's, which lives on one shard. A shard that moved
        meanwhile (MOVED, ASK) gets its scripts again once the topology is re-learned;
        one that fails fails only its own scripts."""
        redis = self.redis
        answers: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        failed = False
        for attempt in (1, 2):
            groups: dict[tuple[str, int], list[int]] = {}
            async with redis.reachable:  # no topology yet: `unavailable`, as any outage
                for i in todo:
                    groups.setdefault(redis.owner(batch[i][1][0].encode()), []).append(i)

            async def run(address: tuple[str, int], indexes: list[int]) -> None:
                nonlocal failed
                try:
                    got = await self._pipelined(redis.node(*address), batch, indexes)
                except Exception as exc:  # that shard is gone: its scripts did not run
                    got = [exc] * len(batch)
                    failed = True
                for i in indexes:
                    answers[i] = got[i]

            await asyncio.gather(*(run(address, indexes) for address, indexes in groups.items()))
            todo = [i for i in todo if isinstance(answers[i], (AskError, ClusterDownError))]
            if failed or todo:
                # A master died or a slot moved: learn who serves what now, so that the
                # client's retry goes to the replica that took over.
                await redis.refresh_topology()
            if not todo or attempt == 2:
                break
        return answers
