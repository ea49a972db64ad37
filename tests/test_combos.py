"""Scenarios where features meet: result_of chains with map, retries, dependency
failures, cancellation with retry timers armed, timeouts counted by breakers, crashes of
the task manager with batches in flight, the blocking client beside the async one, and
the monitoring views (metrics, events, Prometheus) against what happened.

Each scenario asserts exact outcomes: every task's final state, result or error, how
many times each body ran, and the counts the monitor reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    WAIT,
    Boom,
    SlowToCancel,
    double,
    fails,
    make_system,
    sigkill_when_ready,
    start_worker,
    timers_armed,
)

from actors import (
    ActorSystem,
    ActorSystemError,
    DependencyFailedError,
    EventKind,
    TaskCancelledError,
    TaskStatus,
    TaskTimeoutError,
    cancellation_token,
    result_of,
)
from actors.core import LoopThread
from supervisors import Kill
from supervisors.testing import FakeClock

COMPLETED, FAILED, CANCELLED = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED


async def test_a_chain_through_map_with_a_retried_failing_middle(backend: str) -> None:
    """source -> map of doublers -> a middle that fails its 3 attempts -> a cancel-on-
    failure tail and a run-anyway aggregate; with retry timers on the fake clock."""
    clock = FakeClock()
    runs: Counter[str] = Counter()

    async def source() -> int:
        runs["source"] += 1
        return 5

    async def middle(x: int) -> int:
        runs["middle"] += 1
        raise Boom(f"middle got {x}")

    async def tail(x: int) -> int:
        runs["tail"] += 1
        return x

    def aggregate(parts: list[Any]) -> list[str]:
        runs["aggregate"] += 1
        return [p if isinstance(p, int) else type(p).__name__ for p in parts]

    async with make_system(backend, clock) as system:
        tm = system.task_manager
        src = await tm.register_task("source", source)
        assert await tm.execute_task(src, wait=True) == 5
        doubled = await tm.map(lambda x: x * 2, [1, 2, 3], task_type="map")
        assert doubled == [2, 4, 6]
        mid = await tm.register_task(
            "middle", middle, (result_of(src),), max_retries=2, retry_delay=1.0
        )
        end = await tm.register_task("tail", tail, (result_of(mid),))
        agg = await tm.register_task(
            "aggregate",
            aggregate,
            ([result_of(src), result_of(mid), result_of(end)],),
            on_dependency_failure="run",
        )
        assert await tm.execute_task(agg) is True
        for _ in range(2):
            await timers_armed(clock)
            clock.advance(1.0)
        assert await tm.wait_for_task(agg, timeout=WAIT) == [
            5,
            "Boom",
            "DependencyFailedError",
        ]
        with pytest.raises(Boom, match=r"^middle got 5$"):
            await tm.wait_for_task(mid, timeout=WAIT)
        with pytest.raises(DependencyFailedError):
            await tm.wait_for_task(end, timeout=WAIT)
        infos = {i.task_id: i for i in await tm.get_all_tasks()}
        assert (infos[mid].status, infos[mid].attempts) == (FAILED, 3)
        assert (infos[end].status, infos[end].attempts) == (CANCELLED, 0)
        assert (infos[agg].status, infos[agg].attempts) == (COMPLETED, 1)
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"completed": 5, "failed": 1, "cancelled": 1}
        assert (metrics.retries, metrics.failures, metrics.timeouts) == (2, 1, 0)
    assert runs == {"source": 1, "middle": 3, "aggregate": 1}


async def test_cancelling_a_dependency_while_its_retry_timer_is_armed(backend: str) -> None:
    """The dependency is `retrying` (its timer armed) when it is cancelled: it ends
    cancelled, its dependents are cancelled naming it, the timer firing later starts
    nothing, and the counts match."""
    clock = FakeClock()
    runs: Counter[str] = Counter()

    async def flaky() -> int:
        runs["flaky"] += 1
        raise Boom("flaky")

    async def child(x: int) -> int:
        runs["child"] += 1
        return x

    async with make_system(backend, clock) as system:
        tm = system.task_manager
        dep = await tm.register_task("flaky", flaky, max_retries=5, retry_delay=10.0)
        kid = await tm.register_task("child", child, (result_of(dep),))
        grandkid = await tm.register_task("grandchild", child, (result_of(kid),))
        events = tm.events()
        assert await tm.execute_task(grandkid) is True
        await timers_armed(clock)
        assert await tm.get_task_status(dep) is TaskStatus.RETRYING
        assert await tm.cancel_task(dep) is True
        clock.advance(10.0)  # the retry's timer fires: it must start nothing
        with pytest.raises(TaskCancelledError):
            await tm.wait_for_task(dep, timeout=WAIT)
        # Down the graph, each names the task whose end started it (the root cause).
        for task_id, name in ((kid, "child"), (grandkid, "grandchild")):
            with pytest.raises(DependencyFailedError) as raised:
                await tm.wait_for_task(task_id, timeout=WAIT)
            assert str(raised.value) == (
                f"task {name!r} ({task_id}) cancelled: its dependency 'flaky' ({dep}) cancelled"
            )
        infos = {i.task_id: i for i in await tm.get_all_tasks()}
        assert {t: (i.status, i.attempts) for t, i in infos.items()} == {
            dep: (CANCELLED, 1),
            kid: (CANCELLED, 0),
            grandkid: (CANCELLED, 0),
        }
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"cancelled": 3}
        assert (metrics.retries, metrics.failures) == (1, 0)
        seen: list[tuple[str | None, EventKind]] = []
        async for event in events:
            if event.task_id is not None:
                seen.append((event.task_id, event.kind))
            if len([k for _, k in seen if k is EventKind.CANCELLED]) == 3:
                break
        await events.aclose()
        assert Counter(k for _, k in seen)[EventKind.STARTED] == 1
    assert runs == {"flaky": 1}


async def test_timeouts_of_functions_and_coroutines_open_their_breaker(backend: str) -> None:
    """A thread-pool function and a coroutine time out under one breaker (threshold 2):
    the breaker opens, a third task is refused, the counts say 2 timeouts."""
    release = threading.Event()
    never = asyncio.Event()

    def stuck() -> str:
        release.wait(WAIT)
        return "late"

    async def hangs() -> str:
        await never.wait()
        return "never"

    async def fine() -> str:
        return "fine"

    config = {"BREAKER_FAILURE_THRESHOLD": 2, "BREAKER_RECOVERY_TIMEOUT": 60.0}
    clock = FakeClock()
    async with make_system(backend, clock, **config) as system:
        tm = system.task_manager
        a = await tm.register_task("stuck", stuck, timeout=1.0, circuit_breaker="svc")
        b = await tm.register_task("hangs", hangs, timeout=1.0, circuit_breaker="svc")
        await tm.execute_task(a)
        await tm.execute_task(b)
        await timers_armed(clock, 2)
        clock.advance(1.0)
        for task_id in (a, b):
            with pytest.raises(TaskTimeoutError):
                await tm.wait_for_task(task_id, timeout=WAIT)
        release.set()
        metrics = await tm.get_metrics()
        assert dict(metrics.breakers) == {"svc": "open"}
        assert (metrics.timeouts, metrics.failures, metrics.retries) == (2, 2, 0)
        c = await tm.register_task("fine", fine, circuit_breaker="svc")
        await tm.execute_task(c)
        assert await tm.get_task_status(c) is TaskStatus.QUEUED
        assert await tm.cancel_task(c) is True
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"failed": 2, "cancelled": 1}


@pytest.mark.parametrize("kind", ["coroutine", "function"])
async def test_a_manager_crash_while_map_and_submit_batches_are_in_flight(
    backend: str, kind: str
) -> None:
    """The manager is killed while a map of 300 and 50 submits are in flight (some
    running, blocked on a gate; the rest queued or still travelling): after the restart
    every call gets its results in order, each body ran once, and the metrics count
    exactly what ended."""
    child = "task_manager" if backend == "new" else "legacy_task_manager"
    runs: Counter[int] = Counter()
    lock = threading.Lock()
    loop = asyncio.get_running_loop()
    some_running = asyncio.Event()
    gate = threading.Event()
    agate = asyncio.Event()

    def started(i: int) -> None:
        with lock:
            runs[i] += 1
            if len(runs) == 4:
                loop.call_soon_threadsafe(some_running.set)

    async def co_body(i: int) -> int:
        started(i)
        if i < 4:
            await agate.wait()
        if i % 11 == 0:
            raise Boom(i)
        return i * 3

    def fn_body(i: int) -> int:
        started(i)
        if i < 4:
            gate.wait(WAIT)
        if i % 11 == 0:
            raise Boom(i)
        return i * 3

    body = co_body if kind == "coroutine" else fn_body
    # The stream holds every event of the run (1,080 old, 1,440 new): with the default
    # EVENT_BUFFER_SIZE (1,000, the oldest dropped past it) a collector that fell behind
    # on a busy machine lost the first REGISTERED/STARTED events (CI, 3.12: 350 of 360).
    config = {"MAX_CONCURRENT_TASKS": 4, "MAX_THREAD_WORKERS": 4, "EVENT_BUFFER_SIZE": 2000}
    async with make_system(backend, FakeClock(), **config) as system:
        tm = system.task_manager
        stream = tm.events()
        kinds: Counter[EventKind] = Counter()
        all_ended = asyncio.Event()

        async def collect() -> None:
            async for event in stream:
                kinds[event.kind] += 1
                if kinds[EventKind.COMPLETED] + kinds[EventKind.FAILED] == 360:
                    all_ended.set()

        collector = asyncio.ensure_future(collect())
        mapped = asyncio.ensure_future(
            tm.map(body, range(300), return_exceptions=True, task_type="m")
        )
        await asyncio.wait_for(some_running.wait(), WAIT)
        submits = [
            asyncio.ensure_future(tm.submit(body, i, task_type="s")) for i in range(300, 350)
        ]
        system.supervisor.child(child).tell(Kill())
        more = [asyncio.ensure_future(tm.submit(body, i, task_type="s")) for i in range(350, 360)]
        gate.set()
        agate.set()
        got = await asyncio.wait_for(mapped, WAIT)
        outs = await asyncio.wait_for(asyncio.gather(*submits, *more, return_exceptions=True), WAIT)
        metrics = await tm.get_metrics()
        prometheus = await tm.render_prometheus()
        infos = await tm.get_all_tasks()
        await asyncio.wait_for(all_ended.wait(), WAIT)
        await stream.aclose()
        await asyncio.wait_for(collector, WAIT)

    def expected(i: int) -> object:
        return f"Boom({i})" if i % 11 == 0 else i * 3

    shown = [repr(o) if isinstance(o, BaseException) else o for o in [*got, *outs]]
    assert shown == [expected(i) for i in range(360)]
    assert runs == Counter(range(360))
    failed = sum(1 for i in range(360) if i % 11 == 0)
    assert dict(metrics.tasks_by_status) == {"completed": 360 - failed, "failed": failed}
    assert metrics.failures == failed
    assert metrics.restarts[child] == 1
    assert len(infos) == 360
    assert Counter(i.attempts for i in infos) == {1: 360}
    terminal = {EventKind.COMPLETED: 360 - failed, EventKind.FAILED: failed}
    queued = {EventKind.QUEUED: 360} if backend == "new" else {}
    assert kinds == {EventKind.REGISTERED: 360, EventKind.STARTED: 360, **queued, **terminal}
    assert f'actorflow_tasks{{status="completed"}} {360 - failed}.0' in prometheus
    assert f'actorflow_tasks{{status="failed"}} {failed}.0' in prometheus
    assert f"actorflow_task_failures_total {failed}.0" in prometheus
    counts = {t: h.count for t, h in metrics.execution_histogram.items()}
    assert counts == {"m": 300, "s": 60}


async def test_durable_chain_with_a_retry_pending_at_a_sigkill_recovers_exactly() -> None:
    """A durable chain a -> b -> c (result_of, b retrying behind breaker 'svc' at the
    kill) and d (same breaker, completed); SIGKILL, then recovery in a new process:
    every task completes, results flow, a and d never run again, b's used attempt
    counts, c runs once."""
    await asyncio.to_thread(_durable_kill_and_recover)


def _durable_kill_and_recover() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal, out = Path(tmp) / "j.db", Path(tmp) / "runs.txt"

        def run(phase: str) -> subprocess.Popen[str]:
            return start_worker("combo_worker.py", journal, out, phase)

        sigkill_when_ready(run("first"))
        assert sorted(out.read_text().split()) == ["a", "b", "d"]
        second = run("second")
        stdout, _ = second.communicate(timeout=30)
        assert second.returncode == 0
        infos = json.loads(stdout.splitlines()[-1])
        runs = Counter(out.read_text().split())
    assert infos == {
        "a": ["completed", 1, 10],
        "b": ["completed", 2, 11],
        "c": ["completed", 1, "c(11)"],
        "d": ["completed", 1, "d"],
        "marker": ["pending", 0, None],
    }
    assert runs == {"a": 1, "b": 2, "c": 1, "d": 1}


async def test_blocking_callers_and_the_async_client_then_a_shutdown_mid_flight() -> None:
    """Four threads call the blocking client (submit, map, wait_for_task) while the
    async client runs tasks on the loop; half the tasks hang; the shutdown ends every
    call: completed ones with their results, the rest with an error, none hangs."""
    started = threading.Semaphore(0)
    tokens_set: list[bool] = []

    def fn(i: int) -> int:
        if i % 2:
            token = cancellation_token()
            started.release()
            tokens_set.append(token.wait(WAIT))  # the shutdown sets it
        return i

    async def co(i: int) -> int:
        if i % 2:
            started.release()
            await asyncio.get_running_loop().create_future()  # until cancelled
        return i

    outcomes: dict[str, list[object]] = {}
    async with ActorSystem({"CLEANUP_INTERVAL": 0, "MAX_THREAD_WORKERS": 8}) as system:
        tm = system.task_manager
        blocking = system.blocking

        def caller(name: str, body: Any, base: int) -> None:
            got: list[object] = []
            for i in range(base, base + 2):
                try:
                    got.append(blocking.submit(body, i))
                except Exception as error:
                    text = re.sub(r"'t[0-9a-f]+-[0-9a-f]+'", "<id>", str(error))
                    got.append(f"{type(error).__name__}: {text}")
            outcomes[name] = got

        threads = [
            threading.Thread(target=caller, args=(f"t{k}", fn if k % 2 else co, 10 * k))
            for k in range(4)
        ]
        for thread in threads:
            thread.start()
        mine = [asyncio.ensure_future(tm.submit(co, 100 + i)) for i in range(4)]
        for _ in range(4 + 2):  # 4 blocking callers' odd items + 2 of mine
            assert await asyncio.to_thread(started.acquire, True, WAIT)
        done_mine = await asyncio.gather(*mine[::2])
        assert done_mine == [100, 102]
        await tm.shutdown()
        ended = await asyncio.gather(*mine[1::2], return_exceptions=True)
        await asyncio.to_thread(lambda: [t.join(WAIT) for t in threads])
    assert not any(t.is_alive() for t in threads)
    assert tokens_set == [True, True]
    assert [type(e).__name__ for e in ended] == ["TaskCancelledError", "TaskCancelledError"]
    assert outcomes == {
        f"t{k}": [10 * k, "TaskCancelledError: task <id> was cancelled: the actor system shut down"]
        for k in range(4)
    }


@pytest.mark.parametrize("failed_on", ["new", "old"])
async def test_a_retry_after_a_switch_of_task_system_runs_where_the_failed_task_ran(
    failed_on: str,
) -> None:
    """A task that takes ``result_of`` a dependency fails; the service then switches
    ``USE_NEW_TASK_SYSTEM``; ``retry_task`` registers the retry in the failed task's
    system, beside its dependency, and it gets the dependency's result. (It went to
    the current system: refused with 'dependency ... belongs to the old task system',
    and a retry of a task without dependencies ran in the other system.)"""
    calls: list[int] = []

    async def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise Boom("first")
        return x * 2

    async with make_system(failed_on, FakeClock()) as system:
        tm = system.task_manager
        dep = await tm.register_task("dep", double, (3,))
        task = await tm.register_task("flaky", flaky, (result_of(dep),))
        alone = await tm.register_task("alone", flaky, (5,))
        with pytest.raises(Boom, match=r"^first$"):
            await tm.execute_task(task, wait=True)
        await tm.use_new_task_system(failed_on != "new")
        retry = await tm.retry_task(task)
        assert await tm.wait_for_task(retry, timeout=WAIT) == 12
        calls.clear()
        with pytest.raises(Boom, match=r"^first$"):
            await tm.execute_task(alone, wait=True)
        alone_retry = await tm.retry_task(alone)
        assert await tm.wait_for_task(alone_retry, timeout=WAIT) == 10
        infos = {i.task_id: (i.name, i.backend, i.status) for i in await tm.get_all_tasks()}
    assert infos == {
        dep: ("dep", failed_on, COMPLETED),
        task: ("flaky", failed_on, FAILED),
        retry: ("flaky", failed_on, COMPLETED),
        alone: ("alone", failed_on, FAILED),
        alone_retry: ("alone", failed_on, COMPLETED),
    }


def _frames(error: BaseException) -> int:
    """How many frames ``error``'s traceback holds."""
    count, tb = 0, error.__traceback__
    while tb is not None:
        count, tb = count + 1, tb.tb_next
    return count


