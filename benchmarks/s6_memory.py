"""S6 memory: what a retained completed task costs, and what cleaning up gives back.

Retained: with `tracemalloc` tracing every thread, a warm-up round of N tasks is run
to completion and cleaned up (so tables, caches and free lists are at steady state);
then N more tasks are completed and kept, and the growth of traced memory divided by N
is the cost of one retained task (its record, its routing entry in the facade, its
graph node, its id and result). Baseline: the same N results kept as 5-field dict
records (id, name, status, result, finished time) in a dict keyed by id, measured the
same way. Then everything is cleaned up again and the share of the growth that comes
back is reported.

Cleanup time: 100,000 completed tasks (quick: 5,000), then the time of
``cleanup_completed_tasks(0)`` until the facade has forgotten them too, per record,
measured without tracemalloc. Baseline: rebuilding the dict of records without them.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import uuid
from typing import Any

from actors import ActorSystem

from ._core import (
    BenchmarkError,
    Figure,
    Goal,
    Result,
    Settings,
    alternate,
    column,
    per_task_us,
)
from ._workloads import expect, noop

NAME = "s6_memory"
TITLE = "memory per retained task; cleanup"
SIDES = 4


async def _complete(tm: Any, n: int) -> None:
    """Register, execute and await n no-op tasks; keep nothing on the caller's side."""
    ids = await asyncio.gather(*(tm.register_task("noop", noop, (i,)) for i in range(n)))
    results = await asyncio.gather(*(tm.execute_task(task_id, wait=True) for task_id in ids))
    expect(results, n, "actorflow tasks")


async def _cleanup(tm: Any, n: int) -> None:
    removed = await tm.cleanup_completed_tasks(0.0)
    if removed != n:
        raise BenchmarkError(f"{NAME}: cleanup removed {removed} tasks, expected {n}")
    # The facade forgets the removed ids after answering; a call routed through it
    # (metrics go facade -> monitor) is handled only after that.
    await tm.get_metrics()


_KEEP_ALL = {"MAX_FINISHED_TASKS": 0}
"""S6 measures what a retained task costs and what cleanup gives back: every finished
task must stay until the cleanup (the default bound keeps 10,000 per manager, fewer
than the full run's 20,000 and 100,000)."""


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _release(before: int, after: int, cleaned: int) -> float:
    growth = after - before
    return 100.0 * (after - cleaned) / growth if growth > 0 else float("nan")


def actorflow_retained(n: int) -> dict[str, float]:
    async def run() -> dict[str, float]:
        async with ActorSystem(_KEEP_ALL) as system:
            tm = system.task_manager
            await _complete(tm, n)  # warm-up round
            await _cleanup(tm, n)
            before = _traced()
            await _complete(tm, n)
            await tm.get_metrics()  # the monitor has taken the events in
            after = _traced()
            await _cleanup(tm, n)
            cleaned = _traced()
        return {
            "bytes": (after - before) / n,
            "released": _release(before, after, cleaned),
        }

    tracemalloc.start()
    try:
        return asyncio.run(run())
    finally:
        tracemalloc.stop()


def _records(records: dict[str, dict[str, Any]], n: int) -> None:
    for i in range(n):
        task_id = str(uuid.uuid4())
        records[task_id] = {
            "task_id": task_id,
            "name": "noop",
            "status": "completed",
            "result": i,
            "finished_at": time.monotonic(),
        }


def _clean_records(records: dict[str, dict[str, Any]], max_age: float) -> dict[str, Any]:
    cutoff = time.monotonic() - max_age
    return {key: rec for key, rec in records.items() if rec["finished_at"] > cutoff}


def dict_retained(n: int) -> dict[str, float]:
    tracemalloc.start()
    try:
        records: dict[str, dict[str, Any]] = {}
        _records(records, n)  # warm-up round
        records = _clean_records(records, 0.0)
        before = _traced()
        _records(records, n)
        after = _traced()
        records = _clean_records(records, 0.0)
        cleaned = _traced()
    finally:
        tracemalloc.stop()
    if records:
        raise BenchmarkError(f"{NAME}: {len(records)} dict records survived their cleanup")
    return {"bytes": (after - before) / n, "released": _release(before, after, cleaned)}


def actorflow_cleanup(n: int) -> float:
    async def run() -> float:
        async with ActorSystem(_KEEP_ALL) as system:
            tm = system.task_manager
            await _complete(tm, n)
            started = time.perf_counter()
            await _cleanup(tm, n)
            elapsed = time.perf_counter() - started
            left = await tm.get_all_tasks()
        if left:
            raise BenchmarkError(f"{NAME}: {len(left)} tasks left after cleanup")
        return per_task_us(elapsed, n)

    return asyncio.run(run())


def dict_cleanup(n: int) -> float:
    records: dict[str, dict[str, Any]] = {}
    _records(records, n)
    started = time.perf_counter()
    records = _clean_records(records, 0.0)
    elapsed = time.perf_counter() - started
    if records:
        raise BenchmarkError(f"{NAME}: {len(records)} dict records survived their cleanup")
    return per_task_us(elapsed, n)


def run(settings: Settings) -> list[Result]:
    n = settings.size(20_000, 2_000)
    big = settings.size(100_000, 5_000)
    samples = alternate(
        settings,
        NAME,
        {
            "retained": lambda: actorflow_retained(n),
            "dict": lambda: dict_retained(n),
            "cleanup": lambda: actorflow_cleanup(big),
            "dict_cleanup": lambda: dict_cleanup(big),
        },
    )
    return [
        Result(
            NAME,
            f"N={n:,} completed tasks retained vs 5-field dict records",
            Figure("per retained task", "bytes/task", column(samples["retained"], "bytes")),
            Figure("per dict record", "bytes/record", column(samples["dict"], "bytes")),
            Goal("≤ 3x dict record", "ratio", 3.0),
        ),
        Result(
            NAME,
            f"N={n:,} memory given back by cleanup (% of the growth)",
            Figure(
                "released by cleanup_completed_tasks", "%", column(samples["retained"], "released")
            ),
            Figure("released by rebuilding the dict", "%", column(samples["dict"], "released")),
            note="no goal; 100% means all the growth came back",
        ),
        Result(
            NAME,
            f"cleanup of {big:,} completed tasks, per record",
            Figure("cleanup_completed_tasks(0)", "µs/record", column(samples["cleanup"])),
            Figure("dict rebuilt without them", "µs/record", column(samples["dict_cleanup"])),
            note="no goal: reported",
        ),
    ]
