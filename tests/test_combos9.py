"""Stopping a loaded system (ninth round): shutdown while tasks queue and run, and stops
called from where a service calls them (a task's own code, a pool function, twice at
once, a SIGTERM handler in a real process).

Found here: a coroutine task that shuts its own system down is cancelled by that very
shutdown, and the cancellation used to end ``shutdown()`` before it stopped anything
(the system stayed half-stopped: every actor alive, every new task cancelled at once).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pykka
import pytest
from helpers import WAIT, journal_config

from actors import ActorSystem, ActorSystemError, TaskCancelledError, TaskStatus

SHUTDOWN = 0.5
"""``SHUTDOWN_TIMEOUT`` of these tests' systems."""

SHUT = "the actor system is shut down; create a new ActorSystem"
"""What every call made once the system stops raises (an `ActorSystemError`)."""


def config(backend: str, **extra: Any) -> dict[str, Any]:
    return {
        "USE_NEW_TASK_SYSTEM": backend == "new",
        "CLEANUP_INTERVAL": 0,
        "SHUTDOWN_TIMEOUT": SHUTDOWN,
        **extra,
    }


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_a_coroutine_task_that_shuts_its_own_system_down_stops_it(backend: str) -> None:
    system = ActorSystem(config(backend)).start()
    tm = system.task_manager

    async def stopper() -> str:
        await system.shutdown()
        return "after"

    with pytest.raises(TaskCancelledError) as caught:
        await asyncio.wait_for(tm.submit(stopper, task_id="stopper"), WAIT)
    assert str(caught.value) == "task 'stopper' was cancelled: the actor system shut down"
    # The stop goes on without the cancelled caller, within its bound.
    assert await asyncio.to_thread(system._stop_over.wait, WAIT)
    assert pykka.ActorRegistry.get_all() == []
    await asyncio.wait_for(system.shutdown(), WAIT)  # a later call: nothing left to do


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_a_shutdown_whose_caller_is_cancelled_still_stops_the_system(backend: str) -> None:
    """``asyncio.run`` cancels its main task on Ctrl-C, a timeout around the call cancels
    it: the stop must not end half-way (every actor alive, the system not closed)."""
    system = ActorSystem(config(backend)).start()
    tm = system.task_manager
    task_id = await tm.register_task("queued", asyncio.sleep, (0,))
    stop = asyncio.ensure_future(system.shutdown())
    await asyncio.sleep(0)  # it has asked the managers to cancel their tasks, and waits
    stop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stop
    assert await asyncio.to_thread(system._stop_over.wait, WAIT)
    assert pykka.ActorRegistry.get_all() == []
    with pytest.raises(ActorSystemError) as caught:
        await tm.get_task(task_id)
    assert str(caught.value) == SHUT
    await asyncio.wait_for(system.shutdown(), WAIT)


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_tasks_sent_once_the_shutdown_began_are_refused(backend: str) -> None:
    """A call that reaches the managers after the shutdown's cancel-everything message
    used to be accepted: the task registered (and, executed, started, with nothing left
    to end it but the stop's last sweep), as if the system ran on."""
    system = ActorSystem(config(backend)).start()
    tm = system.task_manager
    registered = await tm.register_task("early", asyncio.sleep, (0,))
    stop = asyncio.ensure_future(system.shutdown())
    await asyncio.sleep(0)  # the managers have been told to shut down: these come after
    calls = [
        tm.register_task("late", asyncio.sleep, (0,)),
        tm.execute_task(registered),
        tm.submit(asyncio.sleep, 0),
        tm.map(asyncio.sleep, [0, 0]),
    ]
    outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT)
    await asyncio.wait_for(stop, WAIT)
    assert [(type(e), str(e)) for e in outcomes] == [(ActorSystemError, SHUT)] * len(calls)


