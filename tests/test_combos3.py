"""Scenarios where features meet (third round): tasks whose code waits for (or
submits) tasks tied to themselves, a retry whose result_of dependency was evicted,
priorities with dependencies under the concurrency limit, add_dependency refusals
across a chain, late results of timed-out attempts on threads and processes, a stop
with tasks waiting on a breaker, a dependency and a retry delay, and slow filtered
event streams during a burst.

Each scenario asserts exact outcomes: final states, results or errors, how many times
each body ran, and the counts the monitor reports.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
from helpers import (
    WAIT,
    Boom,
    double,
    fails,
    make_system,
    refused_as_before,
    returns,
    timers_armed,
    until,
)
from test_backends import Gate, wait_at_gate
from test_backends import double as double_plain

import actors
from actors import (
    DependencyCycleError,
    DependencyFailedError,
    EventKind,
    InvalidTaskError,
    TaskCancelledError,
    TaskNotFoundError,
    TaskPriority,
    TaskStatus,
)
from supervisors.testing import FakeClock

COMPLETED, FAILED, CANCELLED = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED


def refusals(
    seen: list[str], show: Callable[[str], str] = str
) -> Callable[[Awaitable[Any]], Awaitable[None]]:
    """``refused(call)``: awaits ``call`` (bounded by `WAIT`: a bound on the old hang
    only) and appends ``show`` of the text of the `InvalidTaskError` it raises to
    ``seen``."""

    async def refused(call: Awaitable[Any]) -> None:
        try:
            await asyncio.wait_for(call, WAIT)
        except InvalidTaskError as error:
            seen.append(show(str(error)))

    return refused


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
        refused = refusals(seen)

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


async def test_a_task_that_submits_a_task_depending_on_itself_is_refused_at_once(
    backend: str,
) -> None:
    """A task's code submits (``submit``, ``map``, the blocking ``submit``) a task that
    takes its own result (``result_of``) or depends on a task that depends on it: the
    new task could run only after the caller ended, and the caller waits for it, so the
    call is refused at once with `InvalidTaskError` naming the path, and nothing is
    registered. One whose dependency on the caller failed already (cancelled) is
    answered at once. (Each call hung: for ever, or until its caller gave up.)"""
    seen: list[str] = []
    ids: dict[str, str] = {}

    async with make_system(backend, FakeClock(), MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager

        def new_ids_hidden(text: str) -> str:
            known = set(ids.values())
            return re.sub(
                r"t[0-9a-f]+-[0-9a-f]+", lambda m: m[0] if m[0] in known else "<new>", text
            )

        refused = refusals(seen, new_ids_hidden)

        async def submits() -> str:
            me = actors.current_task_id()
            assert me is not None
            await refused(tm.submit(str, actors.result_of(me)))
            await refused(tm.submit(str, dependencies=[ids["b"]], task_id="n1"))
            await refused(tm.map(str, [1, actors.result_of(me)]))
            try:  # its dependency on me is cancelled: cancelled at once
                await asyncio.wait_for(tm.submit(str, actors.result_of(ids["d"])), WAIT)
            except DependencyFailedError as error:
                seen.append(type(error).__name__)
            return "went on"

        def submits_blocking() -> str:
            me = actors.current_task_id()
            assert me is not None
            try:
                system.blocking.submit(str, actors.result_of(me), task_id="n2")
            except InvalidTaskError as error:
                seen.append(str(error))
            return "went on"

        ids["w"] = w = await tm.register_task("waiter", submits)
        ids["a"] = a = await tm.register_task("a", str, dependencies=[w])
        ids["b"] = b = await tm.register_task("b", str, dependencies=[a])
        ids["d"] = d = await tm.register_task("d", str, dependencies=[w])
        assert await tm.cancel_task(d) is True
        before = len(await tm.get_all_tasks())
        assert await asyncio.wait_for(tm.execute_task(w, wait=True), WAIT) == "went on"
        new = "task 'str' (<new>) and wait for it: it would depend on the waiting task"
        never = "so it would end only after this wait, which would never end"
        assert seen == [
            f"task 'waiter' ({w}) cannot submit {new} (<new> -> {w}), {never}",
            f"task 'waiter' ({w}) cannot submit {new.replace('<new>', 'n1')} "
            f"(n1 -> {b} -> {a} -> {w}), {never}",
            f"task 'waiter' ({w}) cannot submit {new} (<new> -> {w}), {never}",
            "DependencyFailedError",
        ]
        # Nothing registered but the submit cancelled at once (and the map's first
        # item, which was not refused: it ran).
        # Registered: the map's first item (not refused: it ran) and the submit that
        # was cancelled at once; nothing else.
        infos = await tm.get_all_tasks()
        assert [(i.name, i.status, i.attempts) for i in infos[before:]] == [
            ("str", COMPLETED, 1),
            ("str", CANCELLED, 0),
        ]

        seen.clear()
        wb = await tm.register_task("waiter_blocking", submits_blocking)
        assert await asyncio.wait_for(tm.execute_task(wb, wait=True), WAIT) == "went on"
        assert seen == [
            f"task 'waiter_blocking' ({wb}) cannot submit task 'str' (n2) and wait for "
            f"it: it would depend on the waiting task (n2 -> {wb}), {never}"
        ]
        with pytest.raises(TaskNotFoundError):
            await tm.get_task("n2")


async def test_a_wait_for_a_task_tied_to_the_waiter_only_through_an_ended_task_goes_on(
    backend: str,
) -> None:
    """``y`` depends (running anyway) on ``x``, which depends on the waiting task but
    was cancelled, and on ``z``, which runs: ``y`` ends when ``z`` does, not after the
    waiter, so the waiter's wait for ``y`` is not refused and gets its result."""
    gate, sent = asyncio.Event(), asyncio.Event()
    ids: dict[str, str] = {}

    async def z_body() -> str:
        await gate.wait()
        return "z"

    async with make_system(backend, FakeClock(), MAX_CONCURRENT_TASKS=2) as system:
        tm = system.task_manager

        async def waiter() -> str:
            waiting = asyncio.ensure_future(tm.wait_for_task(ids["y"]))
            await asyncio.sleep(0)  # one step of `waiting`: its request is sent
            sent.set()
            return str(await waiting)

        w = await tm.register_task("waiter", waiter)
        x = await tm.register_task("x", str, dependencies=[w])
        assert await tm.cancel_task(x) is True
        z = await tm.register_task("z", z_body)
        ids["y"] = y = await tm.register_task(
            "y", returns("y"), dependencies=[x, z], on_dependency_failure="run"
        )
        assert await tm.execute_task(y) is True
        running = asyncio.ensure_future(tm.execute_task(w, wait=True))
        await until(sent)
        assert await tm.get_task_status(y) is TaskStatus.WAITING
        gate.set()
        assert await asyncio.wait_for(running, WAIT) == "y"
        infos = {i.name: (i.status, i.attempts) for i in await tm.get_all_tasks()}
    assert infos == {
        "waiter": (COMPLETED, 1),
        "x": (CANCELLED, 0),
        "z": (COMPLETED, 1),
        "y": (COMPLETED, 1),
    }


