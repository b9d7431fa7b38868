"""Micro-batching of single scoring requests (inference/coalesce.py): pure asyncio, a thread
pool and plain functions, no server."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from inference.coalesce import Coalescer


class Down(Exception):
    """Stands for the service's own failure (Unavailable): the whole batch fails with it."""


def _scorer(calls: list[tuple[str, list[int]]], gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def run(group: str, items: list[int]) -> list[str]:
        calls.append((group, list(items)))
        if gate is not None:
            gate.wait(5)
        if any(i < 0 for i in items):
            raise ValueError(f"item {min(items)} is bad")
        if 999 in items:
            raise Down("redis down")
        return [f"{group}:{i * 10}" for i in items]

    return run


def test_a_lone_request_goes_at_once_and_requests_that_wait_are_scored_together() -> None:
    calls: list[tuple[str, list[int]]] = []
    gate = threading.Event()

    async def main() -> list[str]:
        c = Coalescer(ThreadPoolExecutor(4), _scorer(calls, gate), max_batch=8, lanes=1)
        first = asyncio.ensure_future(c("a", 1))
        await asyncio.sleep(0.05)  # the first is on the pool, held there by the gate
        rest = [asyncio.ensure_future(c("a", i)) for i in range(2, 21)]
        await asyncio.sleep(0.05)
        gate.set()
        return [await first, *[await r for r in rest]]

    out = asyncio.run(main())
    assert out == [f"a:{i * 10}" for i in range(1, 21)]  # each caller gets its own item's result
    assert calls[0] == ("a", [1])
    assert [len(items) for _, items in calls] == [1, 8, 8, 3]  # at most max_batch, in arrival order
    assert [i for _, items in calls for i in items] == list(range(1, 21))


def test_groups_never_share_a_batch() -> None:
    calls: list[tuple[str, list[int]]] = []
    gate = threading.Event()

    async def main() -> list[str]:
        c = Coalescer(ThreadPoolExecutor(4), _scorer(calls, gate), max_batch=8, lanes=1)
        first = asyncio.ensure_future(c("a", 0))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(c("ab"[i % 2], i)) for i in range(1, 7)]
        await asyncio.sleep(0.05)
        gate.set()
        return [await first, *[await r for r in rest]]

    out = asyncio.run(main())
    assert out == ["a:0", "b:10", "a:20", "b:30", "a:40", "b:50", "a:60"]
    assert sorted(calls[1:]) == [("a", [2, 4, 6]), ("b", [1, 3, 5])]


def test_one_bad_item_fails_alone_and_the_services_failure_fails_the_batch() -> None:
    calls: list[tuple[str, list[int]]] = []
    gate = threading.Event()

    async def main() -> tuple[list[object], list[object]]:
        c = Coalescer(ThreadPoolExecutor(4), _scorer(calls, gate), max_batch=8, lanes=1, alone=(Down,))
        first = asyncio.ensure_future(c("a", 0))
        await asyncio.sleep(0.05)
        mixed = [asyncio.ensure_future(c("a", i)) for i in (1, -2, 3)]
        await asyncio.sleep(0.05)
        gate.set()
        await first
        got = await asyncio.gather(*mixed, return_exceptions=True)
        down = await asyncio.gather(*[c("a", i) for i in (5, 999)], return_exceptions=True)
        return got, down

    got, down = asyncio.run(main())
    assert got[0] == "a:10" and got[2] == "a:30"
    assert isinstance(got[1], ValueError) and "-2" in str(got[1])
    assert ("a", [1, -2, 3]) in calls and ("a", [1]) in calls and ("a", [3]) in calls  # retried one by one
    assert all(isinstance(d, Down) for d in down)  # (the service's failure: not retried alone)
    assert calls.count(("a", [5])) == 0


def test_a_caller_that_gave_up_is_left_out_of_later_batches() -> None:
    calls: list[tuple[str, list[int]]] = []
    gate = threading.Event()

    async def main() -> str:
        c = Coalescer(ThreadPoolExecutor(4), _scorer(calls, gate), max_batch=8, lanes=1)
        first = asyncio.ensure_future(c("a", 1))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(c("a", 2), 0.01)  # its 503: it is not scored afterwards
        later = asyncio.ensure_future(c("a", 3))
        await asyncio.sleep(0.05)
        gate.set()
        await first
        return await later

    assert asyncio.run(main()) == "a:30"
    assert calls == [("a", [1]), ("a", [3])]


def test_lanes_bound_the_batches_in_flight() -> None:
    calls: list[tuple[str, list[int]]] = []
    gate = threading.Event()

    async def main() -> None:
        c = Coalescer(ThreadPoolExecutor(8), _scorer(calls, gate), max_batch=1, lanes=2)
        tasks = [asyncio.ensure_future(c("a", i)) for i in range(6)]
        await asyncio.sleep(0.1)
        assert len(calls) == 2  # two lanes busy, the rest waiting
        gate.set()
        await asyncio.gather(*tasks)
        assert c.batches == 6 and c.items == 6

    asyncio.run(main())


def test_the_stages_of_a_request_are_reported_where_they_are_spent() -> None:
    """``observe``: each request's wait in the queue, and each batch's wait for a thread, its
    run and the loop's resumption of its lane; the results are the same as without."""
    calls: list[tuple[str, list[int]]] = []
    seen: list[tuple[str, float]] = []
    gate = threading.Event()

    async def main() -> list[str]:
        c = Coalescer(ThreadPoolExecutor(4), _scorer(calls, gate), max_batch=8, lanes=1,
                      observe=lambda stage, s: seen.append((stage, s)))
        first = asyncio.ensure_future(c("a", 1))
        await asyncio.sleep(0.05)  # held on the pool for about 0.15 s
        rest = [asyncio.ensure_future(c("a", i)) for i in range(2, 5)]
        await asyncio.sleep(0.1)
        gate.set()
        return [await first, *[await r for r in rest]]

    assert asyncio.run(main()) == [f"a:{i * 10}" for i in range(1, 5)]
    stages = {stage: [s for st, s in seen if st == stage] for stage in ("queue", "pool_wait", "score", "wake")}
    assert {stage for stage, _ in seen} == set(stages)
    assert len(stages["queue"]) == 4 and [len(stages[s]) for s in ("pool_wait", "score", "wake")] == [2, 2, 2]
    assert stages["queue"][0] < 0.05 and all(q >= 0.09 for q in stages["queue"][1:])  # waited for the first batch
    assert stages["score"][0] >= 0.14 and stages["score"][1] < 0.05  # the gate held the first run only
    assert all(0 <= s < 0.05 for s in stages["pool_wait"] + stages["wake"])