QUEUED = 10_000
RUNNING = 100
STOPPED = "was cancelled: the actor system shut down"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["new"])  # the old task system has no queue
async def test_a_stop_under_load_ends_every_task_and_every_caller(backend: str) -> None:
    """10,000 tasks queued and 100 running (96 coroutines and 4 thread functions that
    ignore their cancellation token past ``SHUTDOWN_TIMEOUT``): the stop returns within
    its bound, every task ends, every waiting caller (``wait_for_task``, ``submit``,
    ``map``, ``thread_pool.submit``, a blocking ``wait_for_task`` on a thread) gets an
    error naming the stop, and the pool's threads end once the stuck functions return."""
    system = ActorSystem(
        config(
            backend,
            MAX_CONCURRENT_TASKS=RUNNING,
            MAX_THREAD_WORKERS=RUNNING // 2,
            MAX_FINISHED_TASKS=2 * QUEUED,
        )
    ).start()
    tm = system.task_manager
    loop = asyncio.get_running_loop()
    gate = threading.Event()
    all_started = asyncio.Event()
    started: list[int] = []

    def count(i: int) -> None:
        started.append(i)
        if len(started) == RUNNING:
            all_started.set()

    async def waits(i: int) -> None:
        count(i)
        await asyncio.Event().wait()

    pool_started = threading.Event()

    def stuck(i: int) -> None:
        if i < 0:
            pool_started.set()
        else:
            loop.call_soon_threadsafe(count, i)
        gate.wait(WAIT)  # ignores its cancellation token

    async def queued(i: int) -> int:
        return i

    try:
        running = [
            await tm.register_task(f"r{i}", stuck if i % 25 == 0 else waits, (i,))
            for i in range(RUNNING)
        ]
        for task_id in running:
            await tm.execute_task(task_id)
        await asyncio.wait_for(all_started.wait(), WAIT)
        later = await asyncio.gather(*(tm.register_task("q", queued, (i,)) for i in range(QUEUED)))
        await asyncio.gather(*(tm.execute_task(task_id) for task_id in later))
        watched = [*running[:2], later[0], later[-1]]
        waiters = [asyncio.ensure_future(tm.wait_for_task(t)) for t in watched]
        calls = [
            asyncio.ensure_future(tm.submit(queued, 1, task_id="submitted")),
            asyncio.ensure_future(tm.map(queued, [1, 2], name="mapped")),
            asyncio.ensure_future(tm.thread_pool.submit(stuck, -1)),
            asyncio.ensure_future(asyncio.to_thread(system.blocking.wait_for_task, later[1])),
        ]
        assert system._state is not None
        child = "task_manager" if backend == "new" else "legacy_task_manager"
        records = system._state.states[child].tasks

        async def all_waiting() -> None:  # submit's task and map's two, each waited for
            watched_too = [*watched, later[1], "submitted"]
            while len(records) < RUNNING + QUEUED + 3 or not all(
                records[t].waiters for t in watched_too
            ):
                await asyncio.sleep(0)
            await asyncio.to_thread(pool_started.wait, WAIT)

        await asyncio.wait_for(all_waiting(), WAIT)

        async with asyncio.timeout(WAIT * 4):  # the bound: SHUTDOWN_TIMEOUT + 1 s, + load
            await system.shutdown()
            outcomes = await asyncio.gather(*waiters, *calls, return_exceptions=True)
        assert len(records) == RUNNING + QUEUED + 1 + 2  # submit's task, map's two
        assert {record.status for record in records.values()} == {TaskStatus.CANCELLED}
    finally:
        gate.set()
        await asyncio.wait_for(system.shutdown(), WAIT)  # done already, unless it failed
    cancelled = [(TaskCancelledError, f"task {t!r} {STOPPED}") for t in watched]
    assert [(type(e), str(e)) for e in outcomes] == [
        *cancelled,
        (TaskCancelledError, f"task 'submitted' {STOPPED}"),
        (TaskCancelledError, str(outcomes[5])),
        (ActorSystemError, "the actor system was shut down"),
        (TaskCancelledError, f"task {later[1]!r} {STOPPED}"),
    ]
    assert str(outcomes[5]).endswith(STOPPED)
    for thread in threading.enumerate():
        if thread.name.startswith("actorflow-pool"):
            thread.join(WAIT)
            assert not thread.is_alive(), thread


_GATE = threading.Event()
"""Holds the durable tasks below (they ignore their cancellation token) until set."""
_STARTED: list[int] = []


async def durable_coroutine(i: int) -> int:
    _STARTED.append(i)
    await asyncio.to_thread(_GATE.wait, WAIT)
    return i


def durable_function(i: int) -> int:
    _STARTED.append(i)
    _GATE.wait(WAIT)  # past SHUTDOWN_TIMEOUT: the stop abandons it
    return i


@pytest.mark.timeout(120)
async def test_durable_tasks_running_or_queued_at_a_stop_run_again_after_a_restart(
    tmp_path: Path,
) -> None:
    """Stopped with 4 durable tasks running (2 coroutines, 2 thread functions stuck past
    ``SHUTDOWN_TIMEOUT``) and 200 queued: the journal marks none failed nor cancelled; a
    new system on the file runs them all again, the running ones counted recovered."""
    _GATE.clear()
    _STARTED.clear()
    path = tmp_path / "tasks.db"
    cfg = journal_config(path, SHUTDOWN_TIMEOUT=SHUTDOWN, MAX_CONCURRENT_TASKS=4)
    system = ActorSystem(cfg).start()
    tm = system.task_manager
    try:
        running = [
            await tm.register_task(
                "r", durable_coroutine if i < 2 else durable_function, (i,), durable=True
            )
            for i in range(4)
        ]
        for task_id in running:
            await tm.execute_task(task_id)

        async def all_started() -> None:
            while len(_STARTED) < 4:
                await asyncio.sleep(0)

        await asyncio.wait_for(all_started(), WAIT)
        queued = [
            await tm.register_task("q", durable_function, (i,), durable=True) for i in range(4, 204)
        ]
        await asyncio.gather(*(tm.execute_task(task_id) for task_id in queued))
        async with asyncio.timeout(WAIT * 2):
            await system.shutdown()
    finally:
        _GATE.set()
        await asyncio.wait_for(system.shutdown(), WAIT)
    with closing(sqlite3.connect(path)) as connection:
        statuses = {row[0] for row in connection.execute("SELECT status FROM tasks")}
    assert statuses == {"queued", "running"}, statuses
    async with ActorSystem(cfg) as again:
        tm = again.task_manager
        async with asyncio.timeout(WAIT * 4):
            results = [await tm.wait_for_task(t) for t in [*running, *queued]]
        infos = [await tm.get_task(t) for t in [*running, *queued]]
    assert results == list(range(204))
    assert [info.recoveries for info in infos] == [1] * 4 + [0] * 200


