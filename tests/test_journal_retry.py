"""Retrying a durable task that failed before a restart (README, "Retry").

`retry_task` of such a task decodes its journal row at the call (recovery does not
decode a failed task's function or arguments) and registers a new task with the
journaled function, arguments, options, current dependencies and
``metadata["retry_of"]``, in the failed task's task system, on the caller's loop, and
journals it like any registration. A function that no longer imports, or a result the
task takes that the journal lost or a cleanup removed, refuses the retry and changes
nothing. One scenario kills a process with SIGKILL (tests/jretry_worker.py); the
others stop a system and start another on the file.

Restored tasks that had not ended keep their journaled creation time too.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import jretry_worker
import pytest
from helpers import (
    WAIT,
    file_rows,
    journal_config,
    journaled_manager,
    sigkill_when_ready,
    start_worker,
)

from actors import ActorSystem, TaskNotFoundError, TaskPriority, TaskStatus, result_of
from actors.core import JournalDecodeError, JournaledError
from actors.dashboard import create_app
from supervisors.testing import FakeClock

COMPLETED, FAILED, PENDING = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.PENDING
ACTION = {"X-Actorflow-Action": "1"}
RUNS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


def created_times(path: Path) -> dict[str, float]:
    with closing(sqlite3.connect(path)) as connection, connection:
        return dict(connection.execute("SELECT id, created_at FROM tasks").fetchall())


async def states(tm: Any) -> dict[str, tuple[TaskStatus, str | None]]:
    return {
        i.task_id: (i.status, None if i.error is None else f"{type(i.error).__name__}: {i.error}")
        for i in await tm.get_all_tasks()
    }


def _kill_when_ready(journal: Path, out: Path) -> None:
    sigkill_when_ready(start_worker("jretry_worker.py", journal, out, JRETRY_WORKER="1"))


VANISHED = (
    "task 'v': its function jretry_worker:vanishing cannot be found (AttributeError: "
    "module 'jretry_worker' has no attribute 'vanishing')"
)


async def test_tasks_failed_before_a_sigkill_are_retried_after_it_in_both_task_systems(
    tmp_path: Path,
) -> None:
    """The worker's ``g`` (new system, ``result_of(a)``, keyword arguments, metadata,
    options) and ``o`` (old system, a coroutine) failed, ``v``'s function exists only
    in the worker; it was killed while ``run`` ran. After the restart ``g``'s retry runs
    ``shaky(4, times=10)`` with its journaled definition; ``o``'s, from the dashboard's
    retry action, runs on the caller's loop in the old system; ``v``'s retry raises
    JournalDecodeError and changes nothing (nor does the dashboard's, a 400). A second
    restart finds the retries completed with their results, the failed tasks as they
    were. The restored ``p`` and ``run`` keep their journaled creation times, so the
    listing is in registration order. (retry_task refused all three: "its function and
    arguments were not recovered"; ``p`` and ``run`` were dated from the restart.)"""
    journal, out = tmp_path / "tasks.db", tmp_path / "runs.txt"
    await asyncio.to_thread(_kill_when_ready, journal, out)
    journaled = [
        ("p", "pending"),
        ("a", "completed"),
        ("g", "failed"),
        ("o", "failed"),
        ("v", "failed"),
        ("run", "running"),
        ("marker", "pending"),
    ]
    assert file_rows(journal) == journaled
    created = created_times(journal)
    jretry_worker.OUT = out
    jretry_worker.LOOPS.clear()
    async with ActorSystem(journal_config(journal)) as system:
        tm = system.task_manager
        assert await tm.wait_for_task("run", timeout=WAIT) == 9
        order = ["p", "a", "g", "o", "v", "run", "marker"]
        assert [i.task_id for i in await tm.get_all_tasks()] == order
        for task_id in ("p", "run", "marker"):
            info = await tm.get_task(task_id)
            assert info.created_utc is not None
            assert info.created_utc.timestamp() == pytest.approx(created[task_id], rel=0, abs=1e-3)
        before = await states(tm)
        assert before["v"] == (FAILED, "JournaledError: ValueError: vanishing 3")

        retried_g = await tm.retry_task("g")
        assert await tm.wait_for_task(retried_g, timeout=WAIT) == 40
        g = await tm.get_task(retried_g)
        assert (g.name, g.status, g.task_type, g.description, g.backend) == (
            "g",
            COMPLETED,
            "io",
            "takes a's result",
            "new",
        )
        assert dict(g.metadata) == {"owner": "ops", "tags": ("x", 1), "retry_of": "g"}
        assert (g.priority, g.dependencies, g.max_retries, g.attempts) == (
            TaskPriority.HIGH,
            ("a",),
            1,
            1,
        )

        app = create_app(system)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
            detail = (await http.get("/api/tasks/o")).json()
            assert (detail["status"], detail["retryable"]) == ("failed", True)
            answer = await http.post("/api/actions/retry/o", headers=ACTION)
            assert answer.status_code == 200
            retried_o = answer.json()["retry"]
            assert answer.json() == {"task_id": "o", "retry": retried_o}
            assert await tm.wait_for_task(retried_o, timeout=WAIT) == "async 7"
            assert jretry_worker.LOOPS == [asyncio.get_running_loop()]  # noqa: SIM300
            o = await tm.get_task(retried_o)
            assert (o.status, o.backend, o.task_type, dict(o.metadata)) == (
                COMPLETED,
                "old",
                "async",
                {"retry_of": "o"},
            )

            done = await states(tm)
            with pytest.raises(JournalDecodeError, match=f"^{re.escape(VANISHED)}$"):
                await tm.retry_task("v")
            refused = await http.post("/api/actions/retry/v", headers=ACTION)
            assert (refused.status_code, refused.json()) == (400, {"error": VANISHED})
        assert await states(tm) == done
        assert done == {
            **before,
            "run": (COMPLETED, None),
            retried_g: (COMPLETED, None),
            retried_o: (COMPLETED, None),
        }
    after = [*journaled[:5], ("run", "completed"), ("marker", "pending")]
    assert file_rows(journal) == [*after, (retried_g, "completed"), (retried_o, "completed")]

    async with ActorSystem(journal_config(journal)) as system:  # a second restart
        tm = system.task_manager
        assert await states(tm) == done
        assert [await tm.get_task_result(t) for t in (retried_g, retried_o)] == [40, "async 7"]
        assert dict((await tm.get_task(retried_g)).metadata)["retry_of"] == "g"
        assert dict((await tm.get_task(retried_o)).metadata)["retry_of"] == "o"
    assert Counter(out.read_text().split("\n")[:-1]) == {
        "double 2": 1,
        "shaky 4": 3,  # two attempts in the worker, the retry
        "ashaky 7": 2,
        "vanishing 3": 1,
        "block 9": 2,  # killed, run again
    }


def make_complex(x: int) -> complex:
    RUNS["make_complex"] += 1
    return complex(x, 1)


def double(x: int) -> int:
    RUNS["double"] += 1
    return 2 * x


def once_failing(name: str, x: Any) -> str:
    RUNS[name] += 1
    if RUNS[name] == 1:
        raise ValueError(f"{name} {x}")
    return f"{name} {x}"


async def test_a_retry_after_a_restart_needs_the_results_it_takes(
    tmp_path: Path, new_system: bool
) -> None:
    """Before the restart ``f`` failed taking ``result_of(a)``, whose result (a complex
    number) the JSON journal could not keep, and ``h`` failed taking ``result_of(b)``;
    ``k`` (plain keyword arguments) failed too. After it ``f``'s retry is refused with
    JournalDecodeError naming ``a`` (it would have run with None); a cleanup removes
    ``b`` (dated two hours back in the file) and ``h``'s retry is refused with
    TaskNotFoundError naming ``b``; nothing changes (the file holds no row of a refused
    retry); ``k``'s retry runs."""
    path = tmp_path / "tasks.db"
    config = {"USE_NEW_TASK_SYSTEM": new_system}
    async with journaled_manager(path, **config) as tm:
        await tm.register_task("a", make_complex, (2,), task_id="a")
        await tm.register_task("b", double, (3,), task_id="b")
        await tm.register_task("f", once_failing, ("f", result_of("a")), task_id="f")
        await tm.register_task("h", once_failing, ("h", result_of("b")), task_id="h")
        await tm.register_task("k", once_failing, (), {"name": "k", "x": [1]}, task_id="k")
        for task_id, message in (("f", "f (2+1j)"), ("h", "h 6"), ("k", "k [1]")):
            with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
                await tm.execute_task(task_id, wait=True)
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "UPDATE tasks SET finished_at = finished_at - 7200, "
            "created_at = created_at - 7200 WHERE id = 'b'"
        )
    clock = FakeClock()
    async with ActorSystem(journal_config(path, **config), clock=clock) as system:
        tm = system.task_manager
        message = (
            "task 'f' cannot be retried: the result of its result_of('a') is not in the "
            "journal (result not serializable: complex); register the task again with "
            "the value"
        )
        with pytest.raises(JournalDecodeError, match=f"^{re.escape(message)}$"):
            await tm.retry_task("f")
        assert await tm.cleanup_completed_tasks(3600) == 1  # b
        before = await states(tm)
        assert set(before) == {"a", "f", "h", "k"}
        message = (
            "task 'h' cannot be retried: it takes the result of task 'b', which was "
            "cleaned up since (MAX_FINISHED_TASKS or cleanup_completed_tasks), so its "
            "result is gone; register the task again with the value"
        )
        with pytest.raises(TaskNotFoundError, match=f"^{re.escape(message)}$"):
            await tm.retry_task("h")
        assert await states(tm) == before
        retried = await tm.retry_task("k")
        assert await tm.wait_for_task(retried, timeout=WAIT) == "k [1]"
        info = await tm.get_task(retried)
        assert (info.backend, dict(info.metadata)) == ("new" if new_system else "old",
                                                        {"retry_of": "k"})  # fmt: skip
        assert isinstance((await tm.get_task("k")).error, JournaledError)
    assert file_rows(path) == [("a", "completed"), ("f", "failed"), ("h", "failed"),
                               ("k", "failed"), (retried, "completed")]  # fmt: skip
    assert RUNS == {"make_complex": 1, "double": 1, "f": 1, "h": 1, "k": 2}


async def test_a_retry_reads_the_row_with_the_serializer_configured_now(tmp_path: Path) -> None:
    """``k`` failed under JOURNAL_SERIALIZER="pickle". A restart with the default JSON
    codec refuses its retry with JournalDecodeError (a pickle it does not trust) and
    changes nothing; a restart with pickle again retries it."""
    path = tmp_path / "tasks.db"
    async with journaled_manager(path, JOURNAL_SERIALIZER="pickle") as tm:
        await tm.register_task("k", once_failing, ("k", 1), task_id="k")
        with pytest.raises(ValueError, match=r"^k 1$"):
            await tm.execute_task("k", wait=True)
    async with journaled_manager(path) as tm:
        before = await states(tm)
        message = (
            "task 'k': its arguments was journaled with pickle; set "
            "JOURNAL_SERIALIZER='pickle' to read it (only if you trust the file)"
        )
        with pytest.raises(JournalDecodeError, match=f"^{re.escape(message)}$"):
            await tm.retry_task("k")
        assert await states(tm) == before == {"k": (FAILED, "JournaledError: ValueError: k 1")}
    assert file_rows(path) == [("k", "failed")]
    async with journaled_manager(path, JOURNAL_SERIALIZER="pickle") as tm:
        retried = await tm.retry_task("k")
        assert await tm.wait_for_task(retried, timeout=WAIT) == "k 1"
    assert file_rows(path) == [("k", "failed"), (retried, "completed")]
    assert RUNS == {"k": 2}
