"""Scenarios where features meet (third round): tasks that wait for tasks from inside
a task, ...

Each scenario asserts exact outcomes: final states, results or errors, how many times
each body ran, and the counts the monitor reports.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import WAIT, make_system

import actors
from actors import InvalidTaskError, TaskCancelledError, TaskStatus
from supervisors.testing import FakeClock

COMPLETED, FAILED, CANCELLED = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED


@pytest.fixture(params=["new", "old"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_task_that_waits_for_itself_or_for_its_dependent_is_refused_at_once(
    backend: str,
) -> None:
    """A task's code waits (``wait_for_task``, ``execute_task(wait=True)``, the blocking
    client from a plain function) for its own task, or for a task that depends on it
    through two others: that task ends only after the waiting one, so the wait is
    refused at once with `InvalidTaskError` naming the chain, and the waiting task goes
    on (its slot back: MAX_CONCURRENT_TASKS=1) and completes; a dependent that ended
    already (cancelled) answers at once. (Each wait hung: for ever without a timeout,
    else to its timeout.)"""
    seen: list[str] = []
    ids: dict[str, str] = {}

    async with make_system(backend, FakeClock(), MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager

        async def refused(call: Any) -> None:
            try:
                await asyncio.wait_for(call, WAIT)  # (a bound on the old hang only)
            except InvalidTaskError as error:
                seen.append(str(error))

        async def waits() -> str:
            me = actors.current_task_id()
            assert me is not None
            await refused(tm.wait_for_task(me))
            await refused(tm.wait_for_task(me, timeout=WAIT))
            await refused(tm.execute_task(me, wait=True))
            await refused(tm.wait_for_task(ids["c"], timeout=WAIT))
            await refused(tm.execute_task(ids["c"], wait=True))
            try:  # ended already (cancelled): answered at once
                await asyncio.wait_for(tm.wait_for_task(ids["d"]), WAIT)
            except TaskCancelledError as error:
                seen.append(type(error).__name__)
            return "went on"

        def waits_blocking() -> str:
            me = actors.current_task_id()
            assert me is not None
            for task_id in (me, ids["c"]):
                try:
                    system.blocking.wait_for_task(task_id, timeout=WAIT)
                except InvalidTaskError as error:
                    seen.append(str(error))
            return "went on"

        for body in (waits, waits_blocking):
            seen.clear()
            ids["w"] = w = await tm.register_task("waiter", body)
            ids["a"] = a = await tm.register_task("a", str, dependencies=[w])
            ids["b"] = b = await tm.register_task("b", str, dependencies=[a])
            ids["c"] = c = await tm.register_task("c", str, dependencies=[b])
            ids["d"] = d = await tm.register_task("d", str, dependencies=[w])
            assert await tm.cancel_task(d) is True
            assert await asyncio.wait_for(tm.execute_task(w, wait=True), WAIT) == "went on"
            itself = (
                f"task 'waiter' ({w}) cannot wait for its own outcome: it ends only after "
                "this wait, which would never end"
            )
            chain = (
                f"task 'waiter' ({w}) cannot wait for task 'c' ({c}): it depends on the "
                f"waiting task ({c} -> {b} -> {a} -> {w}), so it ends only after this "
                "wait, which would never end"
            )
            if body is waits:
                assert seen == [itself] * 3 + [chain] * 2 + ["TaskCancelledError"]
            else:
                assert seen == [itself, chain]
            infos = {i.task_id: (i.status, i.attempts) for i in await tm.get_all_tasks()}
            assert infos[w] == (COMPLETED, 1)
            # c was not executed by the refused execute_task: nothing of the chain ran.
            assert [infos[t] for t in (a, b, c)] == [(TaskStatus.PENDING, 0)] * 3
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"completed": 2, "pending": 6, "cancelled": 2}
