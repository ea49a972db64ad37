"""The task engine: the one state machine behind both task systems.

An `Engine` owns the task records, the dependency graph and the ready queue, and makes
every decision about a task: when it is ready, when an attempt starts, retries (fixed
delay or tenacity ``retry_wait``), timeouts, circuit breakers, cancellation, dependency
failure, concurrency slots, cleanup and shutdown. It is pure: it never runs user code,
never touches an event loop or an actor, and reads time from the injected clock. Where
something must happen in the world it calls its `Port` (start an attempt, arm a timer
that comes back as a message); outcomes come back as method calls from the shell actor.

Every change of a task's status goes through `Engine._move`, which appends one
`Transition` to ``transitions`` (the shell sends them to the monitor in batches).

A `Policy` makes the difference between the two task systems. ``scheduler``: at most
``limit`` attempts run at once, ready tasks wait ``queued`` by priority, then arrival
(``ready`` and ``ready_run``); a plain function is ``running`` (and its timeout counts)
from when the pool reports that it starts. ``simple`` (the seed's design): no limit and
no queue, a ready task starts at once (so in the order it became ready), ``running``
from the hand-off.

Results flow along dependencies: a task's `result_of` placeholders are filled in with its
dependencies' results when it becomes ready (`_fill`, once); until then each such
dependency is pinned (``pins``), so neither `cleanup` nor the ``max_finished`` bound drops
its result. A task with ``on_dependency_failure="run"`` becomes ready once every
dependency ended, and stops the spread of a failure (`_finish`).

A task whose circuit breaker refuses its attempt is parked (`_park`): ``queued``, no
slot, no attempt counted, its timeout not running; it is released by priority when the
breaker lets calls through (`_wake`: a timer at the breaker's ``retry_at``, the end of a
trial call, or `breaker_ready` from the breaker's listener).

A running task that waits for another task lends its slot out while it waits (`block`)
and takes it back when the wait ends, even if that briefly puts more than ``limit``
tasks in the running count: as Ray releases a worker blocked in ``ray.get``, so a parent
that waits for its children never starves them of slots. Such waits make the wait-for
relation (``waits``, `WaitFor`): a wait, a submit or an ``add_dependency`` that would
close a cycle of waits and dependencies is refused, naming it, as nothing in it could
ever end.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from loguru import logger

from actors.core import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    QUEUED,
    RETRYING,
    RUNNING,
    TASK_LOGGING,
    TERMINAL,
    WAITING,
    CircuitOpenError,
    ConfigError,
    DependencyFailedError,
    DuplicateTaskError,
    InvalidTaskError,
    SafeRepr,
    TaskCancelledError,
    TaskFailedError,
    TaskInfo,
    TaskNotExecutedError,
    TaskNotFoundError,
    TaskScope,
    TaskStatus,
    TaskTimeoutError,
    shrink,
)
from actors.engine._graph import DependencyGraph
from actors.engine._outcomes import INTERRUPTED, breaker_outcome, ended_cancelled, retry_delay
from actors.engine._record import (
    MAX_FAILURES_KEPT,
    Attempt,
    LiveRecord,
    TaskRecord,
    Timer,
    failure_of,
    outcome_error,
)
from actors.engine._results import substitute
from actors.engine._waits import DEPENDS, WAITS, WaitFor

if TYPE_CHECKING:
    from actors.core import LoopBridge, ReplyTo
    from actors.engine._breaker import CircuitBreaker
    from actors.engine._validate import TaskSpec
    from supervisors import Clock

__all__ = ["Engine", "Policy", "Port", "StartFailed", "Transition"]

_WITH_ERROR = frozenset({RETRYING, FAILED, CANCELLED})
_LOGGED = frozenset({PENDING, RUNNING, RETRYING, COMPLETED, FAILED, CANCELLED})
_ATTEMPT_FAILED = frozenset({RETRYING, FAILED})
_log = logger.bind(actor="engine")
_transition = tuple.__new__
_SEQ_BITS = 48
"""A queued task's rank is ``(-priority << _SEQ_BITS) + seq``: by priority, then by
registration (an engine registers fewer than 2**48 tasks)."""


class Transition(NamedTuple):
    """One change of a task's status (a named tuple: one is built per transition)."""

    task_id: str
    name: str
    task_type: str
    old: TaskStatus | None
    """None: the task was registered."""
    new: TaskStatus | None
    """None: the task was removed by a cleanup."""
    attempt: int
    at: float
    """The injected clock's monotonic time."""
    wall: float
    """Wall-clock time (``time.time`` unless another was injected)."""
    error: str | None
    """The type name of the error of a retrying, failed or cancelled task, else None."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What differs between the task systems (see the module docstring)."""

    backend: str
    """``"new"`` or ``"old"``: the ``backend`` of the system's `TaskInfo`."""
    max_concurrent: int | None = None
    """Attempts that run at once (the governor may lower it), or None: no limit, no queue."""
    start_reported: bool = False
    """A plain function runs from when its runner reports it (`Engine.function_started`)."""
    max_finished: int = 0
    """Finished tasks kept at most (the oldest go first); 0: no bound."""

    def __post_init__(self) -> None:
        limit, kept = self.max_concurrent, self.max_finished
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ConfigError(f"max_concurrent must be an int >= 1 or None, got {limit!r}")
        if type(kept) is not int or kept < 0:
            raise ConfigError(f"max_finished must be an int >= 0, got {kept!r}")

    @classmethod
    def scheduler(cls, max_concurrent: int, max_finished: int = 0) -> Policy:
        """The new task system: bounded concurrency, priorities, the thread-pool actor."""
        return cls("new", max_concurrent, True, max_finished)

    @classmethod
    def simple(cls, max_finished: int = 0) -> Policy:
        """The old task system: no limit, tasks start as they become ready."""
        return cls("old", None, False, max_finished)


class StartFailed(Exception):
    """Raised by `Port.start_attempt`: the attempt could not start; it fails with ``error``,
    retried while retries remain if ``retry``."""

    def __init__(self, error: BaseException, retry: bool) -> None:
        super().__init__(error)
        self.error = error
        self.retry = retry


