"""What both task managers share: registration, queries, dependencies, cancel, cleanup.

A manager is a thin actor shell over `ManagerState`, which outlives its incarnations.
Subclasses decide only how a ready task runs (`_ready`) and how a running one is
stopped (`_stop_execution`).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from loguru import logger

from actors import _logging
from actors._errors import (
    ActorsError,
    DependencyFailedError,
    DuplicateTaskError,
    InvalidTaskError,
    TaskCancelledError,
    TaskNotFoundError,
)
from actors._logging import SafeRepr
from actors._messages import Call, CleanupTick, Forget, TaskEvents
from actors._query import (
    MAX_FAILURES_KEPT,
    PageQuery,
    TaskDetail,
    TaskRow,
    failure_of,
    page_keys,
    page_rows,
)
from actors._store import ManagerState, TaskRecord
from actors._types import TERMINAL, TaskInfo, TaskStatus
from actors._util import shrink, tell_later
from supervisors import SupervisedActor

if TYPE_CHECKING:
    from actors._bridge import LoopBridge, ReplyTo
    from actors._system import SystemContext
    from actors._validate import TaskSpec

__all__ = ["DEFERRED", "BaseManager"]

DEFERRED: Any = object()
"""Returned by an op that answers later (it keeps the reply)."""

PENDING = TaskStatus.PENDING
WAITING = TaskStatus.WAITING
RUNNING = TaskStatus.RUNNING
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED
_WITH_ERROR = frozenset({TaskStatus.RETRYING, FAILED, CANCELLED})
_LOGGED = frozenset({RUNNING, TaskStatus.RETRYING, COMPLETED, FAILED, CANCELLED})
_ATTEMPT_FAILED = frozenset({TaskStatus.RETRYING, FAILED})


def deliver(reply: ReplyTo, record: TaskRecord) -> None:
    """Answer a waiter with a finished task's outcome."""
    if record.status is COMPLETED:
        reply.set_result(record.result)
    else:
        reply.set_exception(record.error or TaskCancelledError(f"task {record.task_id!r} ended"))


