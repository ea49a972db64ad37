"""The event loops production services run: asyncio's own and uvloop (what uvicorn, so
FastAPI, runs by default).

Every async test here runs on both (the `loops` marker, tests/conftest.py); the whole
suite runs on uvloop with ``pytest --event-loop uvloop``. The scenarios are the ones a
service meets: register/execute/wait, submit and map, the thread pool, `system.blocking`
from a thread, a coroutine's timeout and cancel, a crashed manager's restart, a burst of
20,000 replies through one `LoopBridge`, a stop while tasks run.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import LOOPS
from helpers import (
    WAIT,
    Boom,
    WaitsForToken,
    assert_cancelled,
    fails,
    journal_config,
    make_system,
    running_forever,
    until,
)
from test_durable import journal_row, write

from actors import (
    ActorSystem,
    BlockingCallError,
    TaskNotFoundError,
    TaskStatus,
    TaskTimeoutError,
)
from actors.core import JournalLockedError, Reply, bridge_for
from actors.core._bridge import DRAIN_CHUNK
from supervisors import Kill
from supervisors.testing import FakeClock

pytestmark = pytest.mark.loops


def add(x: int, y: int = 0) -> int:
    return x + y


async def double(x: int) -> int:
    await asyncio.sleep(0)  # (suspends once: not ended by an eager start)
    return 2 * x


def loop_name() -> str:
    """The running loop's name in `conftest.LOOPS`."""
    loop = asyncio.get_running_loop()
    if loop.get_task_factory() is getattr(asyncio, "eager_task_factory", False):
        return "eager"
    return type(loop).__module__.split(".")[0]


async def test_the_loop_is_the_one_asked_for(request: pytest.FixtureRequest) -> None:
    """The parametrization is real: the test runs on the loop its id names."""
    assert f"[{loop_name()}" in request.node.name or f"-{loop_name()}]" in request.node.name


async def test_register_execute_wait(backend: str) -> None:
    async with make_system(backend, FakeClock()) as system:
        tm = system.task_manager
        coro = await tm.register_task("double", double, (21,))
        func = await tm.register_task("add", add, (40, 2), task_type="cpu")
        assert await tm.execute_task(coro) is True
        assert await tm.execute_task(func) is True
        assert await tm.wait_for_task(coro, timeout=WAIT) == 42
        assert await tm.wait_for_task(func, timeout=WAIT) == 42
        failing = await tm.register_task("boom", fails(Boom("no")))
        with pytest.raises(Boom, match=r"^no$"):
            await tm.execute_task(failing, wait=True)
        assert [await tm.get_task_status(t) for t in (coro, func, failing)] == [
            TaskStatus.COMPLETED,
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
        ]


async def test_submit_map_and_the_thread_pool(backend: str) -> None:
    async with make_system(backend, FakeClock()) as system:
        tm = system.task_manager
        assert await tm.submit(double, 5) == 10
        assert await tm.submit(add, 1, 2, task_type="cpu") == 3
        assert await tm.map(double, range(200)) == [2 * i for i in range(200)]
        assert await tm.map(add, range(50), task_type="cpu") == list(range(50))
        assert await tm.thread_pool.submit(add, 3, y=4) == 7
        results = await asyncio.gather(*(tm.thread_pool.submit(add, i) for i in range(100)))
        assert results == list(range(100))


async def test_blocking_from_a_thread_while_the_loop_runs() -> None:
    async with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        results: list[Any] = []
        done = threading.Event()

        def caller() -> None:
            try:
                results.append(system.blocking.submit(add, 4, 5))
                results.append(system.blocking.map(add, [1, 2, 3], task_type="cpu"))
            finally:
                done.set()

        thread = threading.Thread(target=caller)
        thread.start()
        assert await asyncio.to_thread(done.wait, WAIT)
        thread.join(WAIT)
        assert results == [9, [1, 2, 3]]


async def test_a_coroutines_timeout_and_cancel(backend: str) -> None:
    clock = FakeClock()
    async with make_system(backend, clock) as system:
        tm = system.task_manager
        started = asyncio.Event()
        timed = await tm.register_task(
            "slow", lambda: _forever(started), timeout=5.0, max_retries=0
        )
        assert await tm.execute_task(timed) is True
        await until(started)
        await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)
        clock.advance(5.0)
        with pytest.raises(TaskTimeoutError):
            await tm.wait_for_task(timed, timeout=WAIT)
        assert await tm.get_task_status(timed) is TaskStatus.FAILED

        forever = await running_forever(tm)
        assert await tm.cancel_task(forever) is True
        await assert_cancelled(tm, forever)


async def _forever(started: asyncio.Event) -> None:
    started.set()
    await asyncio.get_running_loop().create_future()


