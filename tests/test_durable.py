"""Durable tasks (issue 14): the journal wired into the system, recovery at start."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, RecordingPort, journal_config, journaled_manager
from tenacity import wait_fixed

from actors import (
    ActorSystem,
    DuplicateTaskError,
    EventKind,
    InvalidTaskError,
    JournaledError,
    JournalEncodeError,
    TaskCancelledError,
    TaskRecoveryError,
    TaskStatus,
    configure_logging,
    result_of,
)
from actors.core import JournalFullError, JournalLockedError
from actors.engine import Policy
from actors.journal import Codec, JournalStore, StatusChange, TaskRow, function_reference
from actors.runtime import _journal_link
from actors.runtime import _recovery as recovery
from actors.runtime._journal_link import DurableEngine, JournalLink
from supervisors import Kill
from supervisors.testing import FakeClock

RUNS: list[tuple[Any, ...]] = []


def add(a: int, b: int) -> int:
    RUNS.append((a, b))
    return a + b


def boom(message: str) -> None:
    RUNS.append((message,))
    raise ValueError(message)


async def slow_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    RUNS.append(("slow", a, b))
    return a + b


STARTED = threading.Event()
RELEASE = threading.Event()


def stuck() -> str:
    STARTED.set()
    RELEASE.wait(10)  # ignores its cancellation token
    return "released"


def label(index: int, text: str) -> str:
    return f"{index}{text}"


def make_set() -> set[int]:
    return {1, 2}


def describe(value: object) -> str:
    return f"{type(value).__name__}: {value}"


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


def rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as connection, connection:
        return connection.execute(
            "SELECT id, status, executed, attempts, recoveries, result, result_note "
            "FROM tasks ORDER BY rowid"
        ).fetchall()


def journal_row(
    task_id: str, func: Any, args: tuple[Any, ...], status: str, **state: Any
) -> TaskRow:
    codec = Codec("json")
    encoded, kwargs = codec.encode_args(args, {}, task=task_id)
    now = time.time()
    return TaskRow(
        task_id=task_id,
        name=task_id,
        task_type="default",
        function=function_reference(func, task=task_id),
        args=encoded,
        kwargs=kwargs,
        priority=1,
        dependencies=state.pop("dependencies", ()),
        max_retries=state.pop("max_retries", 0),
        retry_delay=0.0,
        timeout=None,
        executor=None,
        circuit_breaker=None,
        description="",
        metadata="{}",
        on_dependency_failure="cancel",
        backend=state.pop("backend", None),
        status=status,
        created_at=now,
        updated_at=now,
        executed=status != "pending",
        **state,
    )


def write(path: Path, *records: TaskRow) -> None:
    with JournalStore(path) as store:
        store.write(records)


# -- acknowledged means durable; what survives a restart ----------------------------------


async def test_a_completed_task_keeps_its_result_and_never_runs_again(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        assert await tm.register_task("add", add, (1, 2), task_id="a") == "a"
        assert rows(path) == [("a", "pending", 0, 0, 0, None, None)]  # committed on return
        assert await tm.execute_task("a", wait=True) == 3
        await tm.register_task("later", add, (3, 4), task_id="p")
    assert rows(path) == [
        ("a", "completed", 1, 1, 0, "3", None),
        ("p", "pending", 0, 0, 0, None, None),  # a shutdown does not cancel durable tasks
    ]
    RUNS.clear()
    async with journaled_manager(path) as tm:
        assert await tm.get_task_result("a") == 3
        assert await tm.get_task_status("a") is TaskStatus.COMPLETED
        assert await tm.get_task_status("p") is TaskStatus.PENDING
        assert await tm.execute_task("p", wait=True) == 7
    assert RUNS == [(3, 4)]


async def test_the_status_changes_a_manager_journals_bind_executed_as_an_int(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite3 binds an int as it is but takes a bool for a type to adapt (two failed
    attribute lookups per parameter): the journal's hot path gives 1 or 0."""
    written: list[Any] = []
    write_batch = JournalStore.write

    def spy(store: JournalStore, batch: Any) -> None:
        written.extend(batch)
        write_batch(store, batch)

    monkeypatch.setattr(JournalStore, "write", spy)
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("add", add, (1, 2), task_id="a")
        assert await tm.execute_task("a", wait=True) == 3
    changes = [(r.status, r.executed) for r in written if type(r) is StatusChange]
    assert [status for status, _ in changes] == ["running", "completed"]
    assert [type(executed) for _, executed in changes] == [int, int]
    assert [executed for _, executed in changes] == [1, 1]
    assert rows(path) == [("a", "completed", 1, 1, 0, "3", None)]


