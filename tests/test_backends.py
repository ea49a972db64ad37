"""The thread-pool actor's executors: ``thread``, ``process`` and ``dask``.

Each backend runs the contract tests that apply to plain functions. Task functions live
at module level (the process and Dask workers import them by name), and what they share
with the test crosses processes through files in ``tmp_path`` or through a `Gate`: a
loopback socket the function connects to (so the test knows it is running, and which
process runs it) and then waits on until the test releases it. Nothing here sleeps.

Dask runs against one `distributed.LocalCluster` of real worker processes per module,
reached through ``DASK_SCHEDULER_ADDRESS`` as a remote cluster would be; one test lets
the actor system start (and close) a LocalCluster of its own.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pickle
import re
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import child_processes, dask_cluster

import actors
from actors import (
    ActorSystem,
    ActorSystemError,
    DependencyFailedError,
    InvalidTaskError,
    TaskCancelledError,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
    UnifiedTaskManager,
)
from actors.core._config import BACKENDS
from actors.runtime._backends import DASK_MISSING, RemoteCall, local_cluster
from supervisors.testing import FakeClock

WAIT = 10.0
"""Upper bound, in real seconds, on waiting for anything (worker start-up included)."""

REMOTE = ["process", "dask"]


class Boom(Exception):
    """What failing task bodies raise (module level: it pickles)."""


class TwoArgs(Exception):
    """Pickles, but cannot be unpickled: pickle calls ``TwoArgs(message)``."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")


# -- task bodies (module level: they run in worker processes) ---------------------------


def double(x: int) -> int:
    return 2 * x


def power(base: int, exponent: int = 2) -> int:
    return int(base**exponent)


def fail_with(message: str) -> None:
    raise Boom(message)


def count_and_fail(path: str, failures: int) -> int:
    """Append one line per attempt; fail the first ``failures`` attempts."""
    with open(path, "a") as file:
        file.write("attempt\n")
    with open(path) as file:
        attempt = len(file.read().splitlines())
    if attempt <= failures:
        raise Boom(f"attempt {attempt} fails")
    return attempt


def append(path: str, name: str) -> str:
    with open(path, "a") as file:
        file.write(name + "\n")
    return name


def wait_at_gate(address: tuple[str, int]) -> str:
    """Tell the gate this process's pid, then wait for the word that releases us."""
    with socket.create_connection(address, timeout=WAIT) as conn:
        conn.sendall(str(os.getpid()).encode())
        word = conn.recv(64)
    return word.decode()


def task_id_seen_by_logging(message: str) -> tuple[list[Any], str | None]:
    """The ``task_id`` a loguru sink added here sees, and `actors.current_task_id()`."""
    from loguru import logger

    seen: list[Any] = []
    sink = logger.add(lambda m: seen.append(m.record["extra"].get("task_id")), format="{message}")
    try:
        logger.info(message)
    finally:
        logger.remove(sink)
    return seen, actors.current_task_id()


def unpicklable_result() -> Any:
    return threading.Lock()


def raise_two_args() -> None:
    raise TwoArgs(1, 2)


def _rebuild_in(pid: int) -> str:
    if os.getpid() != pid:
        raise RuntimeError(f"made in process {pid}")
    return "here"


class OnlyHere:
    """Pickles anywhere; unpickles only in the process that made it."""

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return _rebuild_in, (os.getpid(),)


def result_only_the_worker_can_read() -> OnlyHere:
    return OnlyHere()


def count_up(n: int) -> Iterator[int]:
    yield from range(n)


async def an_async_generator() -> AsyncIterator[int]:
    yield 1


def kind_of(value: object) -> str:
    return type(value).__name__


def whoami() -> int:
    return os.getpid()


async def a_coroutine() -> str:
    return "coroutine"


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """One LocalCluster with real worker processes for the module's Dask tests."""
    with dask_cluster(2) as address:
        yield address


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_system(
    backend: str, dask_address: str | None, clock: FakeClock | None = None, **config: Any
) -> ActorSystem:
    return ActorSystem(
        {
            "THREAD_POOL_BACKEND": backend,
            "DASK_SCHEDULER_ADDRESS": dask_address,
            "MAX_THREAD_WORKERS": 2,
            "RESTART_BACKOFF_INITIAL": 0.0,
            "CLEANUP_INTERVAL": 0,  # no cleanup timers among the ones the tests wait on
            **config,
        },
        clock=clock,
    )


@pytest.fixture
async def tm(
    backend: str, dask_address: str, clock: FakeClock
) -> AsyncIterator[UnifiedTaskManager]:
    async with make_system(backend, dask_address, clock) as system:
        yield system.task_manager


class Gate:
    """A loopback socket that task code, in any process, connects to and waits on."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.setblocking(False)
        host, port = self.server.getsockname()[:2]
        self.address = (host, port)
        self.conns: list[socket.socket] = []

    async def arrival(self) -> tuple[socket.socket, int]:
        """The next caller's connection and the pid of its process."""
        loop = asyncio.get_running_loop()
        conn, _ = await asyncio.wait_for(loop.sock_accept(self.server), WAIT)
        self.conns.append(conn)
        pid = await asyncio.wait_for(loop.sock_recv(conn, 64), WAIT)
        return conn, int(pid)

    async def release(self, conn: socket.socket, word: bytes = b"released") -> None:
        await asyncio.get_running_loop().sock_sendall(conn, word)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.server.close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    opened = Gate()
    yield opened
    opened.close()


async def timers_armed(clock: FakeClock, count: int = 1) -> None:
    await asyncio.to_thread(clock.wait_for_timers, count, WAIT)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- the contract, for plain functions --------------------------------------------------