async def test_a_background_task_counts_as_its_task_unless_started_in_a_fresh_context(
    backend: str,
) -> None:
    """A background asyncio task started by task ``a``'s code copies ``a``'s context, so
    it counts as ``a``: its wait for ``b`` (which depends on ``a``) is refused at once.
    Started with a fresh context it is no task's code: its wait goes on and gets ``b``'s
    result once ``a`` has returned and ``b`` ran (README: tasks that wait for tasks)."""
    outcomes: list[str] = []
    sent = asyncio.Event()
    ids: dict[str, str] = {}

    async with make_system(backend, FakeClock()) as system:
        tm = system.task_manager

        async def wait_for_b() -> None:
            call = tm.wait_for_task(ids["b"], timeout=WAIT)
            try:
                outcomes.append(str(await call))
            except InvalidTaskError as error:
                outcomes.append(type(error).__name__)

        async def a_body() -> str:
            copied = asyncio.create_task(wait_for_b())
            await copied  # refused at once: it counts as ``a``
            fresh = asyncio.create_task(wait_for_b(), context=contextvars.Context())
            background.append(fresh)
            await asyncio.sleep(0)  # one step of ``fresh``: its request is sent
            sent.set()
            return "a"

        background: list[asyncio.Task[None]] = []
        a = await tm.register_task("a", a_body)
        ids["b"] = b = await tm.register_task("b", returns("b"), dependencies=[a])
        assert await tm.execute_task(a, wait=True) == "a"
        await until(sent)
        assert outcomes == ["InvalidTaskError"]
        assert await tm.execute_task(b, wait=True) == "b"
        await asyncio.wait_for(background[0], WAIT)
    assert outcomes == ["InvalidTaskError", "b"]


