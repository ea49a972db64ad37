"""A task's record, owned by the engine (live, or kept once it completed), and the
record of a failed attempt."""

from __future__ import annotations

import traceback
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

from actors.core import TaskInfo, TaskPriority, TaskStatus, attribute_reader
from actors.engine._validate import NO_METADATA

if TYPE_CHECKING:
    from types import TracebackType

    from tenacity.wait import wait_base

    from actors.core import LoopBridge, ReplyTo
    from actors.engine._breaker import CircuitBreaker, Permit
    from actors.engine._graph import DependencyGraph
    from actors.engine._validate import TaskSpec

__all__ = [
    "MAX_FAILURES_KEPT",
    "Attempt",
    "AttemptFailure",
    "LiveRecord",
    "TaskRecord",
    "Timer",
    "failure_of",
    "outcome_error",
]

MAX_FAILURES_KEPT = 10
"""Failed attempts a task keeps (the latest ones), with their formatted tracebacks."""
_TRACEBACK_CHARS = 8000
_MESSAGE_CHARS = 2000


class Attempt(Protocol):
    """A started attempt, as the engine sees it (`actors.runtime._attempt.Execution`)."""

    def claim(self) -> bool:
        """Decide the attempt's outcome: True for the first caller only."""

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the attempt (from any thread; idempotent); ``error`` says why (the
        task's timeout or cancellation error; what a trace of the attempt shows)."""


class Timer(Protocol):
    def cancel(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """One failed attempt of a task: its number, when it ended and how."""

    attempt: int
    at: float
    error_type: str
    message: str
    traceback: str


def failure_of(attempt: int, at: float, error: BaseException | None) -> AttemptFailure:
    """The record of a failed attempt (message and traceback cut to a bounded length)."""
    if error is None:
        return AttemptFailure(attempt, at, "", "", "")
    try:
        message = str(error)
        text = "".join(traceback.format_exception(error))
    except Exception as exc:  # a broken __str__ must not crash the manager
        message = f"<unprintable {type(error).__name__}: {exc!r}>"
        text = message
    if len(text) > _TRACEBACK_CHARS:
        text = "...\n" + text[-_TRACEBACK_CHARS:]
    return AttemptFailure(attempt, at, type(error).__qualname__, message[:_MESSAGE_CHARS], text)


def outcome_error(record: TaskRecord) -> BaseException | None:
    """``record.error``, with the traceback it had when it was first handed out.

    A caller that raises an error adds its own frames to its traceback, and every
    caller of a failed task gets the same error object, which the task keeps until it
    is cleaned up: without the reset, each wait on it added a caller's frames (their
    locals, their event loop) for good. (asyncio's futures reset theirs the same way.)
    """
    error = record.error
    if error is not None:
        first = getattr(record, "error_tb", None)  # (an unset slot until the first)
        if first is not None and first[0] is error:
            error.__traceback__ = first[1]
        else:
            record.error_tb = (error, error.__traceback__)
    return error


_LEADING = attrgetter(
    "name", "func", "args", "kwargs", "task_type", "description", "metadata", "priority"
)
"""A record's fields that `TaskSpec` holds before its ``dependencies`` (in its order)."""
_TRAILING = attrgetter(
    "max_retries", "retry_delay", "retry_wait", "timeout", "is_coroutine", "breaker",
    "executor", "trace",
)  # fmt: skip
"""Those between its ``dependencies`` and its ``results`` (``breaker``: circuit_breaker)."""
_ON_FAILED = ("cancel", "run")
"""``on_dependency_failure`` by ``runs_anyway``."""


def _read_only(read: Callable[[TaskRecord], Any]) -> Any:
    """A kept record's field: a property whose value is ``read(record)``. Typed as
    the annotation of the name it is assigned to (as `dataclasses.field` is): the
    type of what `LiveRecord`'s slot of that name holds."""
    return property(read)


def _kept_field(index: int) -> Any:
    """A kept record's field: item ``index`` of its ``_kept`` (`LiveRecord.kept`)."""
    return _read_only(lambda record: record._kept[index])


def _kept_metadata(record: TaskRecord) -> Mapping[str, Any]:
    metadata: Mapping[str, Any] | None = record._kept[4]
    return NO_METADATA if metadata is None else metadata


def _kept_priority(record: TaskRecord) -> TaskPriority:
    return _PRIORITIES[record._kept[5]]


_PRIORITIES = {member.value: member for member in TaskPriority}


class TaskRecord:
    """One task, as the engine's table holds it; only `Engine._move` sets ``status``.

    A live task (registered, running, or ended failed or cancelled, which may be retried)
    is a `LiveRecord`. A completed task is kept as this base class: the fields it shows
    (`TaskInfo`) and its ``seq``; every other field reads as a class attribute: what
    `LiveRecord.release` leaves (None, 0, False), and for the options only an attempt
    uses (``retry_delay``, ``retry_wait``, ``timeout``, ``is_coroutine``,
    ``executor``) their defaults, not the values the task was registered with.

    The cyclic GC walks a record's slots each time it looks at it, and a completed
    record is retained until it is cleaned up, so the young generations of a burst are
    mostly completed records (issue 13: gen-1 pauses of S7 paced). So a kept record has
    four slots: ``status``, ``result`` and ``pins`` (written after it completed), and
    ``_kept``, one plain tuple of its other fields (``priority`` as its value,
    the shared empty ``metadata`` as None): with only strings, numbers and None in it,
    the GC stops tracking that tuple the first time it survives a collection, so a
    collection walks four slots per completed task instead of 17 (and none of the
    per-task numbers and strings they point to).
    """

    __slots__ = ("_kept", "pins", "result", "status")

    status: TaskStatus
    result: Any
    pins: int  # dependents waiting to take this task's result: keep it
    _kept: tuple[Any, ...]  # a kept record's other fields (`LiveRecord.kept`)

    # Slots of `LiveRecord`; a kept record reads them from ``_kept`` (read-only
    # properties, in the order `LiveRecord.kept` packs them).
    task_id: str = _kept_field(0)
    name: str = _kept_field(1)
    task_type: str = _kept_field(2)
    description: str = _kept_field(3)
    metadata: Mapping[str, Any] = _read_only(_kept_metadata)  # None: the shared empty one
    priority: TaskPriority = _read_only(_kept_priority)  # by its value
    attempts: int = _kept_field(6)
    max_retries: int = _kept_field(7)
    created_at: float = _kept_field(8)
    started_at: float | None = _kept_field(9)
    finished_at: float | None = _kept_field(10)
    seq: int = _kept_field(11)
    wall_offset: float | None = _kept_field(12)  # wall clock minus the clock at registration
    failures: deque[AttemptFailure] | None = _kept_field(13)  # latest failed attempts

    # What a completed task no longer needs, as it reads once it completed (the slots
    # of `LiveRecord`; see there).
    func: Any = None
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] | None = None
    retry_delay: float = 0.0
    retry_wait: wait_base | None = None
    timeout: float | None = None
    is_coroutine: bool = False
    breaker: CircuitBreaker | None = None
    executor: str | None = None
    trace: Any = None  # OpenTelemetry context at registration, or None
    bridge: LoopBridge | None = None
    error: BaseException | None = None
    error_tb: tuple[BaseException, TracebackType | None] | None = None
    """``error`` and its traceback as it was first handed out (`outcome_error`); a
    slot a live record sets only then (read it with ``getattr``)."""
    waiters: ReplyTo | list[ReplyTo] | None = None
    """Who gets the outcome of a live task: None, its only caller (no list of one per
    task in flight), or a list from the second one on."""
    execution: Attempt | None = None
    timer: Timer | None = None
    permit: Permit | None = None
    delegated = 0
    lent: ReplyTo | list[ReplyTo] | None = None
    cancels: list[ReplyTo] | None = None
    idle = 0.0
    spec: TaskSpec | None = None
    kept_bridge: weakref.ref[LoopBridge] | None = None
    """A failed task's loop, to retry it there (`release`): weakly, so that a task kept
    until its cleanup does not keep a closed loop (its bridge dropped) alive."""
    blocked = 0
    results: tuple[str, ...] | None = None
    runs_anyway = False
    parked = False

    if TYPE_CHECKING:
        # For mypy: the engine sets the fields above on the records of live tasks
        # (`LiveRecord`, which has a slot for each); a completed task's record is never
        # written but for its own slots (at run time, anything else raises).
        def __setattr__(self, name: str, value: Any) -> None: ...

    def release(self) -> None:
        """Nothing to drop: a completed task's record keeps only what it shows."""

    def kept(self) -> TaskRecord:
        """The record to keep once the task completed: this one."""
        return self

    def definition(self) -> TaskSpec:
        """The registration of a live task whose arguments were never filled in (its
        ``spec`` is None): its spec as registered, but for the dependencies (the graph
        has them) and the task id (None: a registration of it gets a new one)."""
        from actors.engine._validate import TaskSpec

        return TaskSpec._make(
            (None, *_LEADING(self), (), *_TRAILING(self), (), _ON_FAILED[self.runs_anyway])
        )

    def info(self, graph: DependencyGraph, backend: str) -> TaskInfo:
        deps = graph.dependencies(self.task_id) if self.task_id in graph else ()
        return TaskInfo(**_read_info(self), dependencies=tuple(deps), backend=backend)


class LiveRecord(TaskRecord):
    """A task not completed: registered, waiting, queued, running, retrying, or ended
    failed or cancelled (kept whole: it may be retried). Mutable, owned by one `Engine`
    (a new record has no ``status`` until its registration moves it to ``pending``).

    What only a running task needs (the function, its arguments, waiters, timers) is
    dropped when the task ends (`release`); a task that completed is then kept as a
    plain `TaskRecord` (`kept`).
    """

    __slots__ = (
        "args",
        "attempts",
        "blocked",
        "breaker",
        "bridge",
        "cancels",
        "created_at",
        "delegated",
        "description",
        "error",
        "error_tb",
        "execution",
        "executor",
        "failures",
        "finished_at",
        "func",
        "idle",
        "is_coroutine",
        "kept_bridge",
        "kwargs",
        "lent",
        "max_retries",
        "metadata",
        "name",
        "parked",
        "permit",
        "priority",
        "results",
        "retry_delay",
        "retry_wait",
        "runs_anyway",
        "seq",
        "spec",
        "started_at",
        "task_id",
        "task_type",
        "timeout",
        "timer",
        "trace",
        "waiters",
        "wall_offset",
    )

    def __init__(self, spec: TaskSpec, task_id: str, bridge: LoopBridge, now: float, seq: int):
        # One unpacking instead of a field read each (a registration's hot path).
        (
            _,
            self.name,
            self.func,
            self.args,
            self.kwargs,
            self.task_type,
            self.description,
            self.metadata,
            self.priority,
            _,
            self.max_retries,
            self.retry_delay,
            self.retry_wait,
            self.timeout,
            self.is_coroutine,
            self.breaker,
            self.executor,
            self.trace,
            results,
            on_dependency_failure,
        ) = spec
        self.task_id = task_id
        self.bridge = bridge
        self.attempts = 0
        self.created_at = now
        self.seq = seq
        # Not started, no outcome, no caller, no attempt yet (what `release` drops).
        self.started_at = self.finished_at = self.result = self.error = None
        self.waiters = self.execution = self.timer = self.permit = self.failures = None
        self.delegated = 0  # waiters the running attempt answers itself on success
        self.lent = None
        """``waiters`` as the latest attempt started with it (its only caller, or a
        list): the attempt may hold it (no copy per attempt), so the engine makes a new
        list rather than change that one."""
        self.cancels = None  # cancel calls waiting for an outcome
        self.idle = 0.0  # seconds waited before retries so far (a retry wait's idle_for)
        self.spec = spec if results else None
        """The registration as given, kept after a failure to retry the task. Only a
        task whose arguments take its dependencies' results keeps it from the start
        (they are filled in): any other rebuilds it from its fields if it fails
        (`definition`), so a live task holds one tracked object less."""
        self.kept_bridge = None
        self.blocked = 0  # waits for other tasks in progress: its slot is lent out
        self.wall_offset = None
        self.results = results or None
        """The dependencies whose results replace its `result_of` placeholders; None once
        they did (when it became ready), or when it takes none."""
        self.runs_anyway = on_dependency_failure == "run"
        self.pins = 0
        self.parked = False  # waiting for its circuit breaker to let a call through

    def release(self) -> None:
        """The task ended: drop what only a live task needs (a failed task keeps its
        definition and its loop, so it can be retried)."""
        if self.status is TaskStatus.FAILED:
            self.kept_bridge = None if self.bridge is None else weakref.ref(self.bridge)
            if self.spec is None and self.func is not None:
                self.spec = self.definition()
        else:
            self.spec = None
        self.func = self.args = self.kwargs = self.bridge = self.execution = None
        self.waiters = self.lent = self.breaker = self.permit = self.cancels = None
        self.trace = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def kept(self) -> TaskRecord:
        """The record to keep once the task completed (after `release`): a plain
        `TaskRecord` with this one's status, result and pins, and its other shown
        fields in one tuple."""
        record = TaskRecord()
        record.status = self.status
        record.result = self.result
        record.pins = self.pins
        metadata = self.metadata
        record._kept = (
            self.task_id,
            self.name,
            self.task_type,
            self.description,
            None if metadata is NO_METADATA else metadata,
            self.priority._value_,
            self.attempts,
            self.max_retries,
            self.created_at,
            self.started_at,
            self.finished_at,
            self.seq,
            self.wall_offset,
            self.failures,
        )
        return record


_read_info = attribute_reader(
    field.name
    for field in fields(TaskInfo)
    if field.name not in ("dependencies", "backend", "recoveries")
)
"""A `TaskInfo`'s fields that are the record's attributes of the same name (the
recoveries are the journal's to add)."""