async def test_result(tm: UnifiedTaskManager) -> None:
    await tm.register_task("double", double, (21,), task_id="t")
    assert await tm.execute_task("t", wait=True) == 42
    info = await tm.get_task("t")
    assert info.status is TaskStatus.COMPLETED
    assert info.attempts == 1
    assert await tm.get_task_result("t") == 42


async def test_runs_where_the_backend_says(tm: UnifiedTaskManager, backend: str) -> None:
    await tm.register_task("whoami", whoami, task_id="t")
    pid = await tm.execute_task("t", wait=True)
    assert (pid == os.getpid()) is (backend == "thread")


async def test_exception_propagates(tm: UnifiedTaskManager, backend: str) -> None:
    await tm.register_task("fails", fail_with, ("bad input",), task_id="t")
    with pytest.raises(Boom) as raised:
        await tm.execute_task("t", wait=True)
    assert str(raised.value) == "bad input"  # (pytest's match= also reads the notes)
    assert await tm.get_task_status("t") is TaskStatus.FAILED
    error = await tm.get_task_error("t")
    assert type(error) is Boom
    assert str(error) == "bad input"
    notes = getattr(raised.value, "__notes__", [])
    if backend == "thread":
        assert notes == []
    else:  # the worker's traceback comes along as a note
        assert len(notes) == 1
        assert notes[0].startswith(f"raised in a worker process of the {backend!r} executor:\n")
        assert "in fail_with" in notes[0]


