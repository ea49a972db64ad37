"""Registering and executing a task, and reading its result, error and status.

Part of the contract both task systems satisfy (see conftest.py).
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import WAIT, Boom, fails, gated, ids, returns, until

import actors
from actors import (
    DuplicateTaskError,
    TaskInfo,
    TaskPriority,
    UnifiedTaskManager,
)
from actors.core import COMPLETED, FAILED, PENDING, RUNNING

# -- register ---------------------------------------------------------------------------


async def test_register_returns_a_fresh_id(tm: UnifiedTaskManager) -> None:
    first = await tm.register_task("job", returns(1))
    second = await tm.register_task("job", returns(2))
    assert isinstance(first, str)
    assert first
    assert first != second
    assert (await tm.get_task(first)).task_id == first
    assert ids(await tm.get_all_tasks()) == {first, second}


async def test_register_honours_task_id_and_every_field(
    tm: UnifiedTaskManager, backend: str
) -> None:
    await tm.register_task("dependency", returns(0), task_id="dep")
    metadata = {"owner": "ops"}
    task_id = await tm.register_task(
        "load",
        returns(1),
        task_type="etl",
        description="loads the data",
        metadata=metadata,
        dependencies=("dep",),
        priority=TaskPriority.HIGH,
        max_retries=2,
        task_id="t1",
    )
    assert task_id == "t1"
    metadata["owner"] = "someone else"  # the task keeps a copy
    info = await tm.get_task("t1")
    assert info == TaskInfo(
        task_id="t1",
        name="load",
        status=PENDING,
        task_type="etl",
        description="loads the data",
        metadata={"owner": "ops"},
        dependencies=("dep",),
        priority=TaskPriority.HIGH,
        attempts=0,
        max_retries=2,
        created_at=0.0,
        started_at=None,
        finished_at=None,
        error=None,
        backend=backend,
    )
    assert info.duration is None
    assert info.done is False


async def test_taken_task_id_is_refused(tm: UnifiedTaskManager) -> None:
    await tm.register_task("first", returns(1), task_id="same")
    before = await tm.get_all_tasks()
    with pytest.raises(DuplicateTaskError, match="'same'"):
        await tm.register_task("second", returns(2), task_id="same")
    assert await tm.get_all_tasks() == before


# -- execute ----------------------------------------------------------------------------


async def test_execute_without_wait_accepts_once(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("job", gated(started, release, "done"), task_id="job")
    assert await tm.execute_task("job") is True
    assert await tm.execute_task("job") is False
    await until(started)
    assert await tm.execute_task("job") is False
    waiter = asyncio.ensure_future(tm.execute_task("job", wait=True))
    assert await tm.get_task_status("job") is RUNNING
    release.set()
    assert await asyncio.wait_for(waiter, WAIT) == "done"
    assert await tm.wait_for_task("job", timeout=WAIT) == "done"
    assert await tm.execute_task("job") is False
    assert (await tm.get_task("job")).attempts == 1


async def test_execute_with_wait_returns_the_result(tm: UnifiedTaskManager) -> None:
    async def double(x: int, *, plus: int) -> int:
        return 2 * x + plus

    await tm.register_task("double", double, (20,), {"plus": 2}, task_id="d")
    assert await tm.execute_task("d", wait=True) == 42


async def test_execute_with_wait_raises_the_task_exception(tm: UnifiedTaskManager) -> None:
    error = Boom("disk full")
    await tm.register_task("bad", fails(error), task_id="bad")
    with pytest.raises(Boom, match=r"^disk full$") as raised:
        await tm.execute_task("bad", wait=True)
    assert raised.value is error


async def test_wait_on_a_finished_task_gives_the_same_outcome(tm: UnifiedTaskManager) -> None:
    error = Boom("no")
    await tm.register_task("good", returns({"rows": 3}), task_id="good")
    await tm.register_task("bad", fails(error), task_id="bad")
    assert await tm.execute_task("good", wait=True) == {"rows": 3}
    assert await tm.execute_task("good", wait=True) == {"rows": 3}
    assert await tm.wait_for_task("good", timeout=WAIT) == {"rows": 3}
    with pytest.raises(Boom):
        await tm.execute_task("bad", wait=True)
    with pytest.raises(Boom) as again:
        await tm.execute_task("bad", wait=True)
    assert again.value is error
    with pytest.raises(Boom) as waited:
        await tm.wait_for_task("bad", timeout=WAIT)
    assert waited.value is error


async def test_wait_for_task_times_out_and_the_task_goes_on(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("slow", gated(started, release, 7), task_id="slow")
    await tm.execute_task("slow")
    await until(started)
    with pytest.raises(
        actors.WaitTimeoutError,
        match=r"^task 'slow' did not finish within 0\.05s; it keeps running$",
    ):
        await tm.wait_for_task("slow", timeout=0.05)
    assert await tm.get_task_status("slow") is RUNNING
    release.set()
    assert await tm.wait_for_task("slow", timeout=WAIT) == 7


async def test_waiters_registered_before_execution_get_the_outcome(
    tm: UnifiedTaskManager,
) -> None:
    await tm.register_task("good", returns("value"), task_id="good")
    await tm.register_task("bad", fails(Boom("no")), task_id="bad")
    good = [asyncio.ensure_future(tm.wait_for_task("good", timeout=WAIT)) for _ in range(2)]
    bad = asyncio.ensure_future(tm.wait_for_task("bad", timeout=WAIT))
    assert await tm.get_task_status("good") is PENDING
    assert not any(waiter.done() for waiter in [*good, bad])
    await tm.execute_task("good")
    await tm.execute_task("bad")
    assert await asyncio.wait_for(asyncio.gather(*good), WAIT) == ["value", "value"]
    with pytest.raises(Boom, match=r"^no$"):
        await asyncio.wait_for(bad, WAIT)


async def test_wrong_arguments_fail_the_task(tm: UnifiedTaskManager) -> None:
    async def takes_one(x: int) -> int:
        return x

    def plain_takes_one(x: int) -> int:
        return x

    await tm.register_task("coro", takes_one, (1, 2), task_id="coro")
    await tm.register_task("plain", plain_takes_one, kwargs={"y": 1}, task_id="plain")
    for task_id in ("coro", "plain"):
        with pytest.raises(TypeError):
            await tm.execute_task(task_id, wait=True)
        info = await tm.get_task(task_id)
        assert (info.status, info.attempts) == (FAILED, 1)
        assert isinstance(info.error, TypeError)


# -- results at each stage --------------------------------------------------------------


async def test_result_error_and_status_through_a_success(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("job", gated(started, release, "value"), task_id="job")
    assert await tm.get_task_status("job") is PENDING
    assert await tm.get_task_result("job") is None
    assert await tm.get_task_error("job") is None
    await tm.execute_task("job")
    await until(started)
    assert await tm.get_task_status("job") is RUNNING
    assert await tm.get_task_result("job") is None
    assert await tm.get_task_error("job") is None
    release.set()
    assert await tm.wait_for_task("job", timeout=WAIT) == "value"
    assert await tm.get_task_status("job") is COMPLETED
    assert await tm.get_task_result("job") == "value"
    assert await tm.get_task_error("job") is None
    info = await tm.get_task("job")
    assert (info.status, info.attempts, info.error, info.done) == (COMPLETED, 1, None, True)
    assert (info.started_at, info.finished_at, info.duration) == (0.0, 0.0, 0.0)


async def test_result_error_and_status_through_a_failure(tm: UnifiedTaskManager) -> None:
    error = Boom("bad input")
    await tm.register_task("job", fails(error), task_id="job")
    with pytest.raises(Boom):
        await tm.execute_task("job", wait=True)
    assert await tm.get_task_status("job") is FAILED
    assert await tm.get_task_result("job") is None
    assert await tm.get_task_error("job") is error
    info = await tm.get_task("job")
    assert (info.status, info.attempts, info.error) == (FAILED, 1, error)