async def test_calls_to_a_failed_system_do_not_pile_their_frames_on_one_error() -> None:
    """After the system failed, every call (async or blocking) raises an
    `ActorSystemError` of its own, with the failure's message and cause, and a
    traceback of that call's frames only. (Each raised the one stored error: its
    traceback grew by the caller's frames at every call, for as long as the system
    lived, pinning their locals.)"""
    async with make_system("new", FakeClock(), RESTART_MAX_RESTARTS=0) as system:
        tm = system.task_manager
        system.supervisor.child("task_manager").tell(Kill())
        with pytest.raises(ActorSystemError):
            await tm.get_all_tasks()  # buffered for the manager, failed with the system
        errors: list[ActorSystemError] = []
        depths: list[int] = []
        for call in [tm.get_metrics] * 3 + [
            lambda: asyncio.to_thread(system.blocking.get_metrics)
        ] * 3:
            with pytest.raises(ActorSystemError) as raised:
                await call()
            errors.append(raised.value)
            depths.append(_frames(raised.value))
        assert len({id(error) for error in errors}) == 6
        assert depths[0] == depths[1] == depths[2]
        assert depths[3] == depths[4] == depths[5]
        failure = (
            "the actor system failed: child 'task_manager' exhausted its restarts "
            "(1 in 5.0s, max 0); last reason: ActorKilled('killed by a Kill message')"
        )
        assert {str(error) for error in errors} == {failure}
        assert {type(error.__cause__).__name__ for error in errors} == {"RestartIntensityExceeded"}