async def test_retries_until_success(tm: UnifiedTaskManager, tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    await tm.register_task("flaky", count_and_fail, (str(attempts), 2), max_retries=3, task_id="t")
    assert await tm.execute_task("t", wait=True) == 3
    info = await tm.get_task("t")
    assert info.status is TaskStatus.COMPLETED
    assert info.attempts == 3
    assert info.error is None
    assert len(lines(attempts)) == 3


async def test_retries_run_out(tm: UnifiedTaskManager, tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    await tm.register_task("flaky", count_and_fail, (str(attempts), 5), max_retries=1, task_id="t")
    with pytest.raises(Boom) as raised:
        await tm.execute_task("t", wait=True)
    assert str(raised.value) == "attempt 2 fails"
    assert (await tm.get_task("t")).attempts == 2
    assert len(lines(attempts)) == 2


async def test_timeout_of_a_slow_function(
    tm: UnifiedTaskManager, clock: FakeClock, gate: Gate
) -> None:
    await tm.register_task("slow", wait_at_gate, (gate.address,), timeout=5.0, task_id="t")
    await tm.execute_task("t")
    conn, _ = await gate.arrival()  # it runs
    await timers_armed(clock)
    clock.advance(5.0)
    with pytest.raises(TaskTimeoutError, match=r"^task 't' attempt 1 timed out after 5.0s$"):
        await tm.wait_for_task("t", timeout=WAIT)
    # The abandoned attempt ends later; its result is discarded.
    await gate.release(conn)
    assert await tm.thread_pool.submit(double, 1) == 2
    assert await tm.get_task_status("t") is TaskStatus.FAILED
    assert await tm.get_task_result("t") is None


async def test_timeout_is_retried(tm: UnifiedTaskManager, clock: FakeClock, gate: Gate) -> None:
    await tm.register_task(
        "slow", wait_at_gate, (gate.address,), timeout=5.0, max_retries=1, task_id="t"
    )
    await tm.execute_task("t")
    first, _ = await gate.arrival()
    await timers_armed(clock)
    clock.advance(5.0)
    second, _ = await gate.arrival()  # attempt 2 runs while attempt 1 is abandoned
    await gate.release(second, b"second")
    assert await tm.wait_for_task("t", timeout=WAIT) == "second"
    assert (await tm.get_task("t")).attempts == 2
    await gate.release(first, b"first")


async def test_dependencies(tm: UnifiedTaskManager, tmp_path: Path) -> None:
    log = tmp_path / "log"
    await tm.register_task("a", append, (str(log), "a"), task_id="a")
    await tm.register_task("b", append, (str(log), "b"), dependencies=("a",), task_id="b")
    await tm.register_task("c", append, (str(log), "c"), dependencies=("b",), task_id="c")
    assert await tm.execute_task("c", wait=True) == "c"
    assert lines(log) == ["a", "b", "c"]


async def test_failed_dependency_cancels_dependents(tm: UnifiedTaskManager, tmp_path: Path) -> None:
    log = tmp_path / "log"
    await tm.register_task("a", fail_with, ("no",), task_id="a")
    await tm.register_task("b", append, (str(log), "b"), dependencies=("a",), task_id="b")
    await tm.execute_task("b")
    with pytest.raises(
        DependencyFailedError, match=r"^task 'b' \(b\) cancelled: its dependency 'a' \(a\) "
    ):
        await tm.wait_for_task("b", timeout=WAIT)
    assert await tm.get_task_status("b") is TaskStatus.CANCELLED
    assert lines(log) == []


async def test_cancel_before_start(tm: UnifiedTaskManager, tmp_path: Path) -> None:
    log = tmp_path / "log"
    await tm.register_task("job", append, (str(log), "job"), task_id="t")
    assert await tm.cancel_task("t") is True
    assert await tm.get_task_status("t") is TaskStatus.CANCELLED
    with pytest.raises(TaskCancelledError, match=r"^task 't' was cancelled$"):
        await tm.wait_for_task("t", timeout=WAIT)
    assert await tm.execute_task("t") is False
    assert (await tm.get_task("t")).attempts == 0
    assert await tm.thread_pool.submit(double, 1) == 2
    assert lines(log) == []


@pytest.mark.parametrize("backend", ["thread", "process"])
async def test_cancel_a_call_still_queued_in_the_pool(
    backend: str, dask_address: str, gate: Gate, tmp_path: Path
) -> None:
    # One worker: "blocker" holds it; "queued" waits in the executor's queue (a process
    # pool moves max_workers + 1 calls to its workers' queue: "b" and "c" are there).
    log = tmp_path / "log"
    async with make_system(backend, dask_address, MAX_THREAD_WORKERS=1) as system:
        tm = system.task_manager
        await tm.register_task("blocker", wait_at_gate, (gate.address,), task_id="blocker")
        await tm.execute_task("blocker")
        conn, _ = await gate.arrival()
        for name in ("b", "c", "queued"):
            await tm.register_task(name, append, (str(log), name), task_id=name)
            await tm.execute_task(name)
        assert await tm.cancel_task("queued") is True
        await gate.release(conn)
        assert await tm.wait_for_task("c", timeout=WAIT) == "c"
        assert await tm.thread_pool.submit(double, 1) == 2  # after "queued", on one worker
        assert await tm.get_task_status("queued") is TaskStatus.CANCELLED
    assert lines(log) == ["b", "c"]


# -- a thread_pool.submit caller that stops waiting before its call starts ----------------


async def until_true(check: Callable[[], bool]) -> None:
    """Wait, bounded by WAIT, until ``check()`` (state no event reports: a queue's length)."""
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.001)


async def stop_waiting(call: asyncio.Future[Any], how: str) -> None:
    """The caller of ``call`` stops waiting: it is cancelled, or its ``wait_for`` times out."""
    if how == "cancel":
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    else:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call, 0)


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
@pytest.mark.parametrize("executor", [None, "thread"], ids=["made-at-once", "coroutine"])
async def test_a_submit_dropped_by_its_caller_while_queued_never_runs_on_threads(
    executor: str | None, how: str
) -> None:
    # One worker, held by "first": "second" waits in the pool's queue when its caller
    # stops waiting. Before, it ran all the same once the worker was free.
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def held() -> str:
        started.set()
        assert release.wait(WAIT)
        return "released"

    async with make_system("thread", None, MAX_THREAD_WORKERS=1) as system:
        pool = system.task_manager.thread_pool
        first = asyncio.ensure_future(pool.submit(held, executor=executor))
        assert await asyncio.to_thread(started.wait, WAIT)
        second = asyncio.ensure_future(pool.submit(ran.append, "second", executor=executor))
        workers = system._pool_state().executor  # type: ignore[union-attr]
        assert workers is not None
        await until_true(lambda: workers.qsize() == 1)
        await stop_waiting(second, how)
        release.set()
        assert await asyncio.wait_for(first, WAIT) == "released"
        assert await asyncio.wait_for(pool.submit(ran.append, "third"), WAIT) is None
        assert ran == ["third"]
        assert workers.qsize() == 0


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
async def test_a_submit_dropped_by_its_caller_while_queued_never_runs_in_a_process(
    dask_address: str, gate: Gate, tmp_path: Path, how: str
) -> None:
    # One worker process, held by "first"; "b" and "c" fill the queue the pool's workers
    # read (max_workers + 1 calls); "queued" waits in the pool's own queue, where
    # cancelling its future drops it. Before, it ran once the worker was free.
    log = tmp_path / "log"
    async with make_system("process", dask_address, MAX_THREAD_WORKERS=1) as system:
        pool = system.task_manager.thread_pool
        first = asyncio.ensure_future(pool.submit(wait_at_gate, gate.address))
        conn, _ = await gate.arrival()
        fillers = [asyncio.ensure_future(pool.submit(append, str(log), n)) for n in "bc"]
        queued = asyncio.ensure_future(pool.submit(append, str(log), "queued"))
        processes = system._pool_state().process  # type: ignore[union-attr]
        assert processes is not None
        await until_true(lambda: len(processes._pending_work_items) == 4)  # type: ignore[attr-defined]
        await stop_waiting(queued, how)
        await gate.release(conn)
        assert await asyncio.wait_for(first, WAIT) == "released"
        assert await asyncio.wait_for(asyncio.gather(*fillers), WAIT) == ["b", "c"]
        assert await asyncio.wait_for(pool.submit(double, 21), WAIT) == 42
        assert len(processes._pending_work_items) == 0  # type: ignore[attr-defined]
    assert lines(log) == ["b", "c"]


async def until_dask_holds_only(client: Any, count: int) -> None:
    """Wait until Dask's scheduler knows ``count`` tasks, each queued there or held by a
    worker: none is on its way to a worker (a worker that got a call after it was
    cancelled could start it before it hears so, once its thread is free)."""

    def tasks_known() -> tuple[int, int]:
        on_workers = client.run(lambda dask_worker: len(dask_worker.state.tasks))
        states = client.run_on_scheduler(
            lambda dask_scheduler: [task.state for task in dask_scheduler.tasks.values()]
        )
        return len(states), sum(on_workers.values()) + states.count("queued")

    async with asyncio.timeout(WAIT):
        while await asyncio.to_thread(tasks_known) != (count, count):
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
async def test_a_submit_dropped_by_its_caller_while_queued_never_runs_on_dask(
    dask_address: str, gate: Gate, tmp_path: Path, how: str
) -> None:
    # Both workers of the module's cluster are held; "queued" waits at the scheduler
    # (or in a worker's ready queue) when its caller stops waiting: its Dask future is
    # cancelled, so no worker runs it. Before, it ran once a worker was free.
    log = tmp_path / "log"
    async with make_system("dask", dask_address) as system:
        pool = system.task_manager.thread_pool
        held = [asyncio.ensure_future(pool.submit(wait_at_gate, gate.address)) for _ in "ab"]
        conns = [(await gate.arrival())[0] for _ in held]
        queued = asyncio.ensure_future(pool.submit(append, str(log), "queued"))
        dask = system._pool_state().dask  # type: ignore[union-attr]
        assert dask is not None
        await until_true(lambda: len(dask._running) == 3)
        await until_dask_holds_only(dask.client, 3)
        await stop_waiting(queued, how)
        await until_true(lambda: len(dask._running) == 2)
        await until_dask_holds_only(dask.client, 2)
        for conn in conns:
            await gate.release(conn)
        assert await asyncio.wait_for(asyncio.gather(*held), WAIT) == ["released"] * 2
        assert await asyncio.wait_for(pool.submit(append, str(log), "after"), WAIT) == "after"
    assert lines(log) == ["after"]


