"""How an attempt's outcome is judged: cancelled or failed, what its breaker hears, and
how long its retry waits. Pure: no threads, no event loop, time passed in."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import tenacity

from actors.core import TaskCancelledError, TaskFailedError, safe_repr

if TYPE_CHECKING:
    from tenacity.wait import wait_base

__all__ = ["INTERRUPTED", "breaker_outcome", "ended_cancelled", "retry_delay"]


class Interrupted(BaseException):
    """What a breaker hears of an attempt that was stopped before it answered (cancelled,
    or its system shut down): not an `Exception`, so neither a success nor a failure."""


INTERRUPTED = Interrupted("the attempt was stopped before it answered")


def ended_cancelled(error: BaseException) -> bool:
    """Whether an attempt that ended with ``error`` ends its task cancelled: its code
    raised ``asyncio.CancelledError``, which `actors.runtime._execution.attempt_error` wraps in a
    `TaskCancelledError` (every other non-`Exception` it wraps in a `TaskFailedError`)."""
    cause = error.__cause__
    return (
        isinstance(error, TaskCancelledError)
        and cause is not None
        and not isinstance(cause, Exception)
    )


def breaker_outcome(error: BaseException) -> BaseException:
    """What a circuit breaker hears of an attempt that ended with ``error``: for an error
    that `actors.runtime._execution.attempt_error` wrapped, the original `BaseException`, which a
    breaker counts as neither a success nor a failure (interrupted, not answered)."""
    cause = error.__cause__
    if (
        cause is not None
        and not isinstance(cause, Exception)
        and isinstance(error, TaskCancelledError | TaskFailedError)
    ):
        return cause
    return error


def retry_delay(
    task_id: str,
    wait: wait_base,
    attempt: int,
    error: BaseException,
    fn: Callable[..., Any] | None,
    args: tuple[Any, ...] | None,
    kwargs: dict[str, Any] | None,
    start_time: float,
    idle_for: float,
    now: float,
) -> float:
    """Seconds to wait after attempt number ``attempt`` failed with ``error``, as the
    task's tenacity ``retry_wait`` says (without one, the fixed ``retry_delay`` applies).

    The wait is asked with a real `tenacity.RetryCallState`: ``attempt_number``, the
    ``outcome`` (a tenacity `Future` holding ``error``, so that
    ``retry_state.outcome.exception()`` honours a Retry-After), ``outcome_timestamp``
    (``now``), ``start_time`` (the first attempt's start) and ``idle_for`` (seconds waited
    before earlier retries), all on the system's clock, and the task's ``fn``, ``args``
    and ``kwargs``. A negative delay counts as 0.

    Raises `TaskFailedError` when the wait raises (the ``__cause__``) or gives no finite
    number: the task ends failed with it (its ``__context__`` is ``error``), not retried.
    """
    state = tenacity.RetryCallState(
        retry_object=cast(Any, None), fn=fn, args=args or (), kwargs=kwargs or {}
    )
    state.start_time = start_time
    state.attempt_number = attempt
    state.idle_for = idle_for
    state.outcome = tenacity.Future.construct(attempt, error, True)
    state.outcome_timestamp = now
    problem: BaseException | None = None
    try:
        delay = float(wait(state))
    except BaseException as exc:  # a user's callable: it must not take the manager down
        what, problem = f"raised {safe_repr(exc)}", exc
    else:
        if math.isfinite(delay):
            return max(0.0, delay)
        what = f"returned {delay!r}, not a finite number of seconds"
    failed = TaskFailedError(
        f"task {task_id!r}: its retry_wait {what} after attempt {attempt} failed with "
        f"{safe_repr(error)}; the task is not retried"
    )
    failed.__cause__ = problem
    failed.__context__ = error
    raise failed