FOUR = [EventKind.REGISTERED, EventKind.QUEUED, EventKind.STARTED, EventKind.COMPLETED]


async def _four_events(stream: Any) -> list[EventKind]:
    """The kinds of the next four events of ``stream`` (an `EventStream`)."""
    return [(await asyncio.wait_for(anext(stream), WAIT)).kind for _ in range(4)]


async def _drain(stream: Any) -> list[EventKind]:
    return [event.kind async for event in stream]


async def test_event_streams_end_when_the_monitor_fails_the_system() -> None:
    """The monitor crashes with no restart left: the system fails, and the event
    streams it fed end (async: the iteration ends; blocking: ``get`` returns None), as
    they do when another child fails the system. (They waited for ever: the monitor
    closes its subscribers as it stops, and a crashed one never stops.)"""
    async with make_system("new", FakeClock(), RESTART_MAX_RESTARTS=0) as system:
        tm = system.task_manager
        stream = tm.events()
        await stream.subscribe()
        blocking = await asyncio.to_thread(system.blocking.events)
        assert await tm.submit(double, 4) == 8
        assert await _four_events(stream) == FOUR
        got = [await asyncio.to_thread(blocking.get, WAIT) for _ in range(4)]
        assert [e.kind for e in got if e is not None] == FOUR
        system.supervisor.child("task_monitor").tell(Kill())
        with pytest.raises(ActorSystemError, match=r"child 'task_monitor' exhausted its restarts"):
            await tm.get_metrics()  # the monitor's: failed when the system fails
        assert await asyncio.wait_for(_drain(stream), WAIT) == []
        assert await asyncio.to_thread(blocking.get, WAIT) is None
        await asyncio.to_thread(blocking.close)