class BaseManager(SupervisedActor):
    """A task manager actor. See `TaskManagerActor` and `LegacyTaskManagerActor`."""

    backend: ClassVar[str]
    CHILD_ID: ClassVar[str]
    use_daemon_thread = True

    def __init__(self, ctx: SystemContext, state: ManagerState) -> None:
        super().__init__()
        self.ctx = ctx
        self.state = state
        self.tasks = state.tasks
        self.graph = state.graph
        self.clock = ctx.clock
        self.me = ctx.handle(self.CHILD_ID)
        self.report = self.me.tell
        self._ops: dict[str, Callable[..., Any]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")
        }
        self._log = logger.bind(actor=self.CHILD_ID)
        self._max_finished = ctx.config.MAX_FINISHED_TASKS

    # -- lifecycle ----------------------------------------------------------------------

    def on_start(self) -> None:
        self._flush_events()
        if self.ctx.config.CLEANUP_INTERVAL > 0 and self.state.cleanup_timer is None:
            self._arm_cleanup()

    def on_idle(self) -> None:
        if self.state.events:
            self._flush_events()
        if self.state.forgotten:
            self._forget()

    def on_stop(self) -> None:
        # A stop (not a crash) ends this manager's life: its timer must not outlive it.
        timer = self.state.cleanup_timer
        if timer is not None:
            timer.cancel()
            self.state.cleanup_timer = None

    def _forget(self) -> None:
        """Tell the facade which tasks were removed without a cleanup call."""
        removed = tuple(self.state.forgotten)
        self.state.forgotten.clear()
        with contextlib.suppress(ActorsError):
            self.ctx.handle("facade").tell(Forget(removed))

    def _flush_events(self) -> None:
        events = self.state.events
        if events:
            batch = TaskEvents(tuple(events))
            events.clear()
            try:
                self.ctx.handle("task_monitor").tell(batch)
            except ActorsError:
                pass
            except Exception as exc:
                self._log.debug("events not delivered to the monitor: {!r}", exc)

    def _arm_cleanup(self) -> None:
        self.state.cleanup_timer = tell_later(
            self.clock, self.ctx.config.CLEANUP_INTERVAL, self.me, CleanupTick()
        )

    # -- dispatch -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if type(message) is Call:
            self._call(message)
        elif type(message) is CleanupTick:
            self.state.cleanup_timer = None
            removed = self._cleanup(self.ctx.config.CLEANUP_MAX_AGE)
            if removed:
                self.ctx.handle("facade").tell(Forget(tuple(removed)))
            self._arm_cleanup()
        else:
            self._internal(message)
        return None

    def _internal(self, message: Any) -> None:
        self._log.warning("unexpected message {!r}", message)

    def _call(self, call: Call) -> None:
        reply = call.reply
        try:
            result = self._ops[call.op](reply, *call.args)
        except ActorsError as exc:
            reply.set_exception(exc)
            return
        except Exception as exc:
            self._log.opt(exception=exc).error("op {} failed", call.op)
            reply.set_exception(exc)
            return
        if result is not DEFERRED:
            reply.set_result(result)

    # -- helpers --------------------------------------------------------------------------

    def _get(self, task_id: str) -> TaskRecord:
        record = self.tasks.get(task_id)
        if record is None:
            msg = f"no task with id {task_id!r} (never registered, or cleaned up)"
            raise TaskNotFoundError(msg)
        return record

    def _emit(
        self,
        record: TaskRecord,
        old: TaskStatus | None,
        new: TaskStatus | None,
        at: float | None = None,
    ) -> None:
        error = record.error
        detail = None if error is None or new not in _WITH_ERROR else type(error).__name__
        when = self.clock.monotonic() if at is None else at
        self.state.events.append((record.task_id, record.task_type, old, new, when, detail))

    def _set_status(self, record: TaskRecord, status: TaskStatus, at: float | None = None) -> None:
        old = record.status
        record.status = status
        self._emit(record, old, status, at)
        if status in _ATTEMPT_FAILED:
            self._note_failure(record, at)
        if _logging._enabled and status in _LOGGED:
            self._log_transition(record, status)

    def _note_failure(self, record: TaskRecord, at: float | None) -> None:
        """Keep the failed attempt's error and traceback (the latest few) for the
        dashboard; only failures pay for it."""
        when = self.clock.monotonic() if at is None else at
        failure = failure_of(record.attempts, when, record.error)
        failures = record.failures
        if failures is None:
            record.failures = [failure]
        else:
            failures.append(failure)
            if len(failures) > MAX_FAILURES_KEPT:
                del failures[0]

    def _log_transition(self, record: TaskRecord, status: TaskStatus) -> None:
        """One lifecycle line. Logging never takes the manager down: the task's error is
        shown through `SafeRepr` (its ``__repr__`` may raise), and a line that still
        cannot be built or emitted is dropped."""
        try:
            log = logger.bind(
                task_id=record.task_id, task_name=record.name, task_type=record.task_type
            )
            if status is FAILED:
                log.warning("task {!r} failed: {}", record.name, SafeRepr(record.error))
            elif status is TaskStatus.RETRYING:
                log.info(
                    "task {!r} retrying after attempt {}: {}",
                    record.name,
                    record.attempts,
                    SafeRepr(record.error),
                )
            elif status is RUNNING:
                log.info("task {!r} started (attempt {})", record.name, record.attempts)
            else:
                word = "registered" if status is PENDING else status.value
                log.info("task {!r} {}", record.name, word)
        except Exception as exc:
            self._log.debug(
                "a lifecycle line of task {!r} was dropped: {}", record.task_id, SafeRepr(exc)
            )

    def _deps_failed(self, record: TaskRecord) -> TaskRecord | None:
        tasks = self.tasks
        for dep in self.graph.direct_dependencies(record.task_id):
            d = tasks.get(dep)
            if d is not None and (d.status is FAILED or d.status is CANCELLED):
                return d
        return None

    def _deps_done(self, record: TaskRecord) -> bool:
        tasks = self.tasks
        for dep in self.graph.direct_dependencies(record.task_id):
            d = tasks.get(dep)
            if d is not None and d.status is not COMPLETED:
                return False
        return True

    # -- subclass hooks -------------------------------------------------------------------

    def _ready(self, record: TaskRecord) -> None:
        raise NotImplementedError

    def _stop_execution(self, record: TaskRecord) -> None:
        raise NotImplementedError

    def _after_change(self) -> None:
        """Called after a call or an outcome changed task states (the scheduler pumps)."""

    # -- transitions ----------------------------------------------------------------------

    def _activate(self, record: TaskRecord) -> None:
        """An executed task: cancelled, ready or waiting, by its dependencies."""
        failed = self._deps_failed(record)
        if failed is not None:
            self._cancel(record, self._dependency_error(record, failed), propagate=True)
        elif self._deps_done(record):
            self._ready(record)
        else:
            self._set_status(record, WAITING)

    def _dependency_error(self, record: TaskRecord, failed: TaskRecord) -> DependencyFailedError:
        return DependencyFailedError(record.task_id, failed.task_id, failed.status.value)

    def _execute(self, record: TaskRecord) -> None:
        """Execute ``record`` and, first, every pending task it depends on."""
        order: list[TaskRecord] = []
        seen: set[str] = set()
        stack: list[tuple[TaskRecord, bool]] = [(record, False)]
        tasks = self.tasks
        while stack:
            current, expanded = stack.pop()
            if expanded:
                order.append(current)
                continue
            if current.task_id in seen:
                continue
            seen.add(current.task_id)
            stack.append((current, True))
            for dep in self.graph.direct_dependencies(current.task_id):
                d = tasks.get(dep)
                if d is not None and d.status is PENDING and dep not in seen:
                    stack.append((d, False))
        for current in order:
            if current.status is PENDING:
                self._activate(current)

    def _finish(
        self,
        record: TaskRecord,
        status: TaskStatus,
        *,
        propagate: bool = True,
        answered: int = 0,
        at: float | None = None,
    ) -> None:
        """``record`` reached a terminal status at ``at`` (default: now): answer waiters
        (but the first ``answered``, whom the attempt answered itself), then move
        dependents."""
        record.finished_at = self.clock.monotonic() if at is None else at
        if status is COMPLETED:
            record.error = None  # a retried task that completed did not end with an error
        self._set_status(record, status, record.finished_at)
        waiters = record.waiters
        record.release()
        if waiters:
            for reply in waiters[answered:] if answered else waiters:
                deliver(reply, record)
        if self._max_finished:
            self._retain(record)
        if not propagate:
            return
        tasks = self.tasks
        if status is COMPLETED:
            for dep_id in tuple(self.graph.direct_dependents(record.task_id)):
                d = tasks.get(dep_id)
                if d is not None and d.status is WAITING and self._deps_done(d):
                    self._ready(d)
            return
        for dep_id in self.graph.transitive_dependents(record.task_id):
            d = tasks.get(dep_id)
            if d is not None and d.status not in TERMINAL:
                self._cancel(d, self._dependency_error(d, record), propagate=False)

    def _cancel(self, record: TaskRecord, error: BaseException, *, propagate: bool) -> None:
        self._stop_execution(record)
        record.error = error
        self._finish(record, CANCELLED, propagate=propagate)

    def _retain(self, record: TaskRecord) -> None:
        """Keep at most MAX_FINISHED_TASKS finished tasks: ``record`` just finished; remove
        the ones that finished first beyond the bound."""
        finished = self.state.finished
        finished.append((record.task_id, record))
        if len(finished) <= self._max_finished:
            return
        tasks = self.tasks
        removed: list[str] = []
        while len(finished) > self._max_finished:
            task_id, old = finished.popleft()
            if tasks.get(task_id) is old and old.status in TERMINAL:
                removed.append(task_id)
        if removed:
            self._remove(removed)
            self.state.forgotten.extend(removed)

    def _cleanup(self, max_age: float) -> list[str]:
        cutoff = self.clock.monotonic() - max_age
        removed = [
            r.task_id
            for r in self.tasks.values()
            if r.finished_at is not None and r.finished_at <= cutoff
        ]
        if removed:
            self._remove(removed)
            finished = self.state.finished
            if finished:  # drop what is gone, so the count bound counts live tasks only
                tasks = self.tasks
                self.state.finished = deque(e for e in finished if tasks.get(e[0]) is e[1])
        return removed

    def _remove(self, removed: list[str]) -> None:
        tasks = self.tasks
        for task_id in removed:
            record = tasks.pop(task_id)
            self._emit(record, record.status, None)
        if len(removed) >= len(tasks):
            shrink(tasks)
        self.graph.remove(removed)

    # -- ops (the public API, one method per call) ----------------------------------------

    def op_register(self, reply: ReplyTo, spec: TaskSpec, task_id: str, bridge: LoopBridge) -> str:
        if task_id in self.tasks:
            msg = f"task id {task_id!r} is already registered; pick another or omit task_id"
            raise DuplicateTaskError(msg)
        for dep in spec.dependencies:
            if dep not in self.tasks:
                msg = (
                    f"dependency {dep!r} of task {spec.name!r} is not registered in the "
                    f"{self.backend} task system; register it first"
                )
                raise TaskNotFoundError(msg)
        record = TaskRecord(spec, task_id, bridge, self.clock.monotonic(), next(self.state.seq))
        self.tasks[task_id] = record
        self.graph.add(task_id, spec.dependencies)
        self._emit(record, None, PENDING)
        if _logging._enabled:
            self._log_transition(record, PENDING)
        failed = self._deps_failed(record)
        if failed is not None:
            self._cancel(record, self._dependency_error(record, failed), propagate=False)
        return task_id

    def op_execute(self, reply: ReplyTo, task_id: str, wait: bool) -> Any:
        record = self._get(task_id)
        accepted = record.status is PENDING
        if wait:
            # The waiter first: an attempt started right below can answer it itself.
            self.op_wait(reply, task_id)
        if accepted:
            self._execute(record)
            self._after_change()
        return DEFERRED if wait else accepted

    def op_wait(self, reply: ReplyTo, task_id: str) -> Any:
        record = self._get(task_id)
        if record.status in TERMINAL:
            deliver(reply, record)
            return DEFERRED
        if record.waiters is None:
            record.waiters = [reply]
        else:
            record.waiters.append(reply)
        return DEFERRED

    def op_unwait(self, reply: ReplyTo, task_id: str, waiter: ReplyTo) -> None:
        """``waiter`` stopped waiting (its wait timed out or was cancelled): drop it."""
        record = self.tasks.get(task_id)
        waiters = None if record is None else record.waiters
        if not waiters:
            return
        assert record is not None
        for index, reply_to in enumerate(waiters):
            if reply_to is waiter:
                del waiters[index]
                if index < record.delegated:  # the attempt's copy answers nobody now
                    record.delegated -= 1
                return

    def op_block(self, reply: ReplyTo, task_id: str, token: object, blocked: bool) -> None:
        """Task ``task_id`` waits (``blocked``) or stopped waiting for another task.

        The new manager gives its slot back meanwhile; the old one has no slots."""

    def _can_stop(self, record: TaskRecord) -> bool:
        """Whether ``record`` can be cancelled now (the new manager says no while an
        attempt that already ended is reporting its outcome)."""
        return True

    def op_cancel(self, reply: ReplyTo, task_id: str) -> Any:
        record = self._get(task_id)
        if record.status in TERMINAL:
            return False
        if not self._can_stop(record):
            record.cancels = [*(record.cancels or ()), reply]
            return DEFERRED  # answered once the attempt's outcome arrives
        self._cancel(record, TaskCancelledError(f"task {task_id!r} was cancelled"), propagate=True)
        self._after_change()
        return True

    def op_get(self, reply: ReplyTo, task_id: str) -> TaskInfo:
        return self._get(task_id).info(self.graph, self.backend)

    def op_status(self, reply: ReplyTo, task_id: str) -> TaskStatus:
        return self._get(task_id).status

    def op_result(self, reply: ReplyTo, task_id: str) -> Any:
        record = self._get(task_id)
        return record.result if record.status is COMPLETED else None

    def op_error(self, reply: ReplyTo, task_id: str) -> BaseException | None:
        return self._get(task_id).error

    def op_all(self, reply: ReplyTo) -> list[TaskInfo]:
        graph, backend = self.graph, self.backend
        return [r.info(graph, backend) for r in self.tasks.values()]

    def op_by_status(self, reply: ReplyTo, status: TaskStatus) -> list[TaskInfo]:
        graph, backend = self.graph, self.backend
        return [r.info(graph, backend) for r in self.tasks.values() if r.status is status]

    def op_by_type(self, reply: ReplyTo, task_type: str) -> list[TaskInfo]:
        graph, backend = self.graph, self.backend
        return [r.info(graph, backend) for r in self.tasks.values() if r.task_type == task_type]

    def op_page_keys(self, reply: ReplyTo, query: PageQuery) -> tuple[int, list[float]]:
        """How many tasks match a page query, and the creation times of the first
        ``offset + limit`` of them, newest first (see `actors._query`)."""
        return page_keys(self.tasks.values(), query)

    def op_page_rows(
        self, reply: ReplyTo, query: PageQuery, slices: dict[str, tuple[int, int]]
    ) -> list[TaskRow]:
        """The rows of this manager's matches ``slices[backend]`` (start, stop)."""
        start, stop = slices[self.backend]
        return page_rows(self.tasks.values(), query, start, stop, self.backend)

    def op_detail(self, reply: ReplyTo, task_id: str) -> TaskDetail:
        record = self._get(task_id)
        spec = record.spec
        live = record.args is not None
        return TaskDetail(
            info=record.info(self.graph, self.backend),
            dependents=self.graph.dependents(task_id) if task_id in self.graph else (),
            failures=tuple(record.failures or ()),
            func=record.func if live else (spec.func if spec is not None else None),
            args=record.args if live else (spec.args if spec is not None else None),
            kwargs=record.kwargs if live else (spec.kwargs if spec is not None else None),
            retryable=record.status is FAILED and spec is not None,
        )

    def op_definition(self, reply: ReplyTo, task_id: str) -> tuple[TaskSpec, LoopBridge | None]:
        """A failed task's registration and loop, to register it again (`retry_task`)."""
        record = self._get(task_id)
        spec = record.spec
        if record.status is not FAILED or spec is None:
            msg = f"task {task_id!r} is {record.status.value}; only a failed task can be retried"
            raise InvalidTaskError(msg)
        deps = self.graph.dependencies(task_id) if task_id in self.graph else ()
        return spec._replace(dependencies=tuple(deps)), record.kept_bridge

    def op_add_dependency(self, reply: ReplyTo, task_id: str, depends_on: str) -> None:
        record = self._get(task_id)
        dependency = self._get(depends_on)
        if record.status is not PENDING and record.status is not WAITING:
            msg = (
                f"cannot add a dependency to task {task_id!r}: it is {record.status.value}; "
                "dependencies can be added to pending or waiting tasks only"
            )
            raise InvalidTaskError(msg)
        self.graph.add_edge(task_id, depends_on)
        if dependency.status is FAILED or dependency.status is CANCELLED:
            self._cancel(record, self._dependency_error(record, dependency), propagate=True)
        elif record.status is WAITING and dependency.status is PENDING:
            self._execute(dependency)
        self._after_change()

    def op_flush(self, reply: ReplyTo) -> None:
        """Send pending lifecycle events to the monitor now (before answering)."""
        self._flush_events()

    def op_cleanup(self, reply: ReplyTo, max_age: float) -> list[str]:
        removed = self._cleanup(max_age)
        self._flush_events()  # the monitor hears of it before the caller does
        return removed

    def op_shutdown(self, reply: ReplyTo) -> int:
        """Cancel every unfinished task: the system is going down."""
        live = [r for r in self.tasks.values() if r.status not in TERMINAL]
        for record in live:
            if record.status not in TERMINAL and self._can_stop(record):
                error = TaskCancelledError(
                    f"task {record.task_id!r} was cancelled: the actor system shut down"
                )
                self._cancel(record, error, propagate=False)
        self._flush_events()
        return len(live)
