"""Processes that fork: gunicorn ``--preload``, Celery prefork, ``multiprocessing`` with
the 'fork' start method. Threads do not survive a fork: a system started before it is
dead in the child. Every test forks for real; the child answers through a pipe, and
one that does not answer within `WAIT` is killed (a hang fails the test)."""

from __future__ import annotations

import asyncio
import importlib
import json
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pykka
import pytest
from helpers import WAIT, add, file_rows, journal_config, start_worker
from loguru import logger

from actors import (
    ActorsError,
    ActorSystem,
    CancellationToken,
    configure_logging,
    prometheus_collector,
    unified_task_manager,
)
from actors.core import JournalLockedError
from actors.journal import Deletion, JournalStore

pytestmark = pytest.mark.filterwarnings(
    # Python 3.12+ warns on any fork of a process with threads: forking one is the point.
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


def forked_message(pid: int) -> str:
    return (
        f"the actor system was started in process {pid}; this process ({{child}}) is a "
        "fork of it and has none of its threads: start a new ActorSystem in the child, "
        "after the fork (unified_task_manager: `await unified_task_manager.shutdown()` "
        "in the child first; it stops nothing of the parent's)"
    )


def _read_all(fd: int, bound: float) -> bytes:
    """What is written to ``fd`` until its writer closes it; b"" if nothing comes by
    ``bound`` (a `time.monotonic` value)."""
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, bound - time.monotonic()))
        if not ready:
            return b""
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def _reap(pid: int, bound: float) -> int:
    """The exit status of child ``pid``, killed if it is still running at ``bound``."""
    while time.monotonic() < bound:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        select.select([], [], [], 0.01)  # (a bounded pause between polls of the child)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def in_child(body: Callable[[], Any], *, before_exit: Callable[[], Any] | None = None) -> Any:
    """Fork; the child runs ``body()`` and sends back ``["ok", value]`` (JSON) or
    ``["error", type name, message]``; ``["hung"]`` if it did not answer within `WAIT`
    (it is killed then). ``{child}`` in a message stands for the child's pid."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            try:
                out = ["ok", body()]
            except BaseException as exc:
                out = ["error", type(exc).__name__, str(exc)]
            os.write(write, json.dumps(out).replace(str(os.getpid()), "{child}").encode())
            os.close(write)
            if before_exit is not None:
                before_exit()
        finally:
            os._exit(0)
    os.close(write)
    bound = time.monotonic() + WAIT
    try:
        data = _read_all(read, bound)
    finally:
        os.close(read)
        status = _reap(pid, bound)
    if not data:
        return ["hung"]
    assert status == 0
    return json.loads(data)


def outcome_of(call: Callable[[], Any]) -> list[Any]:
    try:
        return ["ok", call()]
    except ActorsError as exc:
        return [type(exc).__name__, str(exc)]


async def async_outcome(call: Callable[[], Any]) -> list[Any]:
    try:
        return ["ok", await call()]
    except ActorsError as exc:
        return [type(exc).__name__, str(exc)]


# -- 1. a system started in the parent, called in the child ------------------------------


def test_a_system_started_before_a_fork_refuses_every_call_in_the_child_at_once() -> None:
    with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        assert system.blocking.submit(add, 1, 2) == 3
        tm = system.task_manager

        def child() -> list[Any]:
            async def calls() -> list[Any]:
                made = [
                    lambda: tm.register_task("t", add, (1,)),
                    lambda: tm.submit(add, 1),
                    tm.get_all_tasks,
                    tm.get_metrics,
                    lambda: tm.wait_for_task("t"),
                    lambda: tm.thread_pool.submit(add, 1),
                    system.supervisor.which_children,
                    lambda: tm.events().subscribe(),
                ]
                outcomes = [await async_outcome(call) for call in made]
                await system.shutdown()  # at once: nothing of the parent's is stopped
                return outcomes

            outcomes = asyncio.run(calls())
            outcomes.append(outcome_of(lambda: system.blocking.submit(add, 1)))
            outcomes.append(outcome_of(system.blocking.get_all_tasks))
            outcomes.append(outcome_of(system.start))
            outcomes.append(outcome_of(lambda: list(prometheus_collector(system).collect())))
            outcomes.append(outcome_of(system.serve_dashboard))
            system.__exit__(None, None, None)  # leaving the `with` block in the child
            return outcomes

        outcome = in_child(child)
        assert system.blocking.submit(add, 2, 3) == 5  # the parent's system goes on
    assert outcome == ["ok", [["ActorSystemError", forked_message(os.getpid())]] * 13]


def test_no_actor_of_the_parent_is_alive_in_the_child() -> None:
    """pykka's registry listed them: ``ActorRegistry.stop_all()`` waited for ever."""
    with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        assert system.blocking.submit(add, 1, 2) == 3
        assert len(pykka.ActorRegistry.get_all()) == 6  # the root and its five children

        def child() -> Any:
            return [len(pykka.ActorRegistry.get_all()), pykka.ActorRegistry.stop_all()]

        assert in_child(child) == ["ok", [0, []]]
        assert len(pykka.ActorRegistry.get_all()) == 6


