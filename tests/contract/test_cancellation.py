"""Cancelling a task in each status.

Part of the contract both task systems satisfy (see conftest.py).
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import (
    WAIT,
    Boom,
    WaitsForToken,
    assert_cancelled,
    fails,
    gated,
    hangs,
    make_system,
    records,
    returns,
    timers_armed,
    until,
)

from actors import (
    UnifiedTaskManager,
)
from actors.core import CANCELLED, COMPLETED, FAILED, RETRYING, WAITING
from supervisors.testing import FakeClock

# -- cancellation -----------------------------------------------------------------------


async def test_cancel_pending(tm: UnifiedTaskManager) -> None:
    ran: list[str] = []
    await tm.register_task("job", records(ran, "job"), task_id="job")
    assert await tm.cancel_task("job") is True
    await assert_cancelled(tm, "job")
    assert (await tm.get_task("job")).attempts == 0
    assert ran == []


async def test_cancel_waiting(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []
    await tm.register_task("dep", gated(started, release, "dep"), task_id="dep")
    await tm.register_task("job", records(ran, "job"), dependencies=("dep",), task_id="job")
    await tm.execute_task("job")
    await until(started)
    assert await tm.get_task_status("job") is WAITING
    assert await tm.cancel_task("job") is True
    await assert_cancelled(tm, "job")
    release.set()
    assert await tm.wait_for_task("dep", timeout=WAIT) == "dep"
    assert await tm.get_task_status("job") is CANCELLED
    assert ran == []


async def test_cancel_running_coroutine(tm: UnifiedTaskManager) -> None:
    started, saw_cancel = asyncio.Event(), asyncio.Event()
    await tm.register_task("job", hangs(started, saw_cancel), task_id="job")
    await tm.execute_task("job")
    await until(started)
    assert await tm.cancel_task("job") is True
    await until(saw_cancel)
    await assert_cancelled(tm, "job")
    assert (await tm.get_task("job")).attempts == 1


async def test_cancel_running_plain_function(backend: str, clock: FakeClock) -> None:
    slow = WaitsForToken()
    async with make_system(backend, clock, MAX_THREAD_WORKERS=1) as system:
        tm = system.task_manager
        await tm.register_task("slow", slow.run, task_id="slow")
        await tm.execute_task("slow")
        await asyncio.to_thread(slow.started.wait, WAIT)
        assert await tm.cancel_task("slow") is True
        await slow.assert_token_was_set(tm)
        await assert_cancelled(tm, "slow")
        assert await tm.get_task_result("slow") is None


async def test_cancel_retrying(tm: UnifiedTaskManager, clock: FakeClock) -> None:
    calls: list[int] = []

    async def fails_first() -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise Boom("first")
        return "second"

    await tm.register_task("job", fails_first, max_retries=3, retry_delay=5, task_id="job")
    await tm.execute_task("job")
    await timers_armed(clock)
    assert await tm.get_task_status("job") is RETRYING
    assert await tm.cancel_task("job") is True
    await assert_cancelled(tm, "job")
    clock.advance(5)
    info = await tm.get_task("job")
    assert (info.status, info.attempts) == (CANCELLED, 1)
    assert calls == [1]


async def test_cancel_finished_returns_false(tm: UnifiedTaskManager) -> None:
    await tm.register_task("good", returns(1), task_id="good")
    await tm.register_task("bad", fails(Boom("x")), task_id="bad")
    await tm.register_task("gone", returns(2), task_id="gone")
    await tm.execute_task("good", wait=True)
    with pytest.raises(Boom):
        await tm.execute_task("bad", wait=True)
    assert await tm.cancel_task("gone") is True
    assert await tm.cancel_task("good") is False
    assert await tm.cancel_task("bad") is False
    assert await tm.cancel_task("gone") is False
    statuses = {info.task_id: info.status for info in await tm.get_all_tasks()}
    assert statuses == {"good": COMPLETED, "bad": FAILED, "gone": CANCELLED}
    assert await tm.get_task_result("good") == 1
