"""Cleanup gives memory back, and the periodic cleanup runs on the clock."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors import (
    ActorSystem,
    Config,
    DuplicateTaskError,
    InvalidTaskError,
    TaskNotFoundError,
    TaskStatus,
    UnifiedTaskManager,
)
from actors.engine import TaskRecord
from actors.runtime import messages
from actors.runtime._facade import FacadeActor
from actors.runtime._manager_base import FORGET_AT
from supervisors.testing import FakeClock


async def noop(i: int) -> int:
    return i


def live_records() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, TaskRecord))


async def run_and_clean(tm: UnifiedTaskManager, n: int) -> None:
    ids = await asyncio.gather(*(tm.register_task("t", noop, (i,)) for i in range(n)))
    await asyncio.gather(*(tm.execute_task(t) for t in ids))
    assert await asyncio.gather(*(tm.wait_for_task(t) for t in ids)) == list(range(n))
    assert live_records() == n
    assert await tm.cleanup_completed_tasks(0.0) == n
    assert await tm.get_all_tasks() == []
    assert (await tm.get_metrics()).tasks_by_status == {}


# These keep every finished task until they clean up themselves.
KEEP_ALL = {"MAX_CONCURRENT_TASKS": 1000, "MAX_FINISHED_TASKS": 0, "CLEANUP_INTERVAL": 0}


async def test_cleanup_of_50000_tasks_leaves_no_record_behind() -> None:
    async with ActorSystem(KEEP_ALL) as system:
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
    async with ActorSystem(KEEP_ALL) as system:
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


async def run_one(tm: UnifiedTaskManager, name: str) -> str:
    task_id = await tm.register_task(name, noop, (1,), task_id=name)
    await tm.execute_task(task_id, wait=True)
    return task_id


async def ids(tm: UnifiedTaskManager) -> list[str]:
    return sorted(info.task_id for info in await tm.get_all_tasks())


def test_finished_tasks_are_bounded_by_default() -> None:
    config = Config()
    assert (config.CLEANUP_INTERVAL, config.CLEANUP_MAX_AGE) == (60.0, 3600.0)
    assert config.MAX_FINISHED_TASKS == 10_000


@pytest.mark.parametrize("new", [True, False], ids=["new", "old"])
async def test_max_finished_tasks_keeps_the_last_that_finished(new: bool) -> None:
    config = {"MAX_FINISHED_TASKS": 2, "USE_NEW_TASK_SYSTEM": new}
    async with ActorSystem(config, clock=FakeClock()) as system:
        tm = system.task_manager
        waiting = await tm.register_task("waiting", noop, (0,), task_id="waiting")
        await run_one(tm, "a")
        await run_one(tm, "b")
        assert await ids(tm) == ["a", "b", waiting]
        await run_one(tm, "c")
        assert await ids(tm) == ["b", "c", waiting]
        await run_one(tm, "d")
        await run_one(tm, "e")
        assert await ids(tm) == ["d", "e", waiting]  # unfinished tasks do not count
        for gone in ("a", "b", "c"):
            with pytest.raises(TaskNotFoundError):
                await tm.get_task(gone)
        metrics = await tm.get_metrics()
        assert metrics.tasks_by_status == {"completed": 2, "pending": 1}
        # A removed id can be registered again.
        assert await run_one(tm, "a") == "a"
        assert await ids(tm) == ["a", "e", waiting]


async def test_max_finished_tasks_counts_what_a_cleanup_left() -> None:
    clock = FakeClock()
    async with ActorSystem({"MAX_FINISHED_TASKS": 3}, clock=clock) as system:
        tm = system.task_manager
        await run_one(tm, "a")
        clock.advance(10)
        await run_one(tm, "b")
        await run_one(tm, "c")
        assert await tm.cleanup_completed_tasks(5.0) == 1  # `a` only
        await run_one(tm, "d")
        assert await ids(tm) == ["b", "c", "d"]
        await run_one(tm, "e")
        assert await ids(tm) == ["c", "d", "e"]


async def test_zero_keeps_every_finished_task() -> None:
    async with ActorSystem({"MAX_FINISHED_TASKS": 0}, clock=FakeClock()) as system:
        tm = system.task_manager
        for name in "abcde":
            await run_one(tm, name)
        assert await ids(tm) == list("abcde")


async def test_by_default_a_finished_task_goes_after_an_hour() -> None:
    clock = FakeClock()
    async with ActorSystem(clock=clock) as system:
        tm = system.task_manager
        first = await run_one(tm, "first")
        # Both managers armed a cleanup timer at t=0; each tick re-arms it 60 s later.
        for _ in range(59):  # the ticks at t=60 ... 3540
            await asyncio.to_thread(clock.wait_for_timers, 2)
            clock.advance(60)
        await asyncio.to_thread(clock.wait_for_timers, 2)
        assert await ids(tm) == [first]  # 3540 s old
        second = await run_one(tm, "second")
        clock.advance(60)  # t=3600: `first` is an hour old
        await asyncio.to_thread(clock.wait_for_timers, 2)
        assert await ids(tm) == [second]


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many ids each `Forget` the facade handles tells it of (one wake-up each)."""
    sizes: list[int] = []
    forget = FacadeActor._forget

    def counting(self: FacadeActor, message: messages.Forget) -> None:
        sizes.append(len(message.task_ids))
        forget(self, message)

    monkeypatch.setattr(FacadeActor, "_forget", counting)
    return sizes


