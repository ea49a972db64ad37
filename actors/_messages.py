"""Messages between the client, the facade, the managers, the pool and the monitor.

Immutable and small: they are created once per call or per task transition, so they
are slotted dataclasses without defaults magic on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors._bridge import ReplyTo
    from actors._execution import Execution

__all__ = [
    "AttemptDone",
    "AttemptStarted",
    "AttemptTimedOut",
    "Call",
    "CleanupTick",
    "Forget",
    "RetryDue",
    "RunFunction",
    "TaskEvents",
]


@dataclass(frozen=True, slots=True)
class Call:
    """A public API call: ``op`` with ``args``; the answer goes to ``reply``."""

    op: str
    args: tuple[Any, ...]
    reply: ReplyTo


@dataclass(frozen=True, slots=True)
class AttemptDone:
    """An attempt ended (legacy: the whole run ended). ``error`` is None on success."""

    task_id: str
    attempt: int
    value: Any
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """Legacy manager: the runner on the loop started attempt ``attempt``."""

    task_id: str
    attempt: int
    retry_error: BaseException | None  # the previous attempt's error, if this is a retry


@dataclass(frozen=True, slots=True)
class AttemptTimedOut:
    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class RetryDue:
    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class CleanupTick:
    """Time for the periodic cleanup of old finished tasks."""


@dataclass(frozen=True, slots=True)
class Forget:
    """Facade: these task ids were cleaned up; drop their routing entries."""

    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunFunction:
    """Thread pool: run a plain function for one attempt and report to ``report``."""

    execution: Execution
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    report: Callable[[AttemptDone], None]


@dataclass(frozen=True, slots=True)
class TaskEvents:
    """Monitor: a batch of lifecycle transitions, oldest first.

    Each item is ``(task_id, task_type, old_status, new_status, at)``; ``old_status`` is
    None for a registration and ``new_status`` None for a removal by cleanup.
    """

    items: tuple[tuple[str, str, str | None, str | None, float], ...]
