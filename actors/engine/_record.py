"""A task's record, owned by the engine, and the record of a failed attempt."""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

from actors.core import TaskInfo, TaskPriority, TaskStatus, attribute_reader

if TYPE_CHECKING:
    from tenacity.wait import wait_base

    from actors.core import LoopBridge, ReplyTo
    from actors.engine._breaker import CircuitBreaker, Permit
    from actors.engine._graph import DependencyGraph
    from actors.engine._validate import TaskSpec

__all__ = ["MAX_FAILURES_KEPT", "Attempt", "AttemptFailure", "TaskRecord", "Timer", "failure_of"]

MAX_FAILURES_KEPT = 10
"""Failed attempts a task keeps (the latest ones), with their formatted tracebacks."""
_TRACEBACK_CHARS = 8000
_MESSAGE_CHARS = 2000


class Attempt(Protocol):
    """A started attempt, as the engine sees it (`actors.runtime._execution.Execution`)."""

    def claim(self) -> bool:
        """Decide the attempt's outcome: True for the first caller only."""

    def cancel(self) -> None:
        """Stop the attempt (from any thread; idempotent)."""


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


class TaskRecord:
    """One task, mutable, owned by one `Engine`. Only `Engine._move` sets ``status``
    (a new record has none until its registration moves it to ``pending``).

    What only a running task needs (the function, its arguments, waiters, timers) is
    dropped when the task ends, so a retained finished task costs little memory.
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
        "pins",
        "priority",
        "result",
        "results",
        "retry_delay",
        "retry_wait",
        "runs_anyway",
        "seq",
        "spec",
        "started_at",
        "status",
        "task_id",
        "task_type",
        "timeout",
        "timer",
        "trace",
        "waiters",
        "wall_offset",
    )

    # The types of the fields `__init__` unpacks from the spec (it declares the rest).
    name: str
    func: Any
    args: tuple[Any, ...] | None
    kwargs: dict[str, Any] | None
    task_type: str
    description: str
    metadata: Mapping[str, Any]
    priority: TaskPriority
    max_retries: int
    retry_delay: float
    retry_wait: wait_base | None
    timeout: float | None
    is_coroutine: bool
    breaker: CircuitBreaker | None
    executor: str | None
    trace: Any  # OpenTelemetry context at registration, or None

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
        self.bridge: LoopBridge | None = bridge
        self.status: TaskStatus
        self.attempts = 0
        self.created_at = now
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiters: list[ReplyTo] | None = None
        self.execution: Attempt | None = None
        self.timer: Timer | None = None
        self.seq = seq
        self.permit: Permit | None = None
        self.delegated = 0  # waiters the running attempt answers itself on success
        self.lent: list[ReplyTo] | None = None
        """The ``waiters`` list as the latest attempt started with it: the attempt may
        hold it (no copy per attempt), so the engine copies it before a change."""
        self.cancels: list[ReplyTo] | None = None  # cancel calls waiting for an outcome
        self.idle = 0.0  # seconds waited before retries so far (a retry wait's idle_for)
        self.failures: deque[AttemptFailure] | None = None  # latest failed attempts
        self.spec: TaskSpec | None = spec if results else None
        """The registration as given, kept after a failure to retry the task. Only a
        task whose arguments take its dependencies' results keeps it from the start
        (they are filled in): any other rebuilds it from its fields if it fails
        (`definition`), so a live task holds one tracked object less."""
        self.kept_bridge: LoopBridge | None = None
        self.blocked = 0  # waits for other tasks in progress: its slot is lent out
        self.wall_offset: float | None = None  # wall clock minus the clock at registration
        self.results: tuple[str, ...] | None = results or None
        """The dependencies whose results replace its `result_of` placeholders; None once
        they did (when it became ready), or when it takes none."""
        self.runs_anyway = on_dependency_failure == "run"
        self.pins = 0  # dependents waiting to take this task's result: keep it
        self.parked = False  # waiting for its circuit breaker to let a call through

    def release(self) -> None:
        """The task ended: drop what only a live task needs (a failed task keeps its
        definition and its loop, so it can be retried)."""
        if self.status is TaskStatus.FAILED:
            self.kept_bridge = self.bridge
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


_read_info = attribute_reader(
    field.name
    for field in fields(TaskInfo)
    if field.name not in ("dependencies", "backend", "recoveries")
)
"""A `TaskInfo`'s fields that are the record's attributes of the same name (the
recoveries are the journal's to add)."""
