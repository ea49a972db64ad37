"""Messages between the client, the facade, the managers, the pool and the monitor.

Immutable named tuples, as pykka's own messages: they are built once per call or per
task transition, and a tuple is about half the cost of a frozen dataclass to build.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

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
    "FunctionStarted",
    "RetryDue",
    "RunFunction",
    "TaskEvents",
]


class Call(NamedTuple):
    """A public API call: ``op`` with ``args``; the answer goes to ``reply``."""

    op: str
    args: tuple[Any, ...]
    reply: ReplyTo


class AttemptDone(NamedTuple):
    """An attempt ended (legacy: the whole run ended). ``error`` is None on success.

    ``at`` is the clock time the attempt ended, read where it ended (None: unknown, the
    manager uses the time it hears of it).
    """

    task_id: str
    attempt: int
    value: Any
    error: BaseException | None
    at: float | None = None


class AttemptStarted(NamedTuple):
    """Legacy manager: the runner on the loop started attempt ``attempt``."""

    task_id: str
    attempt: int
    retry_error: BaseException | None  # the previous attempt's error, if this is a retry


class FunctionStarted(NamedTuple):
    """New manager: a plain function's attempt left the pool's queue and starts (at
    clock time ``at``); the task is running, and its timeout counts, from then on."""

    task_id: str
    attempt: int
    at: float


class AttemptTimedOut(NamedTuple):
    task_id: str
    attempt: int


class RetryDue(NamedTuple):
    task_id: str
    attempt: int


class CleanupTick(NamedTuple):
    """Time for the periodic cleanup of old finished tasks."""


class Forget(NamedTuple):
    """Facade: these task ids were cleaned up; drop their routing entries."""

    task_ids: tuple[str, ...]


class RunFunction(NamedTuple):
    """Thread pool: run a plain function for one attempt and report to ``report``."""

    execution: Execution
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    report: Callable[[AttemptDone], None]
    executor: str | None = None
    """One of `BACKENDS` (the task's ``executor``), or None for ``THREAD_POOL_BACKEND``."""


class TaskEvents(NamedTuple):
    """Monitor: a batch of lifecycle transitions, oldest first.

    Each item is ``(task_id, task_type, old_status, new_status, at, error_type)``;
    ``old_status`` is None for a registration, ``new_status`` None for a removal by
    cleanup, and ``error_type`` names the exception of a retrying/failed/cancelled task.
    """

    items: tuple[tuple[str, str, str | None, str | None, float, str | None], ...]
