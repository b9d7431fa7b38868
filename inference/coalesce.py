"""Single-item requests scored together: micro-batching on the event loop.

While a batch is being scored on the pool, the requests that arrive meanwhile wait, and the
next free lane takes them all (up to ``max_batch``, per group: a group is what one scorer call
must share, e.g. the caller recorded as the score's source). So under load one Feast read, one
ONNX run and one hop to the pool serve many requests, and a lone request goes at once (no
timer, no added wait when a lane is free).

A batch that fails as a whole with an error that is not the service's (``Unavailable``: Redis
down, no model) is scored again one item at a time, so one request that makes the scorer fail
fails alone. A request whose caller stopped waiting (its future cancelled: the timeout's 503)
is left out of the batches that start after it.

With ``observe(stage, seconds)`` it reports where a request's time goes: ``queue`` (each
request, from its arrival here until a lane takes its batch), ``pool_wait`` (a batch, from its
hand-off to the pool until a thread runs it), ``score`` (the batch's run on that thread) and
``wake`` (from the run's end until the event loop resumes the lane: how busy the loop is).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any


class Coalescer:
    """``await coalescer(group, item)`` → ``run(group, [item, ...])``'s result for ``item``."""

    def __init__(self, pool: Executor, run: Callable[[str, list[Any]], list[Any]], max_batch: int, lanes: int,
                 alone: tuple[type[BaseException], ...] = (),
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.pool, self.run, self.max_batch, self.lanes = pool, run, max_batch, lanes
        #: errors that fail the whole batch as they are (the service's own): not retried alone
        self.alone = alone
        self.observe = observe
        self._pending: dict[str, list[tuple[Any, asyncio.Future, float]]] = {}
        self._running = 0
        self._lanes: set[asyncio.Task] = set()  # (the loop keeps only weak references to tasks)
        #: batches run and items scored (``items / batches`` is the mean batch size)
        self.batches = self.items = 0

    async def __call__(self, group: str, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.setdefault(group, []).append((item, future, time.perf_counter()))
        if self._running < self.lanes:
            self._running += 1
            task = loop.create_task(self._lane())
            self._lanes.add(task)
            task.add_done_callback(self._lanes.discard)
        return await future

    def _take(self) -> tuple[str, list[tuple[Any, asyncio.Future, float]]] | None:
        """The oldest group's waiting items (at most ``max_batch``), callers gone left out."""
        while self._pending:
            group = next(iter(self._pending))
            waiting = [w for w in self._pending.pop(group) if not w[1].done()]
            batch, rest = waiting[:self.max_batch], waiting[self.max_batch:]
            if rest:
                self._pending[group] = rest  # (behind the other groups: they wait no longer)
            if batch:
                return group, batch
        return None

    async def _lane(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (taken := self._take()) is not None:
                group, batch = taken
                self.batches, self.items = self.batches + 1, self.items + len(batch)
                items = [w[0] for w in batch]
                try:
                    if self.observe is None:
                        results = await loop.run_in_executor(self.pool, self.run, group, items)
                    else:
                        now = time.perf_counter()
                        for w in batch:
                            self.observe("queue", now - w[2])
                        results, ended = await loop.run_in_executor(self.pool, self._timed, group, items, now)
                        self.observe("wake", time.perf_counter() - ended)
                except self.alone as exc:
                    _settle(batch, error=exc)
                except Exception as exc:  # noqa: BLE001 - whose fault? each item again on its own
                    if len(batch) == 1:
                        _settle(batch, error=exc)
                        continue
                    for waiter in batch:
                        try:
                            result = await loop.run_in_executor(self.pool, self.run, group, [waiter[0]])
                        except Exception as one:  # noqa: BLE001 - this item's own failure
                            _settle([waiter], error=one)
                        else:
                            _settle([waiter], results=result)
                else:
                    _settle(batch, results=results)
        finally:
            self._running -= 1

    def _timed(self, group: str, items: list[Any], handed: float) -> tuple[list[Any], float]:
        """``run`` on the pool's thread, timed: (its results, when it ended)."""
        assert self.observe is not None
        started = time.perf_counter()
        self.observe("pool_wait", started - handed)
        results = self.run(group, items)
        ended = time.perf_counter()
        self.observe("score", ended - started)
        return results, ended


def _settle(batch: list[tuple[Any, asyncio.Future, float]], results: list[Any] | None = None,
            error: BaseException | None = None) -> None:
    for i, (_, future, _t) in enumerate(batch):
        if future.done():  # (its caller gave up: the 503 is sent already)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert results is not None
            future.set_result(results[i])