async def test_the_journal_is_written_and_closed_when_the_stop_deadline_ran_out(
    tmp_path: Path,
) -> None:
    # The pool waits for `stuck` until the stop's deadline, before the journal child is
    # stopped (with nothing left of the deadline): the file is closed only after the
    # journal's last write, and keeps every task as it was.
    path = tmp_path / "tasks.db"
    STARTED.clear()
    RELEASE.clear()
    try:
        async with journaled_manager(path, SHUTDOWN_TIMEOUT=0.2) as tm:
            await tm.register_task("add", add, (1, 2), task_id="a")
            assert await tm.execute_task("a", wait=True) == 3
            await tm.register_task("stuck", stuck, task_id="s")
            await tm.register_task("later", add, (3, 4), task_id="p")
            assert await tm.execute_task("s") is True
            assert await asyncio.to_thread(STARTED.wait, 10)
    finally:
        RELEASE.set()
    assert rows(path) == [
        ("a", "completed", 1, 1, 0, "3", None),
        ("s", "running", 1, 1, 0, None, None),  # comes back at the next start
        ("p", "pending", 0, 0, 0, None, None),
    ]
    async with journaled_manager(path) as tm:
        assert await tm.wait_for_task("s", timeout=10) == "released"
        assert (await tm.get_task("s")).recoveries == 1
        assert await tm.get_task_result("a") == 3


