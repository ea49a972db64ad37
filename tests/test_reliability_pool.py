"""Regressions of issue 17 in the pool, the client, the metrics and the configuration.

Items 6 (a wait that times out is not the task's TimeoutError), 8 (pool threads never
block interpreter exit), 9 (tasks that wait for tasks lend their slot out), 12 (a plain
function runs, and times out, from when a worker starts it), 16 (a timed-out wait
leaves no waiter behind), 17 (bounded metrics labels) and 18b (ASCII digits only).
Time is a `FakeClock` where timeouts matter; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import actors
from actors import (
    ActorsError,
    ActorSystem,
    ConfigError,
    TaskStatus,
    TaskTimeoutError,
    WaitTimeoutError,
    cancellation_token,
    load_config,
)
from supervisors.testing import FakeClock

WAIT = 5.0
"""Upper bound, in real seconds, on waiting for anything in these tests."""

EXIT_BOUND = 30.0
"""Upper bound, in real seconds, on a child interpreter's whole run (start to exit)."""

ROOT = Path(__file__).resolve().parent.parent

QUEUED = TaskStatus.QUEUED
RUNNING = TaskStatus.RUNNING
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED


def make_system(clock: FakeClock | None = None, **config: Any) -> ActorSystem:
    return ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0, **config}, clock=clock or FakeClock())


async def wait_thread_event(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT), "the event was not set in time"


# -- 6: a wait that times out raises its own error ----------------------------------------


class HttpTimeout(TimeoutError):
    """What an HTTP client raises when the server is slow (httpx.ReadTimeout is one)."""


@pytest.mark.parametrize(
    ("kind", "text"),
    [(TimeoutError, "read timed out"), (HttpTimeout, "upstream took too long")],
    ids=["TimeoutError", "subclass"],
)
async def test_a_task_that_failed_with_timeout_error_raises_it_unchanged(
    kind: type[TimeoutError], text: str
) -> None:
    # Built here, not in the parameters: a parameter lives as long as the session, and
    # once raised its traceback holds this test's frames (and its actor system).
    error = kind(text)

    async def fetch() -> None:
        raise error

    async with make_system() as system:
        tm = system.task_manager
        task_id = await tm.register_task("fetch", fetch)
        await tm.execute_task(task_id)
        with pytest.raises(type(error)) as raised:
            await tm.wait_for_task(task_id, timeout=WAIT)
        assert raised.value is error
        assert not isinstance(raised.value, WaitTimeoutError)
        assert await tm.get_task_status(task_id) is FAILED


async def test_a_wait_that_times_out_raises_wait_timeout_error() -> None:
    async with make_system() as system:
        tm = system.task_manager
        task_id = await tm.register_task("idle", lambda: 1, task_id="idle")
        with pytest.raises(WaitTimeoutError) as raised:
            await tm.wait_for_task(task_id, timeout=0.01)
        assert str(raised.value) == "task 'idle' did not finish within 0.01s; it keeps running"
        assert isinstance(raised.value, TimeoutError)
        assert isinstance(raised.value, ActorsError)
        assert raised.value.__cause__ is None
        assert await tm.get_task_status(task_id) is TaskStatus.PENDING


def test_wait_timeout_error_is_exported() -> None:
    assert "WaitTimeoutError" in actors.__all__
    assert actors.WaitTimeoutError is WaitTimeoutError
    assert issubclass(WaitTimeoutError, ActorsError)
    assert issubclass(WaitTimeoutError, TimeoutError)


