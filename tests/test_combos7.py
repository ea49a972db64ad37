"""The execution side under load and failure (seventh round): caller loops, executors.

Four threads, each running an event loop of its own, fan out 2,000 tasks each through
one system (``register_task`` + ``execute_task``, ``submit``, ``map``) while one of
them closes its loop (``asyncio.run`` ends) with its tasks still running: the other
loops get every result, the closed loop's tasks all end (its plain functions complete,
its running coroutines end cancelled, those not started fail, one started as the loop
closed fails at the next cleanup tick), the metrics count each
task once, and no closed loop is kept. ``USE_NEW_TASK_SYSTEM`` switched between
batches of calls already sent: each task goes to the manager that was current when its
call was made and ends once. The ``thread`` executor saturated: a task's timeout counts
from the moment a worker starts it (README), not from its ``submit``, and a plain
function cancelled while it waits for a worker never runs. A worker process that exits
or segfaults mid-task: the task fails with an exact error and the pool is replaced.

Regressions found in this round live beside the code they cover (tests/test_backends.py:
an argument that fails to unpickle in a worker process; a Dask scheduler that goes
away; tests/test_bridge_lifetime.py: a coroutine left pending on a closed loop).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import threading
from collections import Counter
from typing import Any

import pytest
from helpers import WAIT, timers_armed

import actors
from actors import (
    ActorSystem,
    ActorSystemError,
    EventKind,
    TaskCancelledError,
    TaskStatus,
    TaskTimeoutError,
    UnifiedTaskManager,
)
from actors.core import _bridge
from supervisors.testing import FakeClock

N = 2000
"""Tasks each caller loop fans out."""

COMPLETED, FAILED, CANCELLED = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED


def plain_double(x: int) -> int:
    return 2 * x


async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


# -- caller loops ----------------------------------------------------------------------


async def fan_out(tm: UnifiedTaskManager, k: int) -> list[int]:
    """A third of N each through register + execute, submit and map (plain functions
    and coroutine functions alternating in the first two)."""
    third = N // 3
    bodies = [plain_double if i % 2 else async_double for i in range(third)]
    ids = [await tm.register_task(f"r{k}", body, (i,)) for i, body in enumerate(bodies)]
    registered = await asyncio.gather(*[tm.execute_task(t, wait=True) for t in ids])
    submitted = await asyncio.gather(
        *[tm.submit(body, i, name=f"s{k}") for i, body in enumerate(bodies)]
    )
    mapped = await tm.map(plain_double, range(N - 2 * third), name=f"m{k}")
    return [*registered, *submitted, *mapped]


def closing_loop(tm: UnifiedTaskManager, gate: threading.Event) -> None:
    """N tasks, half coroutines that never end and half plain functions held at
    ``gate``; ``asyncio.run`` returns once a coroutine runs, cancelling what is left on
    the loop and closing it."""
    one_runs = threading.Event()

    async def hangs(i: int) -> None:
        one_runs.set()
        await asyncio.get_running_loop().create_future()

    def held(i: int) -> int:
        assert gate.wait(WAIT)
        return i

    calls: list[Any] = []

    async def main() -> None:
        for i in range(N):
            name = "hangs" if i % 2 else "held"
            calls.append(tm.submit(hangs if i % 2 else held, i, name=name))
        assert await asyncio.to_thread(one_runs.wait, WAIT)

    asyncio.run(main())
    # The calls answered before the loop closed: their errors are seen (else asyncio
    # logs each, with its traceback, when the call is freed). No later answer reaches
    # a call of the closed loop: they stay pending.
    for call in calls:
        if call.done() and not call.cancelled():
            call.exception()


def test_four_caller_loops_and_one_closes_while_its_tasks_run() -> None:
    clock = FakeClock()  # for the cleanup ticks: nothing else here reads it
    config = {"CLEANUP_INTERVAL": 5, "MAX_THREAD_WORKERS": 4}
    with ActorSystem(config, clock=clock) as system:
        tm, blocking = system.task_manager, system.blocking
        gate = threading.Event()
        results: dict[int, list[int]] = {}

        def caller(k: int) -> None:
            results[k] = asyncio.run(fan_out(tm, k))

        callers = [threading.Thread(target=caller, args=(k,)) for k in range(3)]
        closer = threading.Thread(target=closing_loop, args=(tm, gate))
        for thread in [*callers, closer]:
            thread.start()
        closer.join(WAIT)
        gate.set()  # the closed loop's plain functions end now; their results are dropped
        for thread in callers:
            thread.join(WAIT)
        assert [thread.is_alive() for thread in [*callers, closer]] == [False] * 4
        third = N // 3
        expected = [2 * i for i in range(third)] * 2 + [2 * i for i in range(N - 2 * third)]
        assert results == {0: expected, 1: expected, 2: expected}

        # Every task of the closed loop ends. Its plain functions complete; a coroutine
        # started while `asyncio.run` was closing the loop (after it cancelled the
        # loop's tasks) was left pending on the closed loop: the next cleanup ends it.
        held = [t.task_id for t in blocking.get_all_tasks() if t.name == "held"]
        assert [blocking.wait_for_task(t, timeout=WAIT) for t in held] == list(range(0, N, 2))
        clock.wait_for_timers(2, WAIT)  # each manager's cleanup timer
        clock.advance(5)
        for task_id in [t.task_id for t in blocking.get_all_tasks() if t.name == "hangs"]:
            with pytest.raises((TaskCancelledError, ActorSystemError)):
                blocking.wait_for_task(task_id, timeout=WAIT)
        tasks = blocking.get_all_tasks()
        by_name = Counter((t.name, t.status) for t in tasks)
        hangs = [t for t in tasks if t.name == "hangs"]
        cancelled = [t for t in hangs if t.status is CANCELLED]
        failed = [t for t in hangs if t.status is FAILED]
        assert len(cancelled) + len(failed) == N // 2
        assert len(cancelled) >= 1  # one ran, at least (the closer waited for it)
        for info in cancelled:
            assert str(info.error) == f"task {info.task_id!r} was cancelled outside actorflow"
        for info in failed:
            assert str(info.error) in (
                f"task {info.task_id!r} cannot start: the event loop that registered it is closed",
                f"task {info.task_id!r} attempt 1 ended unfinished: the event loop running it "
                "was closed without cancelling it",
            )
        expected_counts: Counter[tuple[str, TaskStatus]] = Counter({("held", COMPLETED): N // 2})
        for k in range(3):
            expected_counts.update({(f"r{k}", COMPLETED): third, (f"s{k}", COMPLETED): third})
            expected_counts[(f"m{k}", COMPLETED)] = N - 2 * third
        expected_counts[("hangs", CANCELLED)] = len(cancelled)
        if failed:
            expected_counts[("hangs", FAILED)] = len(failed)
        assert by_name == expected_counts
        metrics = blocking.get_metrics()
        assert dict(metrics.tasks_by_status) == {
            COMPLETED: 3 * N + N // 2,
            CANCELLED: len(cancelled),
            **({FAILED: len(failed)} if failed else {}),
        }
        assert (metrics.failures, metrics.timeouts, metrics.ready_queue, metrics.pool_queue) == (
            len(failed),
            0,
            0,
            0,
        )
        # A new loop's bridge drops the closed ones: only the last-used loop is kept.
        assert asyncio.run(tm.get_task_status(held[0])) is COMPLETED
        gc.collect()
        assert sum(loop.is_closed() for loop in list(_bridge._bridges)) == 1


# -- switching task systems -------------------------------------------------------------


async def test_switching_task_systems_between_batches_sends_each_call_where_it_was_made() -> None:
    batches, size = 20, 50
    # Room for every event of the test (five a task at most: registered, queued, started,
    # completed, and no removed): the watcher shares the loop that makes the 1,000 calls
    # and, on a loaded machine, falls behind the default 1,000 (the oldest are dropped).
    config = {
        "CLEANUP_INTERVAL": 0,
        "MAX_THREAD_WORKERS": 4,
        "EVENT_BUFFER_SIZE": 5 * batches * size,
    }
    async with ActorSystem(config) as system:
        tm = system.task_manager
        ends: Counter[str] = Counter()
        all_ended = asyncio.Event()

        async def watch() -> None:
            async for event in stream:
                if event.kind in (EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED):
                    ends[event.task_id] += 1
                    if sum(ends.values()) == batches * size:
                        all_ended.set()

        async with tm.events() as stream:
            watcher = asyncio.ensure_future(watch())
            calls: list[Any] = []
            made_under: dict[str, bool] = {}
            new = True
            for batch in range(batches):
                for i in range(size):
                    body = plain_double if i % 2 else async_double
                    name = f"b{batch}-{i}"
                    made_under[name] = new
                    if i % 3:
                        calls.append(tm.submit(body, i, name=name))
                    else:
                        calls.append(tm.register_task(name, body, (i,)))
                new = not new
                await tm.use_new_task_system(new)  # after the batch's calls were sent
            answers = await asyncio.gather(*calls)
            registered = [answer for answer in answers if isinstance(answer, str)]
            assert len(registered) == batches * ((size + 2) // 3)
            executed = await asyncio.gather(*[tm.execute_task(t, wait=True) for t in registered])
            assert executed == [2 * i for i in range(0, size, 3)] * batches
            await asyncio.wait_for(all_ended.wait(), WAIT)
            watcher.cancel()
        tasks = await tm.get_all_tasks()
        assert {t.name: t.backend == "new" for t in tasks} == made_under
        assert Counter(t.backend for t in tasks) == {"new": 500, "old": 500}
        assert {t.status for t in tasks} == {COMPLETED}
        assert Counter(ends.values()) == {1: batches * size}
        assert set(ends) == {t.task_id for t in tasks}
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {COMPLETED: batches * size}
        assert metrics.events_dropped == 0


# -- the thread executor, saturated -------------------------------------------------------


async def test_a_timeout_counts_from_the_start_on_a_worker_not_from_submit() -> None:
    clock = FakeClock()
    ran: list[int] = []
    lock = threading.Lock()

    def until_cancelled(i: int) -> int:
        with lock:
            ran.append(i)
        assert actors.cancellation_token().wait(WAIT)  # set when the attempt times out
        return i

    config = {"CLEANUP_INTERVAL": 0, "MAX_THREAD_WORKERS": 2}
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        ids = [f"t{i}" for i in range(5)]
        calls = [
            tm.submit(until_cancelled, i, timeout=1.0, task_id=task_id)
            for i, task_id in enumerate(ids)
        ]

        async def statuses() -> list[TaskStatus]:
            return [(await tm.get_task(t)).status for t in ids]

        await timers_armed(clock, 2)  # t0 and t1 run: their timeouts are armed
        running, queued = TaskStatus.RUNNING, TaskStatus.QUEUED
        assert await statuses() == [running, running, queued, queued, queued]
        assert await tm.cancel_task("t4") is True  # still waiting for a worker
        clock.advance(1.0)  # t0 and t1 time out; t2 and t3 start, their clocks from 0
        await timers_armed(clock, 2)
        assert await statuses() == [FAILED, FAILED, running, running, CANCELLED]
        clock.advance(1.0)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert [(type(o), str(o)) for o in outcomes] == [
            *[(TaskTimeoutError, f"task 't{i}' attempt 1 timed out after 1.0s") for i in range(4)],
            (TaskCancelledError, "task 't4' was cancelled"),
        ]
        assert sorted(ran) == [0, 1, 2, 3]  # t4 never ran
        metrics = await tm.get_metrics()
        execution = metrics.execution_time["default"]
        assert (execution.count, execution.sum, execution.max) == (4, 4.0, 1.0)
        waited = metrics.wait_time["default"]
        assert (waited.count, waited.sum) == (4, 2.0)  # t2 and t3 waited 1.0 each
        assert (metrics.timeouts, metrics.failures) == (4, 4)


# -- the process executor: a worker that dies mid-task ---------------------------------


def exits(path: str) -> None:
    os._exit(3)


def segfaults(path: str) -> None:
    ctypes.string_at(0)


def whose(path: str) -> int:
    return os.getpid()


@pytest.mark.parametrize("body", [exits, segfaults])
async def test_a_worker_process_that_dies_mid_task_fails_it_and_the_pool_is_replaced(
    body: Any,
) -> None:
    config = {
        "CLEANUP_INTERVAL": 0,
        "MAX_THREAD_WORKERS": 1,
        "THREAD_POOL_BACKEND": "process",
        "RESTART_BACKOFF_INITIAL": 0.0,
    }
    async with ActorSystem(config) as system:
        tm = system.task_manager
        first = await tm.submit(whose, "", task_id="first")
        await tm.register_task("dies", body, ("",), task_id="dies")
        with pytest.raises(ActorSystemError) as raised:
            await tm.execute_task("dies", wait=True)
        assert str(raised.value) == (
            "worker process died while running task 'dies' (A process in the process pool "
            "was terminated abruptly while the future was running or pending.); the "
            "process pool is replaced"
        )
        info = await tm.get_task("dies")
        assert (info.status, info.attempts) == (FAILED, 1)
        second = await asyncio.wait_for(tm.submit(whose, "", task_id="after"), WAIT)
        assert second not in (first, os.getpid())
        children = {child.id: child.restarts for child in await system.supervisor.which_children()}
        assert children["thread_pool"] == 1
