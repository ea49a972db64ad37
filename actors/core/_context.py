"""What task code can ask about the task it runs in: its id and its cancellation token.

A thread cannot be killed. When a plain function's attempt times out or its task is
cancelled, the attempt is failed at once, its late result is discarded, and its
`CancellationToken` is set: long-running task code should check
``actors.cancellation_token().cancelled`` and return early.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Generic, TypeVar

from actors.core._errors import InvalidTaskError
from actors.core._util import MAX_SECONDS, finite_float, renew_after_fork, safe_repr, too_long

__all__ = [
    "TASK_CONTEXT",
    "CancellationToken",
    "TaskScope",
    "cancellation_token",
    "current_task_id",
]


T = TypeVar("T")


class _Flag(Generic[T]):
    """A flag set once (`cancelled`), and a companion object set with it, made only by
    its first asker (`_companion_made`): the first askers share one, and one made after
    the flag was set is set at once. Thread-safe.

    The base of `CancellationToken` (its companion: the `threading.Event` its waiters
    wait on) and `TaskScope` (its `CancellationToken`). Subclasses set ``_cancelled``
    and ``_companion`` themselves (one call less per attempt).
    """

    __slots__ = ("_cancelled", "_companion")

    _cancelled: bool
    _companion: T | None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _set_flag(self) -> None:
        self._cancelled = True  # before reading _companion: see `_companion_made`
        companion = self._companion
        if companion is not None:
            self._set_companion(companion)

    def _companion_made(self) -> T:
        """The companion (made by the first caller; set if the flag is)."""
        companion = self._companion
        if companion is None:
            with _COMPANION_LOCK:
                companion = self._companion
                if companion is None:
                    companion = self._companion = self._new_companion()
            # A `_set_flag` that read _companion before it was set wrote the flag first.
            if self._cancelled:
                self._set_companion(companion)
        return companion

    def _new_companion(self) -> T:
        raise NotImplementedError

    def _set_companion(self, companion: T) -> None:
        raise NotImplementedError


_COMPANION_LOCK = threading.Lock()
"""Makes the first waiters of a token share one event (and the first askers of a
`TaskScope` one token)."""
renew_after_fork(globals(), "_COMPANION_LOCK", threading.Lock)


class CancellationToken(_Flag[threading.Event]):
    """Set when the attempt it belongs to is cancelled or timed out. Thread-safe.

    One is made only for an attempt whose code asks for it (`TaskScope.token`), and
    most of those are never waited on, so the `threading.Event` (six objects the
    cyclic GC tracks, 2.7 µs to make) is made only by the first `wait`; `cancelled`
    reads a flag.
    """

    __slots__ = ()

    def __init__(self) -> None:
        self._cancelled = False
        self._companion = None

    def cancel(self) -> None:
        self._set_flag()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or ``timeout`` seconds pass (False)."""
        if timeout is not None:
            bound = finite_float(timeout)
            if bound is None or bound < 0:
                raise InvalidTaskError(
                    f"timeout must be a finite number of seconds >= 0 or None (until "
                    f"cancelled), got {safe_repr(timeout)}"
                )
            if bound > MAX_SECONDS:  # (a `threading.Event.wait` past TIMEOUT_MAX overflows)
                raise InvalidTaskError(too_long("timeout", timeout) + "; or pass None")
            timeout = bound
        if self._cancelled:
            return True
        return self._companion_made().wait(timeout)

    def _new_companion(self) -> threading.Event:
        return threading.Event()

    def _set_companion(self, companion: threading.Event) -> None:
        companion.set()


class TaskScope(_Flag[CancellationToken]):
    """The running task as its code sees it (`TASK_CONTEXT`'s value): its id, name and
    type, and whether its attempt was cancelled. Thread-safe.

    The attempt itself is one (`actors.runtime.Execution` extends it), so setting the
    context makes nothing; its `CancellationToken` is made only when someone asks for
    it (`token`): most attempts never do.
    """

    __slots__ = ("name", "task_id", "task_type")

    def __init__(self, task_id: str, name: str = "", task_type: str = "") -> None:
        self.task_id = task_id
        self.name = name
        self.task_type = task_type
        self._cancelled = False
        self._companion = None

    def set_cancelled(self) -> None:
        """The attempt was cancelled or timed out: its token is (or will be) set."""
        self._set_flag()

    @property
    def token(self) -> CancellationToken:
        """The attempt's token (made by the first caller)."""
        return self._companion_made()

    def _new_companion(self) -> CancellationToken:
        return CancellationToken()

    def _set_companion(self, companion: CancellationToken) -> None:
        companion.cancel()


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