def test_a_system_stopped_before_a_fork_is_stopped_in_the_child() -> None:
    with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        assert system.blocking.submit(add, 1, 2) == 3

    async def call() -> Any:
        return await system.task_manager.submit(add, 1)

    outcome = in_child(lambda: [outcome_of(lambda: asyncio.run(call())), outcome_of(system.start)])
    assert outcome == [
        "ok",
        [
            ["ActorSystemError", "the actor system is shut down; create a new ActorSystem"],
            ["ActorSystemError", "the actor system was shut down; create a new one"],
        ],
    ]


def test_a_child_may_start_a_system_of_its_own(tmp_path: Path) -> None:
    parent_path, child_path = tmp_path / "parent.db", tmp_path / "child.db"
    with ActorSystem(journal_config(parent_path)) as system:
        assert system.blocking.submit(add, 1, 2) == 3

        def child() -> list[Any]:
            async def own(config: dict[str, Any]) -> Any:
                async with ActorSystem(config) as mine:
                    return await mine.task_manager.submit(add, 20, 22)

            # The parent's journal is the parent's: a child's system is refused it.
            refused = outcome_of(lambda: asyncio.run(own(journal_config(parent_path))))
            return [asyncio.run(own(journal_config(child_path))), refused]

        outcome = in_child(child)
    lock = f"{parent_path}.lock"
    assert outcome == [
        "ok",
        [
            42,
            [
                "JournalLockedError",
                f"cannot open journal {str(parent_path)!r}: process {os.getpid()} has it "
                f"open, holding {lock!r}; two systems on one journal would both run its "
                "tasks: stop that one first, or give each system its own JOURNAL_PATH",
            ],
        ],
    ]


@pytest.fixture
def lazy_client() -> Iterator[None]:
    """The module-level client, shut down after the test."""
    yield
    asyncio.run(unified_task_manager.shutdown())


@pytest.mark.usefixtures("lazy_client")
def test_the_module_level_client_refuses_in_the_child_until_it_is_shut_down_there() -> None:
    async def parent() -> Any:
        return await unified_task_manager.submit(add, 1, 2)

    assert asyncio.run(parent()) == 3

    def child() -> list[Any]:
        refused = outcome_of(lambda: asyncio.run(parent()))
        asyncio.run(unified_task_manager.shutdown())  # at once: stops nothing of the parent's
        own = asyncio.run(parent())  # a system of the child's own
        asyncio.run(unified_task_manager.shutdown())
        return [refused, own]

    outcome = in_child(child)
    assert outcome == ["ok", [["ActorSystemError", forked_message(os.getpid())], 3]]
    assert asyncio.run(parent()) == 3  # the parent's goes on


def still_held() -> str:
    """The start of `JournalLockedError`'s reason for a journal this process holds."""
    return rf"this process \(pid {os.getpid()}\) has it open already"


@pytest.mark.usefixtures("lazy_client")
@pytest.mark.parametrize(
    "lock",
    [
        "the system's",
        "actors.api._client._lazy_lock",
        "actors.core._bridge._bridges_lock",
        "actors.core._context._COMPANION_LOCK",
        "actors.core._stdlib_logging._lock",
        "pykka.ActorRegistry._actor_refs_lock",
    ],
)
def test_a_lock_a_parents_thread_held_at_the_fork_does_not_hang_the_child(lock: str) -> None:
    """Held by another thread of the parent as it forks (pykka's: one that starts or
    stops an actor): in the child that thread is gone. The child stops the parent's
    lazy system (as the interpreter's exit does), shuts it down, starts one of its own
    on a new loop, waits on a token, sends its log lines to `logging` and back."""

    async def parent() -> Any:
        return await unified_task_manager.submit(add, 1, 2)

    assert asyncio.run(parent()) == 3
    system = unified_task_manager._system
    assert system is not None
    module, _, name = lock.rpartition(".")
    held_lock = system._lock if lock == "the system's" else getattr(_import(module), name)
    held, forked = threading.Event(), threading.Event()

    def holder() -> None:
        with held_lock:
            held.set()
            forked.wait(WAIT)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(WAIT)

        def child() -> Any:
            system.stop_sync()
            asyncio.run(unified_task_manager.shutdown())
            own = asyncio.run(parent())  # a system of the child's own
            asyncio.run(unified_task_manager.shutdown())
            token = CancellationToken()
            waited = token.wait(0.0)  # (its first wait makes its event)
            token.cancel()
            configure_logging(stdlib=True)
            configure_logging(False)
            return [own, waited, token.wait(0.0)]

        outcome = in_child(child)
    finally:
        forked.set()
        thread.join(WAIT)
    assert outcome == ["ok", [3, False, True]]


