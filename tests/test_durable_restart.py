"""Durable tasks across restarts (issue 14): what a second system on the same file finds.

Edges added with ``add_dependency``, the dashboard's retry, the task system a task was
registered under, and the whole definition compared when a journaled id is registered
again.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import journal_config, journaled_manager

from actors import (
    ActorSystem,
    DuplicateTaskError,
    TaskPriority,
    TaskStatus,
    result_of,
)
from actors.core import JournalDecodeError
from actors.dashboard import create_app
from actors.journal import SCHEMA_VERSION, JournalStore, function_reference

CALLS: list[str] = []


def combine(a: int, b: int = 0, *, c: int = 0) -> int:
    CALLS.append(f"combine {a} {b} {c}")
    return a + b + c


def other(a: int, b: int = 0, *, c: int = 0) -> int:
    return a - b - c


def fails_once(name: str) -> str:
    CALLS.append(name)
    if CALLS.count(name) == 1:
        raise ValueError(f"{name} failed")
    return name


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


def journaled(path: Path, *columns: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as connection, connection:
        return connection.execute(
            f"SELECT id, {', '.join(columns)} FROM tasks ORDER BY rowid"
        ).fetchall()


# -- add_dependency ------------------------------------------------------------------------


async def test_an_edge_added_after_registration_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        # "first" is journaled before "second": its edge points to a later row.
        await tm.register_task("first", combine, (1,), task_id="first")
        await tm.register_task("second", combine, (2,), task_id="second")
        assert await tm.add_dependency("first", "second") is None
        assert journaled(path, "dependencies") == [("first", '["second"]'), ("second", "[]")]
    async with journaled_manager(path) as tm:
        assert (await tm.get_task("first")).dependencies == ("second",)
        assert await tm.execute_task("first", wait=True) == 1
        assert (await tm.get_task("second")).status is TaskStatus.COMPLETED
    assert CALLS == ["combine 2 0 0", "combine 1 0 0"]


async def test_an_edge_to_a_failed_task_cancels_the_recovered_dependent(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("first", combine, (1,), task_id="first")
        await tm.register_task("broken", fails_once, ("broken",), task_id="broken")
        await tm.add_dependency("first", "broken")
        with pytest.raises(ValueError, match=r"^broken failed$"):
            await tm.execute_task("broken", wait=True)
        # Cancelled at once, like any task whose dependency failed.
        assert (await tm.get_task("first")).status is TaskStatus.CANCELLED
    async with journaled_manager(path) as tm:
        info = await tm.get_task("first")
        assert (info.status, info.dependencies) == (TaskStatus.CANCELLED, ("broken",))


# -- the dashboard's retry -----------------------------------------------------------------


async def test_a_retry_from_the_dashboard_is_journaled(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with ActorSystem(journal_config(path)) as system:
        tm = system.task_manager
        await tm.register_task("flaky", fails_once, ("flaky",), task_id="flaky")
        with pytest.raises(ValueError, match=r"^flaky failed$"):
            await tm.execute_task("flaky", wait=True)
        app = create_app(system)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
            answer = (
                await http.post("/api/actions/retry/flaky", headers={"X-Actorflow-Action": "1"})
            ).json()
        retried = answer["retry"]
        assert answer == {"task_id": "flaky", "retry": retried}
        assert await tm.wait_for_task(retried, timeout=10) == "flaky"
    assert journaled(path, "status", "metadata") == [
        ("flaky", "failed", "{}"),
        (retried, "completed", '{"retry_of":"flaky"}'),
    ]
    async with journaled_manager(path) as tm:
        info = await tm.get_task(retried)
        assert (info.status, dict(info.metadata)) == (TaskStatus.COMPLETED, {"retry_of": "flaky"})
        assert await tm.get_task_result(retried) == "flaky"


async def test_a_task_that_failed_before_a_restart_is_retried_with_its_own_code(
    tmp_path: Path,
) -> None:
    # A failed task read back from the journal has its error, not its function and
    # arguments (recovery does not decode them: an ended task never runs again by
    # itself); retry_task decodes its row and runs the task's code. (Once, a retry ran
    # the placeholder function of an ended task and "completed" with None; then a retry
    # was refused: "its function and arguments were not recovered".)
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("flaky", fails_once, ("flaky",), task_id="flaky")
        with pytest.raises(ValueError, match=r"^flaky failed$"):
            await tm.execute_task("flaky", wait=True)
    async with journaled_manager(path) as tm:
        detail = await tm.get_task_detail("flaky")
        retried = await tm.retry_task("flaky")
        assert await tm.wait_for_task(retried, timeout=5.0) == "flaky"
        ids = [info.task_id for info in await tm.get_all_tasks()]
    assert (detail.info.status, detail.retryable, detail.func) == (TaskStatus.FAILED, True, None)
    assert (ids, CALLS) == (["flaky", retried], ["flaky", "flaky"])


async def test_a_task_whose_function_is_gone_after_a_restart_is_not_retried_as_a_no_op(
    tmp_path: Path,
) -> None:
    # A pending task whose function cannot be found after the restart fails with the
    # decode error; a retry decodes its row again and is refused with that error (it
    # does not run the placeholder in its place), changing nothing.
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("gone", combine, (1,), task_id="gone")
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("UPDATE tasks SET function = 'tests_gone_module:combine'")
    message = (
        "task 'gone': its function tests_gone_module:combine cannot be found "
        "(ModuleNotFoundError: No module named 'tests_gone_module')"
    )
    async with journaled_manager(path) as tm:
        info = await tm.get_task("gone")
        with pytest.raises(JournalDecodeError) as refused:
            await tm.retry_task("gone")
        ids = [info.task_id for info in await tm.get_all_tasks()]
        again = await tm.get_task("gone")
    assert (str(refused.value), str(info.error)) == (message, message)
    assert (info.status, again, ids, CALLS) == (TaskStatus.FAILED, info, ["gone"], [])


# -- the task system that registered it -----------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [(True, False), (False, True)])
async def test_a_recovered_task_goes_back_to_its_task_system(
    tmp_path: Path, first: bool, second: bool
) -> None:
    path = tmp_path / "tasks.db"
    before = "new" if first else "old"
    async with journaled_manager(path, USE_NEW_TASK_SYSTEM=first) as tm:
        await tm.register_task("waits", combine, (1, 2), task_id="waits")
        await tm.register_task("done", combine, (3,), task_id="done")
        assert await tm.execute_task("done", wait=True) == 3
    assert journaled(path, "backend") == [("waits", before), ("done", before)]
    async with journaled_manager(path, USE_NEW_TASK_SYSTEM=second) as tm:
        assert (await tm.get_task("waits")).backend == before
        assert (await tm.get_task("done")).backend == before
        assert await tm.get_task_result("done") == 3
        assert await tm.execute_task("waits", wait=True) == 3
        after = "old" if first else "new"
        fresh = await tm.register_task("fresh", combine, (4,))
        assert (await tm.get_task(fresh)).backend == after
    assert journaled(path, "backend", "status") == [
        ("waits", before, "completed"),
        ("done", before, "completed"),
        (fresh, after, "pending"),
    ]


def _version_1(path: Path) -> None:
    """``path`` as the first release wrote it: schema version 1, no backend column."""
    JournalStore(path).close()
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("ALTER TABLE tasks DROP COLUMN backend")
        connection.execute("UPDATE schema_version SET version = 1")


async def test_a_version_1_journal_is_migrated_and_its_tasks_go_to_the_current_system(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    _version_1(path)
    reference = function_reference(combine, task="v1")
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "INSERT INTO tasks (id, name, task_type, function, args, kwargs, priority, "
            "dependencies, max_retries, retry_delay, description, metadata, "
            "on_dependency_failure, status, created_at, updated_at, executed, attempts, "
            "recoveries) VALUES ('v1', 'v1', 'default', ?, '[5]', '{}', 1, '[]', 0, 0.0, "
            "'', '{}', 'cancel', 'queued', 1.0, 1.0, 1, 0, 0)",
            (reference,),
        )
    async with journaled_manager(path, USE_NEW_TASK_SYSTEM=False) as tm:
        assert await tm.wait_for_task("v1", timeout=10) == 5
        assert (await tm.get_task("v1")).backend == "old"
    with closing(sqlite3.connect(path)) as connection, connection:
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
    assert journaled(path, "backend", "status") == [("v1", None, "completed")]


# -- registering a journaled id again ------------------------------------------------------


def _same(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "job",
        "func": combine,
        "args": (1, result_of("d1")),
        "kwargs": {"c": 3},
        "task_type": "batch",
        "description": "the job",
        "metadata": {"owner": "me", "team": "a"},
        "priority": TaskPriority.HIGH,
        "dependencies": ("d1",),
        "max_retries": 2,
        "retry_delay": 0.5,
        "timeout": 30.0,
        "circuit_breaker": "api",
        "executor": "thread",
        "on_dependency_failure": "cancel",
    }
    base.update(changes)
    return base


_REF = function_reference(combine, task="job")
_OTHER = function_reference(other, task="job")

CHANGES: list[tuple[dict[str, Any], str]] = [
    ({"name": "renamed"}, "its name is 'job', this registration's is 'renamed'"),
    ({"func": other}, f"its func is {_REF!r}, this registration's is {_OTHER!r}"),
    ({"args": (1, 2)}, "its args is (1, result_of('d1')), this registration's is (1, 2)"),
    (
        {"args": (1, result_of("d2"))},
        "its args is (1, result_of('d1')), this registration's is (1, result_of('d2'))",
    ),
    ({"kwargs": {"c": 4}}, "its kwargs is {'c': 3}, this registration's is {'c': 4}"),
    ({"task_type": "web"}, "its task_type is 'batch', this registration's is 'web'"),
    ({"description": "other"}, "its description is 'the job', this registration's is 'other'"),
    (
        {"metadata": {"owner": "you"}},
        "its metadata is {'owner': 'me', 'team': 'a'}, this registration's is {'owner': 'you'}",
    ),
    ({"priority": TaskPriority.LOW}, "its priority is 2, this registration's is 0"),
    ({"dependencies": ("d2",)}, "its dependencies is ('d1',), this registration's is ('d2', 'd1')"),
    ({"max_retries": 3}, "its max_retries is 2, this registration's is 3"),
    ({"retry_delay": 1.5}, "its retry_delay is 0.5, this registration's is 1.5"),
    ({"timeout": None}, "its timeout is 30.0, this registration's is None"),
    ({"circuit_breaker": "db"}, "its circuit_breaker is 'api', this registration's is 'db'"),
    ({"executor": None}, "its executor is 'thread', this registration's is None"),
    (
        {"on_dependency_failure": "run"},
        "its on_dependency_failure is 'cancel', this registration's is 'run'",
    ),
]


async def test_registering_a_journaled_id_compares_the_whole_definition(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("d1", combine, (1,), task_id="d1")
        await tm.register_task("d2", combine, (2,), task_id="d2")
        assert await tm.register_task(**_same(), task_id="job") == "job"
    async with journaled_manager(path) as tm:
        # The same definition (metadata in another order) is the journaled task.
        again = _same(metadata={"team": "a", "owner": "me"})
        assert await tm.register_task(**again, task_id="job") == "job"
        for changes, differs in CHANGES:
            with pytest.raises(DuplicateTaskError) as caught:
                await tm.register_task(**_same(**changes), task_id="job")
            assert str(caught.value) == (
                f"task id 'job' is journaled with another definition: {differs}; pick "
                "another task_id, or clean the old task up first"
            ), changes
        assert (await tm.get_task("job")).status is TaskStatus.PENDING


async def test_an_edge_added_later_does_not_make_the_definition_differ(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("d1", combine, (1,), task_id="d1")
        await tm.register_task("d2", combine, (2,), task_id="d2")
        await tm.register_task("job", combine, (3,), task_id="job", dependencies=("d1",))
        await tm.add_dependency("job", "d2")
    async with journaled_manager(path) as tm:
        # Start-up code registering it as it did, then adding the edge, runs again.
        same = await tm.register_task("job", combine, (3,), task_id="job", dependencies=("d1",))
        assert same == "job"
        await tm.add_dependency("job", "d2")
        assert (await tm.get_task("job")).dependencies == ("d1", "d2")