async def test_a_retry_of_a_task_whose_result_of_dependency_was_evicted_is_refused_cleanly(
    backend: str,
) -> None:
    """``x`` takes ``d``'s result and fails; the MAX_FINISHED_TASKS bound (1) then
    drops ``d`` (no longer pinned). ``retry_task(x)`` is refused with
    `TaskNotFoundError` naming ``d``, and nothing changed: every listing still works.
    (It raised a bare KeyError half-way through the registration, leaving a task
    without a status in the table: every later ``get_all_tasks`` raised
    AttributeError.)"""
    runs: Counter[str] = Counter()

    async def fails_with(value: int) -> int:
        runs["x"] += 1
        raise Boom(f"got {value}")

    async with make_system(backend, FakeClock(), MAX_FINISHED_TASKS=1) as system:
        tm = system.task_manager
        d = await tm.register_task("d", double, (2,))
        x = await tm.register_task("x", fails_with, (actors.result_of(d),))
        with pytest.raises(Boom, match=r"^got 4$"):
            await tm.execute_task(x, wait=True)
        before = await tm.get_all_tasks()
        assert [(i.task_id, i.status) for i in before] == [(x, FAILED)]
        message = (
            f"task {x!r} cannot be retried: it takes the result of task {d!r}, which was "
            "cleaned up since (MAX_FINISHED_TASKS or cleanup_completed_tasks), so its "
            "result is gone; register the task again with the value"
        )
        with pytest.raises(TaskNotFoundError, match=f"^{re.escape(message)}$"):
            await tm.retry_task(x)
        assert await tm.get_all_tasks() == before
        assert await tm.get_tasks_by_status(TaskStatus.PENDING) == []
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"failed": 1}
        graph = await tm.get_task_graph()
        assert graph.topological_order() == [x]
    assert runs == {"x": 1}