def duplicate(task_id: str) -> str:
    return rf"^task id '{task_id}' is already registered; pick another or omit task_id$"


@pytest.mark.parametrize("new", [True, False], ids=["new", "old"])
async def test_an_evicted_id_is_registered_again_before_and_after_the_facade_hears(
    new: bool, told: list[int]
) -> None:
    """The manager tells the facade of an evicted id later, in a batch; meanwhile the
    facade still routes the id, yet registering it again works, and the batch that
    lands afterwards does not drop the new registration's route."""
    config = {"MAX_FINISHED_TASKS": 1, "USE_NEW_TASK_SYSTEM": new, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=FakeClock()) as system:
        tm = system.task_manager
        assert system._state is not None
        owners = system._state.states["facade"].owners
        await run_one(tm, "a")
        await run_one(tm, "b")  # evicts `a`
        assert await ids(tm) == ["b"]
        with pytest.raises(TaskNotFoundError, match=r"'a'"):
            await tm.get_task("a")
        assert (told, sorted(owners)) == ([], ["a", "b"])  # not told yet: still routed
        assert await run_one(tm, "a") == "a"  # registered again (evicts `b`)
        assert (await tm.get_task("a")).status is TaskStatus.COMPLETED
        with pytest.raises(DuplicateTaskError, match=duplicate("a")):
            await tm.register_task("a", noop, (1,), task_id="a")
        with pytest.raises(DuplicateTaskError, match=duplicate("a")):
            await tm.submit(noop, 1, task_id="a")
        # A cleanup (it removes nothing here) tells the facade of every removed id.
        assert await tm.cleanup_completed_tasks(3600.0) == 0
        # (the facade handled the managers' `Forget` before the next call through it)
        assert (await tm.get_task("a")).status is TaskStatus.COMPLETED
        assert sorted(owners) == ["a"]
        assert sum(told) == 2  # `a` (its first registration) and `b`, once each
        assert await tm.submit(noop, 5, task_id="b") == 5  # registered again after
        assert await ids(tm) == ["b"]


async def test_an_evicted_id_registered_again_goes_to_the_current_system(
    told: list[int],
) -> None:
    """An id evicted from the old system, still routed there, registered again after a
    switch goes to the new system; one still registered in the old system is refused,
    and a dependency on the evicted one is not found (not "in the other system")."""
    config = {"MAX_FINISHED_TASKS": 1, "USE_NEW_TASK_SYSTEM": False, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=FakeClock()) as system:
        tm = system.task_manager
        await run_one(tm, "a")
        await run_one(tm, "b")  # evicts `a` from the old system
        await tm.use_new_task_system(True)
        assert told == []
        with pytest.raises(
            TaskNotFoundError,
            match=r"^dependency 'a' of task 'c' is not registered; register it first$",
        ):
            await tm.register_task("c", noop, (1,), dependencies=["a"], task_id="c")
        assert await run_one(tm, "a") == "a"
        assert ((await tm.get_task("a")).backend, (await tm.get_task("b")).backend) == (
            "new",
            "old",
        )
        with pytest.raises(DuplicateTaskError, match=duplicate("b")):
            await tm.register_task("b", noop, (1,), task_id="b")