async def test_a_caller_that_stops_waiting_for_a_dask_call_does_not_wait_for_dask(
    dask_address: str, gate: Gate, tmp_path: Path
) -> None:
    # Cancelling a Dask future waits for the Dask client's event loop (~0.1-2 ms each,
    # more when it is busy). Before, the caller's own loop (or the task manager, for a
    # cancelled attempt) waited: here, for as long as the client's loop is held.
    log = tmp_path / "log"
    async with make_system("dask", dask_address) as system:
        pool = system.task_manager.thread_pool
        held = [asyncio.ensure_future(pool.submit(wait_at_gate, gate.address)) for _ in "ab"]
        conns = [(await gate.arrival())[0] for _ in held]
        queued = asyncio.ensure_future(pool.submit(append, str(log), "queued"))
        dask = system._pool_state().dask  # type: ignore[union-attr]
        assert dask is not None
        await until_true(lambda: len(dask._running) == 3)
        await until_dask_holds_only(dask.client, 3)
        holding, release = threading.Event(), threading.Event()
        outcome: list[bool] = []

        def hold_the_client_loop() -> None:
            holding.set()
            outcome.append(release.wait(WAIT))

        dask.client.loop.add_callback(hold_the_client_loop)
        assert await asyncio.to_thread(holding.wait, WAIT)
        await stop_waiting(queued, "cancel")
        release.set()  # (never reached before the client's loop let go, before the fix)
        await until_true(lambda: outcome != [])
        assert outcome == [True]
        await until_true(lambda: len(dask._running) == 2)
        await until_dask_holds_only(dask.client, 2)
        for conn in conns:
            await gate.release(conn)
        assert await asyncio.wait_for(asyncio.gather(*held), WAIT) == ["released"] * 2
        assert [thread.name for thread in dask._cancels.threads] == ["actorflow-dask-cancel_0"]
    assert lines(log) == []


async def test_cancel_a_task_whose_call_is_queued_on_dask(
    dask_address: str, gate: Gate, tmp_path: Path
) -> None:
    # As test_cancel_a_call_still_queued_in_the_pool, on the module's two Dask workers.
    # Before, a cancelled (or timed-out) attempt's Dask call was left to run: only the
    # process pool's future was kept to cancel.
    log = tmp_path / "log"
    async with make_system("dask", dask_address) as system:
        tm = system.task_manager
        for name in ("a", "b"):
            await tm.register_task(name, wait_at_gate, (gate.address,), task_id=name)
            await tm.execute_task(name)
        conns = [(await gate.arrival())[0] for _ in "ab"]
        await tm.register_task("queued", append, (str(log), "queued"), task_id="queued")
        await tm.execute_task("queued")
        dask = system._pool_state().dask  # type: ignore[union-attr]
        assert dask is not None
        await until_true(lambda: len(dask._running) == 3)
        await until_dask_holds_only(dask.client, 3)
        assert await tm.cancel_task("queued") is True
        await until_true(lambda: len(dask._running) == 2)
        await until_dask_holds_only(dask.client, 2)
        for conn in conns:
            await gate.release(conn)
        for name in ("a", "b"):
            assert await tm.wait_for_task(name, timeout=WAIT) == "released"
        assert await tm.get_task_status("queued") is TaskStatus.CANCELLED
        assert await tm.thread_pool.submit(append, str(log), "after") == "after"
    assert lines(log) == ["after"]


def raise_stop_iteration() -> None:
    raise StopIteration("no more")


async def test_a_function_that_raises_stop_iteration_fails_its_caller(
    tm: UnifiedTaskManager, backend: str
) -> None:
    # asyncio refuses StopIteration on a future (TypeError, raised in the loop's
    # callback): before, the caller of the submit, or of the task, waited for ever.
    message = (
        r"^the call raised StopIteration\('no more'\), which an asyncio future cannot carry "
        r"\(as a coroutine, Python turns it into a RuntimeError\): raise another exception$"
    )
    for call in (tm.thread_pool.submit, tm.submit):
        with pytest.raises(TaskFailedError, match=message) as raised:
            await asyncio.wait_for(call(raise_stop_iteration), WAIT)
        assert isinstance(raised.value.__cause__, StopIteration)
        assert raised.value.__cause__.args == ("no more",)
    assert await tm.thread_pool.submit(double, 2) == 4


async def test_submit(tm: UnifiedTaskManager, backend: str) -> None:
    pool = tm.thread_pool
    assert await pool.submit(power, 3, exponent=3, executor=backend) == 27
    assert await pool.submit(power, 5) == 25  # the configured backend
    with pytest.raises(Boom) as raised:
        await pool.submit(fail_with, "from submit", executor=backend)
    assert str(raised.value) == "from submit"