async def test_a_queued_low_priority_dependency_cancelled_behind_a_burst() -> None:
    """One slot, held by ``block``; a burst of three NORMAL tasks queued; ``low`` (LOW)
    queued behind them as the dependency of two HIGH tasks, one cancelled with it, one
    that runs anyway. Cancelling ``low`` cancels the first at once, naming ``low``;
    when the slot frees, the HIGH one that runs anyway goes first (with ``low``'s
    error as its argument), then the burst in order."""
    order: list[str] = []
    gate = asyncio.Event()

    def body(name: str) -> Any:
        async def run(*args: Any) -> str:
            order.append(name)
            if name == "block":
                await gate.wait()
            return f"{name}{[type(a).__name__ for a in args]}"

        return run

    async with make_system("new", FakeClock(), MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager
        block = await tm.register_task("block", body("block"))
        await tm.execute_task(block)
        low = await tm.register_task("low", body("low"), priority=TaskPriority.LOW)
        high = await tm.register_task(
            "high", body("high"), (actors.result_of(low),), priority=TaskPriority.HIGH
        )
        anyway = await tm.register_task(
            "anyway",
            body("anyway"),
            (actors.result_of(low),),
            priority=TaskPriority.HIGH,
            on_dependency_failure="run",
        )
        burst = [await tm.register_task(f"n{i}", body(f"n{i}")) for i in range(3)]
        for task_id in [*burst, high, anyway]:
            assert await tm.execute_task(task_id) is True
        statuses = {i.name: i.status.value for i in await tm.get_all_tasks()}
        assert statuses == {
            "block": "running",
            "low": "queued",
            "high": "waiting",
            "anyway": "waiting",
            "n0": "queued",
            "n1": "queued",
            "n2": "queued",
        }
        assert await tm.cancel_task(low) is True
        with pytest.raises(DependencyFailedError) as raised:
            await tm.wait_for_task(high, timeout=WAIT)
        assert str(raised.value) == (
            f"task 'high' ({high}) cancelled: its dependency 'low' ({low}) cancelled"
        )
        assert await tm.get_task_status(anyway) is TaskStatus.QUEUED
        gate.set()
        results = [await tm.wait_for_task(t, timeout=WAIT) for t in [block, anyway, *burst]]
        assert results == ["block[]", "anyway['TaskCancelledError']", "n0[]", "n1[]", "n2[]"]
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"completed": 5, "cancelled": 2}
        assert (metrics.ready_queue, metrics.failures) == (0, 0)
    assert order == ["block", "anyway", "n0", "n1", "n2"]


async def test_add_dependency_refusals_across_a_chain_change_nothing(backend: str) -> None:
    """``add_dependency`` refused: a cycle through three tasks, a task on itself, and a
    task that is running, completed, failed or cancelled; each names the reason and
    changes no task. Accepted on a waiting task, its new pending dependency runs first."""
    started, gate = asyncio.Event(), asyncio.Event()

    async def blocks() -> str:
        started.set()
        await gate.wait()
        return "ran"

    async with make_system(backend, FakeClock()) as system:
        tm = system.task_manager
        a = await tm.register_task("a", double, (1,))
        b = await tm.register_task("b", double, (2,), dependencies=[a])
        c = await tm.register_task("c", double, (3,), dependencies=[b])
        cycle = partial(refused_as_before, error=DependencyCycleError)
        assert await cycle(tm, lambda tm: tm.add_dependency(a, c)) == (
            f"dependency cycle: {a} -> {c} -> {b} -> {a}; remove one of these dependencies"
        )
        for task_id in (a, c):
            assert await cycle(tm, lambda tm, t=task_id: tm.add_dependency(t, t)) == (
                f"dependency cycle: {task_id} -> {task_id}; remove one of these dependencies"
            )
        running = await tm.register_task("running", blocks)
        await tm.execute_task(running)
        await until(started)
        done = await tm.register_task("done", double, (4,))
        assert await tm.execute_task(done, wait=True) == 8
        failed = await tm.register_task("failed", fails(Boom("no")))
        with pytest.raises(Boom):
            await tm.execute_task(failed, wait=True)
        cancelled = await tm.register_task("cancelled", double, (5,))
        assert await tm.cancel_task(cancelled) is True
        invalid = partial(refused_as_before, error=InvalidTaskError)
        for task_id, status in (
            (running, "running"),
            (done, "completed"),
            (failed, "failed"),
            (cancelled, "cancelled"),
        ):
            assert await invalid(tm, lambda tm, t=task_id: tm.add_dependency(t, a)) == (
                f"cannot add a dependency to task {task_id!r}: it is {status}; "
                "dependencies can be added to pending or waiting tasks only"
            )
        waiting = await tm.register_task("waiting", double, (6,), dependencies=[running])
        assert await tm.execute_task(waiting) is True
        assert await tm.get_task_status(waiting) is TaskStatus.WAITING
        await tm.add_dependency(waiting, c)  # c is pending: it runs, with b and a first
        assert await tm.wait_for_task(c, timeout=WAIT) == 6
        gate.set()
        assert await tm.wait_for_task(waiting, timeout=WAIT) == 12
        infos = {i.name: (i.status.value, len(i.dependencies)) for i in await tm.get_all_tasks()}
    assert infos == {
        "a": ("completed", 0),
        "b": ("completed", 1),
        "c": ("completed", 1),
        "running": ("completed", 0),
        "done": ("completed", 0),
        "failed": ("failed", 0),
        "cancelled": ("cancelled", 0),
        "waiting": ("completed", 2),
    }


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_a_timed_out_attempts_late_result_lands_while_its_retry_runs(executor: str) -> None:
    """Attempt 1 of a plain function (a worker thread, or a worker process) times out;
    its retry runs; then attempt 1 returns "first" while attempt 2 still runs: the late
    result changes nothing (still running, 2 attempts); the task completes with
    attempt 2's "second"; 1 timeout, 1 retry, no failure."""
    clock = FakeClock()
    gate = Gate()
    config = {"THREAD_POOL_BACKEND": executor, "MAX_THREAD_WORKERS": 2}
    try:
        async with make_system("new", clock, **config) as system:
            tm = system.task_manager
            task = await tm.register_task(
                "slow", wait_at_gate, (gate.address,), timeout=5.0, max_retries=2, retry_delay=1.0
            )
            assert await tm.execute_task(task) is True
            first, first_pid = await gate.arrival()
            await timers_armed(clock)
            clock.advance(5.0)  # attempt 1 times out: its retry's timer is armed
            await timers_armed(clock)
            assert await tm.get_task_status(task) is TaskStatus.RETRYING
            clock.advance(1.0)
            second, second_pid = await gate.arrival()
            assert (second_pid != first_pid) is (executor == "process")
            await gate.release(first, b"first")
            # Both workers free again only once attempt 1's outcome was reported.
            assert await tm.thread_pool.submit(double_plain, 21) == 42
            info = await tm.get_task(task)
            assert (info.status, info.attempts) == (TaskStatus.RUNNING, 2)
            await gate.release(second, b"second")
            assert await tm.wait_for_task(task, timeout=WAIT) == "second"
            info = await tm.get_task(task)
            assert (info.status, info.attempts, info.error) == (COMPLETED, 2, None)
            metrics = await tm.get_metrics()
            assert dict(metrics.tasks_by_status) == {"completed": 1}
            assert (metrics.timeouts, metrics.retries, metrics.failures) == (1, 1, 0)
    finally:
        gate.close()