async def test_recovery_runs_again_what_had_not_ended(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    write(
        path,
        journal_row("done", add, (1, 1), "completed", attempts=1, result="2"),
        journal_row(
            "bad", boom, ("x",), "failed", attempts=1, error_type="ValueError", error_message="x"
        ),
        journal_row("pending", add, (0, 0), "pending"),
        journal_row("waiting", add, (2, 2), "waiting", dependencies=("queued",)),
        journal_row("queued", add, (3, 3), "queued"),
        journal_row("running", add, (4, 4), "running", attempts=1),
        journal_row("retrying", boom, ("r",), "retrying", attempts=1, max_retries=2),
        journal_row("coro", slow_add, (5, 5), "running", attempts=1),
    )
    async with ActorSystem(journal_config(path)) as system:
        tm = system.task_manager
        assert await tm.wait_for_task("waiting", timeout=10) == 4
        assert await tm.wait_for_task("running", timeout=10) == 8
        assert await tm.wait_for_task("coro", timeout=10) == 10  # on the system's own loop
        with pytest.raises(ValueError, match=r"^r$"):
            await tm.wait_for_task("retrying", timeout=10)
        running = await tm.get_task("running")
        assert (running.recoveries, running.attempts) == (1, 1)
        retrying = await tm.get_task("retrying")
        assert (retrying.recoveries, retrying.attempts, retrying.status) == (0, 3, "failed")
        assert (await tm.get_task("queued")).recoveries == 0
        assert await tm.get_task_result("done") == 2
        error = await tm.get_task_error("bad")
        assert isinstance(error, JournaledError)
        assert (error.error_type, str(error)) == ("ValueError", "ValueError: x")
        assert await tm.get_task_status("pending") is TaskStatus.PENDING
    assert sorted(RUNS, key=repr) == sorted(
        [(2, 2), (3, 3), (4, 4), ("r",), ("r",), ("slow", 5, 5)], key=repr
    )
    assert {row[0]: row[4] for row in rows(path)}["running"] == 1


async def test_a_poison_task_ends_failed_past_max_recoveries(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    write(path, journal_row("poison", add, (1, 1), "running", attempts=1, recoveries=2))
    async with journaled_manager(path, MAX_RECOVERIES=2) as tm:
        with pytest.raises(TaskRecoveryError) as caught:
            await tm.wait_for_task("poison", timeout=10)
        assert str(caught.value) == (
            "task 'poison' was running when the process died 3 times (MAX_RECOVERIES is 2); "
            "it is not run again"
        )
        assert (await tm.get_task("poison")).recoveries == 3
    assert RUNS == []
    assert rows(path)[0][1] == "failed"


# -- registration ------------------------------------------------------------------------


async def test_registering_a_journaled_id_again_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("add", add, (1, 2), task_id="job")
    async with journaled_manager(path) as tm:
        assert await tm.register_task("add", add, (1, 2), task_id="job") == "job"
        with pytest.raises(DuplicateTaskError) as caught:
            await tm.register_task("add", add, (1, 3), task_id="job")
        assert str(caught.value) == (
            "task id 'job' is journaled with another definition: its args is (1, 2), this "
            "registration's is (1, 3); pick another task_id, or clean the old task up first"
        )
        changed = (
            r": its func is '(tests\.)?test_durable:add', this registration's is "
            r"'(tests\.)?test_durable:boom';"
        )
        with pytest.raises(DuplicateTaskError, match=changed):
            await tm.register_task("add", boom, (1, 2), task_id="job")
        assert await tm.execute_task("job", wait=True) == 3
    assert [row[:2] for row in rows(path)] == [("job", "completed")]


async def test_durable_false_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        memory = await tm.register_task("mem", add, (1, 2), durable=False)
        local = await tm.register_task("lambda", lambda: 5, durable=False)
        assert await tm.execute_task(local, wait=True) == 5
        assert await tm.execute_task(memory, wait=True) == 3
        with pytest.raises(JournalEncodeError, match=r"is a lambda.*pass durable=False"):
            await tm.register_task("lambda", lambda: 5)
        with pytest.raises(
            JournalEncodeError,
            match=r"^task 'obj' cannot be durable: argument 0 is a object, not JSON-serializable",
        ):
            await tm.register_task("obj", add, (object(), 1))
        with pytest.raises(JournalEncodeError, match=r"retry_wait .* use retry_delay"):
            await tm.register_task("w", add, (1, 2), max_retries=1, retry_wait=wait_fixed(1))
        with pytest.raises(InvalidTaskError, match=r"^durable must be a bool or None, got 1$"):
            await tm.register_task("x", add, (1, 2), durable=1)  # type: ignore[arg-type]
        assert len(await tm.get_all_tasks()) == 2
    assert rows(path) == []


async def test_durable_true_needs_a_journal() -> None:
    async with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        with pytest.raises(
            InvalidTaskError,
            match=r"^durable=True needs a journal: set JOURNAL_PATH \(or leave durable unset\)$",
        ):
            await system.task_manager.register_task("add", add, (1, 2), durable=True)


async def test_results_that_do_not_serialize_are_recorded_as_such(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("set", make_set, task_id="s")
        assert await tm.execute_task("s", wait=True) == {1, 2}
    assert rows(path)[0][5] == '{"__actorflow__":"set","items":[1,2]}'
    async with journaled_manager(path) as tm:
        assert await tm.get_task_result("s") == {1, 2}


async def test_a_result_of_task_survives_a_restart(tmp_path: Path) -> None:
    """``result_of`` (issue 12) is journaled under its stable tag; after a restart the
    dependency holds and the placeholder takes the journaled result of the upstream
    task, which does not run again."""
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("up", add, (1, 2), task_id="up")
        await tm.register_task("down", label, (result_of("up"), "x"), task_id="down")
        assert await tm.execute_task("up", wait=True) == 3
    with closing(sqlite3.connect(path)) as connection, connection:
        args, deps = connection.execute(
            "SELECT args, dependencies FROM tasks WHERE id = 'down'"
        ).fetchone()
    assert args == '[{"__actorflow__":"placeholder","type":"actorflow.result_of","value":"up"},"x"]'
    assert deps == '["up"]'
    async with journaled_manager(path) as tm:
        assert (await tm.get_task("down")).dependencies == ("up",)
        assert await tm.execute_task("down", wait=True) == "3x"
    assert RUNS == [(1, 2)]


async def test_a_run_anyway_task_keeps_its_policy_across_a_restart(tmp_path: Path) -> None:
    """``on_dependency_failure="run"`` is journaled: after a restart the task still runs
    with the journaled error of its failed dependency in place of its result."""
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        await tm.register_task("up", boom, ("nope",), task_id="up")
        with pytest.raises(ValueError, match=r"^nope$"):
            await tm.execute_task("up", wait=True)
        await tm.register_task(
            "down", describe, (result_of("up"),), task_id="down", on_dependency_failure="run"
        )
    async with journaled_manager(path) as tm:
        assert await tm.execute_task("down", wait=True) == "JournaledError: ValueError: nope"
    assert RUNS == [("nope",)]


async def test_submit_takes_durable(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        assert await tm.submit(add, 2, 3, task_id="kept") == 5
        assert await tm.submit(add, 4, 5, task_id="memory", durable=False) == 9
        assert await tm.submit(add, 2, 3, task_id="kept") == 5  # idempotent: not run again
        with pytest.raises(JournalEncodeError, match=r"is a lambda.*pass durable=False"):
            await tm.submit(lambda: 5)
    assert [row[:3] for row in rows(path)] == [("kept", "completed", 1)]
    assert RUNS == [(2, 3), (4, 5)]
    async with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        with pytest.raises(InvalidTaskError, match=r"^durable=True needs a journal"):
            await system.task_manager.submit(add, 1, 2, durable=True)


# -- cleanup and growth ------------------------------------------------------------------


async def test_cleanup_deletes_from_the_journal_and_the_file_stops_growing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    pages: list[int] = []
    async with journaled_manager(path) as tm:
        for round_ in range(5):
            ids = [await tm.register_task("label", label, (i, "x" * 200)) for i in range(300)]
            await asyncio.gather(*(tm.execute_task(task_id, wait=True) for task_id in ids))
            assert await tm.cleanup_completed_tasks(max_age=0) == 300 + (round_ > 0)
            # Committed on return, after the deletions (one journal, batches in order).
            marker = await tm.register_task("label", label, (round_, ""))
            assert [row[0] for row in rows(path)] == [marker]
            await tm.execute_task(marker, wait=True)
            with closing(sqlite3.connect(path)) as connection, connection:
                pages.append(connection.execute("PRAGMA page_count").fetchone()[0])
        assert await tm.cleanup_completed_tasks(max_age=0) == 1
    assert rows(path) == []
    assert max(pages) < pages[0] + 18  # less than one round of rows: freed pages are reused


# -- a queued record nobody waits for is deferred (DEFER_FOR) -------------------------------

GATE: list[asyncio.Event] = []


async def gated() -> str:
    await GATE[0].wait()
    return "open"


async def _queued(tm: Any, task_id: str) -> asyncio.Future[Any]:
    """``execute_task(task_id, wait=True)`` (returned), once the task is queued."""
    async with tm.events() as stream:
        waited = asyncio.ensure_future(tm.execute_task(task_id, wait=True))
        event = await asyncio.wait_for(anext(aiter(stream)), 10)
        while (event.kind, event.task_id) != (EventKind.QUEUED, task_id):
            event = await asyncio.wait_for(anext(aiter(stream)), 10)
    return waited


async def _queued_behind_a_gate(tm: Any, path: Path) -> asyncio.Future[Any]:
    """``gated`` running in the only slot, ``later`` queued behind it by an
    ``execute_task(wait=True)`` (returned): the file says ``later`` is pending, as its
    queued record waits; ``marker``'s registration committed after it was deferred."""
    await tm.register_task("gated", gated, task_id="gated")
    await tm.register_task("add", add, (1, 2), task_id="later")
    assert await tm.execute_task("gated") is True  # answered once committed
    waited = await _queued(tm, "later")
    # The journal had the batch of "later"'s queued record before "marker"'s.
    await tm.register_task("add", add, (0, 0), task_id="marker")
    assert rows(path) == [
        ("gated", "running", 1, 1, 0, None, None),
        ("later", "pending", 0, 0, 0, None, None),
        ("marker", "pending", 0, 0, 0, None, None),
    ]
    return waited


@asynccontextmanager
async def _one_slot_gated(
    path: Path, clock: FakeClock | None = None, **config: Any
) -> AsyncIterator[tuple[ActorSystem, asyncio.Future[Any]]]:
    """A system journaling to ``path`` with one slot, on ``clock`` (a new `FakeClock` if
    None), a fresh ``GATE``, and `_queued_behind_a_gate` done: yields the system and
    ``later``'s ``execute_task(wait=True)``; the system stops when the block ends."""
    GATE[:] = [asyncio.Event()]
    settings = journal_config(path, MAX_CONCURRENT_TASKS=1, **config)
    async with ActorSystem(settings, clock=clock or FakeClock()) as system:
        yield system, await _queued_behind_a_gate(system.task_manager, path)


async def test_a_queued_record_nobody_waits_for_is_written_within_defer_for(
    tmp_path: Path,
) -> None:
    """Nobody has been told that ``later`` is durable (its ``execute_task(wait=True)``
    answers with the result, after its running record): its queued record waits up to
    `DEFER_FOR` seconds on the system's clock for a later record of the task, and is
    written then; an acknowledged ``execute_task`` is committed when it returns."""
    path = tmp_path / "tasks.db"
    clock = FakeClock()
    async with _one_slot_gated(path, clock) as (system, waited):
        tm = system.task_manager
        assert await tm.execute_task("marker") is True  # answered: committed, not deferred
        assert rows(path)[2] == ("marker", "queued", 1, 0, 0, None, None)
        assert rows(path)[1] == ("later", "pending", 0, 0, 0, None, None)
        clock.advance(_journal_link.DEFER_FOR)  # the manager's timer: before the next batch
        await tm.register_task("add", add, (5, 5), task_id="after")
        assert rows(path)[1] == ("later", "queued", 1, 0, 0, None, None)
        GATE[0].set()
        assert await asyncio.wait_for(waited, 10) == 3
        assert await tm.wait_for_task("marker", timeout=10) == 0
    assert [row[:3] for row in rows(path)] == [
        ("gated", "completed", 1),
        ("later", "completed", 1),
        ("marker", "completed", 1),
        ("after", "pending", 0),
    ]


async def test_the_timer_is_armed_again_for_a_record_held_after_it_fired(
    tmp_path: Path,
) -> None:
    """The timer that wrote ``later``'s held record is gone; ``again``'s queued record,
    held after it, gets a timer of its own and is written `DEFER_FOR` seconds on."""
    path = tmp_path / "tasks.db"
    clock = FakeClock()
    async with _one_slot_gated(path, clock) as (system, waited):
        tm = system.task_manager
        assert clock.advance(_journal_link.DEFER_FOR) == 1
        await tm.register_task("add", add, (3, 4), task_id="again")
        assert rows(path)[1] == ("later", "queued", 1, 0, 0, None, None)
        waited_again = await _queued(tm, "again")
        await tm.register_task("add", add, (5, 5), task_id="after")  # committed after it
        assert rows(path)[3] == ("again", "pending", 0, 0, 0, None, None)
        assert clock.advance(_journal_link.DEFER_FOR) == 1
        await tm.register_task("add", add, (6, 6), task_id="last")
        assert rows(path)[3] == ("again", "queued", 1, 0, 0, None, None)
        GATE[0].set()
        assert await asyncio.wait_for(waited, 10) == 3
        assert await asyncio.wait_for(waited_again, 10) == 7
    done = {row[0] for row in rows(path) if row[1:3] == ("completed", 1)}
    assert done == {"gated", "later", "again"}


async def test_each_held_queued_record_waits_defer_for_from_its_own_hold(
    tmp_path: Path,
) -> None:
    """The timer writes the records held `DEFER_FOR` ago, not every record held by then:
    one held later keeps the rest of its time for its task's running record (which
    makes it needless), and is written at its own `DEFER_FOR`."""
    path = tmp_path / "tasks.db"
    clock = FakeClock()
    async with _one_slot_gated(path, clock) as (system, waited):  # "later" held at 0.0
        tm = system.task_manager
        clock.advance(0.5)
        async with tm.events() as stream:
            second = asyncio.ensure_future(tm.execute_task("marker", wait=True))
            event = await asyncio.wait_for(anext(aiter(stream)), 10)
            while (event.kind, event.task_id) != (EventKind.QUEUED, "marker"):
                event = await asyncio.wait_for(anext(aiter(stream)), 10)
        clock.advance(0.5)  # 1.0: "later"'s DEFER_FOR, not "marker"'s
        await tm.register_task("add", add, (5, 5), task_id="after")
        assert rows(path)[1:3] == [
            ("later", "queued", 1, 0, 0, None, None),
            ("marker", "pending", 0, 0, 0, None, None),
        ]
        clock.advance(0.5)  # 1.5: "marker"'s
        await tm.register_task("add", add, (6, 6), task_id="last")
        assert rows(path)[2] == ("marker", "queued", 1, 0, 0, None, None)
        GATE[0].set()
        assert await asyncio.wait_for(waited, 10) == 3
        assert await asyncio.wait_for(second, 10) == 0


async def test_a_deferred_queued_record_is_written_at_shutdown_and_runs_again(
    tmp_path: Path,
) -> None:
    """A graceful shutdown writes the deferred records: a task queued at the shutdown
    comes back queued, and runs at the next start."""
    path = tmp_path / "tasks.db"
    async with _one_slot_gated(path) as (_, waited):
        pass
    with pytest.raises(
        TaskCancelledError, match=r"^task 'later' was cancelled: the actor system shut down$"
    ):
        await asyncio.wait_for(waited, 10)
    assert rows(path)[:2] == [
        ("gated", "running", 1, 1, 0, None, None),
        ("later", "queued", 1, 0, 0, None, None),
    ]
    assert RUNS == []
    GATE[0].set()
    async with journaled_manager(path) as tm:
        assert await tm.wait_for_task("later", timeout=10) == 3
        assert await tm.wait_for_task("gated", timeout=10) == "open"
    assert RUNS == [(1, 2)]


async def test_a_held_queued_record_outlives_a_killed_manager(tmp_path: Path) -> None:
    """The manager holds the queued record (its task id, in its engine, which outlives
    incarnations): a `Kill` loses nothing, and the timer still writes it."""
    path = tmp_path / "tasks.db"
    clock = FakeClock()
    async with _one_slot_gated(path, clock, RESTART_BACKOFF_INITIAL=0.0) as (system, waited):
        tm = system.task_manager
        system.supervisor.child("task_manager").tell(Kill())
        assert await tm.get_task_status("later") is TaskStatus.QUEUED  # the next incarnation
        assert rows(path)[1] == ("later", "pending", 0, 0, 0, None, None)
        clock.advance(_journal_link.DEFER_FOR)
        await tm.register_task("add", add, (5, 5), task_id="after")
        assert rows(path)[1] == ("later", "queued", 1, 0, 0, None, None)
        GATE[0].set()
        assert await asyncio.wait_for(waited, 10) == 3


async def test_a_held_queued_record_is_written_by_a_stop_without_shutdown(
    tmp_path: Path,
) -> None:
    """`stop_sync` (at interpreter exit, say) sends no `Shutdown`: the manager's stop
    sends its held records to the journal, which stops after the managers."""
    path = tmp_path / "tasks.db"
    async with _one_slot_gated(path) as (system, waited):
        await asyncio.to_thread(system.stop_sync)
        GATE[0].set()
    waited.cancel()
    assert rows(path)[:2] == [
        ("gated", "running", 1, 1, 0, None, None),
        ("later", "queued", 1, 0, 0, None, None),
    ]


async def test_a_finished_task_kept_for_its_dependent_goes_once_taken_despite_the_timer(
    tmp_path: Path,
) -> None:
    """The engine keeps a finished task past ``MAX_FINISHED_TASKS`` while a dependent has
    yet to take its result (`result_of`), and bounds it again once taken. The held
    queued records' timer (`DEFER_FOR`) running meanwhile must not make it forget that
    task: it leaves memory and the file once its dependent has taken the result."""
    path = tmp_path / "tasks.db"
    clock = FakeClock()
    settings = journal_config(path, MAX_FINISHED_TASKS=1)
    async with ActorSystem(settings, clock=clock) as system:
        tm = system.task_manager
        await tm.register_task("label", label, (1, "x"), task_id="a")
        assert await tm.execute_task("a", wait=True) == "1x"
        await tm.register_task("label", label, (result_of("a"), "y"), task_id="b")
        await tm.register_task("label", label, (3, "z"), task_id="c")
        assert await tm.execute_task("c", wait=True) == "3z"  # the bound would drop a
        clock.advance(_journal_link.DEFER_FOR)  # the manager's timer, if one is armed
        await tm.register_task("label", label, (4, "w"), task_id="d")  # a batch after it
        assert await tm.execute_task("b", wait=True) == "1xy"
        assert await tm.get_task_status("b") is TaskStatus.COMPLETED
        statuses = await tm.get_all_tasks()
    assert sorted(task.task_id for task in statuses) == ["b", "d"]
    assert [row[:2] for row in rows(path)] == [("b", "completed"), ("d", "pending")]


# -- a full disk, a locked file: reported, the system goes on from memory, and new durable
# -- tasks are refused until a write succeeds


async def test_a_full_disk_is_an_error_event_and_a_metric(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with ActorSystem(journal_config(path)) as system:
        tm = system.task_manager
        spare = await tm.register_task("label", label, (7, "s"), task_id="spare")  # committed
        store = system._journal.store  # type: ignore[union-attr]
        with store._lock:
            count = store._connection.execute("PRAGMA page_count").fetchone()[0]
            store._connection.execute(f"PRAGMA max_page_count = {count}")
        async with tm.events() as stream:
            first = await tm.register_task("label", label, (0, "x" * 5000))  # its write fails
            assert await tm.execute_task(first, wait=True) == f"0{'x' * 5000}"  # from memory
            event = await asyncio.wait_for(anext(aiter(stream)), 10)
            while event.kind is not EventKind.JOURNAL_ERROR:
                event = await asyncio.wait_for(anext(aiter(stream)), 10)
        assert event.detail["error"] == "JournalFullError"
        assert event.detail["message"].startswith(f"cannot write journal {str(path)!r}: the disk")
        with pytest.raises(JournalFullError) as caught:
            await tm.register_task("label", label, (1, "x" * 5000))
        assert str(caught.value) == (
            f"durable task 'label' not registered: {event.detail['message']}; the journal "
            "tries that write again every 1 s and refuses new durable tasks until it "
            "succeeds (durable=False keeps a task in memory only)"
        )
        memory = await tm.register_task("label", label, (2, "m"), durable=False)
        assert await tm.execute_task(memory, wait=True) == "2m"
        metrics = await tm.get_metrics()
        assert metrics.journal_errors is not None
        assert metrics.journal_errors >= 1
        with store._lock:
            store._connection.execute("PRAGMA max_page_count = 1000000")
        # registered again (idempotent): answered after a commit, which writes the rest
        assert await tm.register_task("label", label, (7, "s"), task_id="spare") == spare
        marker = await tm.register_task("label", label, (9, ""))
    assert [row[:2] for row in rows(path)] == [
        (spare, "pending"),
        (first, "completed"),
        (marker, "pending"),
    ]


async def test_a_locked_file_is_an_error_event_and_a_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "BUSY_TIMEOUT", 0.1)
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        first = await tm.register_task("add", add, (1, 2))
        spare = await tm.register_task("add", add, (5, 5), task_id="spare")
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            assert await tm.execute_task(first, wait=True) == 3  # its writes fail
            with pytest.raises(JournalLockedError, match=r"^durable task 'add' not registered"):
                await tm.register_task("add", add, (2, 3))
            metrics = await tm.get_metrics()
            assert metrics.journal_errors is not None
            assert metrics.journal_errors >= 1
            other.execute("ROLLBACK")
        finally:
            other.close()
        # registered again (idempotent): answered after a commit, which writes the rest
        assert await tm.register_task("add", add, (5, 5), task_id="spare") == spare
        second = await tm.register_task("add", add, (2, 3))
    assert rows(path) == [
        (first, "completed", 1, 1, 0, "3", None),
        (spare, "pending", 0, 0, 0, None, None),
        (second, "pending", 0, 0, 0, None, None),
    ]


async def test_without_a_journal_the_metric_is_none() -> None:
    async with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        assert (await system.task_manager.get_metrics()).journal_errors is None


# -- recovery's re-runs: after the system is up, in chunks --------------------------------


class _Journal:
    """The journal's handle: keeps the batches told."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def tell(self, batch: Any) -> None:
        self.sent.append(batch)


def _recovered(rows: list[TaskRow], max_finished: int = 0) -> tuple[Any, RecordingPort, list[Any]]:
    """A manager's engine with ``rows`` restored, its port, and what its link sends."""
    engine = DurableEngine(Policy.scheduler(1, max_finished), FakeClock(100.0))
    port = RecordingPort()
    engine.attach(port)
    recovery.restore(
        engine, rows, codec=Codec("json"), bridge=None,  # type: ignore[arg-type]
        max_recoveries=3,
    )  # fmt: skip
    journal = _Journal()
    link = JournalLink(engine, journal, Codec("json"), _Journal())  # type: ignore[arg-type]
    return link, port, journal.sent


def test_recovery_writes_back_only_what_differs_from_the_file() -> None:
    lost = journal_row("lost", add, (6, 6), "queued")._replace(function="no_such_module:add")
    link, port, sent = _recovered(
        [
            journal_row("done", add, (1, 1), "completed", attempts=1, result="2"),
            journal_row("pending", add, (0, 0), "pending"),
            journal_row("queued", add, (3, 3), "queued"),
            journal_row("running", add, (4, 4), "running", attempts=1),
            journal_row("poison", add, (5, 5), "running", attempts=1, recoveries=3),
            lost,
        ]
    )
    # The task running at the crash is executed again at once (its record must not
    # say "pending" in the file); "queued" waits for its chunk.
    assert link.start() is True
    assert port.started == [("running", 1)]
    assert link.engine.tasks["queued"].status is TaskStatus.PENDING
    link.send(link.engine.transitions)
    (batch,) = sent
    assert sorted((r.task_id, r.status, r.executed, r.recoveries) for r in batch.records) == [
        ("lost", "failed", True, 0),
        ("poison", "failed", True, 4),
        ("running", "running", True, 1),
    ]


def test_recovered_tasks_run_again_in_chunks_and_a_call_about_one_puts_it_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_journal_link, "RERUN_CHUNK", 2)
    link, port, _ = _recovered([journal_row(f"q{i}", add, (i, i), "queued") for i in range(5)])
    tasks = link.engine.tasks
    assert link.start() is True
    assert [tasks[f"q{i}"].status for i in range(5)] == [TaskStatus.PENDING] * 5
    link.promote("q4")  # execute_task, wait_for_task or add_dependency about it
    assert port.started == [("q4", 1)]
    assert link.rerun_next() is True
    assert link.rerun_next() is True
    assert link.rerun_next() is False  # q4's turn: executed already, left as it is
    assert port.started == [("q4", 1)]  # one slot (MAX_CONCURRENT_TASKS 1)
    assert [tasks[f"q{i}"].status for i in range(4)] == [TaskStatus.QUEUED] * 4
    assert link.engine.rerun == []
    assert link.engine.rerunning == set()


def test_tasks_evicted_while_recovered_are_deleted_from_the_file() -> None:
    # MAX_FINISHED_TASKS 2: putting three completed tasks back evicts the oldest one.
    link, _, sent = _recovered(
        [journal_row(f"done{i}", add, (i, i), "completed", attempts=1, result="2")
         for i in range(3)],
        max_finished=2,
    )  # fmt: skip
    assert sorted(link.engine.tasks) == ["done1", "done2"]
    assert link.start() is False
    link.send(link.engine.transitions)
    (batch,) = sent
    assert [(type(r).__name__, r.task_id) for r in batch.records] == [("Deletion", "done0")]
    assert sorted(link.engine.rows) == ["done1", "done2"]


def test_the_recovered_tasks_loop_blocked_at_stop_is_abandoned_with_a_warning(
    log_records: list[dict[str, Any]],
) -> None:
    # A recovered task that blocks the system's loop when the system stops: the loop
    # thread gets the time left of the stop, then is abandoned, and a warning says so.
    configure_logging(True)
    loop_thread = recovery.SystemLoop()
    blocking, release = threading.Event(), threading.Event()

    def block() -> None:
        blocking.set()
        release.wait(WAIT)

    loop_thread.loop.call_soon_threadsafe(block)
    assert blocking.wait(WAIT)
    try:
        loop_thread.stop(0.0)
        assert not loop_thread.loop.is_closed()  # its thread still runs `block`
    finally:
        release.set()
    warnings = [r["message"] for r in log_records if r["level"].name == "WARNING"]
    assert warnings == [
        "the recovered tasks' loop thread did not end within 0.000s (the time left of the "
        "stop's deadline); abandoned while a task of it blocks the loop"
    ]
    loop_thread.stop(WAIT)  # `block` returned: the loop ends and is closed
    assert loop_thread.loop.is_closed()
