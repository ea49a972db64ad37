"""Running one attempt of a task: coroutines on their owner loop, functions in a pool thread.

No user code ever runs inside an actor: the manager hands an `Execution` to the owner
event loop (coroutines) or to the thread-pool actor (plain functions); the outcome comes
back to the manager as an `AttemptDone` message through its stable handle, so it reaches
the next incarnation if the manager crashed meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors._context import CancellationToken, _current
from actors._errors import TaskCancelledError
from actors._messages import AttemptDone
from actors._tracing import traced_await, traced_call

if TYPE_CHECKING:
    from actors._bridge import LoopBridge, ReplyTo
    from actors._store import TaskRecord
    from supervisors import Clock

__all__ = ["Execution", "complete", "run_function", "start_coroutine"]


class Execution:
    """One attempt of one task. `cancel` is safe from any thread and idempotent."""

    __slots__ = (
        "_decided",
        "atask",
        "attempt",
        "bridge",
        "cancel_requested",
        "clock",
        "name",
        "remote",
        "task_id",
        "task_type",
        "token",
        "trace",
        "waiters",
    )

    def __init__(
        self,
        task_id: str,
        attempt: int,
        bridge: LoopBridge | None,
        record: TaskRecord | None = None,
    ) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.bridge = bridge
        self.name = "" if record is None else record.name
        self.task_type = "" if record is None else record.task_type
        self.trace: Any = None if record is None else record.trace
        """The OpenTelemetry context captured at ``register_task`` (`actors._tracing`);
        None when OpenTelemetry is not installed: the attempt is then not traced."""
        self.token = CancellationToken()
        self.atask: asyncio.Task[Any] | None = None
        self.cancel_requested = False
        self.remote: Future[Any] | None = None
        """The process pool's future of this attempt (a worker process cannot see the
        token: a call still queued is cancelled, a running one is abandoned)."""
        self.waiters: list[ReplyTo] | None = None
        """Callers the manager lets this attempt answer itself if it succeeds, saving
        the round trip through the manager (which still hears the outcome first)."""
        self._decided = threading.Lock()
        self.clock: Clock | None = None
        """The system clock, to stamp when the attempt ended (set by the manager)."""

    def claim(self) -> bool:
        """Decide the attempt's outcome: True for the first caller only.

        The runner claims when the attempt ends; the manager claims before it times out
        or cancels the attempt. Whoever loses leaves the outcome to the winner, so a
        result and a timeout can never both be reported.
        """
        return self._decided.acquire(blocking=False)

    def cancel(self) -> None:
        self.token.cancel()
        remote = self.remote
        if remote is not None:
            remote.cancel()
        if self.bridge is not None:
            self.bridge.post(self._cancel_on_loop)

    def _cancel_on_loop(self) -> None:
        self.cancel_requested = True
        if self.atask is not None:
            self.atask.cancel()


def _report(report: Callable[[AttemptDone], None], done: AttemptDone) -> None:
    try:
        report(done)
    except Exception as exc:
        logger.bind(task_id=done.task_id).debug("outcome of task not delivered: {!r}", exc)


def complete(
    execution: Execution,
    report: Callable[[AttemptDone], None],
    value: Any,
    error: BaseException | None,
) -> None:
    """The attempt ended: unless a timeout or a cancel decided it first, tell the
    manager, then (on success) answer the callers it delegated to this attempt."""
    if not execution.claim():
        return
    clock = execution.clock
    at = None if clock is None else clock.monotonic()
    _report(report, AttemptDone(execution.task_id, execution.attempt, value, error, at))
    waiters = execution.waiters
    if error is None and waiters:
        for reply in waiters:
            reply.set_result(value)


def start_coroutine(
    execution: Execution,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    report: Callable[[AttemptDone], None],
) -> None:
    """Runs on the owner loop: start the attempt as an asyncio task."""
    if execution.cancel_requested:
        return
    assert execution.bridge is not None
    execution.atask = execution.bridge.loop.create_task(
        _run_coroutine(execution, func, args, kwargs, report)
    )


async def _run_coroutine(
    execution: Execution,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    report: Callable[[AttemptDone], None],
) -> None:
    task_id = execution.task_id
    _current.set((task_id, execution.token, execution.name, execution.task_type))
    try:
        with logger.contextualize(task_id=task_id):
            if execution.trace is None:
                value = await func(*args, **kwargs)
            else:
                value = await traced_await(execution, func, args, kwargs)
    except asyncio.CancelledError:
        if not execution.cancel_requested:
            # Cancelled by someone other than actorflow (the loop is shutting down).
            error = TaskCancelledError(f"task {task_id!r} was cancelled outside actorflow")
            complete(execution, report, None, error)
        raise
    except (KeyboardInterrupt, SystemExit) as exc:
        complete(execution, report, None, exc)
        raise
    except BaseException as exc:
        complete(execution, report, None, exc)
    else:
        complete(execution, report, value, None)


def run_function(
    execution: Execution,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    report: Callable[[AttemptDone], None],
) -> None:
    """Runs in a pool thread: one attempt of a plain function."""
    if execution.token.cancelled:
        return
    task_id = execution.task_id
    reset = _current.set((task_id, execution.token, execution.name, execution.task_type))
    try:
        with logger.contextualize(task_id=task_id):
            if execution.trace is None:
                value = func(*args, **kwargs)
            else:
                value = traced_call(execution, func, args, kwargs)
    except BaseException as exc:
        complete(execution, report, None, exc)
    else:
        complete(execution, report, value, None)
    finally:
        _current.reset(reset)
