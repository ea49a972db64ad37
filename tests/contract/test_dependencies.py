"""Dependencies: order, failure propagation, cycles, adding one later.

Part of the contract both task systems satisfy (see conftest.py).
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import WAIT, Boom, fails, gated, records, returns, until

from actors import (
    DependencyCycleError,
    DependencyFailedError,
    InvalidTaskError,
    TaskNotFoundError,
    UnifiedTaskManager,
)
from actors.core import CANCELLED, COMPLETED, PENDING, WAITING

# -- dependencies -----------------------------------------------------------------------


async def test_task_starts_only_after_all_dependencies_completed(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    started_a, release_a = asyncio.Event(), asyncio.Event()
    started_b, release_b = asyncio.Event(), asyncio.Event()

    async def a() -> None:
        started_a.set()
        await release_a.wait()
        order.append("a")

    async def b() -> None:
        started_b.set()
        await release_b.wait()
        order.append("b")

    await tm.register_task("a", a, task_id="a")
    await tm.register_task("b", b, task_id="b")
    await tm.register_task("c", records(order, "c"), dependencies=("a", "b"), task_id="c")
    assert await tm.execute_task("a") is True
    assert await tm.execute_task("b") is True
    assert await tm.execute_task("c") is True
    await until(started_a)
    await until(started_b)
    assert await tm.get_task_status("c") is WAITING
    release_a.set()
    await tm.wait_for_task("a", timeout=WAIT)
    assert await tm.get_task_status("c") is WAITING
    assert order == ["a"]
    release_b.set()
    assert await tm.wait_for_task("c", timeout=WAIT) == "c"
    assert order == ["a", "b", "c"]


async def test_executing_a_task_executes_its_pending_dependencies(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    await tm.register_task("a", records(order, "a"), task_id="a")
    await tm.register_task("b", records(order, "b"), dependencies=("a",), task_id="b")
    await tm.register_task("c", records(order, "c"), dependencies=("b", "a"), task_id="c")
    await tm.register_task("x", records(order, "x"), task_id="x")
    assert await tm.execute_task("c", wait=True) == "c"
    assert order == ["a", "b", "c"]
    statuses = {info.task_id: info.status for info in await tm.get_all_tasks()}
    assert statuses == {"a": COMPLETED, "b": COMPLETED, "c": COMPLETED, "x": PENDING}
    # Already executed by c: executing them again is refused.
    assert await tm.execute_task("a") is False


async def test_failed_dependency_cancels_dependents_transitively(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    error = Boom("root failed")
    await tm.register_task("a", fails(error), task_id="a")
    await tm.register_task("b", records(order, "b"), dependencies=("a",), task_id="b")
    await tm.register_task("c", records(order, "c"), dependencies=("b",), task_id="c")
    await tm.register_task("d", records(order, "d"), dependencies=("c",), task_id="d")
    await tm.register_task("free", records(order, "free"), task_id="free")
    await tm.execute_task("c")
    with pytest.raises(DependencyFailedError) as raised:
        await tm.wait_for_task("c", timeout=WAIT)
    assert str(raised.value) == "task 'c' (c) cancelled: its dependency 'a' (a) failed"
    assert await tm.get_task_error("a") is error
    for task_id in ("b", "c", "d"):
        assert await tm.get_task_status(task_id) is CANCELLED
        dependency_error = await tm.get_task_error(task_id)
        assert isinstance(dependency_error, DependencyFailedError)
        assert dependency_error.task_id == task_id
        assert dependency_error.dependency == "a"
        assert str(dependency_error) == (
            f"task {task_id!r} ({task_id}) cancelled: its dependency 'a' (a) failed"
        )
    assert await tm.get_task_status("free") is PENDING
    assert order == []
    # A task registered later on the failed one is cancelled at once.
    await tm.register_task("late", records(order, "late"), dependencies=("a",), task_id="late")
    assert await tm.get_task_status("late") is CANCELLED
    with pytest.raises(DependencyFailedError, match=r"its dependency 'a' \(a\) failed"):
        await tm.execute_task("late", wait=True)


async def test_dependency_completed_before_registration(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    await tm.register_task("a", records(order, "a"), task_id="a")
    assert await tm.execute_task("a", wait=True) == "a"
    await tm.register_task("b", records(order, "b"), dependencies=("a",), task_id="b")
    assert (await tm.get_task("b")).dependencies == ("a",)
    assert await tm.execute_task("b", wait=True) == "b"
    assert order == ["a", "b"]


async def test_cancelled_dependency_cancels_dependents(tm: UnifiedTaskManager) -> None:
    await tm.register_task("a", returns(1), task_id="a")
    await tm.register_task("b", returns(2), dependencies=("a",), task_id="b")
    assert await tm.cancel_task("a") is True
    assert await tm.get_task_status("b") is CANCELLED
    error = await tm.get_task_error("b")
    assert isinstance(error, DependencyFailedError)
    assert str(error) == "task 'b' (b) cancelled: its dependency 'a' (a) cancelled"


async def test_unknown_dependency_is_refused(tm: UnifiedTaskManager) -> None:
    await tm.register_task("a", returns(1), task_id="a")
    before = await tm.get_all_tasks()
    with pytest.raises(TaskNotFoundError, match="'ghost'"):
        await tm.register_task("b", returns(2), dependencies=("a", "ghost"), task_id="b")
    assert await tm.get_all_tasks() == before
    # The refused id is free again.
    assert await tm.register_task("b", returns(2), task_id="b") == "b"


async def test_add_dependency(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    await tm.register_task("a", records(order, "a"), task_id="a")
    await tm.register_task("b", records(order, "b"), task_id="b")
    await tm.add_dependency("b", "a")
    assert (await tm.get_task("b")).dependencies == ("a",)
    assert await tm.execute_task("b", wait=True) == "b"
    assert order == ["a", "b"]


async def test_add_dependency_to_a_waiting_task_executes_it(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        started.set()
        await release.wait()
        order.append("first")

    await tm.register_task("first", first, task_id="first")
    await tm.register_task("extra", records(order, "extra"), task_id="extra")
    await tm.register_task("job", records(order, "job"), dependencies=("first",), task_id="job")
    await tm.execute_task("job")
    await until(started)
    await tm.add_dependency("job", "extra")
    assert await tm.wait_for_task("extra", timeout=WAIT) == "extra"
    assert await tm.get_task_status("job") is WAITING
    release.set()
    assert await tm.wait_for_task("job", timeout=WAIT) == "job"
    assert order == ["extra", "first", "job"]


async def test_dependency_cycle_is_refused(tm: UnifiedTaskManager) -> None:
    for task_id in ("a", "b", "c"):
        await tm.register_task(task_id, returns(task_id), task_id=task_id)
    await tm.add_dependency("c", "a")
    await tm.add_dependency("b", "c")
    before = await tm.get_all_tasks()
    with pytest.raises(DependencyCycleError) as raised:
        await tm.add_dependency("a", "b")
    assert str(raised.value) == (
        "dependency cycle: a -> b -> c -> a; remove one of these dependencies"
    )
    assert raised.value.cycle == ["a", "b", "c", "a"]
    assert await tm.get_all_tasks() == before
    with pytest.raises(DependencyCycleError, match=r"^dependency cycle: a -> a; "):
        await tm.add_dependency("a", "a")


async def test_add_dependency_to_a_running_or_finished_task_is_refused(
    tm: UnifiedTaskManager,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("running", gated(started, release), task_id="running")
    await tm.register_task("done", returns(1), task_id="done")
    await tm.register_task("other", returns(2), task_id="other")
    await tm.execute_task("done", wait=True)
    await tm.execute_task("running")
    await until(started)
    with pytest.raises(
        InvalidTaskError,
        match=r"^cannot add a dependency to task 'running': it is running; ",
    ):
        await tm.add_dependency("running", "other")
    with pytest.raises(
        InvalidTaskError, match=r"^cannot add a dependency to task 'done': it is completed; "
    ):
        await tm.add_dependency("done", "other")
    assert (await tm.get_task("running")).dependencies == ()
    release.set()
    await tm.wait_for_task("running", timeout=WAIT)
