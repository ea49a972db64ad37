"""Scenarios where the journal meets dependencies, cleanup and retries (fifth round).

Durable tasks on a real SQLite file: a ``result_of`` dependency finished, then bounded
or cleaned up, before its dependent ran, and the process stopped or was killed; what
recovery makes of the dependent (it runs with the journaled result, or ends with an
error naming why it cannot), and that every listing, the metrics and the dashboard
answer after it; a failed dependency with ``on_dependency_failure`` "run" and
"cancel"; retries of recovered tasks; a cleanup whose deletions were half written; a
durable task refused the result of a memory-only one. Beside them, two behaviours the
README states: a plain function waiting through ``system.blocking`` lends its slot, and
a dependency does not inherit its dependent's priority.

A graceful stop leaves durable tasks in the file as they are (README), so most
scenarios stop a system and start another on the file; one kills a process with SIGKILL
while a dependent runs (tests/combo5_worker.py).

Each scenario asserts exact outcomes: final states, results or errors, how many times
each body ran, and what the file holds.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import combo5_worker
import httpx
import pytest
from helpers import (
    WAIT,
    file_rows,
    journal_config,
    journaled_manager,
    sigkill_when_ready,
    start_worker,
)

from actors import (
    ActorSystem,
    TaskNotFoundError,
    TaskPriority,
    TaskStatus,
    result_of,
)
from actors.core import JournalDecodeError, JournalEncodeError
from actors.dashboard import create_app
from supervisors.testing import FakeClock

COMPLETED, FAILED, CANCELLED, PENDING = (
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.PENDING,
)
RUNS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


def double(x: int) -> int:
    RUNS["double"] += 1
    return 2 * x


def plus_one(x: int) -> int:
    RUNS["plus_one"] += 1
    return x + 1


async def states(tm: Any) -> dict[str, tuple[TaskStatus, Any]]:
    return {i.task_id: (i.status, i.error) for i in await tm.get_all_tasks()}


async def test_a_dependency_kept_for_its_dependent_by_max_finished_survives_recovery(
    tmp_path: Path, new_system: bool
) -> None:
    """``a`` completes and ``c`` after it with MAX_FINISHED_TASKS=1: ``a`` stays (in
    the file too) because the pending ``b`` takes its result. After a restart ``b`` runs
    with ``a``'s journaled result, then the bound applies as before. (Recovery applied
    the bound as it put each finished task back, before ``b``, registered after ``c``,
    pinned ``a``: ``a`` was deleted and ``b`` failed with a JournalDecodeError saying
    ``a`` was "not in the journal".)"""
    path = tmp_path / "tasks.db"
    config = {"MAX_FINISHED_TASKS": 1, "USE_NEW_TASK_SYSTEM": new_system}
    async with journaled_manager(path, **config) as tm:
        await tm.register_task("a", double, (2,), task_id="a")
        await tm.register_task("c", double, (3,), task_id="c")
        await tm.register_task("b", plus_one, (result_of("a"),), task_id="b")
        assert await tm.execute_task("a", wait=True) == 4
        assert await tm.execute_task("c", wait=True) == 6
        before = await states(tm)
        assert before == {"a": (COMPLETED, None), "c": (COMPLETED, None), "b": (PENDING, None)}
    assert file_rows(path) == [("a", "completed"), ("c", "completed"), ("b", "pending")]
    async with journaled_manager(path, **config) as tm:
        assert await states(tm) == before
        assert await tm.get_task_result("a") == 4
        assert await tm.execute_task("b", wait=True) == 5
        assert await states(tm) == {"b": (COMPLETED, None)}
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {COMPLETED: 1}
    assert file_rows(path) == [("b", "completed")]
    assert RUNS == {"double": 2, "plus_one": 1}


def make_complex(x: int) -> complex:
    RUNS["make_complex"] += 1
    return complex(x, 1)


def show(value: object) -> str:
    RUNS["show"] += 1
    return repr(value)


async def test_a_dependent_of_a_result_that_was_not_journaled_fails_instead_of_taking_none(
    tmp_path: Path, new_system: bool
) -> None:
    """``a`` completes with a complex number (the JSON journal records "result not
    serializable"); ``b`` takes ``result_of(a)``, pending. After a restart ``b`` does
    not run: it ends failed with a JournalDecodeError naming ``a`` and why, and the file
    says so. (It ran with None in place of ``a``'s result.)"""
    path = tmp_path / "tasks.db"
    config = {"USE_NEW_TASK_SYSTEM": new_system}
    async with journaled_manager(path, **config) as tm:
        await tm.register_task("a", make_complex, (2,), task_id="a")
        await tm.register_task("b", show, (result_of("a"),), task_id="b")
        assert await tm.execute_task("a", wait=True) == complex(2, 1)
    assert file_rows(path) == [("a", "completed"), ("b", "pending")]
    async with journaled_manager(path, **config) as tm:
        message = (
            "journaled task 'b' cannot run again: the result of its result_of('a') is "
            "not in the journal (result not serializable: complex)"
        )
        with pytest.raises(JournalDecodeError, match=f"^{re.escape(message)}$"):
            await tm.execute_task("b", wait=True)
        assert {t: (s, str(e) if e else None) for t, (s, e) in (await states(tm)).items()} == {
            "a": (COMPLETED, None),
            "b": (FAILED, message),
        }
        assert await tm.get_task_result("a") is None  # recorded as not serializable
        assert dict((await tm.get_metrics()).tasks_by_status) == {COMPLETED: 1, FAILED: 1}
    assert file_rows(path) == [("a", "completed"), ("b", "failed")]
    assert RUNS == {"make_complex": 1}


async def test_tasks_that_ended_before_a_restart_keep_their_age_for_the_cleanup(
    tmp_path: Path, new_system: bool
) -> None:
    """The file says ``a`` (completed) and ``f`` (failed) ended two hours before this
    start, ``p`` (pending) was registered then: ``cleanup_completed_tasks(3600)``
    removes ``a`` and ``f`` (from the file too), keeps ``p``; their TaskInfo times are
    the journaled ones. (Recovery dated every ended task from the restart: a service
    restarted more often than CLEANUP_MAX_AGE never cleaned up its journal.)"""
    path = tmp_path / "tasks.db"
    config = {"USE_NEW_TASK_SYSTEM": new_system}
    async with journaled_manager(path, **config) as tm:
        await tm.register_task("a", double, (2,), task_id="a")
        await tm.register_task("f", plus_one, ("x",), task_id="f")
        await tm.register_task("p", double, (3,), task_id="p")
        assert await tm.execute_task("a", wait=True) == 4
        with pytest.raises(TypeError):
            await tm.execute_task("f", wait=True)
    with closing(sqlite3.connect(path)) as connection, connection:
        shift = "{0} = {0} - 7200"
        columns = ("created_at", "updated_at", "started_at", "finished_at")
        connection.execute(f"UPDATE tasks SET {', '.join(map(shift.format, columns))}")
        times = {
            row[0]: row[1:]
            for row in connection.execute(
                "SELECT id, created_at, started_at, finished_at FROM tasks"
            )
        }
    async with journaled_manager(path, **config) as tm:
        a = await tm.get_task("a")
        for info in (a, await tm.get_task("f")):
            got = (info.created_utc, info.started_utc, info.finished_utc)
            journaled = times[info.task_id]
            assert [t.timestamp() if t else None for t in got] == pytest.approx(
                journaled, rel=0, abs=1e-3
            )
            assert info.duration == pytest.approx(journaled[2] - journaled[1], rel=0, abs=1e-3)
        assert await tm.cleanup_completed_tasks(3600) == 2
        assert [(i.task_id, i.status) for i in await tm.get_all_tasks()] == [("p", PENDING)]
        assert await tm.cleanup_completed_tasks(3600) == 0
    assert file_rows(path) == [("p", "pending")]
    assert RUNS == {"double": 1, "plus_one": 1}


def _kill_while_b_runs(journal: Path, out: Path) -> None:
    sigkill_when_ready(start_worker("combo5_worker.py", journal, out))


async def test_a_dependent_running_at_a_sigkill_reruns_with_its_dependencys_journaled_result(
    tmp_path: Path,
) -> None:
    """MAX_FINISHED_TASKS=1: ``a`` and ``c`` completed, ``a`` kept only for ``b``;
    ``b`` started ``take(4)``, then ``d`` completed, and the process was killed while
    ``b`` ran. ``a`` is still in the file (``b``'s journaled arguments still take its
    result), so a new system on the file runs ``b`` again with it (recovered once); no
    other task runs again; then the bound applies; every listing, the metrics and the
    dashboard's API answer, and the file holds ``b`` and ``marker`` alone. (``a`` was let go when
    ``b`` took its result in memory, ``d``'s end evicted it, in the file too, and the
    recovered ``b`` failed: "the task of its result_of('a') is not in the journal".)"""
    journal, out = tmp_path / "tasks.db", tmp_path / "runs.txt"
    await asyncio.to_thread(_kill_while_b_runs, journal, out)
    assert file_rows(journal) == [
        ("a", "completed"),
        ("b", "running"),
        ("d", "completed"),
        ("marker", "pending"),
    ]
    combo5_worker.OUT = out
    config = journal_config(journal, MAX_FINISHED_TASKS=1)
    async with ActorSystem(config) as system:
        tm = system.task_manager
        assert await tm.wait_for_task("b", timeout=WAIT) == 5
        b = await tm.get_task("b")
        assert (b.status, b.recoveries, b.attempts) == (COMPLETED, 1, 1)
        assert await states(tm) == {"b": (COMPLETED, None), "marker": (PENDING, None)}
        assert await tm.get_tasks_by_status(COMPLETED) == [b]
        assert [i.task_id for i in await tm.get_tasks_by_type("default")] == ["b", "marker"]
        assert (await tm.get_task_graph()).topological_order() == ["b", "marker"]
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {COMPLETED: 1, PENDING: 1}
        app = create_app(system)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
            listing = (await http.get("/api/tasks")).json()
            detail = (await http.get("/api/tasks/b")).json()
            graph = (await http.get("/api/graph")).json()
            served = (await http.get("/api/metrics")).json()
        assert {t["task_id"]: t["status"] for t in listing["rows"]} == {
            "b": "completed",
            "marker": "pending",
        }
        assert (detail["status"], detail["dependencies"]) == ("completed", [])  # a is gone
        assert {n["id"]: n["status"] for n in graph["nodes"]} == {
            "b": "completed",
            "marker": "pending",
        }
        assert served["tasks_by_status"] == {"completed": 1, "pending": 1}
    assert file_rows(journal) == [("b", "completed"), ("marker", "pending")]
    assert out.read_text().split("\n") == [
        "double 2",
        "double 3",
        "take 4",
        "double 5",
        "take 4",
        "",
    ]


async def test_a_durable_task_taking_the_result_of_a_memory_only_task_is_refused(
    tmp_path: Path, new_system: bool
) -> None:
    """``a`` is kept in memory only (``durable=False``); a durable ``b`` taking
    ``result_of(a)`` is refused with JournalEncodeError naming both, before anything
    changes (in memory and in the file); with ``durable=False`` it is taken and runs.
    (It was journaled, and after a restart it failed: "the task of its
    result_of('a') is not in the journal".)"""
    path = tmp_path / "tasks.db"
    async with journaled_manager(path, USE_NEW_TASK_SYSTEM=new_system) as tm:
        await tm.register_task("a", double, (2,), task_id="a", durable=False)
        message = (
            "task 'b' cannot be durable: it takes result_of('a'), a task kept in memory "
            "only (durable=False), whose result a restart loses; make 'a' durable too, "
            "or pass durable=False to keep this task in memory only"
        )
        with pytest.raises(JournalEncodeError, match=f"^{re.escape(message)}$"):
            await tm.register_task("b", plus_one, (result_of("a"),), task_id="b")
        assert await states(tm) == {"a": (PENDING, None)}
        assert file_rows(path) == []
        await tm.register_task("b", plus_one, (result_of("a"),), task_id="b", durable=False)
        assert await tm.execute_task("b", wait=True) == 5
    assert file_rows(path) == []
    assert RUNS == {"double": 1, "plus_one": 1}


SYSTEM: list[ActorSystem] = []


def blocking_parent(mode: str) -> Any:
    """A plain function (a pool thread) that waits for tasks through ``system.blocking``."""
    blocking = SYSTEM[0].blocking
    if mode == "submit":
        return blocking.submit(double, 1)
    if mode == "map":
        return blocking.map(double, [2, 3])
    child = blocking.register_task("child", double, (4,))
    if mode == "execute":
        return blocking.execute_task(child, wait=True)
    assert blocking.execute_task(child) is True
    return blocking.wait_for_task(child, timeout=WAIT)


async def test_a_plain_function_waiting_through_system_blocking_lends_its_only_slot() -> None:
    """MAX_CONCURRENT_TASKS=1: a plain-function task that waits for a child through
    ``system.blocking`` (submit, map, execute_task(wait=True), wait_for_task) lends its
    slot, so the child runs while it waits (as README's "Tasks that wait for tasks"
    says); had it kept the slot, the child would stay queued and the wait time out."""
    config = {"CLEANUP_INTERVAL": 0, "MAX_CONCURRENT_TASKS": 1, "MAX_THREAD_WORKERS": 2}
    async with ActorSystem(config) as system:
        SYSTEM[:] = [system]
        tm = system.task_manager
        try:
            got = {
                mode: await asyncio.wait_for(tm.submit(blocking_parent, mode), WAIT)
                for mode in ("submit", "map", "execute", "wait")
            }
        finally:
            SYSTEM.clear()
        assert got == {"submit": 2, "map": [4, 6], "execute": 8, "wait": 8}
        assert dict((await tm.get_metrics()).tasks_by_status) == {COMPLETED: 9}
    assert RUNS == {"double": 5}


@pytest.mark.parametrize(
    ("dep_priority", "expected"),
    [
        (TaskPriority.LOW, ["block", "n0", "n1", "d", "h"]),
        (TaskPriority.HIGH, ["block", "d", "h", "n0", "n1"]),
    ],
)
async def test_priority_is_not_inherited_by_a_dependency(
    dep_priority: TaskPriority, expected: list[str]
) -> None:
    """One slot, held by ``block``; a HIGH task ``h`` takes the result of ``d``,
    executed behind two NORMAL tasks. ``d`` LOW: it runs after them (its own priority),
    then ``h``. ``d`` HIGH (README's advice): ``d`` and ``h`` go first."""
    order: list[str] = []
    gate = asyncio.Event()

    async def run(name: str, *args: Any) -> str:
        order.append(name)
        if name == "block":
            await gate.wait()
        return name

    config = {"CLEANUP_INTERVAL": 0, "MAX_CONCURRENT_TASKS": 1}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        block = await tm.register_task("block", run, ("block",))
        await tm.execute_task(block)
        normal = [await tm.register_task(f"n{i}", run, (f"n{i}",)) for i in range(2)]
        d = await tm.register_task("d", run, ("d",), priority=dep_priority)
        h = await tm.register_task("h", run, ("h", result_of(d)), priority=TaskPriority.HIGH)
        for task_id in [*normal, h]:
            assert await tm.execute_task(task_id) is True
        assert await tm.get_task_status(d) is TaskStatus.QUEUED
        assert await tm.get_task_status(h) is TaskStatus.WAITING
        gate.set()
        assert await tm.wait_for_task(h, timeout=WAIT) == "h"
        assert [await tm.wait_for_task(t, timeout=WAIT) for t in normal] == ["n0", "n1"]
    assert order == expected


def boom(x: int) -> int:
    RUNS["boom"] += 1
    raise ValueError(f"boom {x}")


def describe(value: object) -> str:
    RUNS["describe"] += 1
    return f"{type(value).__name__}: {value}"


async def test_a_failed_dependency_before_a_restart_run_or_cancel(
    tmp_path: Path, new_system: bool
) -> None:
    """``a`` failed; ``r`` (``on_dependency_failure="run"``) takes ``result_of(a)``,
    pending, so ``a`` is kept, and a cleanup removes only the other ended task; ``c``
    (the default, "cancel") was cancelled naming ``a``. After a restart ``r`` runs with
    ``a``'s journaled error as its argument, ``c`` stays cancelled, nothing else runs
    again; once ``r`` ended a cleanup removes ``a``, in the file too."""
    path = tmp_path / "tasks.db"
    config = {"USE_NEW_TASK_SYSTEM": new_system}
    async with journaled_manager(path, **config) as tm:
        await tm.register_task("a", boom, (1,), task_id="a")
        await tm.register_task(
            "r", describe, (result_of("a"),), task_id="r", on_dependency_failure="run"
        )
        await tm.register_task("x", double, (1,), task_id="x")
        with pytest.raises(ValueError, match=r"^boom 1$"):
            await tm.execute_task("a", wait=True)
        assert await tm.execute_task("x", wait=True) == 2
        assert await tm.cleanup_completed_tasks(0) == 1  # x; a is kept for r
        await tm.register_task("c", describe, (result_of("a"),), task_id="c")
    assert file_rows(path) == [("a", "failed"), ("r", "pending"), ("c", "cancelled")]
    async with journaled_manager(path, **config) as tm:
        c = await tm.get_task("c")
        assert (c.status, str(c.error)) == (
            CANCELLED,
            "task 'c' (c) cancelled: its dependency 'a' (a) failed",
        )
        assert await tm.execute_task("r", wait=True) == "JournaledError: ValueError: boom 1"
        assert await tm.cleanup_completed_tasks(0) == 3
        assert await tm.get_all_tasks() == []
    assert file_rows(path) == []
    assert RUNS == {"boom": 1, "double": 1, "describe": 1}


async def test_retries_of_failed_durable_tasks_across_restarts(tmp_path: Path) -> None:
    """``f`` failed before the restart: retry_task runs it again from its journal row,
    with ``a``'s journaled result. ``g`` takes ``result_of(a)`` and fails after the
    restart: its retry runs with ``a``'s journaled result and is journaled. ``h`` takes
    ``result_of(b)``, fails after the restart, then a cleanup (fake clock) removes what
    ended before the restart, ``b`` included: ``h``'s retry is refused with TaskNotFoundError naming
    ``b``, and nothing changed (in the file either)."""
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("a", double, (2,), task_id="a")
        await tm.register_task("b", double, (3,), task_id="b")
        for name, dep in (("f", "a"), ("g", "a"), ("h", "b")):
            await tm.register_task(name, flaky, (name, result_of(dep)), task_id=name)
        with pytest.raises(ValueError, match=r"^flaky f 4$"):
            await tm.execute_task("f", wait=True)
        assert await tm.execute_task("b", wait=True) == 6
    clock = FakeClock()
    async with ActorSystem(journal_config(path), clock=clock) as system:
        tm = system.task_manager
        clock.advance(100.0)  # the restored tasks ended 100 s ago (or more)
        retried_f = await tm.retry_task("f")  # from its journal row
        assert await tm.wait_for_task(retried_f, timeout=WAIT) == "f 4"
        for task_id, value in (("g", 4), ("h", 6)):
            with pytest.raises(ValueError, match=f"^flaky {task_id} {value}$"):
                await tm.execute_task(task_id, wait=True)
        retried = await tm.retry_task("g")
        assert await tm.wait_for_task(retried, timeout=WAIT) == "g 4"
        # A durable task's execute_task is answered once what happened before it is
        # committed: then the file holds the retries' ends.
        assert await tm.execute_task(retried) is False
        rows = [("a", "completed"), ("b", "completed"), ("f", "failed"), ("g", "failed")]
        rows += [("h", "failed"), (retried_f, "completed"), (retried, "completed")]
        assert file_rows(path) == rows
        assert await tm.cleanup_completed_tasks(50.0) == 3  # a, b and f: before the restart
        before = await states(tm)
        assert set(before) == {"g", "h", retried_f, retried}
        message = (
            "task 'h' cannot be retried: it takes the result of task 'b', which was "
            "cleaned up since (MAX_FINISHED_TASKS or cleanup_completed_tasks), so its "
            "result is gone; register the task again with the value"
        )
        with pytest.raises(TaskNotFoundError, match=f"^{re.escape(message)}$"):
            await tm.retry_task("h")
        assert await states(tm) == before
    assert file_rows(path) == [
        ("g", "failed"),
        ("h", "failed"),
        (retried_f, "completed"),
        (retried, "completed"),
    ]
    assert RUNS == {"double": 2, "flaky f": 2, "flaky g": 2, "flaky h": 1}


def flaky(name: str, x: int) -> str:
    RUNS[f"flaky {name}"] += 1
    if RUNS[f"flaky {name}"] == 1:
        raise ValueError(f"flaky {name} {x}")
    return f"{name} {x}"


async def test_recovery_after_a_cleanup_whose_deletions_were_half_written(
    tmp_path: Path, new_system: bool
) -> None:
    """A chain ``a -> b -> c`` (each takes the previous one's result) completed; ``d``,
    pending, takes ``result_of(c)``, so ``c`` is kept. Of a cleanup's deletions only
    ``a``'s reached the file (as a kill between two cleanups leaves it; each flush is
    one transaction). After a restart ``b`` and ``c`` are completed with their results,
    their edges to what is gone dropped; ``d`` runs with ``c``'s result; every listing,
    the graph and the metrics answer; the next cleanup finishes the job in the file."""
    path = tmp_path / "tasks.db"
    config = {"USE_NEW_TASK_SYSTEM": new_system}
    async with journaled_manager(path, **config) as tm:
        await tm.register_task("a", double, (1,), task_id="a")
        await tm.register_task("b", double, (result_of("a"),), task_id="b")
        await tm.register_task("c", double, (result_of("b"),), task_id="c")
        await tm.register_task("d", plus_one, (result_of("c"),), task_id="d")
        assert await tm.execute_task("c", wait=True) == 8
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("DELETE FROM tasks WHERE id = 'a'")
    async with journaled_manager(path, **config) as tm:
        infos = {i.task_id: (i.status, i.dependencies) for i in await tm.get_all_tasks()}
        assert infos == {
            "b": (COMPLETED, ()),
            "c": (COMPLETED, ("b",)),
            "d": (PENDING, ("c",)),
        }
        assert [await tm.get_task_result(t) for t in ("b", "c")] == [4, 8]
        assert (await tm.get_task_graph()).topological_order() == ["b", "c", "d"]
        assert [i.task_id for i in await tm.get_tasks_by_status(COMPLETED)] == ["b", "c"]
        assert await tm.execute_task("d", wait=True) == 9
        assert dict((await tm.get_metrics()).tasks_by_status) == {COMPLETED: 3}
        assert await tm.cleanup_completed_tasks(0) == 3
    assert file_rows(path) == []
    assert RUNS == {"double": 3, "plus_one": 1}


async def test_max_finished_after_a_restart_keeps_the_tasks_that_finished_last(
    tmp_path: Path, new_system: bool
) -> None:
    """``a``, ``b``, ``c`` registered in that order, finished ``b``, ``c``, ``a``; a
    restart with MAX_FINISHED_TASKS=1 keeps ``a`` (the last to finish), as a live
    system does, and the next task to finish evicts it. (Recovery applied the bound in
    registration order, the file's: it kept ``c`` and deleted ``a``.)"""
    path = tmp_path / "tasks.db"
    async with journaled_manager(path, USE_NEW_TASK_SYSTEM=new_system) as tm:
        for name in "abc":
            await tm.register_task(name, double, (1,), task_id=name)
        for name in "bca":
            assert await tm.execute_task(name, wait=True) == 2
    config = {"MAX_FINISHED_TASKS": 1, "USE_NEW_TASK_SYSTEM": new_system}
    async with journaled_manager(path, **config) as tm:
        assert [i.task_id for i in await tm.get_all_tasks()] == ["a"]
        await tm.register_task("d", double, (2,), task_id="d")
        assert await tm.execute_task("d", wait=True) == 4
        assert [i.task_id for i in await tm.get_all_tasks()] == ["d"]
    assert file_rows(path) == [("d", "completed")]
    assert RUNS == {"double": 4}
