"""`Execution`: one attempt of one task, as the manager, the runners and the pool see it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from actors.core import TaskCancelledError, TaskScope
from actors.observe import stop_span

if TYPE_CHECKING:
    from actors.core import Cancellable, LoopBridge, ReplyTo
    from actors.engine import TaskRecord
    from supervisors import Clock

__all__ = ["Execution"]


class Execution(TaskScope):
    """One attempt of one task. `cancel` is safe from any thread and idempotent.

    It is the task code's `TaskScope` too (`actors.core.TASK_CONTEXT`): its id, name,
    type, and its cancellation token, made only if the code asks for it.

    ``bridge`` is the task's owner loop: where a coroutine runs, and where an awaitable
    that a plain function returned is awaited (None: nowhere, it is refused).
    """

    __slots__ = (
        "_decided",
        "atask",
        "attempt",
        "bridge",
        "cancel_requested",
        "clock",
        "remote",
        "span",
        "trace",
        "waiters",
    )

    span: list[Any]
    """A traced attempt's open span until it ends (`actors.observe.start_span` sets it;
    unset, not None, on an attempt that is not traced: nothing to pay per attempt)."""

    def __init__(
        self,
        task_id: str,
        attempt: int,
        bridge: LoopBridge | None,
        record: TaskRecord | None = None,
    ) -> None:
        if record is None:
            super().__init__(task_id)
        else:  # `TaskScope.__init__`'s fields, set here: one call less per attempt (~0.16 us)
            self.task_id = task_id
            self.name = record.name
            self.task_type = record.task_type
            self._cancelled = False
            self._companion = None
        self.attempt = attempt
        self.bridge = bridge
        self.trace: Any = None if record is None else record.trace
        """The OpenTelemetry context captured at ``register_task`` (`actors.observe._tracing`);
        None when OpenTelemetry is not installed: the attempt is then not traced."""
        self.atask: asyncio.Task[Any] | None = None
        self.cancel_requested = False
        self.remote: Cancellable | None = None
        """The attempt's call on the ``process`` or ``dask`` executor (a worker process
        cannot see the token: a call still queued is cancelled, a running one is
        abandoned)."""
        self.waiters: ReplyTo | list[ReplyTo] | None = None
        """Callers the manager lets this attempt answer itself if it succeeds, saving
        the round trip through the manager (which still hears the outcome first): the
        task's waiters as the attempt started (its only caller, or its list, not a
        copy: the engine never changes it in place afterwards: `TaskRecord.lent`). A
        worker thread with calls queued behind it leaves them to the manager instead
        (`AttemptDone.answered` False: `actors.runtime._execution.complete`)."""
        self._decided = bytearray(1)
        """Emptied by the first `claim` (an atomic `pop` under the GIL); a bytearray,
        which the cyclic GC does not track, where a lock is one more object it does."""
        self.clock: Clock | None = None
        """The system clock, to stamp when the attempt ended (set by the manager)."""

    def claim(self) -> bool:
        """Decide the attempt's outcome: True for the first caller only.

        The runner claims when the attempt ends; the manager claims before it times out
        or cancels the attempt. Whoever loses leaves the outcome to the winner, so a
        result and a timeout can never both be reported.
        """
        try:
            self._decided.pop()
        except IndexError:
            return False
        return True

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the attempt; ``error`` (its `TaskTimeoutError`, say) is why: a traced
        attempt's span ends now with it (default: a `TaskCancelledError`)."""
        if self.trace is not None:
            if error is None:
                error = TaskCancelledError(f"task {self.task_id!r} was cancelled")
            stop_span(self, error)
        self.set_cancelled()
        remote = self.remote
        if remote is not None:
            remote.cancel()
        if self.bridge is not None:
            self.bridge.post(self._cancel_on_loop)

    def _cancel_on_loop(self) -> None:
        self.cancel_requested = True
        if self.atask is not None:
            self.atask.cancel()
