"""Status queries and the cleanup of old finished tasks.

Part of the contract both task systems satisfy (see conftest.py).
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import WAIT, Boom, fails, gated, ids, returns, until

from actors import (
    TaskNotFoundError,
    UnifiedTaskManager,
)
from actors.core import CANCELLED, COMPLETED, FAILED, PENDING, QUEUED, RETRYING, RUNNING, WAITING
from supervisors.testing import FakeClock

# -- cleanup ----------------------------------------------------------------------------


async def test_cleanup_removes_only_old_terminal_tasks(
    tm: UnifiedTaskManager, clock: FakeClock
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("old", returns(1), task_id="old")
    await tm.execute_task("old", wait=True)  # finished at t=0
    clock.advance(10)
    await tm.register_task("failed", fails(Boom("x")), task_id="failed")
    await tm.register_task("cancelled", returns(2), task_id="cancelled")
    await tm.register_task("pending", returns(3), task_id="pending")
    await tm.register_task("running", gated(started, release, 4), task_id="running")
    with pytest.raises(Boom):
        await tm.execute_task("failed", wait=True)  # finished at t=10
    await tm.cancel_task("cancelled")  # finished at t=10
    await tm.execute_task("running")
    await until(started)
    clock.advance(5)  # now t=15

    assert await tm.cleanup_completed_tasks() == 0
    assert await tm.cleanup_completed_tasks(10) == 1
    with pytest.raises(TaskNotFoundError, match="'old'"):
        await tm.get_task("old")
    assert ids(await tm.get_all_tasks()) == {"failed", "cancelled", "pending", "running"}

    assert await tm.cleanup_completed_tasks(5.5) == 0
    assert await tm.cleanup_completed_tasks(5) == 2
    for task_id in ("failed", "cancelled"):
        with pytest.raises(TaskNotFoundError, match=repr(task_id)):
            await tm.get_task(task_id)
        with pytest.raises(TaskNotFoundError, match=repr(task_id)):
            await tm.get_task_status(task_id)
        with pytest.raises(TaskNotFoundError, match=repr(task_id)):
            await tm.execute_task(task_id)
    assert ids(await tm.get_all_tasks()) == {"pending", "running"}
    assert await tm.cleanup_completed_tasks(0) == 0

    release.set()
    assert await tm.wait_for_task("running", timeout=WAIT) == 4
    assert await tm.cleanup_completed_tasks(0) == 1
    assert ids(await tm.get_all_tasks()) == {"pending"}
    # A cleaned-up id may be registered again.
    assert await tm.register_task("again", returns(5), task_id="old") == "old"
    assert await tm.execute_task("old", wait=True) == 5


# -- status queries ---------------------------------------------------------------------


async def test_status_queries_return_exact_sets(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("p1", returns(1), task_type="etl", task_id="p1")
    await tm.register_task("p2", returns(2), task_type="report", task_id="p2")
    await tm.register_task("ok", returns(3), task_type="etl", task_id="ok")
    await tm.register_task("bad", fails(Boom("x")), task_type="report", task_id="bad")
    await tm.register_task("stop", returns(4), task_id="stop")
    await tm.register_task("run", gated(started, release), task_type="etl", task_id="run")
    await tm.execute_task("ok", wait=True)
    with pytest.raises(Boom):
        await tm.execute_task("bad", wait=True)
    await tm.cancel_task("stop")
    await tm.execute_task("run")
    await until(started)

    assert ids(await tm.get_all_tasks()) == {"p1", "p2", "ok", "bad", "stop", "run"}
    expected = {
        PENDING: {"p1", "p2"},
        WAITING: set(),
        QUEUED: set(),
        RUNNING: {"run"},
        RETRYING: set(),
        COMPLETED: {"ok"},
        FAILED: {"bad"},
        CANCELLED: {"stop"},
    }
    for status, wanted in expected.items():
        assert ids(await tm.get_tasks_by_status(status)) == wanted, status
        assert ids(await tm.get_tasks_by_status(status.value)) == wanted, status
    assert ids(await tm.get_tasks_by_type("etl")) == {"p1", "ok", "run"}
    assert ids(await tm.get_tasks_by_type("report")) == {"p2", "bad"}
    assert ids(await tm.get_tasks_by_type("default")) == {"stop"}
    assert await tm.get_tasks_by_type("nothing") == []
    for info in await tm.get_tasks_by_status(PENDING):
        assert info.status is PENDING
    release.set()
    await tm.wait_for_task("run", timeout=WAIT)
    assert ids(await tm.get_tasks_by_status(COMPLETED)) == {"ok", "run"}