async def test_event_streams_end_when_the_system_stops_while_the_monitor_restarts() -> None:
    """The monitor crashed and waits for its restart (a backoff the fake clock never
    reaches) when the system stops: its event streams end with the stop."""
    clock = FakeClock()
    async with make_system(
        "new", clock, RESTART_BACKOFF_INITIAL=30.0, RESTART_BACKOFF_MAX=30.0
    ) as system:
        tm = system.task_manager
        stream = tm.events()
        await stream.subscribe()
        assert await tm.submit(double, 4) == 8
        assert await _four_events(stream) == FOUR
        system.supervisor.child("task_monitor").tell(Kill())
        await timers_armed(clock)  # the monitor's restart is scheduled
        rest = asyncio.ensure_future(_drain(stream))
    assert await asyncio.wait_for(rest, WAIT) == []


def test_a_loop_thread_call_made_while_the_thread_ends_fails_at_once() -> None:
    """A call made once the loop thread's stop has begun (it is cancelling its tasks)
    is refused with the reason, not left to wait for its whole bound and reported as a
    `CallTimeout` ('overloaded or stuck'): its task was made after the stop took the
    tasks to cancel, so it was never run, and the loop closed with it pending."""
    runner = LoopThread("ending-test")
    slow = SlowToCancel()

    async def probe() -> None:  # (an event stream's get waiting for the next event)
        await asyncio.get_running_loop().create_future()

    asyncio.run_coroutine_threadsafe(slow.run(), runner.loop)
    assert slow.running.wait(WAIT)
    stopper = threading.Thread(target=runner.stop, args=(WAIT,))
    stopper.start()
    try:
        assert slow.cleaning.wait(WAIT)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                runner.call(probe(), WAIT, "probe")
            except ActorSystemError as error:
                errors.append(error)

        caller = threading.Thread(target=call)
        caller.start()
        slow.release.set()  # the cleanup ends; the loop closes
        caller.join(WAIT + 1)
        assert [(type(e), str(e)) for e in errors] == [
            (ActorSystemError, "probe: the actor system's loop thread has stopped")
        ]
    finally:
        slow.release.set()
        stopper.join(WAIT)
    assert not runner.thread.is_alive()


