"""The records a journal batch holds: a whole task, a change of its state, a deletion."""

from __future__ import annotations

from typing import NamedTuple

from actors.journal._codec import Payload

__all__ = ["STATE_AT", "Deletion", "Record", "StatusChange", "TaskRow", "merge"]


class TaskRow(NamedTuple):
    """One task as journaled: what re-registers it, and its state.

    Written as an upsert (the row is replaced, its place in load order kept); `load`
    returns these. Payloads come from `Codec`: ``str`` for JSON, ``bytes`` for pickle.
    A named tuple, like the other records: 100,000 of them load in a fraction of the
    time frozen dataclasses take.
    """

    task_id: str
    name: str
    task_type: str
    function: str
    """``"module:qualname"``, from `function_reference`."""
    args: Payload
    """The positional arguments as given (``result_of`` placeholders tagged)."""
    kwargs: Payload
    priority: int
    dependencies: tuple[str, ...]
    max_retries: int
    retry_delay: float
    timeout: float | None
    executor: str | None
    circuit_breaker: str | None
    """The breaker's name, or None."""
    description: str
    metadata: Payload
    on_dependency_failure: str
    """``"cancel"`` or ``"run"``: what a failed dependency does to the task (issue 12)."""
    backend: str | None
    """The task system that registered it (``"new"`` or ``"old"``): recovery puts it
    back there. None (a file of schema version 1): the system's current one."""
    status: str
    """A `TaskStatus` value (``"pending"``, ``"running"``...)."""
    created_at: float
    """Wall-clock seconds (``time.time``), like every time in the journal."""
    updated_at: float
    executed: bool = False
    """``execute_task`` had been called: recovery runs it again unless it ended."""
    attempts: int = 0
    recoveries: int = 0
    """Times recovery has restarted it after a crash (capped by ``MAX_RECOVERIES``)."""
    result: Payload | None = None
    result_note: str | None = None
    """``"result not serializable: <type>"`` when a result could not be journaled."""
    error_type: str | None = None
    error_message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


class StatusChange(NamedTuple):
    """The state of a task after a transition; replaces the state fields of its row.

    Every field is the new value (None clears): the engine knows the whole state at
    each transition. A change of a task with no row changes nothing.

    Its fields after ``task_id`` are `TaskRow`'s state fields (but ``created_at``),
    written again: a named tuple cannot extend another, mypy types only the fields a
    class writes out, and a nested state tuple cost ~115 ns more to build and ~145 ns
    to flatten for SQLite per change (timeit). The assert under `STATE_AT` keeps the
    two in step.
    """

    task_id: str
    status: str
    updated_at: float
    executed: bool = False
    """True sets the row's flag; False leaves it as it is (it is never cleared). The
    task managers give 1 or 0 (an int binds faster than a bool: see `JournalLink`)."""
    attempts: int = 0
    recoveries: int = 0
    result: Payload | None = None
    result_note: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


class Deletion(NamedTuple):
    """The task's row is deleted (a cleanup); deleting a missing row is no error."""

    task_id: str


Record = TaskRow | StatusChange | Deletion
"""One entry of a batch given to `JournalStore.write`."""


def merge(earlier: Record | None, later: Record) -> Record:
    """One record with the effect of ``earlier`` then ``later`` (of the same task)."""
    if isinstance(later, StatusChange):
        if isinstance(earlier, TaskRow):
            # The definition and ``created_at`` of the row, the state of the change.
            return _make_row(
                (
                    *earlier[:STATE_AT], later.status, earlier.created_at, later.updated_at,
                    earlier.executed or later.executed, *later[4:],
                )
            )  # fmt: skip
        if isinstance(earlier, StatusChange) and earlier.executed and not later.executed:
            return later._replace(executed=True)
        if isinstance(earlier, Deletion):
            return earlier  # the row is gone: the change would change nothing
    return later


_make_row = TaskRow._make
STATE_AT = TaskRow._fields.index("status")
"""`TaskRow`'s definition fields come first; then ``status``, ``created_at`` and the
fields of `StatusChange` from ``updated_at`` on, in the same order."""
assert TaskRow._fields[STATE_AT:] == ("status", "created_at", *StatusChange._fields[2:])