async def test_a_stop_ends_tasks_waiting_on_a_dependency_a_breaker_and_a_retry_delay(
    backend: str,
) -> None:
    """The system stops while one task waits for its breaker to half-open (50 s away),
    one runs, one waits for it (result_of), one waits out a retry delay (30 s away),
    and a submit waits for the open breaker, with a waiter on each. Every one is
    answered: cancelled, naming the shutdown; the bodies ran once each (no timer fires
    after the stop)."""
    clock = FakeClock()
    gate = asyncio.Event()
    runs: Counter[str] = Counter()

    async def blocks() -> str:
        runs["blocks"] += 1
        await gate.wait()
        return "never"

    async def flaky() -> str:
        runs["flaky"] += 1
        raise Boom("flaky")

    config = {"BREAKER_FAILURE_THRESHOLD": 1, "BREAKER_RECOVERY_TIMEOUT": 50.0}
    async with make_system(backend, clock, **config) as system:
        tm = system.task_manager
        down = await tm.register_task("down", fails(Boom("down")), circuit_breaker="svc")
        with pytest.raises(Boom):
            await tm.execute_task(down, wait=True)
        parked = await tm.register_task("parked", double, (1,), circuit_breaker="svc")
        await tm.execute_task(parked)
        await timers_armed(clock)  # the breaker's
        running = await tm.register_task("running", blocks)
        waiting = await tm.register_task("waiting", double, (actors.result_of(running),))
        await tm.execute_task(waiting)
        retrying = await tm.register_task("flaky", flaky, max_retries=3, retry_delay=30.0)
        await tm.execute_task(retrying)
        await timers_armed(clock, 2)  # and the retry's
        statuses = {i.name: i.status.value for i in await tm.get_all_tasks()}
        assert statuses == {
            "down": "failed",
            "parked": "queued",
            "running": "running",
            "waiting": "waiting",
            "flaky": "retrying",
        }
        ids = [parked, running, waiting, retrying]
        waits = [asyncio.ensure_future(tm.wait_for_task(t)) for t in ids]
        submitted = asyncio.ensure_future(tm.submit(double, 3, circuit_breaker="svc"))
        # Sent when made: queued for the breaker (behind "parked") before this answers.
        assert len(await tm.get_tasks_by_status(TaskStatus.QUEUED)) == 2
    gathered = asyncio.gather(*waits, submitted, return_exceptions=True)
    outcomes = await asyncio.wait_for(gathered, WAIT)
    assert [type(o) for o in outcomes] == [TaskCancelledError] * 5
    shown = [re.sub(r"'t[0-9a-f]+-[0-9a-f]+'", "<id>", str(o)) for o in outcomes]
    assert shown == ["task <id> was cancelled: the actor system shut down"] * 5
    assert [str(o) for o in outcomes[:4]] == [
        f"task {t!r} was cancelled: the actor system shut down" for t in ids
    ]
    clock.advance(100.0)  # the timers were cancelled: nothing runs
    assert runs == {"blocks": 1, "flaky": 1}


