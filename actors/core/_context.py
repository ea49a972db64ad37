"""What task code can ask about the task it runs in: its id and its cancellation token.

A thread cannot be killed. When a plain function's attempt times out or its task is
cancelled, the attempt is failed at once, its late result is discarded, and its
`CancellationToken` is set: long-running task code should check
``actors.cancellation_token().cancelled`` and return early.
"""

from __future__ import annotations

import contextvars
import threading

__all__ = [
    "TASK_CONTEXT",
    "CancellationToken",
    "TaskScope",
    "cancellation_token",
    "current_task_id",
]


class CancellationToken:
    """Set when the attempt it belongs to is cancelled or timed out. Thread-safe.

    One is made only for an attempt whose code asks for it (`TaskScope.token`), and
    most of those are never waited on, so the `threading.Event` (six objects the
    cyclic GC tracks, 2.7 µs to make) is made only by the first `wait`; `cancelled`
    reads a flag.
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
"""Makes the first waiters of a token share one event (and the first askers of a
`TaskScope` one token)."""


class TaskScope:
    """The running task as its code sees it (`TASK_CONTEXT`'s value): its id, name and
    type, and whether its attempt was cancelled. Thread-safe.

    The attempt itself is one (`actors.runtime.Execution` extends it), so setting the
    context makes nothing; its `CancellationToken` is made only when someone asks for
    it (`token`): most attempts never do.
    """

    __slots__ = ("_cancelled", "_token", "name", "task_id", "task_type")

    def __init__(self, task_id: str, name: str = "", task_type: str = "") -> None:
        self.task_id = task_id
        self.name = name
        self.task_type = task_type
        self._cancelled = False
        self._token: CancellationToken | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def set_cancelled(self) -> None:
        """The attempt was cancelled or timed out: its token is (or will be) set."""
        self._cancelled = True  # before reading _token: see `token`
        token = self._token
        if token is not None:
            token.cancel()

    @property
    def token(self) -> CancellationToken:
        """The attempt's token (made by the first caller)."""
        token = self._token
        if token is None:
            with _EVENT_LOCK:
                token = self._token
                if token is None:
                    token = self._token = CancellationToken()
            # A `set_cancelled` that read _token before it was set wrote the flag first.
            if self._cancelled:
                token.cancel()
        return token


TASK_CONTEXT: contextvars.ContextVar[TaskScope | None] = contextvars.ContextVar(
    "actorflow_task", default=None
)
"""The running task's `TaskScope` (`actors.TaskContextFilter` reads its name and type)."""

_NEVER = CancellationToken()


def current_task_id() -> str | None:
    """The id of the task whose code is running here, or None outside a task."""
    current = TASK_CONTEXT.get()
    return None if current is None else current.task_id


def cancellation_token() -> CancellationToken:
    """The current attempt's token (a never-set token outside a task)."""
    current = TASK_CONTEXT.get()
    return _NEVER if current is None else current.token