SIGTERM_SERVICE = """
import asyncio, signal, sys, threading
from actors import ActorSystem

async def main() -> None:
    gate = threading.Event()
    system = ActorSystem({"SHUTDOWN_TIMEOUT": 0.5, "CLEANUP_INTERVAL": 0}).start()
    tm = system.task_manager
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    async def stop() -> None:
        await asyncio.gather(system.shutdown(), system.shutdown())  # twice, at once
        stopped.set()

    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(stop()))
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    ids = [await tm.register_task("f", forever) for _ in range(20)]
    ids += [await tm.register_task("s", gate.wait, (30,)) for _ in range(4)]
    for task_id in ids:
        await tm.execute_task(task_id)
    waits = asyncio.gather(*(tm.wait_for_task(t) for t in ids), return_exceptions=True)
    await started.wait()
    print("ready", flush=True)
    await asyncio.wait_for(stopped.wait(), 10)
    outcomes = await asyncio.wait_for(waits, 5)
    gate.set()
    print(sorted({f"{type(e).__name__}: {str(e).split(': ', 1)[1]}" for e in outcomes}))

asyncio.run(main())
print("exited")
"""


@pytest.mark.timeout(60)
def test_a_sigterm_handler_on_the_loop_stops_the_system_in_a_real_process() -> None:
    """A service's ``loop.add_signal_handler(SIGTERM, ...)`` stops the system (two
    shutdowns at once): every waiter hears the stop, and the process exits 0."""
    environ = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    process = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SERVICE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.splitlines() == [
        "['TaskCancelledError: the actor system shut down']",
        "exited",
    ]
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["stop_sync", "blocking.shutdown"])
async def test_a_pool_function_that_stops_its_system_does_not_wait_for_itself(how: str) -> None:
    """The pool's stop waits for its workers until the stop's deadline: one of them is
    the function that stops the system, blocked in that stop, so it used to wait for
    itself for all of ``SHUTDOWN_TIMEOUT`` (here far more than the test's bound)."""
    system = ActorSystem(config("new", SHUTDOWN_TIMEOUT=WAIT * 10)).start()
    tm = system.task_manager

    def stopper() -> str:
        if how == "stop_sync":
            system.stop_sync()
        else:
            system.blocking.shutdown()
        return "after"

    with pytest.raises(ActorSystemError) as caught:
        async with asyncio.timeout(WAIT):
            await tm.submit(stopper)
    assert str(caught.value) == "the actor system was shut down"
    await asyncio.wait_for(system.shutdown(), WAIT)
    assert pykka.ActorRegistry.get_all() == []


def demo_until(out_dir: Path, marker: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``python -m actors demo --out OUT_DIR`` in a process of its own, read until a
    line holding ``marker``; the process and the lines read so far."""
    environ = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    command = [sys.executable, "-m", "actors", "demo", "--out", str(out_dir)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return process, lines
    process.wait(WAIT)
    raise AssertionError(f"no line with {marker!r} in {lines}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("signal_number", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
@pytest.mark.parametrize("marker", ["actorflow demo:", "durable tasks: phase 1"])
def test_the_demo_stops_on_a_signal_with_its_exit_code_and_no_traceback(
    tmp_path: Path, signal_number: int, code: int, said: str, marker: str
) -> None:
    """Ctrl-C or a process manager's SIGTERM, while the demo's service runs or while its
    durable phase has a journal open: the systems stop (their journal written and
    closed), the demo says so and exits 128 + the signal's number."""
    process, lines = demo_until(tmp_path, marker)
    process.send_signal(signal_number)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == code, [*lines, rest]
    assert "Traceback" not in rest
    assert rest.splitlines()[-1] == said
    journal = tmp_path / "journal.db"
    if journal.exists():
        with closing(sqlite3.connect(journal)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert (
            not (tmp_path / "journal.db-wal").exists()
            or (tmp_path / "journal.db-wal").stat().st_size == 0
        )
