"""Task status, priority and the frozen `TaskInfo` snapshot."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TERMINAL", "TaskInfo", "TaskPriority", "TaskStatus"]


class TaskStatus(enum.StrEnum):
    """Where a task is in its lifecycle (see DESIGN.md, "Task lifecycle")."""

    PENDING = "pending"
    """Registered, not executed yet."""
    WAITING = "waiting"
    """Executed; some dependency has not completed yet."""
    QUEUED = "queued"
    """Ready; waiting for a concurrency slot."""
    RUNNING = "running"
    RETRYING = "retrying"
    """An attempt failed; the next one starts after the retry delay."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class TaskPriority(enum.IntEnum):
    """Higher runs first among queued tasks; FIFO within one priority."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of one task; it does not change when the task moves on."""

    task_id: str
    name: str
    status: TaskStatus
    task_type: str
    description: str
    metadata: Mapping[str, Any]
    dependencies: tuple[str, ...]
    priority: TaskPriority
    attempts: int
    max_retries: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: BaseException | None
    backend: str
    recoveries: int = 0
    """Times the journal's recovery ran this task again after the process died while it
    was running (0: never); it may have run more than once (at-least-once)."""

    @property
    def duration(self) -> float | None:
        """Seconds from the first start to the end, once the task has ended."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def done(self) -> bool:
        return self.status in TERMINAL