# -- 16: a timed-out wait leaves no waiter behind ------------------------------------------


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_timed_out_waits_leave_no_waiters(backend: str) -> None:
    async with make_system(USE_NEW_TASK_SYSTEM=backend == "new") as system:
        tm = system.task_manager
        task_id = await tm.register_task("later", lambda: 42)
        outcomes = await asyncio.gather(
            *(tm.wait_for_task(task_id, timeout=0.01) for _ in range(1000)),
            return_exceptions=True,
        )
        assert [type(outcome) for outcome in outcomes] == [WaitTimeoutError] * 1000
        # The manager hears the withdrawals before this call (one mailbox, in order).
        assert await tm.get_task_status(task_id) is TaskStatus.PENDING
        assert system._state is not None
        child = "task_manager" if backend == "new" else "legacy_task_manager"
        record = system._state.states[child].tasks[task_id]
        assert record.waiters == []
        waiter = asyncio.ensure_future(tm.wait_for_task(task_id, timeout=WAIT))
        await tm.execute_task(task_id)
        assert await waiter == 42


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_a_cancelled_execute_with_wait_withdraws_its_waiter_and_the_task_goes_on(
    backend: str,
) -> None:
    async with make_system(USE_NEW_TASK_SYSTEM=backend == "new") as system:
        tm = system.task_manager
        started, release = asyncio.Event(), asyncio.Event()

        async def held() -> int:
            started.set()
            await release.wait()
            return 7

        task_id = await tm.register_task("held", held)
        call = asyncio.ensure_future(tm.execute_task(task_id, wait=True))
        await asyncio.wait_for(started.wait(), WAIT)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # The manager hears the withdrawal before this call (one mailbox, in order).
        assert await tm.get_task_status(task_id) is TaskStatus.RUNNING
        assert system._state is not None
        child = "task_manager" if backend == "new" else "legacy_task_manager"
        assert system._state.states[child].tasks[task_id].waiters is None
        release.set()
        assert await tm.wait_for_task(task_id, timeout=WAIT) == 7


# -- 9: tasks that wait for tasks ----------------------------------------------------------


async def test_parents_waiting_for_children_do_not_deadlock() -> None:
    async with make_system(MAX_CONCURRENT_TASKS=2) as system:
        tm = system.task_manager

        async def child(n: int) -> int:
            return n * 10

        async def parent_waits(base: int) -> int:
            ids = [await tm.register_task(f"child{base + i}", child, (base + i,)) for i in (0, 1)]
            for task_id in ids:
                await tm.execute_task(task_id)
            return sum([await tm.wait_for_task(task_id, timeout=WAIT) for task_id in ids])

        async def parent_executes(base: int) -> int:
            ids = [await tm.register_task(f"child{base + i}", child, (base + i,)) for i in (0, 1)]
            return sum([await tm.execute_task(task_id, wait=True) for task_id in ids])

        first = await tm.register_task("parent1", parent_waits, (1,))
        second = await tm.register_task("parent2", parent_executes, (3,))
        await tm.execute_task(first)
        await tm.execute_task(second)
        assert await tm.wait_for_task(first, timeout=WAIT) == 10 + 20
        assert await tm.wait_for_task(second, timeout=WAIT) == 30 + 40
        tasks = await tm.get_all_tasks()
        assert sorted((info.name, info.status) for info in tasks) == [
            ("child1", COMPLETED),
            ("child2", COMPLETED),
            ("child3", COMPLETED),
            ("child4", COMPLETED),
            ("parent1", COMPLETED),
            ("parent2", COMPLETED),
        ]
        assert system._state is not None
        manager = system._state.states["task_manager"]
        assert manager.running == 0
        assert [record.blocked for record in manager.tasks.values()] == [0] * 6


async def test_a_parent_that_times_out_while_waiting_gives_back_no_slot_twice() -> None:
    clock = FakeClock()
    async with make_system(clock, MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager
        child_id = await tm.register_task("child", lambda: 1, task_id="child")
        waiting = asyncio.Event()

        async def parent() -> None:
            waiting.set()
            # The child is never executed: without a timeout the wait would be refused
            # (TaskNotExecutedError); with one it waits until the parent times out.
            await tm.wait_for_task(child_id, timeout=WAIT * 10)

        parent_id = await tm.register_task("parent", parent, timeout=1.0)
        await tm.execute_task(parent_id)
        await asyncio.wait_for(waiting.wait(), WAIT)
        await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)
        clock.advance(1.0)
        with pytest.raises(TaskTimeoutError):
            await tm.wait_for_task(parent_id, timeout=WAIT)
        assert system._state is not None
        manager = system._state.states["task_manager"]
        assert await tm.get_task_status(child_id) is TaskStatus.PENDING
        assert manager.running == 0
        assert await tm.execute_task(child_id, wait=True) == 1
        # The attempt answered its waiter itself; the manager hears of it before this.
        assert await tm.get_task_status(child_id) is COMPLETED
        assert manager.running == 0
        assert manager.tasks[parent_id].blocked == 0


