"""The old task manager: the simple design the project started from.

Each executed task becomes one asyncio task on the loop that registered it, and that
asyncio task runs the whole attempt loop itself: timeouts, retries with their delay,
plain functions through the loop's default executor. There is no concurrency limit and
no priority. The actor keeps the records and the dependency graph and hears about each
attempt through messages, so queries, dependencies and cancellation behave as in the
new manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from typing import Any

from loguru import logger
from tenacity.wait import wait_base

from actors._breaker import CircuitBreaker
from actors._bridge import bridge_for, clock_sleep
from actors._context import CancellationToken, _current
from actors._errors import (
    ActorSystemError,
    CircuitOpenError,
    TaskFailedError,
    TaskTimeoutError,
)
from actors._execution import (
    Execution,
    attempt_error,
    breaker_outcome,
    ended_cancelled,
    retry_delay,
)
from actors._manager_base import BaseManager
from actors._messages import AttemptDone, AttemptStarted
from actors._store import TaskRecord
from actors._types import TaskStatus
from supervisors import Clock

__all__ = ["LegacyTaskManagerActor"]

RUNNING = TaskStatus.RUNNING
RETRYING = TaskStatus.RETRYING
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED
_FINAL = (ActorSystemError, TaskFailedError)
"""Errors an attempt is never retried after (the runner and the manager agree on it)."""


class LegacyTaskManagerActor(BaseManager):
    backend = "old"
    CHILD_ID = "legacy_task_manager"

    def _internal(self, message: Any) -> None:
        kind = type(message)
        if kind is AttemptStarted:
            record = self.tasks.get(message.task_id)
            if record is None or record.status not in (RUNNING, RETRYING):
                return
            record.attempts = message.attempt
            if record.status is not RUNNING:
                self._set_status(record, RUNNING)
        elif kind is AttemptDone:
            self._attempt_done(message)
        else:
            super()._internal(message)

    def _attempt_done(self, done: AttemptDone) -> None:
        record = self.tasks.get(done.task_id)
        if record is None or record.status not in (RUNNING, RETRYING):
            return
        record.attempts = done.attempt
        if done.error is None:
            record.result = done.value
            self._finish(record, COMPLETED)
            return
        error = record.error = done.error
        if ended_cancelled(error):  # its code raised CancelledError: like asyncio
            self._finish(record, CANCELLED)
            return
        if isinstance(error, TaskTimeoutError):
            self.state.timeouts += 1
        if done.attempt <= record.max_retries and not isinstance(error, _FINAL):
            self.state.retries += 1
            self._set_status(record, RETRYING)  # the runner sleeps, then starts the next one
        else:
            self._finish(record, FAILED)

    def _ready(self, record: TaskRecord) -> None:
        bridge = record.bridge
        assert bridge is not None
        execution = record.execution = Execution(record.task_id, 0, bridge, record)
        record.started_at = self.clock.monotonic()
        record.attempts = 1
        self._set_status(record, RUNNING)
        posted = bridge.post(
            _start,
            execution,
            record.func,
            record.args,
            record.kwargs,
            record.is_coroutine,
            record.max_retries,
            record.retry_delay,
            record.retry_wait,
            record.timeout,
            self.clock,
            self.report,
            record.breaker,
        )
        if not posted:
            record.error = ActorSystemError(
                f"task {record.task_id!r} cannot start: the event loop that registered it is closed"
            )
            self._finish(record, FAILED)

    def _stop_execution(self, record: TaskRecord) -> None:
        execution = record.execution
        if execution is not None:
            execution.cancel()
            record.execution = None


def _start(execution: Execution, *args: Any) -> None:
    """Runs on the owner loop: the task becomes an asyncio task."""
    if execution.cancel_requested:
        return
    execution.atask = asyncio.get_running_loop().create_task(_run(execution, *args))


async def _run(
    execution: Execution,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    is_coroutine: bool,
    max_retries: int,
    fixed_delay: float,
    retry_wait: wait_base | None,
    timeout: float | None,
    clock: Clock,
    report: Callable[[Any], None],
    breaker: CircuitBreaker | None = None,
) -> None:
    task_id = execution.task_id
    _current.set((task_id, execution.token, execution.name, execution.task_type))
    started = clock.monotonic()
    idle = 0.0  # seconds waited before retries so far (a retry wait's idle_for)
    attempt = 0
    while True:
        attempt += 1
        if attempt > 1:  # a fresh token: the last attempt's may be set by its timeout
            execution.token = CancellationToken()
            _current.set((task_id, execution.token, execution.name, execution.task_type))
        _send(report, AttemptStarted(task_id, attempt, None))
        permit = None
        try:
            if breaker is not None:
                permit = breaker.acquire()  # CircuitOpenError: this attempt fails fast
            with logger.contextualize(task_id=task_id):
                work = _attempt(execution, func, args, kwargs, is_coroutine)
                if timeout is None:
                    value = await work
                else:
                    value = await _with_timeout(clock, timeout, work, execution, attempt)
        except asyncio.CancelledError as cancelled:
            if permit is not None and breaker is not None:
                breaker.release(permit, cancelled)  # neither a success nor a failure
            if not execution.cancel_requested:
                # Its code raised CancelledError, or its asyncio task was cancelled by
                # someone other than actorflow: the task ends cancelled.
                _send(
                    report, AttemptDone(task_id, attempt, None, attempt_error(task_id, cancelled))
                )
            raise
        except Exception as exc:
            if permit is not None and breaker is not None:
                breaker.release(permit, breaker_outcome(exc))
            if attempt > max_retries or isinstance(exc, _FINAL):
                _send(report, AttemptDone(task_id, attempt, None, exc))
                return
            retry_at = None
            if breaker is not None and isinstance(exc, CircuitOpenError):
                retry_at = breaker.retry_at()
            if retry_at is not None:
                delay = max(0.0, retry_at - clock.monotonic())  # retry when it half-opens
            elif retry_wait is None:
                delay = fixed_delay
            else:
                try:
                    delay = retry_delay(
                        task_id,
                        retry_wait,
                        attempt,
                        exc,
                        func,
                        args,
                        kwargs,
                        started,
                        idle,
                        clock.monotonic(),
                    )
                except TaskFailedError as failed:  # the wait failed: so does the task
                    _send(report, AttemptDone(task_id, attempt, None, failed))
                    return
            _send(report, AttemptDone(task_id, attempt, None, exc))
            idle += delay
            await clock_sleep(clock, delay)
        else:
            if permit is not None and breaker is not None:
                breaker.release(permit, None)
            _send(report, AttemptDone(task_id, attempt, value, None))
            return


async def _attempt(
    execution: Execution,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    is_coroutine: bool,
) -> Any:
    """One attempt on the owner loop: the coroutine, or the function in the loop's default
    executor and then, if it returned an awaitable, that awaitable. A `BaseException`
    that is not an `Exception` leaves it wrapped by `attempt_error` (CancelledError
    excepted: it is how the attempt is cancelled), so it never reaches the loop."""
    try:
        if is_coroutine:
            return await func(*args, **kwargs)
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(None, _call_in_thread, execution, func, args, kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise attempt_error(execution.task_id, exc) from exc


def _call_in_thread(
    execution: Execution, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    reset = _current.set((execution.task_id, execution.token, execution.name, execution.task_type))
    try:
        with logger.contextualize(task_id=execution.task_id):
            value = func(*args, **kwargs)
    finally:
        _current.reset(reset)
    if execution.token.cancelled and inspect.iscoroutine(value):
        value.close()  # timed out or cancelled meanwhile: nobody will await it
        return None
    return value


async def _with_timeout(
    clock: Clock, seconds: float, work: Any, execution: Execution, attempt: int
) -> Any:
    inner = asyncio.ensure_future(work)
    bridge = bridge_for(asyncio.get_running_loop())
    expired = False

    def expire() -> None:
        nonlocal expired
        if not inner.done():
            expired = True
            execution.token.cancel()
            inner.cancel()

    timer = clock.call_later(seconds, lambda: bridge.post(expire))
    try:
        return await inner
    except asyncio.CancelledError:
        if expired:
            msg = f"task {execution.task_id!r} attempt {attempt} timed out after {seconds}s"
            raise TaskTimeoutError(msg) from None
        raise
    finally:
        timer.cancel()


def _send(report: Callable[[Any], None], message: Any) -> None:
    with contextlib.suppress(Exception):
        report(message)
