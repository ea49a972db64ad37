"""Crash tests through the public API: Kill any child mid-run and lose nothing.

1,000 tasks are registered and 100 are running (blocked on a gate) when the child is
killed. Calls made while it restarts must succeed; afterwards every task ends in the
terminal state its function dictates, with the right result, and no task body ran
twice.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from actors import ActorSystem, TaskStatus
from actors.runtime._shared import CHILD_IDS
from supervisors import Kill

N_TASKS = 1000
N_RUNNING = 100


def expected(i: int) -> int | str:
    return f"ValueError({i})" if i % 7 == 0 else i * 2


@pytest.mark.parametrize("child", CHILD_IDS)
async def test_kill_a_child_with_tasks_in_flight(child: str) -> None:
    backend_new = child != "legacy_task_manager"
    runs: Counter[int] = Counter()
    lock = threading.Lock()
    loop_gate = asyncio.Event()
    thread_gate = threading.Event()
    all_running = asyncio.Event()
    loop = asyncio.get_running_loop()

    def started(i: int) -> None:
        with lock:
            runs[i] += 1
            if sum(1 for k in runs if k < N_RUNNING) == N_RUNNING:
                loop.call_soon_threadsafe(all_running.set)

    async def coroutine_body(i: int) -> int:
        started(i)
        if i < N_RUNNING:
            await loop_gate.wait()
        if i % 7 == 0:
            raise ValueError(i)
        return i * 2

    def function_body(i: int) -> int:
        started(i)
        if i < N_RUNNING:
            thread_gate.wait(30)
        if i % 7 == 0:
            raise ValueError(i)
        return i * 2

    config = {
        "USE_NEW_TASK_SYSTEM": backend_new,
        "RESTART_BACKOFF_INITIAL": 0.0,
        "MAX_CONCURRENT_TASKS": 200,
        "MAX_THREAD_WORKERS": N_RUNNING,
    }
    # The old manager runs plain functions on the loop's default executor: make room
    # for all of them to block at once, as the pool's MAX_THREAD_WORKERS does.
    default_executor = ThreadPoolExecutor(N_RUNNING, thread_name_prefix="default")
    loop.set_default_executor(default_executor)
    async with ActorSystem(config) as system:
        tm = system.task_manager
        ids = []
        for i in range(N_TASKS):
            body = function_body if i % 2 else coroutine_body
            ids.append(await tm.register_task(f"t{i}", body, (i,), task_type=f"k{i % 3}"))
        for task_id in ids[:N_RUNNING]:
            assert await tm.execute_task(task_id) is True
        await asyncio.wait_for(all_running.wait(), 30)

        system.supervisor.child(child).tell(Kill())

        # Calls made during the restart succeed.
        statuses = await asyncio.gather(*(tm.get_task_status(t) for t in ids[:N_RUNNING]))
        assert set(statuses) == {TaskStatus.RUNNING}
        accepted = await asyncio.gather(*(tm.execute_task(t) for t in ids[N_RUNNING:]))
        assert accepted == [True] * (N_TASKS - N_RUNNING)
        loop_gate.set()
        thread_gate.set()
        outcomes = await asyncio.gather(
            *(tm.wait_for_task(t, timeout=60) for t in ids), return_exceptions=True
        )
        infos = {info.task_id: info for info in await tm.get_all_tasks()}
        restarts = {r.id: r.restarts for r in await system.supervisor.which_children()}

    default_executor.shutdown(wait=True)
    got = [repr(o) if isinstance(o, BaseException) else o for o in outcomes]
    assert got == [expected(i) for i in range(N_TASKS)]
    assert all(runs[i] == 1 for i in range(N_TASKS)), "a task body ran twice or never"
    assert len(runs) == N_TASKS
    failed = {ids[i] for i in range(N_TASKS) if i % 7 == 0}
    assert {t for t, info in infos.items() if info.status is TaskStatus.FAILED} == failed
    assert {t for t, info in infos.items() if info.status is TaskStatus.COMPLETED} == (
        set(ids) - failed
    )
    assert restarts[child] == 1
    assert sum(restarts.values()) == 1