@contextlib.asynccontextmanager
async def _a_evicted_from_the_old_system() -> AsyncIterator[tuple[Any, dict[str, str]]]:
    """A system that keeps one finished task (``MAX_FINISHED_TASKS=1``), whose old
    manager ran `a` then `b` (which evicted `a`, the facade not told yet), now routing new
    tasks to the new system: yields its client and the facade's routes."""
    config = {"MAX_FINISHED_TASKS": 1, "USE_NEW_TASK_SYSTEM": False, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=FakeClock()) as system:
        tm = system.task_manager
        assert system._state is not None
        await run_one(tm, "a")
        await run_one(tm, "b")  # evicts `a` from the old system
        await tm.use_new_task_system(True)
        yield tm, system._state.states["facade"].owners


async def test_a_dependency_across_systems_on_an_evicted_task_is_not_found(
    told: list[int],
) -> None:
    """A task evicted from the old system, still routed there, made to depend on a task
    of the new system: both managers are asked (either may have removed its id), so the
    call says the task is not found, not "in the other system"."""
    async with _a_evicted_from_the_old_system() as (tm, owners):
        assert await tm.register_task("d", noop, (1,), task_id="d") == "d"
        assert (told, owners) == ([], {"a": "old", "b": "old", "d": "new"})
        not_found = r"^no task with id 'a' \(never registered, or cleaned up\)$"
        with pytest.raises(TaskNotFoundError, match=not_found):
            await tm.add_dependency("a", "d")
        assert owners == {"b": "old", "d": "new"}  # the old manager told it of `a`
        with pytest.raises(TaskNotFoundError, match=not_found):
            await tm.add_dependency("d", "a")
        with pytest.raises(
            InvalidTaskError,
            match=r"^task 'b' belongs to the old task system and 'd' to the new one; "
            r"dependencies must stay in one system$",
        ):
            await tm.add_dependency("b", "d")  # both live: refused as before
        assert (await tm.get_task("d")).status is TaskStatus.PENDING


async def test_an_evicted_id_registered_again_on_an_evicted_dependency_is_not_found(
    told: list[int],
) -> None:
    """An id evicted from the new system registered again with a dependency evicted
    from the old one, both still routed: bounced off the new manager (the id), then off
    the old one (the dependency), the call says the dependency is not found."""
    async with _a_evicted_from_the_old_system() as (tm, owners):
        await run_one(tm, "x")
        await run_one(tm, "y")  # evicts `x` from the new system
        assert (told, owners) == ([], {"a": "old", "b": "old", "x": "new", "y": "new"})
        with pytest.raises(
            TaskNotFoundError,
            match=r"^dependency 'a' of task 'x' is not registered; register it first$",
        ):
            await tm.register_task("x", noop, (1,), dependencies=["a"], task_id="x")
        assert owners == {"b": "old", "y": "new"}  # both managers told of their ids
        assert await ids(tm) == ["b", "y"]


@pytest.mark.parametrize("new", [True, False], ids=["new", "old"])
async def test_evictions_reach_the_facade_in_batches_and_leave_no_route(
    new: bool, told: list[int]
) -> None:
    """Past `MAX_FINISHED_TASKS` every task evicts one: the facade hears of them
    `FORGET_AT` at a time (not once per task), and after a cleanup its table routes
    exactly the tasks that are left."""
    config = {"MAX_FINISHED_TASKS": 1, "USE_NEW_TASK_SYSTEM": new, "CLEANUP_INTERVAL": 0}
    n = FORGET_AT + 10
    async with ActorSystem(config, clock=FakeClock()) as system:
        tm = system.task_manager
        assert system._state is not None
        states = system._state.states
        engine = states["task_manager" if new else "legacy_task_manager"]
        for _ in range(n):
            assert await tm.submit(noop, 1) == 1
        await tm.get_metrics()  # (the manager handled everything before it)
        assert len(told) == 1
        assert told[0] + len(engine.forgotten) == n - 1
        assert len(states["facade"].owners) == n - told[0]
        assert await tm.cleanup_completed_tasks(3600.0) == 0
        live = await tm.get_all_tasks()  # (after the managers' `Forget`, through the facade)
        assert (len(told), sum(told), engine.forgotten) == (2, n - 1, [])
        assert len(live) == 1
        assert list(states["facade"].owners) == [live[0].task_id]