# -- 12: a plain function runs from when a worker starts it --------------------------------


async def test_a_function_waiting_for_a_worker_is_queued_and_does_not_time_out() -> None:
    clock = FakeClock()
    started = [threading.Event() for _ in range(4)]

    def work(index: int) -> None:
        started[index].set()
        cancellation_token().wait(WAIT)  # returns once its attempt times out

    async with make_system(clock, MAX_THREAD_WORKERS=2) as system:
        tm = system.task_manager
        ids = [
            await tm.register_task(f"work{i}", work, (i,), timeout=1.0, task_id=f"w{i}")
            for i in range(4)
        ]
        for task_id in ids:
            await tm.execute_task(task_id)
        await wait_thread_event(started[0])
        await wait_thread_event(started[1])
        await asyncio.to_thread(clock.wait_for_timers, 2, WAIT)
        infos = [await tm.get_task(task_id) for task_id in ids]
        assert [info.status for info in infos] == [RUNNING, RUNNING, QUEUED, QUEUED]
        assert [info.started_at for info in infos] == [0.0, 0.0, None, None]

        clock.advance(1.0)  # the first two time out; their workers take the other two
        for task_id in ids[:2]:
            with pytest.raises(TaskTimeoutError):
                await tm.wait_for_task(task_id, timeout=WAIT)
        await wait_thread_event(started[2])
        await wait_thread_event(started[3])
        await asyncio.to_thread(clock.wait_for_timers, 2, WAIT)
        infos = [await tm.get_task(task_id) for task_id in ids]
        assert [info.status for info in infos] == [FAILED, FAILED, RUNNING, RUNNING]
        assert [info.started_at for info in infos] == [0.0, 0.0, 1.0, 1.0]

        clock.advance(1.0)  # now their own timeouts, counted from their start, pass
        for task_id in ids[2:]:
            with pytest.raises(TaskTimeoutError) as raised:
                await tm.wait_for_task(task_id, timeout=WAIT)
            assert str(raised.value) == f"task {task_id!r} attempt 1 timed out after 1.0s"
        metrics = await tm.get_metrics()
        assert metrics.timeouts == 4
        assert metrics.wait_time["default"].count == 4
        assert metrics.wait_time["default"].max == 1.0


async def test_a_function_cancelled_while_waiting_for_a_worker_never_runs() -> None:
    release, ran = threading.Event(), []
    first_started = threading.Event()

    def blocker() -> None:
        first_started.set()
        release.wait(WAIT)

    async with make_system(MAX_THREAD_WORKERS=1) as system:
        tm = system.task_manager
        first = await tm.register_task("blocker", blocker)
        second = await tm.register_task("never", lambda: ran.append(1))
        await tm.execute_task(first)
        await tm.execute_task(second)
        await wait_thread_event(first_started)
        assert await tm.get_task_status(second) is QUEUED
        assert await tm.cancel_task(second) is True
        release.set()
        assert await tm.wait_for_task(first, timeout=WAIT) is None
        assert await tm.get_task_status(second) is TaskStatus.CANCELLED
        assert ran == []
        assert system._state is not None
        assert system._state.states["task_manager"].running == 0


# -- 8: pool threads never keep the interpreter alive --------------------------------------


