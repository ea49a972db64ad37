"""Which code counts as a task's own when it calls the client: only the attempt's own
flow (its asyncio task) is the caller whose wait for its own task, or for a task that
depends on it, is refused, and whose wait lends its concurrency slot. An asyncio task
that the task's code starts copies its context, yet is not the attempt: its wait just
waits (the refusals themselves: tests/test_combos3.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import WAIT, make_system, until

import actors
from actors import InvalidTaskError, TaskStatus
from supervisors.testing import FakeClock


async def _triple(x: int) -> int:
    return 3 * x


async def test_a_background_asyncio_task_of_a_task_waits_for_its_dependents(
    backend: str,
) -> None:
    """Task a's code starts asyncio tasks that wait for b and c (which depend on a) and
    submit a task depending on a, all while a runs: none is refused (each would end
    once a returns, and does), and each gets its exact value. (They were refused with
    `InvalidTaskError` at once: the asyncio tasks carry a's context.)"""
    ids: dict[str, str] = {}
    watchers: list[asyncio.Task[Any]] = []
    seen: list[Any] = []
    sent = asyncio.Event()

    async with make_system(backend, FakeClock()) as system:
        tm = system.task_manager

        async def watch(which: str) -> Any:
            if which == "submit":
                sent.set()  # (a resumes after this step: the three requests are sent)
                return await tm.submit(_triple, 5, dependencies=[ids["a"]])
            if which == "wait":
                return await tm.wait_for_task(ids["b"], timeout=WAIT)
            return await tm.execute_task(ids["c"], wait=True)

        async def a() -> str:
            for which in ("wait", "execute", "submit"):
                watchers.append(asyncio.create_task(watch(which)))
            await until(sent)
            # Sent after the watchers' requests: the manager saw them while a ran.
            seen.append(await tm.get_task_status(ids["a"]))
            return "a"

        async def b() -> str:
            return "b"

        async def c() -> str:
            return "c"

        ids["a"] = await tm.register_task("a", a)
        ids["b"] = await tm.register_task("b", b, dependencies=[ids["a"]])
        ids["c"] = await tm.register_task("c", c, dependencies=[ids["a"]])
        assert await asyncio.wait_for(tm.execute_task(ids["b"], wait=True), WAIT) == "b"
        outcomes = await asyncio.wait_for(asyncio.gather(*watchers, return_exceptions=True), WAIT)
        assert outcomes == ["b", "c", 15]
        assert seen == [TaskStatus.RUNNING]
        infos = {i.name: (i.status, i.attempts) for i in await tm.get_all_tasks()}
        assert infos == {
            "a": (TaskStatus.COMPLETED, 1),
            "b": (TaskStatus.COMPLETED, 1),
            "c": (TaskStatus.COMPLETED, 1),
            "_triple": (TaskStatus.COMPLETED, 1),
        }


async def test_a_background_asyncio_tasks_wait_does_not_lend_its_tasks_slot() -> None:
    """MAX_CONCURRENT_TASKS=1: task a's code starts an asyncio task that waits for an
    unrelated task x (not executed yet), while a goes on running. a's slot is not lent:
    c, queued behind a, starts only once a has ended; the background wait ends when x
    is executed. (The background wait lent a's slot: c ran beside a, two tasks over a
    limit of one.)"""
    ids: dict[str, str] = {}
    order: list[str] = []
    watcher: list[asyncio.Task[Any]] = []
    sent, c_queued = asyncio.Event(), asyncio.Event()

    async with make_system("new", FakeClock(), MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager

        async def watch() -> Any:
            sent.set()  # (a resumes after this step: the wait is sent)
            return await tm.wait_for_task(ids["x"], timeout=WAIT)

        async def a() -> str:
            await until(c_queued)
            watcher.append(asyncio.create_task(watch()))
            await until(sent)
            # Sent after the watcher's wait: the manager had it (and lent a's slot, if
            # it did) before it answers this.
            order.append(f"c is {(await tm.get_task_status(ids['c'])).value} while a runs")
            order.append("a")
            return "a"

        async def c() -> str:
            order.append("c")
            return "c"

        async def x() -> int:
            return 7

        ids["x"] = await tm.register_task("x", x)
        ids["a"] = await tm.register_task("a", a)
        ids["c"] = await tm.register_task("c", c)
        assert await tm.execute_task(ids["a"]) is True
        assert await tm.execute_task(ids["c"]) is True
        c_queued.set()
        assert await asyncio.wait_for(tm.wait_for_task(ids["a"]), WAIT) == "a"
        assert await asyncio.wait_for(tm.wait_for_task(ids["c"]), WAIT) == "c"
        assert order == ["c is queued while a runs", "a", "c"]
        assert await tm.execute_task(ids["x"]) is True
        assert await asyncio.wait_for(watcher[0], WAIT) == 7
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"completed": 3}


async def test_the_tasks_a_task_awaits_its_calls_in_are_its_own() -> None:
    """MAX_CONCURRENT_TASKS=1: a task's code makes its calls through ``asyncio.gather``,
    a ``TaskGroup`` and ``asyncio.wait_for`` (each wraps the call in an asyncio task,
    wait_for on Python 3.11 only), and waits for them: those tasks count as its own.
    Its submits lend its slot (else the children stayed queued behind it for ever),
    and its waits for itself are refused at once."""
    seen: list[str] = []

    async with make_system("new", FakeClock(), MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager

        async def parent() -> list[int]:
            me = actors.current_task_id()
            assert me is not None
            results = list(await asyncio.gather(tm.submit(_triple, 1), tm.submit(_triple, 2)))
            async with asyncio.TaskGroup() as group:
                child = group.create_task(tm.submit(_triple, 3))
            results.append(child.result())
            for call in (
                asyncio.gather(tm.wait_for_task(me)),
                asyncio.wait_for(tm.wait_for_task(me, timeout=WAIT), WAIT),
            ):
                try:
                    await call
                except InvalidTaskError as error:
                    seen.append(str(error))
            return results

        p = await tm.register_task("parent", parent)
        assert await asyncio.wait_for(tm.execute_task(p, wait=True), WAIT) == [3, 6, 9]
        itself = (
            f"task 'parent' ({p}) cannot wait for its own outcome: it ends only after "
            "this wait, which would never end"
        )
        assert seen == [itself, itself]
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"completed": 4}