@pytest.mark.parametrize("executor", BACKENDS)
async def test_executor_per_task_overrides_the_default(
    tm: UnifiedTaskManager, executor: str
) -> None:
    await tm.register_task("whoami", whoami, executor=executor, task_id="t")
    pid = await tm.execute_task("t", wait=True)
    assert (pid == os.getpid()) is (executor == "thread")
    assert (await tm.thread_pool.submit(whoami, executor=executor) == os.getpid()) is (
        executor == "thread"
    )


async def test_coroutines_run_on_the_loop_whatever_the_default(tm: UnifiedTaskManager) -> None:
    await tm.register_task("co", a_coroutine, task_id="t")
    assert await tm.execute_task("t", wait=True) == "coroutine"


async def test_log_lines_and_current_task_id_carry_the_task_id(tm: UnifiedTaskManager) -> None:
    await tm.register_task("logs", task_id_seen_by_logging, ("hello",), task_id="t-log")
    assert await tm.execute_task("t-log", wait=True) == (["t-log"], "t-log")
    # Outside a task (thread_pool.submit) nothing is bound.
    assert await tm.thread_pool.submit(task_id_seen_by_logging, "hi") == ([None], None)


# -- what only the process and Dask executors do ----------------------------------------


@pytest.mark.parametrize("backend", REMOTE)
async def test_an_unpicklable_result_is_a_clear_error(tm: UnifiedTaskManager, backend: str) -> None:
    await tm.register_task("lock", unpicklable_result, task_id="t")
    message = (
        rf"^the result of task 't' cannot be pickled back from the {backend!r} executor: "
        r"<unlocked _thread\.lock object at 0x[0-9a-f]+> \(TypeError: cannot pickle "
        r"'_thread\.lock' object\); return plain data, or run it with executor='thread'$"
    )
    with pytest.raises(pickle.PicklingError, match=message):
        await tm.execute_task("t", wait=True)
    # The executor is fine: the next task runs.
    await tm.register_task("double", double, (2,), task_id="next")
    assert await tm.execute_task("next", wait=True) == 4


@pytest.mark.parametrize("backend", REMOTE)
async def test_a_result_that_cannot_be_unpickled_here_is_a_clear_error(
    tm: UnifiedTaskManager, backend: str
) -> None:
    await tm.register_task("odd", result_only_the_worker_can_read, task_id="t")
    message = (
        rf"^the result of task 't' cannot be unpickled in this process after the {backend!r} "
        r"executor ran it \(RuntimeError: made in process \d+\)$"
    )
    with pytest.raises(pickle.UnpicklingError, match=message):
        await tm.execute_task("t", wait=True)


async def test_an_argument_that_cannot_be_unpickled_in_the_worker_fails_its_call_alone(
    dask_address: str, gate: Gate
) -> None:
    # Unpickled by the process pool's own machinery, such an argument killed the worker:
    # the pool broke, "held" (running beside it) failed with "worker process died", and
    # so did the call itself, with no word of its argument.
    async with make_system("process", dask_address) as system:
        tm = system.task_manager
        await tm.register_task("held", wait_at_gate, (gate.address,), task_id="held")
        await tm.execute_task("held")
        conn, _ = await gate.arrival()
        await tm.register_task("odd", kind_of, (OnlyHere(),), task_id="odd")
        message = (
            r"^the function or arguments of task 'odd' cannot be unpickled in a worker "
            r"process of the 'process' executor \(RuntimeError: made in process \d+\); "
            r"nothing ran$"
        )
        with pytest.raises(pickle.UnpicklingError, match=message):
            await tm.execute_task("odd", wait=True)
        assert (await tm.get_task("odd")).status is TaskStatus.FAILED
        message = message.replace("task 'odd'", r"thread_pool\.submit\('kind_of'\)")
        with pytest.raises(pickle.UnpicklingError, match=message):
            await tm.thread_pool.submit(kind_of, OnlyHere())
        await gate.release(conn)
        assert await tm.wait_for_task("held", timeout=WAIT) == "released"
        assert await tm.thread_pool.submit(kind_of, 1) == "int"
        restarts = {child.id: child.restarts for child in await system.supervisor.which_children()}
        assert restarts["thread_pool"] == 0


@pytest.mark.parametrize("backend", REMOTE)
async def test_an_exception_that_cannot_come_back_is_a_clear_error(
    tm: UnifiedTaskManager, backend: str
) -> None:
    await tm.register_task("two", raise_two_args, task_id="t")
    with pytest.raises(pickle.PicklingError) as raised:
        await tm.execute_task("t", wait=True)
    first_line = str(raised.value).splitlines()[0]
    assert first_line == (
        f"task 't' raised an exception that cannot be pickled back from the {backend!r} "
        "executor: TwoArgs('1 and 2') (TypeError: TwoArgs.__init__() missing 1 required "
        "positional argument: 'b')"
    )
    assert "in raise_two_args" in str(raised.value)  # the worker's traceback


def _closure() -> Any:
    value = 1
    return lambda: value


def local_function() -> Any:
    def inner() -> int:
        return 1

    return inner