@pytest.mark.parametrize("child", ["task_manager", "legacy_task_manager", "facade"])
async def test_a_crashed_manager_restarts_with_its_tasks(child: str) -> None:
    backend = "old" if child == "legacy_task_manager" else "new"
    async with make_system(backend, FakeClock()) as system:
        tm = system.task_manager
        started, release = asyncio.Event(), asyncio.Event()

        async def held() -> str:
            started.set()
            await release.wait()
            return "held"

        running = await tm.register_task("held", held)
        assert await tm.execute_task(running) is True
        await until(started)
        system.supervisor.child(child).tell(Kill())
        # Calls made during the restart succeed; the running task ends as it would have.
        assert await tm.submit(double, 4) == 8
        release.set()
        assert await tm.wait_for_task(running, timeout=WAIT) == "held"
        restarts = {r.id: r.restarts for r in await system.supervisor.which_children()}
        assert restarts[child] == 1


async def test_twenty_thousand_replies_through_one_bridge() -> None:
    """Replies posted from a thread in one burst: each future gets its own value, and
    the loop's other callbacks run between the drains (64 replies each at most), not
    after all 20,000."""
    loop = asyncio.get_running_loop()
    bridge = bridge_for(loop)
    futures = [loop.create_future() for _ in range(20_000)]
    seen: list[int] = []  # how many were answered, at each tick of another callback
    answered = 0

    def tick() -> None:
        nonlocal answered
        while answered < len(futures) and futures[answered].done():
            answered += 1
        seen.append(answered)
        if answered < len(futures):
            loop.call_soon(tick)

    def burst() -> None:
        for i, future in enumerate(futures):
            Reply(bridge, future).set_result(i)

    loop.call_soon(tick)
    thread = threading.Thread(target=burst)
    thread.start()
    values = await asyncio.wait_for(asyncio.gather(*futures), WAIT)
    thread.join(WAIT)
    assert values == list(range(20_000))
    assert len(bridge._pending) == 0
    steps = [b - a for a, b in itertools.pairwise(seen)]
    # (two drains may run in one iteration: one rescheduled, one the burst scheduled)
    assert max(steps) <= 2 * DRAIN_CHUNK
    assert len([n for n in seen if 0 < n < len(futures)]) >= len(futures) // (2 * DRAIN_CHUNK)


async def test_a_stop_while_tasks_run_cancels_them_and_leaves_no_task(backend: str) -> None:
    loop = asyncio.get_running_loop()
    before = asyncio.all_tasks(loop)
    system = make_system(backend, FakeClock())
    async with system:
        tm = system.task_manager
        started = asyncio.Event()
        coro = await tm.register_task("forever", lambda: _forever(started))
        blocks = WaitsForToken()  # a function that ends when its attempt is cancelled
        func = await tm.register_task("blocks", blocks.run, task_type="cpu")
        assert await tm.execute_task(coro) is True
        assert await tm.execute_task(func) is True
        await until(started)
        assert await asyncio.to_thread(blocks.started.wait, WAIT)
        await tm.shutdown()
    assert await asyncio.to_thread(blocks.returned.wait, WAIT)
    assert blocks.token_set == [True]
    for _ in range(3):  # the cancelled attempts' tasks end within a few iterations
        await asyncio.sleep(0)
    assert asyncio.all_tasks(loop) - before == set()


# -- what a stop leaves behind ----------------------------------------------------------------

RECOVERED_STARTED = threading.Event()
RECOVERED_CLEANED = threading.Event()


async def recovered_forever() -> None:
    """A journaled coroutine task that was running when its process died: recovered,
    it runs on the system's own loop until it is cancelled, then cleans up."""
    RECOVERED_STARTED.set()
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await asyncio.sleep(0.01)  # an async cleanup (closing a connection, say)
        RECOVERED_CLEANED.set()


def test_a_stop_lets_a_recovered_coroutine_clean_up_and_leaves_no_pending_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The system stops while a recovered coroutine runs on the system's own loop (its
    caller's loop is gone): the task is cancelled, its cleanup runs, and the loop is
    closed with no task pending. Before, the loop was stopped and closed with the
    cancelled task still pending: its ``finally`` never ran, and asyncio logged "Task
    was destroyed but it is pending!" once it was collected."""
    RECOVERED_STARTED.clear()
    RECOVERED_CLEANED.clear()
    path = tmp_path / "tasks.db"
    write(path, journal_row("r", recovered_forever, (), "running", attempts=1))

    async def main() -> None:
        async with ActorSystem(journal_config(path)) as system:
            assert await asyncio.to_thread(RECOVERED_STARTED.wait, WAIT)
            assert system.running

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
        gc.collect()
    assert RECOVERED_CLEANED.is_set()
    assert [r.getMessage() for r in caplog.records] == []


def test_a_stop_lets_a_coroutine_on_the_blocking_loop_thread_finish_its_cleanup() -> None:
    """`with ActorSystem()` runs coroutine tasks on its own loop thread. The stop cancels
    a running one; its cleanup awaits (closing a connection, say) and completes. Before,
    the loop thread cancelled it again as it ended its loop, cutting that cleanup short."""
    started, cleaned = threading.Event(), threading.Event()

    async def body() -> None:
        started.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await asyncio.sleep(0.01)
            cleaned.set()

    with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        task_id = system.blocking.register_task("held", body)
        assert system.blocking.execute_task(task_id) is True
        assert started.wait(WAIT)
    assert cleaned.is_set()


