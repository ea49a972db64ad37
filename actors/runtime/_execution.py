"""Running one attempt of a task: coroutines on their owner loop, functions in a pool thread.

No user code ever runs inside an actor: the manager hands an `Execution` (`_attempt`) to the owner
event loop (coroutines) or to the thread-pool actor (plain functions); the outcome comes
back to the manager as an `AttemptDone` message through its stable handle, so it reaches
the next incarnation if the manager crashed meanwhile.

How an attempt ends, on both task systems (these helpers are shared by both managers):

- A plain function whose result is awaitable (``lambda: fetch(url)``, a decorator that
  hides ``async``) has that result awaited on the task's owner event loop (the loop it
  was registered from), as if the function were async: the pool thread is free again,
  and the task's timeout and cancellation cover the awaiting. (On the ``process`` and
  ``dask`` executors the result must pickle, which a coroutine does not: the attempt
  fails.)
- An attempt's `BaseException` that is not an `Exception` never leaves the task: it
  would stop the caller's event loop. ``asyncio.CancelledError`` that the task's own
  code raised (or that cancelled its asyncio task from outside actorflow) ends the task
  ``cancelled`` with a `TaskCancelledError`, as an asyncio task that raises it ends
  cancelled; any other (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``, one of
  the user's own) ends it ``failed`` with a `TaskFailedError`, not retried. Either way the
  original is the error's ``__cause__`` (see `attempt_error`).
- A ``retry_wait`` gets a real tenacity `RetryCallState` (see `actors.engine.retry_delay`); a wait
  that raises, or gives no finite delay, fails the task with a `TaskFailedError`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors.core import (
    TASK_CONTEXT,
    ActorSystemError,
    LoopBridge,
    TaskCancelledError,
    TaskFailedError,
    bind_task_id,
    safe_repr,
    unbind_task_id,
)
from actors.observe import traced_await, traced_call
from actors.runtime._attempt import Execution
from actors.runtime._outbox import OnLoop, outbox
from actors.runtime.messages import Args, AttemptDone, Kwargs, Report

if TYPE_CHECKING:
    from actors.core import ReplyTo

__all__ = [
    "attempt_error",
    "complete",
    "run_function",
    "start_coroutine",
]


def attempt_error(task_id: str, error: BaseException) -> BaseException:
    """The error an attempt that raised ``error`` ends with.

    An `Exception` is the task's error as it is. A `BaseException` that is not one must
    never reach a caller (set on an asyncio future, ``SystemExit`` and
    ``KeyboardInterrupt`` stop the event loop that awaits it), so it is wrapped, with
    ``error`` as the ``__cause__``: ``asyncio.CancelledError`` in a `TaskCancelledError`
    (the task ends cancelled, see `actors.engine.ended_cancelled`), any other in a `TaskFailedError`
    (the task ends failed, not retried).
    """
    if isinstance(error, Exception):
        return error
    wrapped: TaskCancelledError | TaskFailedError
    if isinstance(error, asyncio.CancelledError):
        wrapped = TaskCancelledError(f"task {task_id!r} was cancelled outside actorflow")
    else:
        wrapped = TaskFailedError(
            f"task {task_id!r} raised {safe_repr(error)}, which is not an Exception: the task "
            "failed and is not retried (the program goes on)"
        )
    wrapped.__cause__ = error
    return wrapped


def _report(report: Report, done: AttemptDone) -> None:
    try:
        report(done)
    except Exception as exc:
        logger.bind(task_id=done.task_id).debug("outcome of task not delivered: {!r}", exc)


def complete(
    execution: Execution,
    report: Report,
    value: Any,
    error: BaseException | None,
    on_loop: LoopBridge | None = None,
    busy: Callable[[], int] | None = None,
) -> None:
    """The attempt ended: unless a timeout or a cancel decided it first, tell the
    manager, then (on success) answer the callers it delegated to this attempt (when
    ``report`` queues the outcome in a loop's outbox, a caller on another loop once it
    has been sent: `OnLoop.then`).
    ``error`` goes through `attempt_error`. ``on_loop``: the bridge whose loop runs
    this call; a waiter on that loop is answered at once rather than posted (the
    manager's message is in the outbox already, ahead of the waiter's next call), and
    an `OnLoop` ``report`` queues the outcome in that loop's outbox.

    ``busy``: on a worker thread, how many calls wait for a worker. While some do, the
    attempt leaves its waiters to the manager (``AttemptDone.answered`` False), which
    answers them when it takes the outcome: posting to a loop writes to its socket,
    which lets go of the GIL, and the worker, with its next call waiting, then had to
    win the GIL back from the threads it had just woken (the manager, the loop) before
    it could start that call: on 2 busy cores, a stall of up to several ms per task.
    With nothing queued, the worker answers them itself, one hop sooner."""
    if not execution.claim():
        return
    if error is not None:
        _drop_runner_frames(error)
        if not isinstance(error, Exception):
            error = attempt_error(execution.task_id, error)
    clock = execution.clock
    at = None if clock is None else clock.monotonic()
    waiters = execution.waiters if error is None else None
    if waiters is not None and busy is not None and busy():
        done = _new(AttemptDone, (execution.task_id, execution.attempt, value, None, at, False))
        _report(report, done)
        return
    if waiters is not None and on_loop is not None:
        # Waiters on this loop first: their wake-ups are queued ahead of the outbox's
        # flush, so a waiter's next call leaves in the same flush as this outcome
        # (after it: the manager still hears the outcome first), one loop iteration
        # sooner than behind a flush of its own.
        if not isinstance(waiters, list):  # its only caller (the common case)
            if getattr(waiters, "bridge", None) is on_loop:
                waiters.resolve(value)  # type: ignore[attr-defined]
                waiters = None
        else:
            others: list[ReplyTo] = []
            for reply in waiters:
                if getattr(reply, "bridge", None) is on_loop:
                    reply.resolve(value)  # type: ignore[attr-defined]
                else:
                    others.append(reply)
            waiters = others or None
    done = _new(AttemptDone, (execution.task_id, execution.attempt, value, error, at, True))
    if on_loop is not None and type(report) is OnLoop:
        # `OnLoop`'s own work, with the bridge at hand (no running-loop lookup per task).
        (on_loop.outbox or outbox(on_loop)).send(report.target, done)
    else:
        _report(report, done)
    if waiters is not None and (not isinstance(waiters, list) or waiters):
        then = getattr(report, "then", None)
        if then is None:  # the outcome is told already: the manager has it first
            _answer(waiters, value)
        else:
            # The outcome waits in this loop's outbox: a caller on another loop must
            # not wake (and call again) before it is sent, or its next call could reach
            # the manager first (a cleanup would miss the task).
            then(_answer, (waiters, value))


def _drop_runner_frames(error: BaseException) -> None:
    """Start ``error``'s traceback in the task's own code: drop the frames of the
    runners above it (`run_function`, `_run_coroutine`, the tracing wrappers). Their
    locals hold the attempt (its loop's bridge, its callers' futures), and a failed task
    keeps its error until it is cleaned up."""
    tb = error.__traceback__
    if tb is None or tb.tb_frame.f_code not in _RUNNERS:
        return
    while tb is not None and tb.tb_frame.f_code in _RUNNERS:
        tb = tb.tb_next
    error.__traceback__ = tb


def _answer(waiters: ReplyTo | list[ReplyTo], value: Any) -> None:
    if not isinstance(waiters, list):
        waiters.set_result(value)
        return
    for reply in waiters:
        reply.set_result(value)


_new = tuple.__new__
"""Makes an `AttemptDone` from its fields in order (no Python ``__new__`` per attempt)."""

_Task = asyncio.Task
_EAGER: Callable[..., asyncio.Task[Any]] | None = getattr(asyncio, "eager_task_factory", None)
"""Python 3.12+: starts a task's coroutine at once, in the caller's callback; a coroutine
that ends without suspending then costs no scheduling round (and no loop iteration).
Only on a loop without a task factory of its own: one that the application set
(``loop.set_task_factory``: Sentry's asyncio integration, aiomonitor...) makes the
attempt's task, as ``loop.create_task`` does on Python 3.11 (~40 ns per attempt to ask)."""


def start_coroutine(
    execution: Execution, func: Callable[..., Any], args: Args, kwargs: Kwargs, report: Report
) -> None:
    """Runs on the owner loop: start the attempt as an asyncio task (an eager one,
    where the Python has them and the loop has no task factory of its own: it runs up
    to its first suspension right here)."""
    if execution.cancel_requested:
        return
    assert execution.bridge is not None
    loop = execution.bridge.loop
    coroutine = _run_coroutine(execution, func, args, kwargs, report)
    if loop.get_task_factory() is not None:  # the application's (Sentry, aiomonitor...)
        task = loop.create_task(coroutine)
    elif _EAGER is None:
        # What `loop.create_task` does with no task factory set, without its Python
        # wrapper (~0.2 us of the loop's time per attempt).
        execution.atask = _Task(coroutine, loop=loop)
        return
    else:
        task = _EAGER(loop, coroutine)
    if not task.done():  # (an eager task, of ours or the loop's factory's, may have ended)
        execution.atask = task


async def _run_coroutine(
    execution: Execution, func: Callable[..., Any], args: Args, kwargs: Kwargs, report: Report
) -> None:
    task_id = execution.task_id
    TASK_CONTEXT.set(execution)
    bound = bind_task_id(task_id)
    try:
        try:
            if execution.trace is None:
                value = await func(*args, **kwargs)
            else:
                value = await traced_await(execution, func, args, kwargs)
        finally:
            unbind_task_id(bound)
            # The asyncio task's context holds the attempt (`TASK_CONTEXT`): an attempt
            # that kept holding its task would make a cycle only the cyclic GC frees.
            execution.atask = None
    except asyncio.CancelledError as exc:
        if not execution.cancel_requested:
            # Raised by the task's own code, or its asyncio task was cancelled by someone
            # other than actorflow (the loop is shutting down): the task ends cancelled.
            complete(execution, report, None, exc, execution.bridge)
        raise
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: never re-raised
        complete(execution, report, None, exc, execution.bridge)
    else:
        complete(execution, report, value, None, execution.bridge)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _start_awaitable(execution: Execution, awaitable: Any, report: Report) -> None:
    """Runs on the owner loop: await what a plain function returned, as an attempt."""
    if execution.cancel_requested:  # timed out or cancelled meanwhile
        _discard(awaitable)
        return
    start_coroutine(execution, _awaited, (awaitable,), {}, report)


def _discard(awaitable: Any) -> None:
    """Close a coroutine that will never run (no "never awaited" warning)."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()


def run_function(
    execution: Execution,
    func: Callable[..., Any],
    args: Args,
    kwargs: Kwargs,
    report: Report,
    busy: Callable[[], int] | None = None,
) -> None:
    """Runs in a pool thread: one attempt of a plain function.

    If the function returns an awaitable, it is awaited on the task's owner loop
    (``execution.bridge``) and the attempt ends when that does. ``busy``: see
    `complete`.
    """
    if execution.cancelled:
        return
    task_id = execution.task_id
    reset = TASK_CONTEXT.set(execution)
    try:
        bound = bind_task_id(task_id)
        try:
            if execution.trace is None:
                value = func(*args, **kwargs)
            else:
                value = traced_call(execution, func, args, kwargs)
        finally:
            unbind_task_id(bound)
    except BaseException as exc:
        complete(execution, report, None, exc)
        # The error keeps the task's frame, and that frame this one (its caller) once
        # it returns: hold nothing of the attempt here then (its loop, its callers).
        del execution, func, args, kwargs, report, busy
    else:
        if inspect.isawaitable(value):
            bridge = execution.bridge
            if bridge is None or not bridge.post(_start_awaitable, execution, value, report):
                _discard(value)
                error = ActorSystemError(
                    f"task {task_id!r} returned {safe_repr(value)}, which is awaited on the "
                    "event loop that registered the task, and that loop is closed"
                )
                complete(execution, report, None, error)
        else:
            complete(execution, report, value, None, None, busy)
    finally:
        TASK_CONTEXT.reset(reset)


_RUNNERS = frozenset(
    f.__code__ for f in (run_function, _run_coroutine, _awaited, traced_call, traced_await)
)
"""The code of the frames `_drop_runner_frames` drops from an attempt's error."""