def test_a_loop_thread_call_sent_as_its_loop_stops_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call sent after the loop's last iteration began, before the thread marked
    itself ending (a blocking stream's close as the system stops) is run and answered
    by the thread's cleanup: it waited in the ready queue, its task not made, no task
    was left to cancel, and the loop closed before it was answered (`CallTimeout` after
    its whole bound, 1 run in ~150 of the stream test above)."""
    runner = LoopThread("stopping-test")
    inside, sent = threading.Event(), threading.Event()
    send = asyncio.run_coroutine_threadsafe

    def send_then_say(coro: Any, loop: asyncio.AbstractEventLoop) -> Any:
        future = send(coro, loop)
        sent.set()
        return future

    monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", send_then_say)

    def last_iteration() -> None:
        runner.loop.stop()  # run_forever returns after this iteration
        inside.set()
        sent.wait(WAIT)  # the call lands behind this iteration

    async def answer() -> int:
        return 42

    runner.loop.call_soon_threadsafe(last_iteration)
    assert inside.wait(WAIT)
    assert runner.call(answer(), 3.0, "answer") == 42
    runner.thread.join(WAIT)
    assert not runner.thread.is_alive()
    assert runner.loop.is_closed()


def test_a_second_stop_during_the_loop_threads_cleanup_lets_the_cleanup_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop that gave up on the loop thread (a task slow to end its cancellation),
    then a second stop (``shutdown()`` of a stopped system ends a loop thread its stop
    could not end): the second stop's ``loop.stop`` lands in the thread's cleanup. The
    cleanup runs on until its tasks have ended; it raised "Event loop stopped before
    Future completed." in the thread, which closed the loop with the task's cleanup
    cut off mid-way (and, with no task left, cut its one more round the same way)."""
    thread_errors: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: thread_errors.append(repr(a.exc_value)))
    runner = LoopThread("restop-test")
    slow = SlowToCancel()
    asyncio.run_coroutine_threadsafe(slow.run(), runner.loop)
    try:
        assert slow.running.wait(WAIT)
        assert runner.stop(0.0) is False  # gave up at once: abandoned, still cleaning up
        assert slow.cleaning.wait(WAIT)
        # The second stop's request is queued ahead of the answer `release` sends.
        assert runner.stop(0.0) is False
    finally:
        slow.release.set()
        runner.thread.join(WAIT)
    assert (runner.thread.is_alive(), runner.loop.is_closed()) == (False, True)
    assert (slow.cleaned, thread_errors) == (["cleaned"], [])