UNPICKLABLE_CALLS = [
    pytest.param(
        (lambda: 1),
        (),
        {},
        r"func <function <lambda> at 0x[0-9a-f]+> cannot be pickled for "
        r"the '{backend}' executor: .*; define it at module level \(no lambda, closure or local "
        r"function\), or use executor='thread'",
        id="lambda",
    ),
    pytest.param(
        local_function(),
        (),
        {},
        r"func <function local_function\.<locals>\.inner at "
        r"0x[0-9a-f]+> cannot be pickled for the '{backend}' executor: Can't (?:pickle|get) "
        r"local object 'local_function\.<locals>\.inner'; define it at module level",
        id="local-function",
    ),
    pytest.param(
        count_up,
        (2,),
        {},
        r"func <function count_up at 0x[0-9a-f]+> is a generator function: the generator it "
        r"returns cannot be pickled back from the '{backend}' executor; have a plain function "
        r"return list\(\.\.\.\) of it$",
        id="generator-function",
    ),
    pytest.param(
        double,
        (threading.Lock(),),
        {},
        r"args\[0\] <unlocked _thread\.lock object at "
        r"0x[0-9a-f]+> cannot be pickled for the '{backend}' executor: cannot pickle "
        r"'_thread\.lock' object; pass plain data \(or use executor='thread'\)$",
        id="argument",
    ),
    pytest.param(
        power,
        (2,),
        {"exponent": _closure()},
        r"kwargs\['exponent'\] <function "
        r"_closure\.<locals>\.<lambda> at 0x[0-9a-f]+> cannot be pickled for the '{backend}' "
        r"executor: Can't (?:pickle|get) local object '_closure\.<locals>\.<lambda>'; "
        r"pass plain data",
        id="keyword-argument",
    ),
]


