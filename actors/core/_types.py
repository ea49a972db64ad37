"""Task status, priority and the frozen `TaskInfo` snapshot."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "PENDING",
    "QUEUED",
    "RETRYING",
    "RUNNING",
    "TERMINAL",
    "WAITING",
    "TaskInfo",
    "TaskPriority",
    "TaskStatus",
]


class TaskStatus(enum.StrEnum):
    """Where a task is in its lifecycle (docs/architecture.md, "Task lifecycle")."""

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


# Each status as a module constant, for the modules that test a status per transition
# (the engine, the monitor): a global read is cheaper than an enum member's lookup.
PENDING = TaskStatus.PENDING
WAITING = TaskStatus.WAITING
QUEUED = TaskStatus.QUEUED
RUNNING = TaskStatus.RUNNING
RETRYING = TaskStatus.RETRYING
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED

TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})


class TaskPriority(enum.IntEnum):
    """Higher runs first among queued tasks; FIFO within one priority."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of one task; it does not change when the task moves on.

    ``created_at``, ``started_at`` and ``finished_at`` are the system clock's monotonic
    seconds (differences are exact; a fake clock in tests sets them). ``created_utc``,
    ``started_utc`` and ``finished_utc`` are the same moments as aware UTC datetimes:
    the wall clock read at registration plus the monotonic time elapsed since, so
    ``finished_utc - started_utc`` is exactly the ``duration``.
    """

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
    wall_offset: float | None = field(default=None, compare=False, repr=False)
    """Wall-clock seconds (``time.time``) minus the monotonic clock, taken at
    registration (None: unknown). Not compared: it is how the times are shown."""

    def _utc(self, monotonic: float | None) -> datetime | None:
        if monotonic is None or self.wall_offset is None:
            return None
        return datetime.fromtimestamp(monotonic + self.wall_offset, UTC)

    @property
    def created_utc(self) -> datetime | None:
        """When the task was registered, as an aware UTC datetime."""
        return self._utc(self.created_at)

    @property
    def started_utc(self) -> datetime | None:
        """When its first attempt started (None: not yet), as an aware UTC datetime."""
        return self._utc(self.started_at)

    @property
    def finished_utc(self) -> datetime | None:
        """When it ended (None: not yet), as an aware UTC datetime."""
        return self._utc(self.finished_at)

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