def test_a_second_stop_as_the_loop_stops_lets_its_last_round_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second stop whose ``loop.stop`` lands behind the loop's last iteration (two
    stops at once) runs in the round the cleanup gives calls sent as the loop stopped:
    the round (and the rest of the cleanup) runs on; it raised "Event loop stopped
    before Future completed." in the thread, though no task was left."""
    thread_errors: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: thread_errors.append(repr(a.exc_value)))
    runner = LoopThread("restop-test")
    inside, posted = threading.Event(), threading.Event()

    def last_iteration() -> None:
        runner.loop.stop()  # run_forever returns after this iteration
        inside.set()
        posted.wait(WAIT)  # the second stop lands behind this iteration

    runner.loop.call_soon_threadsafe(last_iteration)
    try:
        assert inside.wait(WAIT)
        assert runner.stop(0.0) is False  # (its thread still runs: "abandoned")
    finally:
        posted.set()
        runner.thread.join(WAIT)
    assert (runner.thread.is_alive(), runner.loop.is_closed(), thread_errors) == (False, True, [])


def test_blocking_event_streams_end_quietly_when_their_system_stops_mid_get() -> None:
    """A thread reads a blocking event stream (``with system.blocking.events()``) while
    blocking callers wait for a hanging coroutine and a hanging function; the ``with
    ActorSystem`` block ends: the reader's ``get`` returns None and leaving its ``with``
    raises nothing (a close after the stop has nothing left to do)."""
    started = threading.Semaphore(0)
    subscribed = threading.Event()
    outcome: list[object] = []

    def fn() -> None:
        token = cancellation_token()
        started.release()
        token.wait(WAIT)

    async def co() -> None:
        started.release()
        await asyncio.get_running_loop().create_future()

    with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:

        def reader() -> None:
            try:
                with system.blocking.events() as stream:
                    subscribed.set()
                    while stream.get(WAIT) is not None:
                        pass
                outcome.append("ended")
            except Exception as error:
                outcome.append(repr(error))

        def caller(body: Any) -> None:
            with contextlib.suppress(TaskCancelledError):
                system.blocking.submit(body)

        threads = [threading.Thread(target=reader)]
        threads[0].start()
        assert subscribed.wait(WAIT)
        for body in (co, fn):
            threads.append(threading.Thread(target=caller, args=(body,)))
            threads[-1].start()
            assert started.acquire(timeout=WAIT)
    for thread in threads:
        thread.join(WAIT)
    assert outcome == ["ended"]


