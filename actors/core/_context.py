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
    """Set when the attempt it belongs to is cancelled or timed out. Thread-safe.

    One is made per attempt and most are never waited on, so the `threading.Event`
    (six objects the cyclic GC tracks, 2.7 µs to make) is made only
    by the first `wait`; `cancelled` reads a flag.
    """

    __slots__ = ("_cancelled", "_event")

    def __init__(self) -> None:
        self._cancelled = False
        self._event: threading.Event | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True  # before reading _event: see `wait`
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or ``timeout`` seconds pass (False)."""
        if self._cancelled:
            return True
        with _EVENT_LOCK:
            event = self._event
            if event is None:
                event = self._event = threading.Event()
        # A `cancel` that read _event before it was set wrote the flag first: seen here.
        if self.cancelled:
            event.set()
        return event.wait(timeout)


_EVENT_LOCK = threading.Lock()
"""Makes the first waiters of a token share one event."""


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