async def test_a_slow_filtered_stream_during_a_burst_keeps_its_newest_events_and_says_so() -> None:
    """Buffers of 100 events: a stream filtered on type "a" and an unfiltered one read
    nothing while 5,000 "a" tasks and 100 "b" tasks run (4 events each). Each keeps
    100 events, its newest, and counts the rest as dropped (the filtered one never
    counts the "b" events); the metrics count both. A stream opened after the burst
    gets no old event, only the next task's four."""
    async with make_system("new", FakeClock(), EVENT_BUFFER_SIZE=100) as system:
        tm = system.task_manager
        filtered, everything = tm.events(task_type="a"), tm.events()
        await filtered.subscribe()
        await everything.subscribe()
        assert await tm.map(double, range(5000), task_type="a") == [2 * i for i in range(5000)]
        assert await tm.map(double, range(100), task_type="b") == [2 * i for i in range(100)]
        metrics = await tm.get_metrics()  # the monitor has published every event by now
        assert (filtered.dropped, everything.dropped) == (5000 * 4 - 100, 5100 * 4 - 100)
        assert metrics.events_dropped == 5000 * 4 - 100 + 5100 * 4 - 100
        late = tm.events()
        await late.subscribe()
        assert await tm.submit(double, 1, task_type="c") == 2
        four = [
            EventKind.REGISTERED,
            EventKind.QUEUED,
            EventKind.STARTED,
            EventKind.COMPLETED,
        ]
        assert await _typed_kinds(late, 4) == [("c", kind) for kind in four]
        await late.aclose()
        kept = [await asyncio.wait_for(anext(filtered), WAIT) for _ in range(100)]
        assert Counter(e.task_type for e in kept) == {"a": 100}
        await filtered.aclose()
        newest = [await asyncio.wait_for(anext(everything), WAIT) for _ in range(100)]
        # Its newest 100: the "c" task's 4 pushed 4 more of the burst's out.
        assert Counter(e.task_type for e in newest) == {"b": 96, "c": 4}
        assert [e.kind for e in newest[-4:]] == four
        await everything.aclose()
        assert filtered.dropped == 5000 * 4 - 100
        assert everything.dropped == 5100 * 4 - 100 + 4


async def _typed_kinds(stream: Any, count: int) -> list[tuple[str | None, EventKind]]:
    """The task type and kind of the next ``count`` events of ``stream``."""
    events = [await asyncio.wait_for(anext(stream), WAIT) for _ in range(count)]
    return [(event.task_type, event.kind) for event in events]
