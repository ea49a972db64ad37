"""Every wait has a bound: answers and starts posted to an event loop that is gone end
their callers' waits with an error instead of being kept for a drain that never runs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from actors import ActorSystem, ActorSystemError, TaskStatus
from actors.core import LoopBridge

WAIT = 5.0
"""Upper bound, in real seconds, on waiting for anything in these tests."""


def test_every_post_to_a_closed_loop_says_so_and_keeps_nothing() -> None:
    loop = asyncio.new_event_loop()
    bridge = LoopBridge(loop)
    loop.close()
    ran: list[int] = []
    assert [bridge.post(ran.append, i) for i in range(3)] == [False, False, False]
    assert bridge.post2(lambda a, b: ran.append(a + b), 1, 2) is False
    assert (bridge.closed, list(bridge._pending), ran) == (True, [], [])


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_every_coroutine_task_of_a_closed_loop_fails_to_start(backend: str) -> None:
    """Tasks registered from an event loop that has closed since: each one executed
    fails at once, naming the closed loop (none is left running for ever)."""
    async with ActorSystem(
        {"USE_NEW_TASK_SYSTEM": backend == "new", "CLEANUP_INTERVAL": 0}
    ) as system:
        tm = system.task_manager

        async def job() -> int:
            return 1

        async def register() -> list[str]:
            return [await tm.register_task("job", job, task_id=f"job{i}") for i in range(3)]

        ids = await asyncio.to_thread(asyncio.run, register())  # that loop is closed now
        for task_id in ids:
            await tm.execute_task(task_id)
            with pytest.raises(ActorSystemError) as failed:
                await tm.wait_for_task(task_id, timeout=WAIT)
            assert str(failed.value) == (
                f"task {task_id!r} cannot start: the event loop that registered it is closed"
            )
            assert await tm.get_task_status(task_id) is TaskStatus.FAILED


async def test_work_queued_on_the_pool_when_it_stops_ends_its_callers() -> None:
    """The pool is stopped (an operator's ``terminate_child``) while one function holds
    its only worker: the calls queued behind it never run, and their callers hear so (a
    ``thread_pool.submit``, a task's attempt) instead of waiting for ever. The function
    that was running still answers its caller when it ends."""
    gate, started = threading.Event(), threading.Event()

    def stuck() -> str:
        started.set()
        gate.wait(WAIT)  # ignores its cancellation token
        return "late"

    config = {"MAX_THREAD_WORKERS": 1, "SHUTDOWN_TIMEOUT": 0.25, "CLEANUP_INTERVAL": 0}
    try:
        async with ActorSystem(config) as system:
            tm = system.task_manager
            running = asyncio.ensure_future(tm.thread_pool.submit(stuck))
            assert await asyncio.to_thread(started.wait, WAIT)
            queued = asyncio.ensure_future(tm.thread_pool.submit(sum, (1, 2)))
            await tm.register_task("queued", sum, ((1, 2),), task_id="queued")
            assert await tm.execute_task("queued") is True
            root = system.supervisor.actor_ref.proxy()
            await asyncio.to_thread(root.terminate_child("thread_pool").get, timeout=WAIT)
            with pytest.raises(ActorSystemError) as refused:
                await asyncio.wait_for(queued, WAIT)
            assert str(refused.value) == (
                "thread_pool.submit('sum') did not run: the thread pool was stopped before "
                "a worker took it"
            )
            with pytest.raises(ActorSystemError) as failed:
                await tm.wait_for_task("queued", timeout=WAIT)
            assert str(failed.value) == (
                "task 'queued' did not run: the thread pool was stopped before a worker "
                "took its attempt"
            )
            assert await tm.get_task_status("queued") is TaskStatus.FAILED
            gate.set()
            assert await asyncio.wait_for(running, WAIT) == "late"
    finally:
        gate.set()