# -- debug mode, warnings as errors -----------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_the_standard_scenarios_leave_no_warning_in_debug_mode(loop: str) -> None:
    """tests/loops_worker.py runs a service's calls on loops of each kind, in asyncio's
    debug mode, with ``-X dev -W error``: under `asyncio.run`, an `asyncio.Runner` that
    makes several runs, a loop the script makes and closes itself, and two systems at
    once on two threads' loops, each stopped while tasks run. Nothing may be printed
    but its ``ok``: no warning (an unclosed loop, socket or file; a coroutine never
    awaited), no "Task was destroyed but it is pending!", no callback that blocked its
    loop for a second, no exception ignored at exit."""
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop has no wheel for this platform")
    if loop == "eager" and not hasattr(asyncio, "eager_task_factory"):
        pytest.skip("eager tasks are new in Python 3.12")
    worker = Path(__file__).with_name("loops_worker.py")
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(worker), loop],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(worker.parent.parent), "PYTHONASYNCIODEBUG": "1"},
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


async def test_calls_run_as_tasks_and_from_other_threads(backend: str) -> None:
    """A client call is awaited, made a task (an eager one where the factory is), or
    sent to the loop from another thread, on every loop."""
    async with make_system(backend, FakeClock()) as system:
        tm = system.task_manager
        loop = asyncio.get_running_loop()
        assert await asyncio.create_task(tm.submit(double, 2)) == 4
        status = asyncio.ensure_future(tm.get_task_status("nope"))
        with pytest.raises(TaskNotFoundError, match="nope"):
            await status
        tasks = [asyncio.create_task(tm.submit(double, i)) for i in range(100)]
        assert await asyncio.gather(*tasks) == [2 * i for i in range(100)]

        def from_a_thread() -> int:
            future = asyncio.run_coroutine_threadsafe(tm.submit(double, 21), loop)
            return int(future.result(WAIT))

        assert await asyncio.to_thread(from_a_thread) == 42
        assert await asyncio.wait_for(asyncio.shield(tm.submit(double, 5)), WAIT) == 10


async def test_a_blocking_call_on_a_running_loop_is_refused() -> None:
    """The blocking API knows a thread that runs a loop, whichever loop: it refuses
    before anything is sent (it would block that loop)."""
    async with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        with pytest.raises(BlockingCallError, match=r"^system\.blocking\.get_all_tasks\(\)"):
            system.blocking.get_all_tasks()
        assert await system.task_manager.get_all_tasks() == []


async def test_a_journaled_start_leaves_the_loop_running(tmp_path: Path) -> None:
    """``async with ActorSystem`` with a journal opens (or creates) its file and reads
    and restores its tasks in a thread: the loop runs its other callbacks meanwhile.
    Before, the start ran on the loop (tens of milliseconds for a new file, seconds for
    100,000 rows), and asyncio's debug mode reported "Executing <Task ...> took 0.1
    seconds"."""
    path = tmp_path / "tasks.db"
    write(path, *(journal_row(f"p{i}", add, (i, 1), "pending") for i in range(2_000)))
    loop = asyncio.get_running_loop()
    ran: list[str] = []
    loop.call_soon(ran.append, "ran")
    async with ActorSystem(journal_config(path)) as system:
        assert ran == ["ran"]  # (a start on the loop returned before it ran this)
        assert len(await system.task_manager.get_all_tasks()) == 2_000
        assert await system.task_manager.execute_task("p7", wait=True) == 8
    assert not system.running


async def test_a_journaled_start_cancelled_stops_the_system_once_started(tmp_path: Path) -> None:
    """The caller's cancel (a lifespan's timeout) ends its wait; the system it no longer
    owns stops once its start ends, and lets its file go (a new system opens it)."""
    path = tmp_path / "tasks.db"
    system = ActorSystem(journal_config(path))
    entering = asyncio.ensure_future(system.__aenter__())
    await asyncio.sleep(0)  # (it runs up to its wait for the start)
    entering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await entering
    for stopper in threading.enumerate():  # (none left: it stopped the system already)
        if stopper.name == "actorflow-start-abandoned":
            await asyncio.to_thread(stopper.join, WAIT)
            assert not stopper.is_alive()
    assert not system.running
    async with ActorSystem(journal_config(path)) as again:  # the file's lock is free
        assert await again.task_manager.submit(add, 1, 2, durable=True) == 3


async def test_a_journaled_start_that_fails_raises_its_error(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with ActorSystem(journal_config(path)):
        second = ActorSystem(journal_config(path))
        with pytest.raises(JournalLockedError):
            await second.__aenter__()
        assert not second.running