@pytest.mark.parametrize("backend", REMOTE)
@pytest.mark.parametrize(("func", "args", "kwargs", "message"), UNPICKLABLE_CALLS)
async def test_what_cannot_be_pickled_is_refused_at_registration(
    tm: UnifiedTaskManager,
    backend: str,
    func: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    pattern = "^" + message.format(backend=backend)
    with pytest.raises(InvalidTaskError, match=pattern):
        await tm.register_task("job", func, args, kwargs)
    with pytest.raises(InvalidTaskError, match=pattern):
        await tm.register_task("job", func, args, kwargs, executor=backend)
    with pytest.raises(InvalidTaskError, match=pattern):
        await tm.thread_pool.submit(func, *args, executor=backend, **kwargs)
    assert await tm.get_all_tasks() == []
    # The thread executor takes them all (nothing is pickled there).
    task_id = await tm.register_task("job", func, args, kwargs, executor="thread")
    assert (await tm.get_task(task_id)).status is TaskStatus.PENDING


@pytest.mark.parametrize("backend", ["thread"])
@pytest.mark.parametrize("executor", ["gpu", "Thread", "", 3, True])
async def test_an_unknown_executor_is_refused(tm: UnifiedTaskManager, executor: Any) -> None:
    message = re.escape(
        "executor must be one of 'thread', 'process', 'dask' or None (the configured "
        f"THREAD_POOL_BACKEND), got {executor!r}"
    )
    with pytest.raises(InvalidTaskError, match=f"^{message}$"):
        await tm.register_task("job", double, (1,), executor=executor)
    with pytest.raises(InvalidTaskError, match=f"^{message}$"):
        await tm.thread_pool.submit(double, 1, executor=executor)
    assert await tm.get_all_tasks() == []


@pytest.mark.parametrize("backend", ["thread"])
@pytest.mark.parametrize("executor", REMOTE)
async def test_a_coroutine_function_cannot_go_to_a_worker_process(
    tm: UnifiedTaskManager, executor: str
) -> None:
    message = (
        rf"^executor={executor!r} runs plain functions only; <function a_coroutine at "
        r"0x[0-9a-f]+> is a coroutine function, which runs on its event loop: drop "
        r"executor=, or pass a plain function$"
    )
    with pytest.raises(InvalidTaskError, match=message):
        await tm.register_task("co", a_coroutine, executor=executor)
    task_id = await tm.register_task("co", a_coroutine, executor="thread")
    assert await tm.execute_task(task_id, wait=True) == "coroutine"


ASYNC_CALLABLES = [
    pytest.param(
        a_coroutine,
        r"<function a_coroutine at 0x[0-9a-f]+> is a coroutine function",
        id="coroutine-function",
    ),
    pytest.param(
        functools.partial(a_coroutine),
        r"functools\.partial\(<function a_coroutine at 0x[0-9a-f]+>\) is a coroutine function",
        id="partial",
    ),
    pytest.param(
        an_async_generator,
        r"<function an_async_generator at 0x[0-9a-f]+> is an async generator function",
        id="async-generator-function",
    ),
]


@pytest.mark.parametrize("backend", ["thread"])
@pytest.mark.parametrize("executor", [None, *BACKENDS])
@pytest.mark.parametrize(("fn", "what"), ASYNC_CALLABLES)
async def test_thread_pool_submit_refuses_what_gives_a_coroutine(
    tm: UnifiedTaskManager, executor: str | None, fn: Any, what: str
) -> None:
    # Before, the thread executor returned the coroutine (or async generator) object,
    # never run ("coroutine ... was never awaited"), and process/dask failed after the
    # call with "cannot be pickled back ... run it with executor='thread'".
    message = (
        rf"^thread_pool\.submit runs plain functions; {what}, which runs on an event loop: "
        r"await it there, or use task_manager\.submit$"
    )
    with pytest.raises(InvalidTaskError, match=message):
        await tm.thread_pool.submit(fn, executor=executor)
    assert await tm.thread_pool.submit(double, 2, executor=executor) == 4


def returns_a_coroutine() -> Any:
    return a_coroutine()


@pytest.mark.parametrize("backend", ["thread"])
@pytest.mark.parametrize("executor", [None, "thread"])
async def test_thread_pool_submit_refuses_a_coroutine_a_plain_function_returns(
    tm: UnifiedTaskManager, executor: str | None
) -> None:
    # The coroutine is closed (no "never awaited" warning) and the caller told why.
    message = (
        r"^thread_pool\.submit runs plain functions; <function returns_a_coroutine at "
        r"0x[0-9a-f]+> returned <coroutine object a_coroutine at 0x[0-9a-f]+>, which runs "
        r"on an event loop: await it there, or use task_manager\.submit$"
    )
    with pytest.raises(InvalidTaskError, match=message):
        await tm.thread_pool.submit(returns_a_coroutine, executor=executor)


async def test_dask_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert DASK_MISSING == (
        "the 'dask' executor needs Dask's distributed scheduler, which is not installed; "
        "pip install 'actorflow[dask]'"
    )
    async with ActorSystem() as system:
        tm = system.task_manager
        with pytest.raises(InvalidTaskError, match=re.escape(DASK_MISSING)):
            await tm.register_task("job", double, (1,), executor="dask")
        with pytest.raises(InvalidTaskError, match=re.escape(DASK_MISSING)):
            await tm.thread_pool.submit(double, 1, executor="dask")
        assert await tm.get_all_tasks() == []
    with pytest.raises(ActorSystemError, match=re.escape(DASK_MISSING)):
        ActorSystem({"THREAD_POOL_BACKEND": "dask"}).start()


async def test_the_old_task_system_ignores_executor(dask_address: str) -> None:
    async with make_system("thread", dask_address, USE_NEW_TASK_SYSTEM=False) as system:
        tm = system.task_manager
        await tm.register_task("whoami", whoami, executor="process", task_id="t")
        assert await tm.execute_task("t", wait=True) == os.getpid()


async def test_a_killed_worker_process_fails_its_attempt_and_the_pool_is_replaced(
    dask_address: str, gate: Gate
) -> None:
    async with make_system("process", dask_address) as system:
        tm = system.task_manager
        # No retries: the attempt's error is the task's.
        await tm.register_task("doomed", wait_at_gate, (gate.address,), task_id="doomed")
        await tm.execute_task("doomed")
        _, pid = await gate.arrival()
        os.kill(pid, signal.SIGKILL)
        message = (
            r"^worker process died while running task 'doomed' \(A process in the process "
            r"pool was terminated abruptly while the future was running or pending\.\); the "
            r"process pool is replaced$"
        )
        with pytest.raises(ActorSystemError, match=message):
            await tm.wait_for_task("doomed", timeout=WAIT)
        # With a retry: the second attempt runs on a new pool and succeeds.
        await tm.register_task(
            "survivor", wait_at_gate, (gate.address,), max_retries=1, task_id="survivor"
        )
        await tm.execute_task("survivor")
        _, first = await gate.arrival()
        os.kill(first, signal.SIGKILL)
        conn, second = await gate.arrival()
        assert second != first
        await gate.release(conn)
        assert await tm.wait_for_task("survivor", timeout=WAIT) == "released"
        info = await tm.get_task("survivor")
        assert info.status is TaskStatus.COMPLETED
        assert info.attempts == 2
        restarts = {child.id: child.restarts for child in await system.supervisor.which_children()}
        assert restarts == {
            "task_monitor": 0,
            "thread_pool": 2,
            "legacy_task_manager": 0,
            "task_manager": 0,
            "facade": 0,
        }
        assert await tm.thread_pool.submit(double, 4) == 8


# -- errors of the executor, not of the function -----------------------------------------


def exit_worker() -> None:
    """Kills the worker process that runs it."""
    os._exit(3)


KILLED = (
    r"^{} failed in the 'dask' executor, not in its function \(KilledWorker: Attempted to "
    r"run task 'run_remote-[0-9a-f-]+' on 1 different workers, but all those workers died "
    r"while running it\. .*\); every Dask worker that ran it died, and the scheduler gave "
    r"up \(distributed\.scheduler\.allowed-failures\): find what kills the worker \(its "
    r"memory limit, a crash in native code, os\._exit\) in the worker logs$"
)


async def test_a_killed_dask_worker_names_the_task_or_the_submit(dask_address: str) -> None:
    # (dask_address: distributed's process-wide thread is started before the baseline.)
    # Before, the error was Dask's KilledWorker, naming only Dask's key for the call
    # ('run_remote-<hash>'), not the task nor the function.
    import dask
    from distributed.scheduler import KilledWorker

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = local_cluster(1)
    try:
        async with make_system("dask", cluster.scheduler_address) as system:
            tm = system.task_manager
            await tm.register_task("doomed", exit_worker, task_id="doomed")
            await tm.execute_task("doomed")
            with pytest.raises(ActorSystemError, match=KILLED.format("task 'doomed'")) as one:
                await tm.wait_for_task("doomed", timeout=WAIT)
            assert isinstance(one.value.__cause__, KilledWorker)
            submit = re.escape("thread_pool.submit('exit_worker')")
            with pytest.raises(ActorSystemError, match=KILLED.format(submit)) as two:
                await asyncio.wait_for(tm.thread_pool.submit(exit_worker), WAIT)
            assert isinstance(two.value.__cause__, KilledWorker)
            assert await asyncio.wait_for(tm.thread_pool.submit(double, 4), WAIT) == 8
    finally:
        await asyncio.to_thread(cluster.close, WAIT)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (OSError("connection reset"), "OSError: connection reset"),
        (Unprintable(), "Unprintable()"),
    ],
    ids=["any-error", "unprintable"],
)
@pytest.mark.parametrize("executor", REMOTE)
def test_any_error_of_the_executor_names_the_call(
    executor: str, error: BaseException, text: str
) -> None:
    outcomes: list[tuple[Any, BaseException | None]] = []
    call = RemoteCall(
        executor, "t", double, (1,), {}, lambda *outcome: outcomes.append(outcome), "task 't'"
    )
    future: Future[Any] = Future()
    future.set_exception(error)
    call.done(future)
    [(value, raised)] = outcomes
    assert value is None
    assert isinstance(raised, ActorSystemError)
    assert str(raised) == (
        f"task 't' failed in the {executor!r} executor, not in its function ({text})"
    )
    assert raised.__cause__ is error


