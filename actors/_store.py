"""Task records and the state a task manager keeps across its incarnations."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from actors._graph import DependencyGraph
from actors._types import TaskInfo, TaskPriority, TaskStatus

if TYPE_CHECKING:
    from tenacity.wait import wait_base

    from actors._breaker import CircuitBreaker, Permit
    from actors._bridge import LoopBridge, ReplyTo
    from actors._execution import Execution
    from actors._query import AttemptFailure
    from actors._validate import TaskSpec
    from supervisors import TimerHandle

__all__ = ["ManagerState", "TaskRecord"]


class TaskRecord:
    """One task, mutable, owned by exactly one manager actor at a time.

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
        "max_retries",
        "metadata",
        "name",
        "permit",
        "priority",
        "result",
        "retry_delay",
        "retry_wait",
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
    )

    def __init__(self, spec: TaskSpec, task_id: str, bridge: LoopBridge, now: float, seq: int):
        self.task_id = task_id
        self.name = spec.name
        self.task_type = spec.task_type
        self.description = spec.description
        self.metadata: Mapping[str, Any] = spec.metadata
        self.priority: TaskPriority = spec.priority
        self.max_retries = spec.max_retries
        self.retry_delay = spec.retry_delay
        self.retry_wait: wait_base | None = spec.retry_wait
        self.timeout = spec.timeout
        self.is_coroutine = spec.is_coroutine
        self.executor: str | None = spec.executor
        self.func: Any = spec.func
        self.args: tuple[Any, ...] | None = spec.args
        self.kwargs: dict[str, Any] | None = spec.kwargs
        self.bridge: LoopBridge | None = bridge
        self.status = TaskStatus.PENDING
        self.attempts = 0
        self.created_at = now
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiters: list[ReplyTo] | None = None
        self.execution: Execution | None = None
        self.timer: TimerHandle | None = None
        self.seq = seq
        self.breaker: CircuitBreaker | None = spec.circuit_breaker
        self.permit: Permit | None = None
        self.delegated = 0  # waiters the running attempt answers itself on success
        self.cancels: list[ReplyTo] | None = None  # cancel calls waiting for an outcome
        self.idle = 0.0  # seconds waited before retries so far (a retry wait's idle_for)
        self.trace: Any = spec.trace  # OpenTelemetry context at registration, or None
        self.failures: list[AttemptFailure] | None = None  # latest failed attempts
        self.spec: TaskSpec | None = spec  # kept after a failure, to retry the task
        self.kept_bridge: LoopBridge | None = None
        self.blocked = 0  # waits for other tasks in progress: its slot is lent out

    def release(self) -> None:
        """The task ended: drop what only a live task needs (a failed task keeps its
        definition and its loop, so it can be retried)."""
        if self.status is TaskStatus.FAILED:
            self.kept_bridge = self.bridge
        else:
            self.spec = None
        self.func = None
        self.args = None
        self.kwargs = None
        self.bridge = None
        self.execution = None
        self.waiters = None
        self.breaker = None
        self.permit = None
        self.cancels = None
        self.trace = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def info(self, graph: DependencyGraph, backend: str) -> TaskInfo:
        deps = graph.dependencies(self.task_id) if self.task_id in graph else ()
        return TaskInfo(
            task_id=self.task_id,
            name=self.name,
            status=self.status,
            task_type=self.task_type,
            description=self.description,
            metadata=self.metadata,
            dependencies=tuple(deps),
            priority=self.priority,
            attempts=self.attempts,
            max_retries=self.max_retries,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
            backend=backend,
        )


class ManagerState:
    """What a task manager keeps across crashes: records, graph, queue, counters."""

    def __init__(self, max_concurrent: int = 0) -> None:
        self.tasks: dict[str, TaskRecord] = {}
        self.graph = DependencyGraph()
        self.ready: list[tuple[int, int, str]] = []  # heap of (-priority, seq, task_id)
        self.running = 0
        self.limit = max_concurrent
        self.seq = itertools.count()
        self.cleanup_timer: TimerHandle | None = None
        # Finished records in the order they finished, for MAX_FINISHED_TASKS (unused
        # when it is 0); ids whose removal the facade has not heard of yet.
        self.finished: deque[tuple[str, TaskRecord]] = deque()
        self.forgotten: list[str] = []
        self.retries = 0
        self.timeouts = 0
        # Lifecycle events not yet sent to the monitor (flushed when the inbox runs dry):
        # (task_id, task_type, old status, new status, time, error type name or None).
        self.events: list[tuple[str, str, str | None, str | None, float, str | None]] = []