def _import(module: str) -> Any:
    if module == "pykka.ActorRegistry":
        return pykka.ActorRegistry
    return importlib.import_module(module)


def test_a_preforking_server_with_a_preloaded_lazy_client(tmp_path: Path) -> None:
    """tests/fork_worker.py: the master's lazy system (journaled) runs before the fork;
    each worker is refused it, starts its own on a journal of its own and exits through
    the interpreter's exit hooks, which stop its system and nothing of the master's."""
    process = start_worker("fork_worker.py", tmp_path)
    try:
        out, _ = process.communicate(timeout=4 * WAIT)
    finally:
        if process.poll() is None:  # (a hang) its workers go with it
            for worker in psutil.Process(process.pid).children(recursive=True):
                worker.kill()
        process.kill()
        process.wait(WAIT)
    lines = out.splitlines()
    refused = f"refused: the actor system was started in process {process.pid}"
    assert sorted(lines) == sorted(
        [
            "master: 101",
            "worker 1: " + refused,
            "worker 2: " + refused,
            "worker 1: 101",
            "worker 2: 102",
            "master: a worker exited with 0",
            "master: a worker exited with 0",
            "master: 102",
        ]
    )
    assert process.returncode == 0
    assert lines[0] == "master: 101"
    assert lines[-1] == "master: 102"
    journals = ("master.db", "worker1.db", "worker2.db")
    assert [len(file_rows(tmp_path / name)) for name in journals] == [2, 1, 1]


# -- 2. the journal: its lock and its file stay the parent's -----------------------------


def test_a_forked_child_does_not_keep_the_parents_journal_lock(tmp_path: Path) -> None:
    """The child inherits the descriptor that holds the parent's flock: alive, it held
    the lock after the parent closed its journal, and the parent could not open it
    again ("this process has it open already")."""
    path = tmp_path / "journal.db"
    go_read, go_write = os.pipe()
    try:
        with ActorSystem(journal_config(path)) as system:
            assert system.blocking.submit(add, 1, 2) == 3
            pid = os.fork()
            if pid == 0:  # waits until the parent lets it go, holding what it inherited
                try:
                    os.close(go_write)
                    select.select([go_read], [], [], WAIT)
                finally:
                    os._exit(0)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # the child lives
        with ActorSystem(journal_config(path)) as again:
            assert again.blocking.submit(add, 2, 3) == 5
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)
    finally:
        os.close(go_write)  # the child goes
        os.close(go_read)
    assert os.waitpid(pid, 0)[1] == 0