# -- the thread executor: waiters of an attempt with calls queued behind it ----------------


async def test_waiters_of_a_thread_attempt_with_calls_queued_behind_it_get_its_result() -> None:
    # One worker: "first" ends while "second" waits for the worker, so the worker
    # leaves first's waiters to the manager (answered there); "second" ends with
    # nothing queued, and its worker answers its waiter itself.
    release = threading.Event()
    started = threading.Event()

    def held(x: int) -> int:
        started.set()
        assert release.wait(WAIT)
        return x * 2

    async with make_system("thread", None, MAX_THREAD_WORKERS=1) as system:
        tm = system.task_manager
        await tm.register_task("held", held, (1,), task_id="first")
        await tm.register_task("double", double, (2,), task_id="second")
        first = asyncio.ensure_future(tm.execute_task("first", wait=True))
        assert await asyncio.to_thread(started.wait, WAIT)
        also = asyncio.ensure_future(tm.wait_for_task("first", timeout=WAIT))
        second = asyncio.ensure_future(tm.execute_task("second", wait=True))
        assert await tm.get_task_status("second") is TaskStatus.QUEUED
        release.set()
        assert await asyncio.wait_for(asyncio.gather(first, also, second), WAIT) == [2, 2, 4]
        statuses = [(await tm.get_task(t)).status for t in ("first", "second")]
        assert statuses == [TaskStatus.COMPLETED, TaskStatus.COMPLETED]


# -- shutdown -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", REMOTE)
async def test_shutdown_leaves_no_process_behind(
    backend: str, dask_address: str, gate: Gate
) -> None:
    # The system starts its own LocalCluster (no address); one worker is still busy
    # with a task when the system shuts down: it is killed after SHUTDOWN_TIMEOUT.
    before = child_processes()
    async with make_system(backend, None, SHUTDOWN_TIMEOUT=1.0) as system:
        tm = system.task_manager
        await tm.register_task("double", double, (1,), task_id="done")
        assert await tm.execute_task("done", wait=True) == 2
        await tm.register_task("stuck", wait_at_gate, (gate.address,), task_id="stuck")
        await tm.execute_task("stuck")
        _, pid = await gate.arrival()
        assert pid in child_processes() - before
    assert child_processes() == before
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_an_unreachable_dask_scheduler_fails_its_tasks_not_the_pool() -> None:
    # A bound port that nobody listens on: connecting is refused until the timeout.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        async with make_system("thread", address, CALL_TIMEOUT=1.0) as system:
            tm = system.task_manager
            await tm.register_task("far", double, (1,), executor="dask", task_id="far")
            await tm.execute_task("far")
            # The pool's mailbox is not stuck behind the connection attempt.
            await tm.register_task("near", double, (2,), task_id="near")
            assert await tm.execute_task("near", wait=True) == 4
            message = rf"^the 'dask' executor cannot start the Dask scheduler at {address!r}: "
            with pytest.raises(ActorSystemError, match=message):
                await tm.wait_for_task("far", timeout=WAIT)


async def test_a_scheduler_that_goes_away_fails_its_calls_and_the_next_call_connects_anew(
    dask_address: str, gate: Gate
) -> None:
    # (dask_address: distributed's process-wide thread is started before the baseline.)
    # Before, a call running when the scheduler went was "cancelled before a worker ran
    # it" (TaskCancelledError); the client, closed after CALL_TIMEOUT of reconnecting,
    # was kept: a call made while it closed waited for ever, every later one failed
    # with ClosedClientError, and a scheduler back at the address was never reached.
    cluster = local_cluster(1)
    address = cluster.scheduler_address
    try:
        async with make_system("dask", address, CALL_TIMEOUT=1.0) as system:
            tm = system.task_manager
            await tm.register_task("held", wait_at_gate, (gate.address,), task_id="held")
            await tm.execute_task("held")
            await gate.arrival()
            await asyncio.to_thread(cluster.close, WAIT)
            lost = (
                r"^task '{}' was lost: the Dask client cancelled it \(it lost its "
                r"scheduler\); the next call connects anew$"
            )
            with pytest.raises(ActorSystemError, match=lost.format("held")):
                await tm.wait_for_task("held", timeout=WAIT)
            # Sent while the client tries to reconnect: lost when it gives up and closes.
            await tm.register_task("next", double, (1,), task_id="next")
            with pytest.raises(ActorSystemError, match=lost.format("next")):
                await tm.execute_task("next", wait=True)
            statuses = [(await tm.get_task(t)).status for t in ("held", "next")]
            assert statuses == [TaskStatus.FAILED, TaskStatus.FAILED]
            # The closed client is replaced: the next call tries the scheduler anew.
            unreachable = rf"^the 'dask' executor cannot start the Dask scheduler at {address!r}: "
            with pytest.raises(ActorSystemError, match=unreachable):
                await asyncio.wait_for(tm.thread_pool.submit(double, 2), WAIT)
    finally:
        cluster.close(WAIT)
