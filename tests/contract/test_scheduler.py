"""The new manager's scheduler (priorities, the concurrency limit) and switching systems.

Part of the contract both task systems satisfy (see conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from helpers import (
    WAIT,
    Boom,
    assert_cancelled,
    gated,
    ids,
    make_system,
    records,
    returns,
    timers_armed,
    until,
)

from actors import (
    DuplicateTaskError,
    InvalidTaskError,
    TaskNotFoundError,
    TaskPriority,
)
from actors.core import COMPLETED, QUEUED, RETRYING, RUNNING
from supervisors.testing import FakeClock

# -- the new manager only: priorities and the concurrency limit -------------------------


async def test_priority_order_then_first_come_first_served(clock: FakeClock) -> None:
    order: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()
    async with make_system("new", clock, MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager
        await tm.register_task("blocker", gated(started, release), task_id="blocker")
        await tm.execute_task("blocker")
        await until(started)
        queued = [
            ("low", TaskPriority.LOW),
            ("normal-1", TaskPriority.NORMAL),
            ("high", TaskPriority.HIGH),
            ("critical", TaskPriority.CRITICAL),
            ("normal-2", TaskPriority.NORMAL),
        ]
        for task_id, priority in queued:
            await tm.register_task(
                task_id, records(order, task_id), priority=priority, task_id=task_id
            )
            assert await tm.execute_task(task_id) is True
        assert ids(await tm.get_tasks_by_status(QUEUED)) == {task_id for task_id, _ in queued}
        release.set()
        for task_id, _ in queued:
            assert await tm.wait_for_task(task_id, timeout=WAIT) == task_id
        assert order == ["critical", "high", "normal-1", "normal-2", "low"]


async def test_cancel_queued(clock: FakeClock) -> None:
    order: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()
    async with make_system("new", clock, MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager
        await tm.register_task("blocker", gated(started, release), task_id="blocker")
        await tm.register_task("queued", records(order, "queued"), task_id="queued")
        await tm.register_task("next", records(order, "next"), task_id="next")
        await tm.execute_task("blocker")
        await until(started)
        await tm.execute_task("queued")
        await tm.execute_task("next")
        assert await tm.get_task_status("queued") is QUEUED
        assert await tm.cancel_task("queued") is True
        await assert_cancelled(tm, "queued")
        release.set()
        assert await tm.wait_for_task("next", timeout=WAIT) == "next"
        assert order == ["next"]
        assert (await tm.get_task("queued")).attempts == 0


async def test_retrying_task_holds_no_slot(clock: FakeClock) -> None:
    calls: list[int] = []

    async def fails_first() -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise Boom("first")
        return "retried"

    async with make_system("new", clock, MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager
        await tm.register_task("flaky", fails_first, max_retries=1, retry_delay=5, task_id="f")
        await tm.register_task("other", returns("other"), task_id="other")
        await tm.execute_task("f")
        await timers_armed(clock)
        assert await tm.get_task_status("f") is RETRYING
        assert await tm.execute_task("other", wait=True) == "other"
        clock.advance(5)
        assert await tm.wait_for_task("f", timeout=WAIT) == "retried"
        assert calls == [1, 2]


async def test_concurrency_limit(clock: FakeClock) -> None:
    running = 0
    peak = 0
    started = [asyncio.Event() for _ in range(10)]
    release = asyncio.Event()

    def body(index: int) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            started[index].set()
            await release.wait()
            running -= 1
            return index

        return run

    async with make_system("new", clock, MAX_CONCURRENT_TASKS=3) as system:
        tm = system.task_manager
        for index in range(10):
            await tm.register_task(f"t{index}", body(index), task_id=f"t{index}")
        for index in range(10):
            assert await tm.execute_task(f"t{index}") is True
        for index in range(3):
            await until(started[index])
        assert ids(await tm.get_tasks_by_status(RUNNING)) == {"t0", "t1", "t2"}
        assert ids(await tm.get_tasks_by_status(QUEUED)) == {f"t{i}" for i in range(3, 10)}
        assert not any(event.is_set() for event in started[3:])
        release.set()
        for index in range(10):
            assert await tm.wait_for_task(f"t{index}", timeout=WAIT) == index
        assert peak == 3


# -- switching between the two systems --------------------------------------------------


async def test_switching_systems_keeps_old_tasks_reachable(backend: str, clock: FakeClock) -> None:
    other = "old" if backend == "new" else "new"
    async with make_system(backend, clock) as system:
        tm = system.task_manager
        await tm.register_task("a", returns("a"), task_id="a")
        await tm.register_task("b", returns("b"), task_id="b")
        await tm.register_task("waits", returns("w"), task_id="waits")
        assert await tm.execute_task("a", wait=True) == "a"

        await tm.use_new_task_system(other == "new")
        await tm.register_task("c", returns("c"), task_id="c")
        await tm.register_task("d", returns("d"), task_id="d")
        backends = {info.task_id: info.backend for info in await tm.get_all_tasks()}
        assert backends == {"a": backend, "b": backend, "waits": backend, "c": other, "d": other}
        assert (await tm.get_task("b")).backend == backend
        assert (await tm.get_task("c")).backend == other

        # Old tasks are still executed, queried and cancelled.
        assert await tm.execute_task("b", wait=True) == "b"
        assert await tm.get_task_result("b") == "b"
        assert await tm.execute_task("c", wait=True) == "c"
        assert ids(await tm.get_tasks_by_status(COMPLETED)) == {"a", "b", "c"}

        # Ids are unique across both systems; dependencies stay inside one.
        before = await tm.get_all_tasks()
        with pytest.raises(DuplicateTaskError, match="'a'"):
            await tm.register_task("again", returns(0), task_id="a")
        with pytest.raises(
            InvalidTaskError,
            match=f"^dependency 'waits' belongs to the {backend} task system, but new tasks "
            f"go to the {other} one; ",
        ):
            await tm.register_task("e", returns(0), dependencies=("waits",), task_id="e")
        with pytest.raises(
            InvalidTaskError,
            match=f"^task 'd' belongs to the {other} task system and 'waits' to the "
            f"{backend} one; ",
        ):
            await tm.add_dependency("d", "waits")
        with pytest.raises(InvalidTaskError, match="'d'"):
            await tm.add_dependency("waits", "d")
        assert await tm.get_all_tasks() == before

        # Cleanup reaches both systems.
        assert await tm.cleanup_completed_tasks(0) == 3
        for task_id in ("a", "b", "c"):
            with pytest.raises(TaskNotFoundError):
                await tm.get_task(task_id)
        assert await tm.cancel_task("waits") is True
        assert await tm.cleanup_completed_tasks(0) == 1
        remaining = {info.task_id: info.backend for info in await tm.get_all_tasks()}
        assert remaining == {"d": other}

        # And back again: new registrations follow the flag.
        await tm.use_new_task_system(backend == "new")
        await tm.register_task("f", returns("f"), task_id="f")
        assert (await tm.get_task("f")).backend == backend
        assert await tm.execute_task("d", wait=True) == "d"