class Port(Protocol):
    """What the engine asks of the world; the manager actor implements it."""

    def start_attempt(self, record: TaskRecord) -> Attempt:
        """Start attempt ``record.attempts`` of ``record`` (raise `StartFailed` if not).

        The attempt may keep ``record.waiters`` as it is (a caller, or a list of them:
        its first ``record.delegated`` callers are the attempt's to answer if it
        succeeds): the engine never changes that list in place afterwards
        (`TaskRecord.lent`)."""

    def timeout_after(self, delay: float, task_id: str, attempt: int) -> Timer:
        """Call `Engine.timed_out` with these after ``delay`` seconds on the clock."""

    def retry_after(self, delay: float, task_id: str, attempt: int) -> Timer:
        """Call `Engine.retry_due` with these after ``delay`` seconds on the clock."""

    def breaker_after(self, delay: float, name: str) -> Timer:
        """Call `Engine.breaker_ready` with ``name`` after ``delay`` seconds on the clock."""


def _as_given(breaker: CircuitBreaker | str) -> CircuitBreaker:
    """`Engine.breakers` of an engine without a registry: the given breaker itself."""
    if isinstance(breaker, str):
        msg = (
            f"circuit breaker {breaker!r} is a name, and this engine has no breaker "
            "registry to find it in; pass the CircuitBreaker, or build the Engine with "
            "breakers=..."
        )
        raise InvalidTaskError(msg)
    return breaker


def deliver(reply: ReplyTo, record: TaskRecord) -> None:
    """Answer a waiter with a finished task's outcome."""
    if record.status is COMPLETED:
        reply.set_result(record.result)
    else:
        error = outcome_error(record)
        reply.set_exception(error or TaskCancelledError(f"task {record.task_id!r} ended"))


