"""The new task manager: a scheduler with a concurrency limit, priorities and retries.

Ready tasks wait in a heap ordered by priority, then arrival. At most ``state.limit``
attempts run at once; a task waiting out its retry delay holds no slot. Timeouts and
retry delays are timers on the injected clock that send a message to the manager's
stable handle, so they survive a crash of the manager.

A plain function's attempt takes its slot when it is handed to the thread pool, but the
task stays ``queued`` until the pool reports that the function starts (`FunctionStarted`):
``started_at``, ``running`` and the timeout count from then. A coroutine starts on its
loop at once and is ``running`` from the hand-off.

A running task that waits for another task (``wait_for_task`` or ``execute_task(wait=
True)`` from inside its code) lends its slot out while it waits (``op_block``) and takes
it back when the wait ends, even if that briefly puts more than ``state.limit`` tasks
in the running count: as Ray releases a worker blocked in ``ray.get``, so a parent that
waits for its children never starves them of slots.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

from actors._breaker import CircuitBreaker
from actors._errors import (
    ActorSystemError,
    CircuitOpenError,
    TaskCancelledError,
    TaskFailedError,
    TaskTimeoutError,
)
from actors._execution import (
    Execution,
    breaker_outcome,
    ended_cancelled,
    retry_delay,
    start_coroutine,
)
from actors._manager_base import BaseManager
from actors._messages import AttemptDone, AttemptTimedOut, FunctionStarted, RetryDue, RunFunction
from actors._monitor import SetLimit
from actors._store import TaskRecord
from actors._types import TERMINAL, TaskStatus
from actors._util import tell_later

__all__ = ["TaskManagerActor"]

# What a breaker hears when an attempt ends without an answer from the service: neither a
# success nor a failure (the breaker gives the permit back).
_CANCELLED = asyncio.CancelledError()

QUEUED = TaskStatus.QUEUED
RUNNING = TaskStatus.RUNNING
RETRYING = TaskStatus.RETRYING
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED


class TaskManagerActor(BaseManager):
    backend = "new"
    CHILD_ID = "task_manager"

    def on_start(self) -> None:
        if self.state.limit <= 0:
            self.state.limit = self.ctx.config.MAX_CONCURRENT_TASKS
        self.pool = self.ctx.handle("thread_pool")
        super().on_start()
        self._pump()

    # -- messages -------------------------------------------------------------------------

    def _internal(self, message: Any) -> None:
        kind = type(message)
        if kind is AttemptDone:
            self._attempt_done(message)
        elif kind is FunctionStarted:
            record = self.tasks.get(message.task_id)
            if (
                record is not None
                and record.status is QUEUED
                and record.execution is not None
                and record.attempts == message.attempt
            ):
                self._begin(record, message.at)
        elif kind is AttemptTimedOut:
            self._attempt_timed_out(message)
        elif kind is SetLimit:
            self.state.limit = message.limit
            self._pump()
        elif kind is RetryDue:
            record = self.tasks.get(message.task_id)
            if (
                record is not None
                and record.status is RETRYING
                and record.attempts == message.attempt
            ):
                record.timer = None
                self._ready(record)
                self._pump()
        else:
            super()._internal(message)

    def _attempt_done(self, done: AttemptDone) -> None:
        record = self.tasks.get(done.task_id)
        if record is None or record.execution is None or record.attempts != done.attempt:
            return  # cleaned up meanwhile (timeouts and cancels claim the attempt first)
        cancels, record.cancels = record.cancels, None
        answered = record.delegated
        error = done.error
        self._leave_running(record, None if error is None else breaker_outcome(error))
        if error is None:
            record.result = done.value
            self._finish(record, COMPLETED, answered=answered, at=done.at)
        elif ended_cancelled(error):  # its code raised CancelledError: like asyncio
            record.error = error
            self._finish(record, CANCELLED, at=done.at)
        else:
            self._attempt_failed(record, error)
        if cancels:  # cancel calls that arrived while this outcome was on its way
            stopped = record.status not in TERMINAL
            if stopped:
                error = TaskCancelledError(f"task {record.task_id!r} was cancelled")
                self._cancel(record, error, propagate=True)
            for reply in cancels:
                reply.set_result(stopped)
        self._pump()

    def _attempt_timed_out(self, message: AttemptTimedOut) -> None:
        record = self.tasks.get(message.task_id)
        if record is None or record.status is not RUNNING or record.attempts != message.attempt:
            return
        record.timer = None
        execution = record.execution
        if execution is not None:
            if not execution.claim():
                return  # it ended just now: its outcome is on its way and wins
            execution.cancel()
        error = TaskTimeoutError(
            f"task {record.task_id!r} attempt {record.attempts} timed out after {record.timeout}s"
        )
        self._leave_running(record, error)  # a hung service is a failure for its breaker
        self.state.timeouts += 1
        self._attempt_failed(record, error)
        self._pump()

    # -- scheduling -----------------------------------------------------------------------

    def _ready(self, record: TaskRecord) -> None:
        self._set_status(record, QUEUED)
        heapq.heappush(self.state.ready, (-record.priority, record.seq, record.task_id))

    def _after_change(self) -> None:
        self._pump()

    def _pump(self) -> None:
        state = self.state
        ready = state.ready
        tasks = self.tasks
        while ready and state.running < state.limit:
            task_id = heapq.heappop(ready)[2]
            record = tasks.get(task_id)
            if record is not None and record.status is QUEUED and record.execution is None:
                self._start_attempt(record)

    def _start_attempt(self, record: TaskRecord) -> None:
        breaker = record.breaker
        if breaker is not None:
            try:
                record.permit = breaker.acquire()
            except CircuitOpenError as exc:
                self._refused(record, breaker, exc)
                return
        self.state.running += 1
        record.attempts += 1
        attempt = record.attempts
        task_id = record.task_id
        waiters = record.waiters
        record.delegated = len(waiters) if waiters else 0
        if record.is_coroutine:
            self._begin(record, self.clock.monotonic())
            bridge = record.bridge
            execution = record.execution = Execution(task_id, attempt, bridge, record)
            execution.clock = self.clock
            if waiters:
                execution.waiters = waiters.copy()
            assert bridge is not None
            posted = bridge.post(
                start_coroutine, execution, record.func, record.args, record.kwargs, self.report
            )
            if not posted:
                self._leave_running(record, _CANCELLED)
                self._attempt_failed(
                    record,
                    ActorSystemError(
                        f"task {task_id!r} cannot start: the event loop that registered it "
                        "is closed"
                    ),
                    retry=False,
                )
            return
        # The owner loop's bridge: a function that returns an awaitable has it awaited there.
        execution = record.execution = Execution(task_id, attempt, record.bridge, record)
        execution.clock = self.clock
        if waiters:
            execution.waiters = waiters.copy()
        assert record.args is not None
        assert record.kwargs is not None
        try:
            self.pool.tell(
                RunFunction(
                    execution, record.func, record.args, record.kwargs, self.report, record.executor
                )
            )
        except Exception as exc:
            self._leave_running(record)
            self._attempt_failed(record, ActorSystemError(f"task {task_id!r}: {exc}"))

    def _begin(self, record: TaskRecord, at: float) -> None:
        """The attempt's code starts at ``at``: the task runs, its timeout counts."""
        if record.started_at is None:
            record.started_at = at
        self._set_status(record, RUNNING, at)
        if record.timeout is not None:
            delay = max(0.0, record.timeout - max(0.0, self.clock.monotonic() - at))
            record.timer = tell_later(
                self.clock, delay, self.me, AttemptTimedOut(record.task_id, record.attempts)
            )

    def op_block(self, reply: Any, task_id: str, token: object, blocked: bool) -> None:
        record = self.tasks.get(task_id)
        execution = None if record is None else record.execution
        if record is None or execution is None or execution.token is not token:
            return  # not this attempt (it ended meanwhile, or another system's task)
        if blocked:
            record.blocked += 1
            if record.blocked == 1:
                self.state.running -= 1
                self._pump()
        elif record.blocked:
            record.blocked -= 1
            if record.blocked == 0:
                self.state.running += 1

    def _refused(
        self, record: TaskRecord, breaker: CircuitBreaker, error: CircuitOpenError
    ) -> None:
        """The breaker refused the attempt: it fails fast, and its retry waits for the
        breaker to half-open instead of being burned at once."""
        record.attempts += 1
        record.error = error
        if record.attempts > record.max_retries:
            self._finish(record, FAILED)
            return
        self.state.retries += 1
        self._set_status(record, RETRYING)
        retry_at = breaker.retry_at()
        now = self.clock.monotonic()
        if retry_at is not None:
            delay = max(0.0, retry_at - now)
        else:  # half-open with every trial slot taken: try again a little later
            delay = max(record.retry_delay, breaker.recovery_timeout / 10)
        record.idle += delay
        record.timer = tell_later(
            self.clock, delay, self.me, RetryDue(record.task_id, record.attempts)
        )

    def _leave_running(self, record: TaskRecord, outcome: BaseException | None = None) -> None:
        """The attempt is over; ``outcome`` (None: success) goes to its breaker."""
        if record.blocked:
            record.blocked = 0  # its slot is lent out already
        else:
            self.state.running -= 1
        record.execution = None
        if record.timer is not None:
            record.timer.cancel()
            record.timer = None
        permit = record.permit
        if permit is not None:
            record.permit = None
            breaker = record.breaker
            assert breaker is not None
            breaker.release(permit, outcome)

    def _attempt_failed(self, record: TaskRecord, error: BaseException, retry: bool = True) -> None:
        """The attempt failed with ``error``: retry it while retries remain (never after a
        `TaskFailedError`), else the task fails."""
        record.error = error
        if (
            retry
            and record.attempts <= record.max_retries
            and not isinstance(error, TaskFailedError)
        ):
            wait = record.retry_wait
            if wait is None:
                delay = record.retry_delay
            else:
                now = self.clock.monotonic()
                started = record.started_at
                try:
                    delay = retry_delay(
                        record.task_id,
                        wait,
                        record.attempts,
                        error,
                        record.func,
                        record.args,
                        record.kwargs,
                        now if started is None else started,
                        record.idle,
                        now,
                    )
                except TaskFailedError as failed:  # the wait failed: so does the task
                    record.error = failed
                    self._finish(record, FAILED)
                    return
            self.state.retries += 1
            self._set_status(record, RETRYING)
            if delay <= 0:
                self._ready(record)
                return
            record.idle += delay
            record.timer = tell_later(
                self.clock, delay, self.me, RetryDue(record.task_id, record.attempts)
            )
            return
        self._finish(record, FAILED)

    def _can_stop(self, record: TaskRecord) -> bool:
        execution = record.execution
        if execution is not None:  # running, or handed to the pool
            return execution.claim()  # False: the attempt ended and decided first
        return True

    def _stop_execution(self, record: TaskRecord) -> None:
        if record.status is RUNNING or record.execution is not None:
            execution = record.execution
            if execution is not None:
                execution.cancel()
            self._leave_running(record, _CANCELLED)
        elif record.timer is not None:
            record.timer.cancel()
            record.timer = None