async def _kinds_until(stream: Any, last: EventKind) -> list[EventKind]:
    """The kinds of ``stream``'s events up to the first ``last`` one; then it is closed."""
    kinds = []
    async for event in stream:
        kinds.append(event.kind)
        if event.kind is last:
            break
    await stream.aclose()
    return kinds


async def test_ready_queue_counts_queued_tasks_also_those_holding_a_slot_for_a_worker() -> None:
    """``ready_queue`` counts the tasks in status ``queued``: one waiting for a worker
    of the pool (it holds its concurrency slot) as well as one waiting for a slot. (Its
    description said 'waiting for a concurrency slot': here only one of the two is.)"""
    release = threading.Event()
    started = threading.Event()

    def blocks() -> str:
        started.set()
        release.wait(WAIT)
        return "done"

    config = {"MAX_CONCURRENT_TASKS": 2, "MAX_THREAD_WORKERS": 1}
    async with make_system("new", FakeClock(), **config) as system:
        tm = system.task_manager
        ids = [await tm.register_task(f"f{i}", blocks) for i in range(3)]
        stream = tm.events()
        for task_id in ids:
            await tm.execute_task(task_id)
        # Until the manager has heard that f0 started.
        kinds = await asyncio.wait_for(_kinds_until(stream, EventKind.STARTED), WAIT)
        assert Counter(kinds)[EventKind.STARTED] == 1
        assert started.is_set()
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"running": 1, "queued": 2}
        # f1 holds the second slot and waits for the worker; f2 waits for a slot.
        assert (metrics.ready_queue, metrics.max_concurrency) == (2, 2)
        prometheus = await tm.render_prometheus()
        release.set()
        assert (
            await asyncio.gather(*(tm.wait_for_task(t, timeout=WAIT) for t in ids)) == ["done"] * 3
        )
    assert (
        "# HELP actorflow_ready_queue_tasks Tasks queued: waiting for a concurrency slot, "
        "for a worker of the thread pool (also in actorflow_pool_queue_tasks) or for "
        "their circuit breaker.\n"
    ) in prometheus