class Engine:
    """Task records, the dependency graph and every decision about them.

    Not thread-safe: one actor at a time calls it. It outlives the actor's incarnations
    (it is the child's state); each incarnation `attach`\\ es itself as the port.
    """

    def __init__(
        self,
        policy: Policy,
        clock: Clock,
        wall: Callable[[], float] = time.time,
        *,
        breakers: Callable[[Any], CircuitBreaker] | None = None,
    ) -> None:
        self.policy = policy
        self.shut_down = False
        """Set by `shutdown`: the manager refuses new tasks from then on."""
        self.breakers: Callable[[Any], CircuitBreaker] = _as_given if breakers is None else breakers
        """The breaker a registration's ``circuit_breaker`` (a name, or a breaker) shares,
        asked once the registration is accepted (`_register`): a refused one makes none.
        It may refuse the registration itself (`BreakerConfigError`). By default (no
        registry) the given `CircuitBreaker` as it is, and a name is refused."""
        self.backend = policy.backend
        self.clock = clock
        self._now = clock.monotonic
        self._wall = wall
        self.port: Port  # set by `attach`
        self.tasks: dict[str, TaskRecord] = {}
        self.graph = DependencyGraph()
        self.waits = WaitFor()
        """The live waits of running attempts' code for tasks of this engine (the
        wait-for relation): a wait that would close a cycle of it, through dependencies
        too, is refused (`_refuse_endless_wait`)."""
        self.ready: list[int] = []
        """A heap of queued tasks' ranks (`_SEQ_BITS`): most urgent, then earliest,
        first. One int per entry: a heap of 20,000 (-priority, seq, task_id) tuples
        spent ~9% of the manager thread's CPU in a burst of submits comparing them item
        by item. The ranks queued in ascending order wait in ``ready_run`` instead."""
        self.ready_run: deque[int] = deque()
        """Queued ranks, each greater than the one before it: the ranks of tasks queued in
        rank order (one priority, in registration order: a burst), which need no heap.
        `_pump` takes the smaller of its first rank and the heap's, so the queue is
        taken in the heap's order; a heap pop of a burst's 20,000 ranks cost ~0.25 us
        per task more (`_ready`)."""
        self.queued: dict[int, TaskRecord] = {}
        """The task of each rank in ``ready`` and ``ready_run`` (an entry of a task
        cancelled meanwhile stays until `_pump` pops it, as it did in the heap)."""
        self.running = 0
        self.limit = policy.max_concurrent or 0
        self._queue = policy.max_concurrent is not None
        self._bound = policy.max_finished  # (`_retain`: read per finished task)
        self._seq = itertools.count()
        # Finished records in the order they finished, for max_finished (unused when it
        # is 0; the records themselves, not (id, record) pairs: a retained task is one
        # object the cyclic GC tracks, not two).
        self.finished: deque[TaskRecord] = deque()
        self.forgotten: list[str] = []
        """Removed ids (evicted or cleaned up, or refused: never registered) the facade
        has not been told of yet: the shell tells it in batches (`messages.Forget`)."""
        self.transitions: list[Transition] = []
        """Not yet sent to the monitor (the shell takes them)."""
        self.cleanup_timer: Timer | None = None
        # Tasks waiting for their circuit breaker, per breaker name: the breaker and a
        # heap of (-priority, seq, task_id); one timer per open breaker, at its retry_at.
        self.parked: dict[str, tuple[CircuitBreaker, list[tuple[int, int, str]]]] = {}
        self.breaker_timers: dict[str, Timer] = {}
        # Finished tasks the max_finished bound skipped while a dependent still had to
        # take their result: bounded again once it did.
        self.held: set[str] = set()
        self.released: list[TaskRecord] = []
        """Released by their breaker, for `_pump` to start (the simple policy)."""
        self._claimed: Attempt | None = None
        """The attempt this engine claimed to stop it (a cancel, a timeout), until it
        stopped: a crash in between leaves no outcome on its way (its runner lost the
        claim), so `_can_stop` still lets it be stopped (`crashed`, a later cancel)."""
        self._init_extension()

    def _init_extension(self) -> None:
        """Make a subclass's own state, last in `__init__` (none here): a subclass
        extends the engine's state without a constructor of its own to keep in step."""

    def attach(self, port: Port) -> None:
        self.port = port

    # -- the one place a status changes -------------------------------------------------

    def _move(
        self,
        record: TaskRecord,
        new: TaskStatus | None,
        at: float | None = None,
        registered: bool = False,
    ) -> None:
        """Move ``record`` to ``new`` (None: it was removed) at ``at`` (default: now).
        (`_remove` makes a removal's transition itself, the same way.)"""
        old = None if registered else record.status
        if new is not None:
            record.status = new
        if at is None:
            at = self._now()
        error = record.error
        self.transitions.append(
            _transition(  # a Transition without the call of its __new__ (a hot path)
                Transition,
                (
                    record.task_id,
                    record.name,
                    record.task_type,
                    old,
                    new,
                    record.attempts,
                    at,
                    self._wall(),
                    None if error is None or new not in _WITH_ERROR else type(error).__name__,
                ),
            )
        )
        if error is not None and new in _ATTEMPT_FAILED:  # (a failed attempt set its error)
            self._note_failure(record, at)
        if TASK_LOGGING.on and new in _LOGGED:
            _log_transition(record, new)

    def _note_failure(self, record: TaskRecord, at: float) -> None:
        """Keep the failed attempt's error and traceback (the latest few) for the
        dashboard; only failures pay for it."""
        if record.failures is None:
            record.failures = deque(maxlen=MAX_FAILURES_KEPT)
        record.failures.append(failure_of(record.attempts, at, record.error))

    # -- queries ------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord:
        record = self.tasks.get(task_id)
        if record is None:
            raise TaskNotFoundError.for_id(task_id)
        return record

    def info(self, record: TaskRecord) -> TaskInfo:
        return record.info(self.graph, self.backend)

    def error_of(self, task_id: str) -> BaseException | None:
        """The task's error (None: it has none), as its callers get it (`outcome_error`)."""
        return outcome_error(self.get(task_id))

    # -- calls ----------------------------------------------------------------------------

    def register(self, spec: TaskSpec, task_id: str, bridge: LoopBridge) -> str:
        self._register(spec, task_id, bridge)
        return task_id

    def _register(self, spec: TaskSpec, task_id: str, bridge: LoopBridge) -> TaskRecord:
        tasks = self.tasks
        if task_id in tasks:
            msg = f"task id {task_id!r} is already registered; pick another or omit task_id"
            raise DuplicateTaskError(msg)
        dependencies = spec.dependencies
        for dep in dependencies:
            if dep not in tasks:
                msg = (
                    f"dependency {dep!r} of task {spec.name!r} is not registered in the "
                    f"{self.backend} task system; register it first"
                )
                raise TaskNotFoundError(msg)
        breaker = spec.circuit_breaker
        if breaker is not None:  # accepted: its breaker is shared now (may refuse it)
            breaker = self.breakers(breaker)
        self.graph.add(task_id, dependencies)
        now = self._now()
        record = tasks[task_id] = LiveRecord(spec, task_id, bridge, now, next(self._seq))
        if breaker is not None:
            record.breaker = breaker
        if record.results is not None:
            for dep in record.results:  # keep their results until this task takes them
                tasks[dep].pins += 1
        self._move(record, PENDING, now, True)  # registered
        record.wall_offset = self.transitions[-1].wall - now  # TaskInfo's wall-clock times
        if not dependencies or record.runs_anyway:
            return record
        failed = self._deps_failed(record)
        if failed is not None:
            self._cancel(record, _dependency_error(record, failed), propagate=False)
        return record

    def execute(
        self, task_id: str, waiter: ReplyTo | None = None, caller: TaskScope | None = None
    ) -> bool:
        """Execute a pending task and, first, its pending dependencies; True if it was
        pending. ``waiter`` gets the outcome (added first: the attempt may answer it);
        ``caller``: the attempt whose code waits, if any (see `wait`)."""
        record = self.tasks.get(task_id)
        if record is None:
            raise TaskNotFoundError.for_id(task_id)
        waiting = None if caller is None else self._refuse_endless_wait(record, caller)
        accepted = record.status is PENDING
        if waiter is not None:
            if accepted and record.waiters is None:  # its first waiter, as `wait` adds it
                record.waiters = waiter
            else:
                self.wait(task_id, waiter)
            if waiting is not None:  # (before it may end: its end drops the wait)
                self.waits.add(waiting.task_id, task_id, waiter)
        if accepted:
            self._execute(record, True)  # alone
            if ((self.ready or self.ready_run) and self.running < self.limit) or self.released:
                self._pump()  # (else it has nothing to start: a burst queues behind a full limit)
        return accepted

    def submit(
        self,
        spec: TaskSpec,
        task_id: str,
        bridge: LoopBridge,
        reply: ReplyTo,
        caller: TaskScope | None = None,
    ) -> None:
        """Register and execute a task; ``reply`` gets its outcome (`deliver`).
        ``caller``: the attempt whose code submits, if any (see `wait`)."""
        waiting = None
        if caller is not None:
            waiting = self._waiting_attempt(caller)
            if waiting is not None and spec.dependencies:
                self._refuse_endless_submit(spec, task_id, waiting)
        record = self._register(spec, task_id, bridge)
        if record.status is not PENDING:  # cancelled: a dependency had failed
            deliver(reply, record)
            return
        record.waiters = reply  # its first waiter (the attempt may answer it)
        if waiting is not None:
            self.waits.add(waiting.task_id, task_id, reply)
        if spec.dependencies:
            self._execute(record, True, record.created_at)  # the registration's read
        else:  # the common case: no dependency to execute first (as `_execute` decides)
            self._ready(record, True, record.created_at)
        if ((self.ready or self.ready_run) and self.running < self.limit) or self.released:
            self._pump()  # (else it has nothing to start: a burst queues behind a full limit)

    def wait(
        self,
        task_id: str,
        reply: ReplyTo,
        pending_ok: bool = True,
        caller: TaskScope | None = None,
    ) -> None:
        """``reply`` gets the task's outcome when it ends. Unless ``pending_ok``, a task
        never executed raises `TaskNotExecutedError`: nothing would end the wait. A
        wait by the code of a running attempt (``caller``) for its own task, or for a
        task that depends on it or waits for it (through other tasks' dependencies and
        waits: a cycle), raises `InvalidTaskError`: that task ends only after the
        caller's, which waits for it. An accepted one joins ``waits`` until it ends."""
        record = self.get(task_id)
        waiting = None if caller is None else self._refuse_endless_wait(record, caller)
        if not pending_ok and record.status is PENDING:
            msg = (
                f"task {record.name!r} ({task_id}) was registered but never executed, so "
                f"nothing would end this wait: call execute_task({task_id!r}) first (or "
                "execute_task(..., wait=True)), or pass a timeout to wait for another "
                "caller to execute it"
            )
            raise TaskNotExecutedError(msg)
        waiters = record.waiters
        if waiting is not None:  # (so the task has not ended)
            self.waits.add(waiting.task_id, task_id, reply)
        if record.status in TERMINAL:
            deliver(reply, record)
        elif waiters is None:
            record.waiters = reply  # the first one as it is: a list only from the second
        elif not isinstance(waiters, list):
            record.waiters = [waiters, reply]
        elif waiters is record.lent:  # the attempt holds it: a list of our own
            record.waiters = [*waiters, reply]
        else:
            waiters.append(reply)

    def _waiting_attempt(self, caller: TaskScope) -> TaskRecord | None:
        """The task of ``caller`` if it is a running attempt of this engine, else None
        (another system's task, or an attempt that ended)."""
        waiting = self.tasks.get(caller.task_id)
        execution: object = None if waiting is None else waiting.execution
        return waiting if waiting is not None and execution is caller else None

    def _live_path(self, start: str, goal: TaskRecord) -> list[str] | None:
        """``start -> ... -> goal`` along dependencies and waits through tasks that have
        not ended (`WaitFor.path`): ``start`` ends only after ``goal``."""
        tasks = self.tasks

        def live(task_id: str) -> bool:
            record = tasks.get(task_id)
            return record is not None and record.status not in TERMINAL

        return self.waits.path(self.graph, start, goal.task_id, live)

    def _refuse_endless_wait(self, record: TaskRecord, caller: TaskScope) -> TaskRecord | None:
        """Raise `InvalidTaskError` if the code of attempt ``caller`` may not wait for
        ``record``: it is the caller's own task, or ends only after the caller's (it
        depends on it, or waits for it, directly or through other tasks: the path
        named). Else the caller's task if the wait is one of the wait-for relation
        (``caller`` is a running attempt of this engine and ``record`` has not ended)."""
        if record.status in TERMINAL:
            return None  # (a dependent cancelled already: the wait is answered at once)
        waiting = self._waiting_attempt(caller)
        if waiting is None:
            return None
        name, task_id = waiting.name, waiting.task_id
        if waiting is record:
            msg = (
                f"task {name!r} ({task_id}) cannot wait for its own outcome: it ends only "
                "after this wait, which would never end"
            )
            raise InvalidTaskError(msg)
        path = self._live_path(record.task_id, waiting)
        if path is None:
            return waiting
        if self.waits.through_waits(path):
            msg = (
                f"task {name!r} ({task_id}) cannot wait for task {record.name!r} "
                f"({record.task_id}): "
                + _cycle(f"{task_id} {WAITS} {record.task_id}, " + self.waits.links(path))
            )
        else:
            msg = (
                f"task {name!r} ({task_id}) cannot wait for task {record.name!r} "
                f"({record.task_id}): it depends on the waiting task ("
                + " -> ".join(path)
                + "), so it ends only after this wait, which would never end"
            )
        raise InvalidTaskError(msg)

    def _refuse_endless_submit(self, spec: TaskSpec, task_id: str, waiting: TaskRecord) -> None:
        """Raise `InvalidTaskError` if the code of the running attempt of ``waiting``
        may not submit ``spec`` (and wait for it): the new task would end only after
        the caller's (it would depend on it, or on a task that waits for it, directly or
        through tasks that have not ended), and would not be cancelled at once by a
        dependency that failed."""
        tasks = self.tasks
        cancels = spec.on_dependency_failure != "run"
        path = None
        for dep in spec.dependencies:
            d = tasks.get(dep)
            if d is None:
                continue  # (refused by the registration: not found)
            if cancels and (d.status is FAILED or d.status is CANCELLED):
                return  # cancelled at once: answered at once
            if path is None and d.status not in TERMINAL:
                path = [dep] if d is waiting else self._live_path(dep, waiting)
        if path is None:
            return
        head = (
            f"task {waiting.name!r} ({waiting.task_id}) cannot submit task "
            f"{spec.name!r} ({task_id}) and wait for it: "
        )
        if self.waits.through_waits(path):
            links = self.waits.links(path)
            msg = head + _cycle(
                f"{waiting.task_id} {WAITS} {task_id}, {task_id} {DEPENDS} {path[0]}"
                + (f", {links}" if links else "")
            )
        else:
            msg = (
                head
                + "it would depend on the waiting task ("
                + " -> ".join([task_id, *path])
                + "), so it would end only after this wait, which would never end"
            )
        raise InvalidTaskError(msg)

    def unwait(self, task_id: str, waiter: ReplyTo) -> None:
        """``waiter`` stopped waiting (its wait timed out or was cancelled): drop it."""
        if self.waits.into:
            self.waits.withdraw(task_id, waiter)
        record = self.tasks.get(task_id)
        if record is None or record.waiters is None:
            return
        if not isinstance(record.waiters, list):  # its only waiter
            if record.waiters is waiter:
                record.waiters = None
                record.delegated = 0  # the attempt's caller answers nobody now
            return
        for index, reply_to in enumerate(record.waiters):
            if reply_to is waiter:
                if record.waiters is record.lent:  # the attempt holds it: a list of our own
                    record.waiters = record.waiters.copy()
                del record.waiters[index]
                if index < record.delegated:  # the attempt's list answers nobody now
                    record.delegated -= 1
                return

    def block(self, task_id: str, token: object, blocked: bool) -> None:
        """The attempt ``token`` of ``task_id`` (the attempt itself, as its code's
        context names it) waits (``blocked``) for another task, or stopped waiting: it
        lends its slot out meanwhile."""
        record = self.tasks.get(task_id)
        execution = None if record is None else record.execution
        if record is None or execution is None or execution is not token:
            return  # not this attempt (it ended meanwhile, or another system's task)
        if blocked:
            record.blocked += 1
            if record.blocked == 1:
                self.running -= 1
                self._pump()
        elif record.blocked:
            record.blocked -= 1
            if record.blocked == 0:
                self.running += 1

    def cancel(self, task_id: str, reply: ReplyTo) -> bool | None:
        """Cancel a task: False if it had ended, None if ``reply`` is answered later
        (its attempt ended and its outcome is on the way)."""
        record = self.get(task_id)
        if record.status in TERMINAL:
            return False
        if not self._can_stop(record):
            record.cancels = [*(record.cancels or ()), reply]
            return None
        self._cancel(record, TaskCancelledError(f"task {task_id!r} was cancelled"), propagate=True)
        self._pump()
        return True

    def add_dependency(self, task_id: str, depends_on: str) -> None:
        record = self.get(task_id)
        dependency = self.get(depends_on)
        if record.status is not PENDING and record.status is not WAITING:
            msg = (
                f"cannot add a dependency to task {task_id!r}: it is {record.status.value}; "
                "dependencies can be added to pending or waiting tasks only"
            )
            raise InvalidTaskError(msg)
        if self.waits.out and dependency.status not in TERMINAL:
            self._refuse_endless_dependency(record, dependency)
        self.graph.add_edge(task_id, depends_on)
        if (dependency.status is FAILED or dependency.status is CANCELLED) and not (
            record.runs_anyway
        ):
            self._cancel(record, _dependency_error(record, dependency), propagate=True)
        elif record.status is WAITING and dependency.status is PENDING:
            self._execute(dependency)
        self._pump()

    def _refuse_endless_dependency(self, record: TaskRecord, dependency: TaskRecord) -> None:
        """Raise `InvalidTaskError` if ``record`` may not depend on ``dependency``: the
        running code of ``dependency`` waits for ``record``, directly or through tasks
        that have not ended, so ``record`` could never start. (A path through
        dependencies only is a cycle of the graph: `DependencyGraph.add_edge` refuses
        it.)"""
        path = self._live_path(dependency.task_id, record)
        if path is None or not self.waits.through_waits(path):
            return
        task_id, depends_on = record.task_id, dependency.task_id
        msg = (
            f"cannot make task {task_id!r} depend on {depends_on!r}: "
            + _cycle(f"{task_id} {DEPENDS} {depends_on}, " + self.waits.links(path))
            + f"; {task_id!r} could never start (add the dependency once {depends_on!r} "
            "ended)"
        )
        raise InvalidTaskError(msg)

    def set_limit(self, limit: int) -> None:
        """The governor's new concurrency limit (the scheduler policy only)."""
        if self._queue:
            self.limit = limit
            self._pump()

    def cleanup(self, max_age: float) -> list[str]:
        """Remove the tasks that finished ``max_age`` seconds ago or earlier."""
        cutoff = self._now() - max_age
        removed = [
            r.task_id
            for r in self.tasks.values()
            if r.finished_at is not None and r.finished_at <= cutoff and not r.pins
        ]
        if removed:
            self._remove(removed)
            if self.finished:  # drop what is gone, so the count bound counts live tasks
                tasks = self.tasks
                self.finished = deque(r for r in self.finished if tasks.get(r.task_id) is r)
        return removed

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        """Put tasks back into a fresh engine (recovery): the ``max_finished`` bound is
        applied when the block ends, to the tasks finished then, in the order they
        finished (their ``finished_at``, as a live engine applies it; ties in the order
        they were put back). Applied as each one ends, it removed a finished task
        before a dependent put back after it could pin its result."""
        bound, self._bound = self._bound, 0
        try:
            yield
        finally:
            self._bound = bound
        if bound:
            ended = [r for r in self.tasks.values() if r.status in TERMINAL]
            if len(ended) > bound:  # (else none is removed: the order does not matter)
                ended.sort(key=_finished_at)
            for record in ended:
                self._retain(record)

    def shutdown(self) -> int:
        """Cancel every unfinished task: the system is going down. Returns how many."""
        self.shut_down = True
        live = [r for r in self.tasks.values() if r.status not in TERMINAL]
        for timer in self.breaker_timers.values():
            timer.cancel()
        self.breaker_timers.clear()
        self.parked.clear()
        self.released.clear()
        for record in live:
            if record.status not in TERMINAL and self._can_stop(record):
                error = TaskCancelledError(
                    f"task {record.task_id!r} was cancelled: the actor system shut down"
                )
                self._cancel(record, error, propagate=False)
        return len(live)

    # -- what the world reports -----------------------------------------------------------

    def attempt_done(
        self,
        task_id: str,
        attempt: int,
        value: Any,
        error: BaseException | None,
        at: float | None,
        answered: bool = True,
    ) -> None:
        """Attempt ``attempt`` ended at ``at`` (None: now) with ``value`` or ``error``.
        ``answered``: on success, the attempt answered the waiters it was lent (False:
        it left every waiter to us)."""
        record = self.tasks.get(task_id)
        if record is None or record.execution is None or record.attempts != attempt:
            return  # cleaned up meanwhile (timeouts and cancels claim the attempt first)
        cancels, record.cancels = record.cancels, None
        delegated = record.delegated if answered else 0
        self._leave_running(record, None if error is None else breaker_outcome(error))
        if error is None:
            record.result = value
            self._finish(record, COMPLETED, True, delegated, at)  # (no keywords: a hot path)
        elif ended_cancelled(error):  # its code raised CancelledError: like asyncio
            record.error = error
            self._finish(record, CANCELLED, at=at)
        else:
            self._attempt_failed(record, error)
        if cancels:  # cancel calls that arrived while this outcome was on its way
            stopped = record.status not in TERMINAL
            if stopped:
                cancelled = TaskCancelledError(f"task {task_id!r} was cancelled")
                self._cancel(record, cancelled, propagate=True)
            for reply in cancels:
                reply.set_result(stopped)
        if ((self.ready or self.ready_run) and self.running < self.limit) or self.released:
            self._pump()  # (else it has nothing to start)

    def crashed(self, task_id: str, error: BaseException, outcome_lost: bool = False) -> bool:
        """A message about ``task_id`` crashed the manager (and was dropped, not re-run):
        unless it ended, the task fails with ``error`` (its attempt, if one runs, is
        stopped), and cancel calls waiting on an outcome that will never come hear False.
        Its attempt is claimed first, as a cancel claims it: one that ended already has
        its outcome on the way (and may have answered its waiters), which decides,
        unless that outcome was the message dropped (``outcome_lost``). Returns whether
        it failed here."""
        record = self.tasks.get(task_id)
        if record is None or record.status in TERMINAL:
            return False
        if not self._can_stop(record) and not outcome_lost:
            return False
        cancels, record.cancels = record.cancels, None
        self._stop_execution(record, error)
        record.error = error
        self._finish(record, FAILED)
        for reply in cancels or ():
            reply.set_result(False)
        self._pump()
        return True

    def function_started(self, task_id: str, attempt: int, at: float) -> None:
        """The runner started attempt ``attempt`` of a plain function at ``at``."""
        record = self.tasks.get(task_id)
        if (
            record is not None
            and record.status is QUEUED
            and record.execution is not None
            and record.attempts == attempt
        ):
            self._begin(record, at)

    def timed_out(self, task_id: str, attempt: int) -> None:
        record = self.tasks.get(task_id)
        if record is None or record.status is not RUNNING or record.attempts != attempt:
            return
        record.timer = None
        error = TaskTimeoutError(
            f"task {task_id!r} attempt {record.attempts} timed out after {record.timeout}s"
        )
        execution = record.execution
        if execution is not None:
            if not execution.claim():
                return  # it ended just now: its outcome is on its way and wins
            self._claimed = execution
            execution.cancel(error)
            self._claimed = None
        self._leave_running(record, error)  # a hung service is a failure for its breaker
        self._attempt_failed(record, error)
        self._pump()

    def retry_due(self, task_id: str, attempt: int) -> None:
        record = self.tasks.get(task_id)
        if record is not None and record.status is RETRYING and record.attempts == attempt:
            record.timer = None
            self._ready(record)
            self._pump()

    def breaker_ready(self, name: str, timer: bool = False) -> None:
        """Circuit breaker ``name`` may let calls through again (it changed state, or,
        with ``timer``, the time at which it half-opens came): release the tasks waiting
        for it, as many as it lets through."""
        if timer:
            self.breaker_timers.pop(name, None)
        if name in self.parked:
            self._wake(name)
            self._pump()

    # -- scheduling -----------------------------------------------------------------------

    def _ready(self, record: TaskRecord, alone: bool = False, at: float | None = None) -> None:
        """``record`` may run now: queued for a slot (`_pump` starts the most urgent
        first), or started at once without a queue. ``alone``: no other task becomes
        ready before the next `_pump`, so when nothing is queued (nor released by a
        breaker) and a slot is free, it starts at once, as `_pump` would start it,
        without a heap entry. ``at``: now, if the caller read the clock already (one
        read for the moves of one call)."""
        if record.results is not None:
            self._fill(record)
        if at is None:
            at = self._now()
        if self._queue:
            self._move(record, QUEUED, at)
            if (
                alone
                and not self.ready
                and not self.ready_run
                and not self.released
                and self.running < self.limit
            ):
                self._start_attempt(record, at)
                return
            rank = (-record.priority << _SEQ_BITS) + record.seq
            self.queued[rank] = record
            run = self.ready_run
            if not run or rank > run[-1]:  # (a burst: in rank order, no heap)
                run.append(rank)
            else:
                heapq.heappush(self.ready, rank)
        else:
            self._start_attempt(record, at)

    def _pump(self) -> None:
        if self.released:
            released, self.released = self.released, []
            for woken in released:
                if woken.status is QUEUED and woken.execution is None and not woken.parked:
                    self._start_attempt(woken)
        ready = self.ready
        run = self.ready_run
        queued = self.queued
        while (ready or run) and self.running < self.limit:
            # The smaller rank of the two: the heap's order (ranks are unique).
            if run and (not ready or run[0] < ready[0]):
                record = queued.pop(run.popleft(), None)
            else:
                record = queued.pop(heapq.heappop(ready), None)
            if not ready and not run:  # drained: a new table (a dict never gives its table back)
                queued = self.queued = {}
            if record is not None and record.status is QUEUED and record.execution is None:
                self._start_attempt(record)

    def _start_attempt(self, record: TaskRecord, at: float | None = None) -> None:
        """Start the next attempt of ``record`` (``at``: now, if the caller read it)."""
        breaker = record.breaker
        if breaker is not None:
            try:
                record.permit = breaker.acquire()
            except CircuitOpenError:
                self._park(record, breaker)
                return
        self.running += 1
        record.attempts += 1
        waiters = record.lent = record.waiters
        record.delegated = (
            0 if waiters is None else len(waiters) if isinstance(waiters, list) else 1
        )
        if record.is_coroutine or not self.policy.start_reported:
            self._begin(record, self._now() if at is None else at)
        try:
            record.execution = self.port.start_attempt(record)
        except StartFailed as failed:
            self._leave_running(record, INTERRUPTED)
            self._attempt_failed(record, failed.error, retry=failed.retry)

    def _begin(self, record: TaskRecord, at: float) -> None:
        """The attempt's code starts at ``at``: the task runs, its timeout counts."""
        if record.started_at is None:
            record.started_at = at
        self._move(record, RUNNING, at)
        if record.timeout is not None:
            delay = max(0.0, record.timeout - max(0.0, self._now() - at))
            record.timer = self.port.timeout_after(delay, record.task_id, record.attempts)

    def _park(self, record: TaskRecord, breaker: CircuitBreaker) -> None:
        """The breaker refused the attempt: it does not start, and counts as no attempt.
        The task waits ``queued``, holding no slot, until the breaker lets calls through
        (`_wake`); its timeout, per attempt, does not run meanwhile; cancel stops it."""
        record.parked = True
        if record.status is not QUEUED:
            self._move(record, QUEUED)
        entry = self.parked.get(breaker.name)
        if entry is None:
            entry = self.parked[breaker.name] = (breaker, [])
        heapq.heappush(entry[1], (-record.priority, record.seq, record.task_id))
        self._arm_breaker(breaker)

    def _arm_breaker(self, breaker: CircuitBreaker) -> None:
        """While ``breaker`` is open, a timer at the time it half-opens (one per breaker);
        half-open, the end of a trial call (or its listener) wakes its tasks."""
        name = breaker.name
        if name in self.breaker_timers:
            return
        retry_at = breaker.retry_at()
        if retry_at is not None:  # (one that fires a hair early, `_wake` arms again)
            delay = max(0.0, retry_at - breaker.clock.monotonic())
            self.breaker_timers[name] = self.port.breaker_after(delay, name)

    def _wake(self, name: str) -> None:
        """Release the tasks waiting for breaker ``name`` that it lets through now
        (highest priority first, then the earliest): all of them once it is closed."""
        breaker, waiting = self.parked[name]
        free = breaker.available_calls()
        if free == 0:
            self._arm_breaker(breaker)
            return
        tasks = self.tasks
        released = 0
        while waiting and (free is None or released < free):
            record = tasks.get(heapq.heappop(waiting)[2])
            if record is None or not record.parked or record.status is not QUEUED:
                continue  # cancelled or cleaned up meanwhile
            record.parked = False
            released += 1
            if self._queue:  # `_pump` starts it when a slot is free (the heap: any rank)
                rank = (-record.priority << _SEQ_BITS) + record.seq
                self.queued[rank] = record
                heapq.heappush(self.ready, rank)
            else:
                self.released.append(record)
        if not waiting:
            del self.parked[name]

    def _leave_running(self, record: TaskRecord, outcome: BaseException | None) -> None:
        """The attempt is over; ``outcome`` (None: success) goes to its breaker."""
        if self.waits.out:  # so are its code's waits
            self.waits.stopped(record.task_id)
        if record.blocked:
            record.blocked = 0  # its slot is lent out already
        else:
            self.running -= 1
        record.execution = None
        if record.timer is not None:
            record.timer.cancel()
            record.timer = None
        permit = record.permit
        breaker = record.breaker
        if permit is not None and breaker is not None:
            record.permit = None
            breaker.release(permit, outcome)
            if breaker.name in self.parked:  # a trial slot, or the closed breaker, is free
                self._wake(breaker.name)

    def _attempt_failed(self, record: TaskRecord, error: BaseException, retry: bool = True) -> None:
        """The attempt failed with ``error``: retry it while retries remain (never after a
        `TaskFailedError`), else the task fails."""
        record.error = error
        if not retry or record.attempts > record.max_retries or isinstance(error, TaskFailedError):
            self._finish(record, FAILED)
            return
        wait = record.retry_wait
        if wait is None:
            delay = record.retry_delay
        else:
            now = self._now()
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
        self._move(record, RETRYING)
        if delay <= 0:
            self._ready(record)
            return
        record.idle += delay
        record.timer = self.port.retry_after(delay, record.task_id, record.attempts)

    def _can_stop(self, record: TaskRecord) -> bool:
        """Whether ``record`` can be cancelled now: not while an attempt that already
        ended is reporting its outcome (one this engine claimed, whose stop crashed, can)."""
        execution = record.execution
        if execution is None or execution is self._claimed:
            return True
        if execution.claim():
            self._claimed = execution  # (until `_stop_execution` stopped it)
            return True
        return False

    def _stop_execution(self, record: TaskRecord, error: BaseException) -> None:
        """Stop ``record``'s attempt, if one runs, because of ``error``."""
        execution = record.execution
        if execution is not None:  # running, or handed to the pool
            execution.cancel(error)
            self._claimed = None
            self._leave_running(record, INTERRUPTED)
        elif record.timer is not None:
            record.timer.cancel()
            record.timer = None

    # -- dependencies and endings ---------------------------------------------------------

    def _deps_failed(self, record: TaskRecord) -> TaskRecord | None:
        tasks = self.tasks
        for dep in self.graph.direct_dependencies(record.task_id):
            d = tasks.get(dep)
            if d is not None and (d.status is FAILED or d.status is CANCELLED):
                return d
        return None

    def _deps_done(self, record: TaskRecord) -> bool:
        """Whether ``record`` may start: every dependency completed, or, for a task
        with ``on_dependency_failure="run"``, ended."""
        tasks = self.tasks
        if record.runs_anyway:
            for dep in self.graph.direct_dependencies(record.task_id):
                d = tasks.get(dep)
                if d is not None and d.status not in TERMINAL:
                    return False
            return True
        for dep in self.graph.direct_dependencies(record.task_id):
            d = tasks.get(dep)
            if d is not None and d.status is not COMPLETED:
                return False
        return True

    def _activate(self, record: TaskRecord) -> None:
        """An executed task: cancelled, ready or waiting, by its dependencies."""
        failed = None if record.runs_anyway else self._deps_failed(record)
        if failed is not None:
            self._cancel(record, _dependency_error(record, failed), propagate=True)
        elif self._deps_done(record):
            self._ready(record)
        else:
            self._move(record, WAITING)

    def _fill(self, record: TaskRecord) -> None:
        """Its dependencies ended: replace its `result_of` placeholders by their results
        (or, for a task that runs anyway, the exception of one that did not complete),
        once; retries reuse the filled arguments."""
        tasks = self.tasks
        values: dict[str, Any] = {}
        for dep in record.results or ():
            d = tasks[dep]  # pinned: kept until now
            if d.status is COMPLETED:
                values[dep] = d.result
            else:
                values[dep] = outcome_error(d) or TaskCancelledError(
                    f"task {dep!r} {d.status.value}"
                )
        if record.args is not None and record.kwargs is not None:
            record.args, record.kwargs = substitute(record.args, record.kwargs, values)
        self._unpin(record)

    def _unpin(self, record: TaskRecord) -> None:
        """``record`` took its dependencies' results, or ended without: they may go."""
        results, record.results = record.results, None
        tasks = self.tasks
        for dep in results or ():
            d = tasks.get(dep)
            if d is not None:
                d.pins -= 1
                if not d.pins and dep in self.held:
                    self.held.discard(dep)
                    self._retain(d)

    def _execute(self, record: TaskRecord, alone: bool = False, at: float | None = None) -> None:
        """Execute ``record`` and, first, every pending task it depends on (``alone``:
        a `_pump` follows at once, see `_ready`; ``at``: now, if the caller read it)."""
        if not self.graph.direct_dependencies(record.task_id):  # the common case
            if record.status is PENDING:
                self._ready(record, alone, at)
            return
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
        propagate: bool = True,
        answered: int = 0,
        at: float | None = None,
    ) -> None:
        """``record`` reached a terminal status at ``at`` (default: now): answer waiters
        (but the first ``answered``, whom the attempt answered itself), then move
        dependents."""
        task_id = record.task_id  # (a live record's slot: read once, before it is kept)
        if at is None:
            at = self._now()
        record.finished_at = at
        if record.results is not None:
            self._unpin(record)
        if status is COMPLETED:
            record.error = None  # a retried task that completed did not end with an error
        self._move(record, status, at)
        if self.waits.into:  # its waiters are answered now: their waits end
            self.waits.ended(task_id)
        waiters = record.waiters
        tasks = self.tasks
        if status is COMPLETED and tasks.get(task_id) is record:
            # Kept as a plain `TaskRecord` (4 slots for the GC, not 44); the live one is
            # dropped whole, so only its timer needs stopping (what `release` would do).
            if record.timer is not None:
                record.timer.cancel()
                record.timer = None
            record = tasks[task_id] = record.kept()
        else:
            record.release()
        if waiters is None:
            pass
        elif not isinstance(waiters, list):  # its only waiter
            if not answered:
                deliver(waiters, record)
        elif len(waiters) > answered:
            for reply in waiters[answered:] if answered else waiters:
                deliver(reply, record)
        if self._bound:
            self._retain(record)
        if not propagate:
            return
        dependents = self.graph.direct_dependents(task_id)
        if not dependents:
            return
        if status is COMPLETED:
            for dep_id in tuple(dependents):
                d = tasks.get(dep_id)
                if d is not None and d.status is WAITING and self._deps_done(d):
                    self._ready(d)
            return
        # It failed or was cancelled: its dependents are cancelled, and theirs, breadth
        # first, each naming ``record``; one that runs anyway is not, and stops the
        # spread: it runs once all its dependencies ended, and its own ending counts.
        spread = deque([record])
        while spread:
            ended = spread.popleft()
            for dep_id in tuple(self.graph.direct_dependents(ended.task_id)):
                d = tasks.get(dep_id)
                if d is None or d.status in TERMINAL:
                    continue
                if not d.runs_anyway:
                    self._cancel(d, _dependency_error(d, record), propagate=False)
                    spread.append(d)
                elif d.status is WAITING and self._deps_done(d):
                    self._ready(d)

    def _cancel(self, record: TaskRecord, error: BaseException, *, propagate: bool) -> None:
        self._stop_execution(record, error)
        record.error = error
        self._finish(record, CANCELLED, propagate=propagate)

    def _retain(self, record: TaskRecord) -> None:
        """Keep at most ``max_finished`` finished tasks: ``record`` just finished; remove
        the ones that finished first beyond the bound."""
        finished = self.finished
        finished.append(record)
        bound = self._bound
        if len(finished) <= bound:
            return
        tasks = self.tasks
        removed: list[str] = []
        while len(finished) > bound:
            old = finished.popleft()
            task_id = old.task_id
            if tasks.get(task_id) is old and old.status in TERMINAL:
                if old.pins:  # a dependent has yet to take its result: later
                    self.held.add(task_id)
                else:
                    removed.append(task_id)
        if removed:
            self._remove(removed)

    def _remove(self, removed: list[str]) -> None:
        self.forgotten.extend(removed)
        tasks = self.tasks
        append, now, wall = self.transitions.append, self._now, self._wall
        for task_id in removed:
            # `_move(record, None)`, inlined (past MAX_FINISHED_TASKS every task that
            # finishes evicts one): a removal sets no status, has no error to note and
            # logs no line; the same fields, the clocks read in the same order.
            record = tasks.pop(task_id)
            append(
                _transition(
                    Transition,
                    (
                        record.task_id,
                        record.name,
                        record.task_type,
                        record.status,
                        None,
                        record.attempts,
                        now(),
                        wall(),
                        None,
                    ),
                )
            )
        if len(removed) >= len(tasks):
            shrink(tasks)
        self.graph.remove(removed)


def _finished_at(record: TaskRecord) -> float:
    """`Engine.restoring`'s order of the finished tasks (None: first, as the oldest)."""
    at = record.finished_at
    return -math.inf if at is None else at


def _cycle(links: str) -> str:
    """The end of the message of a refusal that would close a cycle of ``links``."""
    return (
        f"that would close a cycle of tasks that wait for each other ({links}), so none "
        "of them would ever end"
    )


def _dependency_error(record: TaskRecord, failed: TaskRecord) -> DependencyFailedError:
    return DependencyFailedError(
        record.task_id, failed.task_id, failed.status.value, record.name, failed.name
    )


def _log_transition(record: TaskRecord, status: TaskStatus) -> None:
    """One lifecycle line. Logging never takes the manager down: the task's error is
    shown through `SafeRepr` (its ``__repr__`` may raise), and a line that still cannot
    be built or emitted is dropped."""
    try:
        log = logger.bind(task_id=record.task_id, task_name=record.name, task_type=record.task_type)
        if status is FAILED:
            log.warning("task {!r} failed: {}", record.name, SafeRepr(record.error))
        elif status is RETRYING:
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
        _log.debug("a lifecycle line of task {!r} was dropped: {}", record.task_id, SafeRepr(exc))
