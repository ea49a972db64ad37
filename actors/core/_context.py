"""What task code can ask about the task it runs in: its id and its cancellation token.

A thread cannot be killed. When a plain function's attempt times out or its task is
cancelled, the attempt is failed at once, its late result is discarded, and its
`CancellationToken` is set: long-running task code should check
``actors.cancellation_token().cancelled`` and return early.
"""

from __future__ import annotations

import contextvars
import threading

__all__ = ["TASK_CONTEXT", "CancellationToken", "cancellation_token", "current_task_id"]


class CancellationToken:
    """Set when the attempt it belongs to is cancelled or timed out. Thread-safe."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or ``timeout`` seconds pass (False)."""
        return self._event.wait(timeout)


TASK_CONTEXT: contextvars.ContextVar[
    tuple[str, CancellationToken] | tuple[str, CancellationToken, str, str] | None
] = contextvars.ContextVar("actorflow_task", default=None)
"""The running task: ``(task_id, token)``, or ``(task_id, token, name, task_type)`` where
the runner knows them (`actors.TaskContextFilter` reads the last two)."""

_NEVER = CancellationToken()


def current_task_id() -> str | None:
    """The id of the task whose code is running here, or None outside a task."""
    current = TASK_CONTEXT.get()
    return None if current is None else current[0]


def cancellation_token() -> CancellationToken:
    """The current attempt's token (a never-set token outside a task)."""
    current = TASK_CONTEXT.get()
    return _NEVER if current is None else current[1]