def run_script(source: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORFLOW_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=EXIT_BOUND,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_a_function_that_ignores_its_token_does_not_block_exit() -> None:
    done = run_script(
        """
        import asyncio, threading
        from actors import ActorSystem, TaskTimeoutError

        never = threading.Event()

        def stuck():
            never.wait()  # ignores its cancellation token

        async def main():
            async with ActorSystem({"SHUTDOWN_TIMEOUT": 0.5}) as system:
                tm = system.task_manager
                task_id = await tm.register_task("stuck", stuck, timeout=0.1)
                await tm.execute_task(task_id)
                try:
                    await tm.wait_for_task(task_id, timeout=10)
                except TaskTimeoutError:
                    print("timed out")
            print("shut down")

        asyncio.run(main())
        """
    )
    assert (done.returncode, done.stdout) == (0, "timed out\nshut down\n"), done.stderr


def test_the_lazy_client_sets_the_token_before_exit_waits_for_a_thread() -> None:
    done = run_script(
        """
        import asyncio, threading
        from actors import cancellation_token, unified_task_manager as tm

        started = threading.Event()

        def polite():
            started.set()
            if cancellation_token().wait(120):
                print("cancelled", flush=True)

        async def main():
            task_id = await tm.register_task("polite", polite)
            await tm.execute_task(task_id)
            await asyncio.to_thread(started.wait, 10)
            print("leaving", flush=True)

        asyncio.run(main())
        """
    )
    assert (done.returncode, done.stdout) == (0, "leaving\ncancelled\n"), done.stderr


# -- 17: bounded metrics labels ------------------------------------------------------------


async def test_task_types_past_the_bound_share_one_label_and_cleanup_frees_labels() -> None:
    async with make_system(METRICS_MAX_TASK_TYPES=2) as system:
        tm = system.task_manager
        for task_type in ("a", "b", "c", "a", "d"):
            task_id = await tm.register_task(task_type, lambda: None, task_type=task_type)
            await tm.execute_task(task_id, wait=True)
        metrics = await tm.get_metrics()
        assert {t: dict(c) for t, c in metrics.tasks_by_type.items()} == {
            "a": {"completed": 2},
            "b": {"completed": 1},
            "__other__": {"completed": 2},
        }
        assert {t: s.count for t, s in metrics.execution_time.items()} == {
            "a": 2,
            "b": 1,
            "__other__": 2,
        }
        assert {t: s.count for t, s in metrics.wait_time.items()} == {
            "a": 2,
            "b": 1,
            "__other__": 2,
        }

        assert await tm.cleanup_completed_tasks(max_age=0.0) == 5
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_type) == {}
        assert {t: s.count for t, s in metrics.execution_time.items()} == {"__other__": 2}

        for task_type in ("e", "f", "g"):
            task_id = await tm.register_task(task_type, lambda: None, task_type=task_type)
            await tm.execute_task(task_id, wait=True)
        metrics = await tm.get_metrics()
        assert {t: dict(c) for t, c in metrics.tasks_by_type.items()} == {
            "e": {"completed": 1},
            "f": {"completed": 1},
            "__other__": {"completed": 1},
        }
        assert {t: s.count for t, s in metrics.execution_time.items()} == {
            "__other__": 3,
            "e": 1,
            "f": 1,
        }
        assert system._state is not None
        monitor = system._state.states["task_monitor"]
        assert (monitor.own_labels, dict(monitor.live)) == (2, {"e": 1, "f": 1, "g": 1})


async def test_a_label_freed_and_taken_again_within_one_transition_batch() -> None:
    """The monitor adds a batch's status counts up and applies them at its end; a removal
    applies them first, since it may free its type's label (and drop its counts)."""
    async with make_system(MAX_FINISHED_TASKS=1, METRICS_MAX_TASK_TYPES=1) as system:
        tm = system.task_manager
        assert await tm.submit(lambda: 1, task_type="a") == 1
        await tm.get_metrics()  # the monitor counts it: "a" completed 1
        # One batch (nobody subscribes: the manager holds them till the next metrics
        # call): b (labelled __other__) ends and removes the first a, which frees the
        # label "a" and its counts; a second a takes the label and removes b.
        assert await tm.submit(lambda: 2, task_type="b") == 2
        assert await tm.submit(lambda: 3, task_type="a") == 3
        metrics = await tm.get_metrics()
        assert metrics.tasks_by_status == {"completed": 1}
        assert {t: dict(c) for t, c in metrics.tasks_by_type.items()} == {"a": {"completed": 1}}
        assert {t: s.count for t, s in metrics.execution_time.items()} == {
            "a": 1,
            "__other__": 1,
        }