def test_the_parent_keeps_its_journal_lock_when_a_child_exits(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with ActorSystem(journal_config(path)) as system:
        assert system.blocking.submit(add, 1, 2) == 3
        assert in_child(lambda: None) == ["ok", None]  # it exits, closing what it inherited
        with pytest.raises(JournalLockedError, match=still_held()):
            JournalStore(path)
        task_id = system.blocking.register_task("after", add, (3, 4), task_id="after")
        assert system.blocking.execute_task(task_id, wait=True) == 7
    assert file_rows(path)[-1] == ("after", "completed")


def test_a_forked_child_cannot_write_or_read_the_parents_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with JournalStore(path) as store:

        def child() -> list[Any]:
            outcomes = [
                outcome_of(lambda: store.write([Deletion("t")])),
                outcome_of(store.load),
            ]
            store.close()  # closes nothing of the parent's
            return outcomes

        outcome = in_child(child)
        store.write([Deletion("t")])  # the parent's store goes on
        assert store.load() == []
        with pytest.raises(JournalLockedError, match=still_held()):
            JournalStore(path)
    message = (
        f"cannot use journal {str(path)!r} in process {{child}}: process {os.getpid()} "
        "opened it, and this process is a fork of it; a child must not write its parent's "
        "journal: start a system with a JOURNAL_PATH of its own in the child"
    )
    assert outcome == ["ok", [["JournalStoreError", message]] * 2]


def test_a_fork_while_the_journal_writes_leaves_sqlite_usable_in_the_child(
    tmp_path: Path,
) -> None:
    """A thread inside SQLite as the process forks may hold one of SQLite's own
    mutexes, which nothing releases in the child: its first SQLite call hung (7 forks
    in 100 with a thread writing all the time, before the fork waited for the write)."""
    with JournalStore(tmp_path / "parent.db") as store:
        stop = threading.Event()

        def writes() -> None:
            while not stop.is_set():
                store.write([Deletion("t")])

        writer = threading.Thread(target=writes)
        writer.start()
        try:
            outcomes = []
            for fork in range(40):

                def child(fork: int = fork) -> Any:
                    with JournalStore(tmp_path / f"child{fork}.db") as mine:
                        mine.write([Deletion("t")])
                        return mine.load()

                outcomes.append(in_child(child))
                if outcomes[-1] != ["ok", []]:
                    break
        finally:
            stop.set()
            writer.join(WAIT)
    assert outcomes == [["ok", []]] * 40


def test_a_system_made_before_a_fork_and_started_after_it_runs_in_the_child() -> None:
    """gunicorn --preload: the app module makes the system; each worker starts it
    (a lifespan's ``async with system``)."""
    system = ActorSystem({"CLEANUP_INTERVAL": 0})

    def child() -> Any:
        async def lifespan() -> Any:
            async with system:
                return await system.task_manager.submit(add, 40, 2)

        return asyncio.run(lifespan())

    assert in_child(child) == ["ok", 42]
    with system:  # and in the parent too, if it ever starts it
        assert system.blocking.submit(add, 1, 2) == 3


# -- 3. task code that forks -------------------------------------------------------------


def _square_and_log(conn: Any, value: int) -> None:
    logger.info("child squares {}", value)
    conn.send(value * value)


def forks_a_worker(value: int) -> list[Any]:
    """A task that forks a worker process ('fork' start method) and waits for it."""
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe()
    worker = context.Process(target=_square_and_log, args=(theirs, value))
    worker.start()
    got = mine.recv() if mine.poll(WAIT) else None
    worker.join(WAIT)  # it exits through threading._shutdown: the lazy client's exit hook
    if worker.exitcode is None:
        worker.kill()
        worker.join()
    return [got, worker.exitcode]


async def forks_a_worker_on_the_loop(value: int) -> list[Any]:
    return forks_a_worker(value)


@pytest.mark.usefixtures("lazy_client")
@pytest.mark.parametrize("task", [forks_a_worker, forks_a_worker_on_the_loop])
def test_a_task_that_forks_a_worker_process_gets_its_answer_and_exit(
    task: Callable[[int], Any],
) -> None:
    """The worker (a fork of a process whose lazy client runs) logs through loguru
    (a sink with ``enqueue=True``, its own thread) and exits by itself."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), enqueue=True)
    configure_logging()
    try:

        async def run() -> Any:
            return await unified_task_manager.submit(task, 7)

        assert asyncio.run(run()) == [49, 0]
    finally:
        configure_logging(False)
        logger.remove(sink)  # (waits for the sink's thread to write what is queued)
    assert "child squares 7" in lines


def _runs_a_system_of_its_own(conn: Any) -> None:
    async def own() -> list[Any]:
        async with ActorSystem({"CLEANUP_INTERVAL": 0}) as mine:
            tm = mine.task_manager
            task_id = await tm.register_task("inside", add, (1, 2))
            done = await tm.execute_task(task_id, wait=True)
            return [done, await tm.submit(add, 3, 4), len(await tm.get_all_tasks())]

    conn.send(asyncio.run(own()))


def forks_a_system(_: int) -> list[Any]:
    """A task whose forked worker starts an actor system of its own."""
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe()
    worker = context.Process(target=_runs_a_system_of_its_own, args=(theirs,))
    worker.start()
    got = mine.recv() if mine.poll(WAIT) else None
    worker.join(WAIT)
    if worker.exitcode is None:
        worker.kill()
        worker.join()
    return [got, worker.exitcode]


async def forks_a_system_on_the_loop(value: int) -> list[Any]:
    return forks_a_system(value)


@pytest.mark.parametrize("task", [forks_a_system, forks_a_system_on_the_loop])
def test_a_task_whose_forked_worker_starts_a_system_of_its_own(
    task: Callable[[int], Any],
) -> None:
    """The worker is forked inside a task (its context says so) of a running system."""
    with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        assert system.blocking.submit(task, 0) == [[3, 7, 2], 0]


# -- 4. the process executor: spawned workers, no system, no journal -----------------------


def worker_facts(journal: str) -> list[Any]:
    """What a worker process holds of the actor system: its actors, its open journal
    files, its start method."""
    fds = "/proc/self/fd"
    opened = []
    for fd in os.listdir(fds):
        try:
            target = os.readlink(os.path.join(fds, fd))
        except OSError:
            continue
        if target.startswith(journal):
            opened.append(target)
    return [
        len(pykka.ActorRegistry.get_all()),
        sorted(opened),
        unified_task_manager._system is None,
        multiprocessing.get_start_method(allow_none=True),
    ]


def test_process_workers_are_spawned_and_hold_no_system_and_no_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    config = journal_config(path, THREAD_POOL_BACKEND="process", MAX_THREAD_WORKERS=1)
    with ActorSystem(config) as system:
        assert system.blocking.submit(worker_facts, str(path)) == [0, [], True, "spawn"]
