"""The journal actor under a burst (issue 13): the attempts of the batches waiting in its
mailbox start after one transaction of their ``running`` records, not one per batch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from actors.journal import JournalStore, JournalWriter, StatusChange, TaskRow
from actors.runtime._journal import JournalActor, JournalState
from actors.runtime._journal_link import AttemptView
from actors.runtime.messages import JournalBatch


class _Launcher:
    """A manager as `start_all` sees it: records the attempts it launches."""

    def __init__(self) -> None:
        self.launched: list[tuple[str, int]] = []

    @property
    def report(self) -> Any:
        raise AssertionError("no attempt fails to start here")

    def _launch(self, execution: Any, view: Any) -> None:
        self.launched.append((view.task_id, view.attempts))


class _Spied(JournalStore):
    """A store that records the tasks of each batch it writes (kind, task id)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.written: list[list[tuple[str, str]]] = []

    def write(self, batch: Any) -> None:
        self.written.append([(type(r).__name__, r.task_id) for r in batch])
        super().write(batch)


class _Execution:
    cancel_requested = False


def _row(task_id: str) -> TaskRow:
    now = time.time()
    return TaskRow(task_id, task_id, "default", "m:f", "[]", "{}", 1, (), 0, 0.0, None,
                   None, None, "", "{}", "cancel", "new", "pending", now, now)  # fmt: skip


def _running(task_id: str) -> StatusChange:
    return StatusChange(task_id, "running", time.time(), 1, 1, 0)


def _start(launcher: _Launcher, task_id: str) -> tuple[Any, ...]:
    view = AttemptView(task_id, 1, print, (), {}, None, None, False)
    return (launcher, _Execution(), view)


def test_the_batches_of_a_burst_start_their_attempts_after_one_transaction(
    tmp_path: Path,
) -> None:
    store = _Spied(tmp_path / "tasks.db")
    try:
        store.write([_row("a"), _row("b"), _row("c")])
        written = store.written
        written.clear()
        state = JournalState(store, None)  # type: ignore[arg-type]
        actor = JournalActor(None, state)  # type: ignore[arg-type]
        launcher = _Launcher()
        actor.on_receive(JournalBatch([_running("a")], [], [_start(launcher, "a")], ["a"]))
        actor.on_receive(JournalBatch([_running("b"), _running("c")], [], [_start(launcher, "b")],
                                      ["b"]))  # fmt: skip
        assert (written, launcher.launched) == ([], [])  # more may come: the mailbox decides
        actor.on_idle()  # the mailbox ran dry
        assert written == [
            [("StatusChange", "a"), ("StatusChange", "b")],  # the starting tasks', alone
            [("StatusChange", "c")],
        ]
        assert launcher.launched == [("a", 1), ("b", 1)]
        assert (state.starting, state.early, state.starts, len(state.writer)) == ([], [], [], 0)
    finally:
        store.close()


def test_flush_changes_writes_a_task_started_twice_once(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "tasks.db")
    try:
        store.write([_row("a")])
        writer = JournalWriter(store, on_error=lambda error, records: None)
        writer.add_all([_running("a")])
        statements: list[str] = []
        store._connection.set_trace_callback(statements.append)  # what reaches SQLite
        assert writer.flush_changes(["a", "a"]) is True
        store._connection.set_trace_callback(None)
        assert len(writer) == 0
        assert [s.split(" ", 1)[0] for s in statements] == ["UPDATE"]  # one change, once
        assert [(row.task_id, row.status, row.attempts) for row in store.load()] == [
            ("a", "running", 1)
        ]
    finally:
        store.close()
