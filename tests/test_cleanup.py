"""Cleanup gives memory back, and the periodic cleanup runs on the clock."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from actors import ActorSystem, TaskNotFoundError, TaskStatus, UnifiedTaskManager
from actors._store import TaskRecord
from supervisors.testing import FakeClock


async def noop(i: int) -> int:
    return i


def live_records() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is TaskRecord)


async def run_and_clean(tm: UnifiedTaskManager, n: int) -> None:
    ids = await asyncio.gather(*(tm.register_task("t", noop, (i,)) for i in range(n)))
    await asyncio.gather(*(tm.execute_task(t) for t in ids))
    assert await asyncio.gather(*(tm.wait_for_task(t) for t in ids)) == list(range(n))
    assert live_records() == n
    assert await tm.cleanup_completed_tasks(0.0) == n
    assert await tm.get_all_tasks() == []
    assert (await tm.get_metrics()).tasks_by_status == {}


async def test_cleanup_of_50000_tasks_leaves_no_record_behind() -> None:
    async with ActorSystem({"MAX_CONCURRENT_TASKS": 1000}) as system:
        await run_and_clean(system.task_manager, 50_000)
        assert live_records() == 0
        assert system._state is not None
        facade_state = system._state.states["facade"]
        manager_state = system._state.states["task_manager"]
        assert (facade_state.owners, manager_state.tasks, len(manager_state.graph)) == ({}, {}, 0)


async def test_cleanup_gives_the_memory_back() -> None:
    """Steady state: after a first round sized every table, a second round of tasks
    and its cleanup leave the traced memory where it was."""
    n = 20_000
    async with ActorSystem({"MAX_CONCURRENT_TASKS": 1000}) as system:
        tm = system.task_manager
        await run_and_clean(tm, n)  # warm up: queues, sets and dicts reach their size
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            ids = await asyncio.gather(*(tm.register_task("t", noop, (i,)) for i in range(n)))
            await asyncio.gather(*(tm.execute_task(t) for t in ids))
            await asyncio.gather(*(tm.wait_for_task(t) for t in ids))
            gc.collect()
            with_tasks = tracemalloc.get_traced_memory()[0]
            assert await tm.cleanup_completed_tasks(0.0) == n
            del ids
            # The monitor hears of the removals before the caller gets the count; a
            # call it answers afterwards has seen them.
            assert (await tm.get_metrics()).tasks_by_status == {}
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    grown, kept = with_tasks - before, after - before
    print(f"\n{n} tasks: {grown / n:.0f} B/task retained; {kept / n:.1f} B/task after cleanup")
    assert grown > 200 * n
    assert kept < 0.05 * grown, f"{kept} of {grown} bytes not given back"


async def test_periodic_cleanup_removes_old_finished_tasks_only() -> None:
    clock = FakeClock()
    config = {"CLEANUP_INTERVAL": 60.0, "CLEANUP_MAX_AGE": 100.0}
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        old = await tm.register_task("old", noop, (1,))
        await tm.execute_task(old, wait=True)
        clock.advance(50)
        young = await tm.register_task("young", noop, (2,))
        await tm.execute_task(young, wait=True)
        unfinished = await tm.register_task("pending", noop, (3,))
        # Both managers armed a cleanup timer at t=0; their ticks at t=60 find nothing
        # older than 100 s and re-arm for t=120, when `old` is 120 s old.
        clock.advance(10)
        await asyncio.to_thread(clock.wait_for_timers, 2)
        clock.advance(60)
        while True:
            try:
                await tm.get_task(old)
            except TaskNotFoundError:
                break
            await asyncio.sleep(0)
        assert (await tm.get_task(young)).status is TaskStatus.COMPLETED
        assert (await tm.get_task(unfinished)).status is TaskStatus.PENDING
        assert {i.task_id for i in await tm.get_all_tasks()} == {young, unfinished}