async def test_a_breaker_releases_its_waiting_tasks_when_the_fake_clock_reaches_its_time(
    backend: str,
) -> None:
    """A task waits for an open breaker (recovery 5 s); the fake clock moves exactly 5 s:
    the breaker half-opens and the task runs. (Its timer was armed 1 ns late, so a clock
    moved to the very time left the breaker reading half-open with the task parked.)"""
    clock = FakeClock()
    config = {"BREAKER_FAILURE_THRESHOLD": 1, "BREAKER_RECOVERY_TIMEOUT": 5.0}
    async with make_system(backend, clock, **config) as system:
        tm = system.task_manager
        failing = await tm.register_task("down", fails(Boom("down")), circuit_breaker="svc")
        with pytest.raises(Boom):
            await tm.execute_task(failing, wait=True)
        waiting = await tm.register_task("up", double, (21,), circuit_breaker="svc")
        assert await tm.execute_task(waiting) is True
        await timers_armed(clock)  # the breaker's: when it half-opens
        assert await tm.get_task_status(waiting) is TaskStatus.QUEUED
        clock.advance(5.0)
        assert await tm.wait_for_task(waiting, timeout=WAIT) == 42
        metrics = await tm.get_metrics()
        assert dict(metrics.breakers) == {"svc": "closed"}
        assert dict(metrics.tasks_by_status) == {"failed": 1, "completed": 1}