async def test_a_types_times_go_with_its_label_when_its_last_task_goes_in_the_same_batch() -> None:
    """The monitor gathers a batch's run and wait times per label and counts them at its
    end; the removal of a type's last task counts them first, so they go with the
    label's sketches and histograms instead of landing in new ones."""
    async with make_system(MAX_FINISHED_TASKS=1) as system:
        tm = system.task_manager
        # One batch (nobody subscribes: the manager holds them till the metrics call):
        # a runs and ends, then b ends and removes a, its type's last task.
        assert await tm.submit(lambda: 1, task_type="a") == 1
        assert await tm.submit(lambda: 2, task_type="b") == 2
        metrics = await tm.get_metrics()
        assert {t: dict(c) for t, c in metrics.tasks_by_type.items()} == {"b": {"completed": 1}}
        assert {t: s.count for t, s in metrics.execution_time.items()} == {"b": 1}
        assert {t: s.count for t, s in metrics.wait_time.items()} == {"b": 1}
        assert {t: h.count for t, h in metrics.execution_histogram.items()} == {"b": 1}
        assert {t: h.count for t, h in metrics.wait_histogram.items()} == {"b": 1}


async def test_a_running_tasks_type_has_a_wait_time_and_no_run_time_yet() -> None:
    """A type's run-time sketch and histogram appear with its first run time, not with
    its first wait time."""
    started, release = threading.Event(), threading.Event()

    def hold() -> int:
        started.set()
        release.wait(WAIT)
        return 1

    async with make_system() as system:
        tm = system.task_manager
        task_id = await tm.register_task("hold", hold, task_type="held")
        await tm.execute_task(task_id)
        try:
            await wait_thread_event(started)
            metrics = await tm.get_metrics()
        finally:
            release.set()
        assert metrics.tasks_by_status == {"running": 1}
        assert {t: s.count for t, s in metrics.wait_time.items()} == {"held": 1}
        assert (metrics.execution_time, metrics.execution_histogram) == ({}, {})
        assert await tm.wait_for_task(task_id, timeout=WAIT) == 1
        metrics = await tm.get_metrics()
        assert {t: s.count for t, s in metrics.execution_time.items()} == {"held": 1}
        assert {t: h.count for t, h in metrics.execution_histogram.items()} == {"held": 1}


async def test_many_task_types_keep_the_metrics_bounded() -> None:
    async with make_system(METRICS_MAX_TASK_TYPES=3) as system:
        tm = system.task_manager
        for n in range(200):
            task_id = await tm.register_task("t", lambda: None, task_type=f"type{n}")
            await tm.execute_task(task_id, wait=True)
        metrics = await tm.get_metrics()
        assert sorted(metrics.tasks_by_type) == ["__other__", "type0", "type1", "type2"]
        assert metrics.tasks_by_type["__other__"] == {"completed": 197}
        assert await tm.cleanup_completed_tasks(max_age=0.0) == 200
        assert dict((await tm.get_metrics()).tasks_by_type) == {}  # the monitor heard it
        assert system._state is not None
        monitor = system._state.states["task_monitor"]
        assert (monitor.labels, dict(monitor.live), monitor.own_labels) == ({}, {}, 0)
        assert sorted(monitor.execution) == ["__other__"]
        assert sorted(monitor.by_type) == ["__other__"]


# -- 18b: numbers in the environment are ASCII -----------------------------------------------


@pytest.mark.parametrize(
    ("var", "raw", "message"),
    [
        (
            "ACTORFLOW_MAX_CONCURRENT_TASKS",
            "\u0663",  # ARABIC-INDIC DIGIT THREE: int() reads it as 3
            "MAX_CONCURRENT_TASKS must be an int >= 1 written in ASCII digits, got '\u0663' "
            "(from environment variable ACTORFLOW_MAX_CONCURRENT_TASKS)",
        ),
        (
            "ACTORFLOW_CALL_TIMEOUT",
            "\uff11.\uff15",  # FULLWIDTH 1.5: float() reads it as 1.5
            "CALL_TIMEOUT must be a finite number > 0 written in ASCII digits, got "
            "'\uff11.\uff15' (from environment variable ACTORFLOW_CALL_TIMEOUT)",
        ),
    ],
)
def test_numbers_from_the_environment_must_be_ascii(var: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(env={var: raw})
    assert str(raised.value) == message
    assert load_config(env={var: "3"}).as_dict()[var.removeprefix("ACTORFLOW_")] == 3
