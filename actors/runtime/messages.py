"""Every message between the client, the facade, the managers, the pool and the monitor.

One immutable named tuple per operation, as pykka's own messages: they are built once
per call or per task event, and a tuple is about half the cost of a frozen dataclass to
build. Actors dispatch on the message's type through a table, never on a name.

Requests (`REQUEST_TYPES`) come from callers and carry a ``reply`` (`ReplyTo`) that the
actor answering them resolves; everything else is the system's own traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, get_args

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from actors.core import (
        Call,
        JournalError,
        LoopBridge,
        Reply,
        ReplyTo,
        TaskScope,
        TaskStatus,
    )
    from actors.engine import BreakerTransition, PageQuery, TaskSpec, Transition
    from actors.journal import Record
    from actors.observe import Subscriber
    from actors.runtime._attempt import Execution

__all__ = [
    "PER_TASK_TYPES",
    "REQUEST_TYPES",
    "AddDependency",
    "Args",
    "AttemptDone",
    "AttemptTimedOut",
    "Batch",
    "Block",
    "Bounced",
    "BreakerChanged",
    "BreakerDue",
    "Cancel",
    "ChildRestarted",
    "Cleanup",
    "CleanupTick",
    "Crashed",
    "Execute",
    "Flush",
    "Forget",
    "FunctionStarted",
    "GetAll",
    "GetBackend",
    "GetByStatus",
    "GetByType",
    "GetDefinition",
    "GetDetail",
    "GetError",
    "GetMetrics",
    "GetResult",
    "GetStatus",
    "GetTask",
    "JournalBatch",
    "JournalDue",
    "JournalFailed",
    "JournalRetry",
    "Kwargs",
    "Mark",
    "Marked",
    "PageKeys",
    "PageRows",
    "PerTask",
    "PoolBroken",
    "Recheck",
    "Register",
    "Report",
    "Rerun",
    "ResourceTick",
    "RetryDue",
    "RunFunction",
    "SetLimit",
    "Shutdown",
    "Submit",
    "SubmitTask",
    "Subscribe",
    "Transitions",
    "Unrouted",
    "Unsubscribe",
    "Unwait",
    "UseNewSystem",
    "Wait",
]

# -- requests: the public API, one type per call (client -> facade -> a manager) --------


class Register(NamedTuple):
    spec: TaskSpec
    task_id: str | None
    bridge: LoopBridge
    reply: ReplyTo
    journal: tuple[Any, ...] | None = None
    """A durable task's journal row (the values of an `actors.journal.TaskRow`, in a
    plain tuple: `durable_row`), or None: memory only."""
    backend: str | None = None
    """The task system it goes to (``"new"`` or ``"old"``; `retry_task`: the failed
    task's), or None: the current one (``USE_NEW_TASK_SYSTEM``). Only with ``task_id``
    None (the facade gives the id)."""


class SubmitTask(NamedTuple):
    """``tm.submit``: register ``spec`` as ``task_id``, execute it, and answer ``reply``
    with its outcome (its result, or its error) when it ends: one round trip."""

    spec: TaskSpec
    task_id: str
    bridge: LoopBridge
    reply: ReplyTo
    caller: TaskScope | None = None
    """The attempt whose code submits, if a task's code calls (`Wait`)."""


class Execute(NamedTuple):
    task_id: str
    wait: bool
    """True: ``reply`` gets the task's outcome, not whether it was accepted."""
    reply: ReplyTo
    caller: TaskScope | None = None
    """With ``wait``: the attempt whose code waits, if a task's code calls (`Wait`)."""


class Wait(NamedTuple):
    task_id: str
    reply: ReplyTo
    bounded: bool = False
    """The caller bounds its wait (a timeout): it may wait for a task not executed yet."""
    caller: TaskScope | None = None
    """The attempt whose code waits, if a task's code calls (its `TaskScope`): a wait
    for its own task, for one that depends on it, or one that closes a cycle of waits
    (`Engine.waits`), is refused (it would never end)."""


class Unwait(NamedTuple):
    """``waiter`` stopped waiting for ``task_id`` (its wait timed out or was cancelled)."""

    task_id: str
    waiter: ReplyTo
    reply: ReplyTo


class Block(NamedTuple):
    """Attempt ``token`` of task ``task_id`` (the `actors.core.TaskScope` its code runs
    in) waits for another task (``blocked``), or stopped waiting."""

    task_id: str
    token: object
    blocked: bool
    reply: ReplyTo


class Cancel(NamedTuple):
    task_id: str
    reply: ReplyTo


class GetTask(NamedTuple):
    task_id: str
    reply: ReplyTo


class GetStatus(NamedTuple):
    task_id: str
    reply: ReplyTo


class GetResult(NamedTuple):
    task_id: str
    reply: ReplyTo


class GetError(NamedTuple):
    task_id: str
    reply: ReplyTo


class GetDetail(NamedTuple):
    """Dashboard: a task's `TaskDetail`."""

    task_id: str
    reply: ReplyTo


class GetDefinition(NamedTuple):
    """Dashboard's retry: a failed task's spec (current dependencies; for a durable
    task that failed before the restart, its undecoded journal row), loop, whether it
    is durable, and its task system."""

    task_id: str
    reply: ReplyTo


class AddDependency(NamedTuple):
    task_id: str
    depends_on: str
    reply: ReplyTo


class GetAll(NamedTuple):
    reply: ReplyTo


class GetByStatus(NamedTuple):
    status: TaskStatus
    reply: ReplyTo


class GetByType(NamedTuple):
    task_type: str
    reply: ReplyTo


class PageKeys(NamedTuple):
    """How many tasks match, and the creation times of the first ones (`actors.engine._query`)."""

    query: PageQuery
    reply: ReplyTo


class PageRows(NamedTuple):
    """The rows of each manager's matches ``slices[backend]`` (start, stop)."""

    query: PageQuery
    slices: dict[str, tuple[int, int]]
    reply: ReplyTo


class Flush(NamedTuple):
    """A manager sends its pending transitions to the monitor, then answers."""

    reply: ReplyTo


class Cleanup(NamedTuple):
    max_age: float
    reply: ReplyTo


class Shutdown(NamedTuple):
    """Cancel every unfinished task: the system is going down."""

    reply: ReplyTo


class GetMetrics(NamedTuple):
    reply: ReplyTo


class Subscribe(NamedTuple):
    bridge: LoopBridge
    task_type: str | None
    reply: ReplyTo
    token: object = None
    """Set by the facade, with ``muted``: the monitor gives the new subscriber no
    transitions of the managers in ``muted`` until each one's `Marked` with this token."""
    muted: tuple[str, ...] = ()


class Mark(NamedTuple):
    """Manager: send the monitor the transitions so far, then `Marked`. The facade
    sends it for a subscription, in order with the calls it routes: what the manager
    sends after it belongs to calls made after the subscription."""

    token: object


class Marked(NamedTuple):
    """Monitor: the transitions of ``backend``'s manager from here on are for the
    subscriber of ``token`` too."""

    token: object
    backend: str


class Unsubscribe(NamedTuple):
    subscriber: Subscriber
    reply: ReplyTo


class UseNewSystem(NamedTuple):
    flag: bool
    reply: ReplyTo


class GetBackend(NamedTuple):
    """Which task system new registrations go to: ``"new"`` or ``"old"``."""

    reply: ReplyTo


class Submit(NamedTuple):
    """Thread pool (``thread_pool.submit``): run ``fn`` and answer ``reply``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    reply: Reply | Call[Any]
    """Its future done before ``fn`` starts (its caller stopped waiting), the call is
    dropped; a `WithdrawableReply` also drops it from a ``process`` or ``dask`` queue."""
    executor: str | None = None
    """``"thread"``, ``"process"``, ``"dask"``, or None for ``THREAD_POOL_BACKEND``."""


PerTask: TypeAlias = (
    Execute
    | Wait
    | Unwait
    | Block
    | Cancel
    | GetTask
    | GetStatus
    | GetResult
    | GetError
    | GetDetail
    | GetDefinition
)
"""Requests about one task: the facade sends them to the manager that owns it."""

PER_TASK_TYPES: tuple[type[PerTask], ...] = get_args(PerTask)

# -- the system's own messages ----------------------------------------------------------


class AttemptDone(NamedTuple):
    """Manager: an attempt ended; ``error`` is None on success. ``at`` is the clock time
    it ended, read where it ended (None: unknown, the manager uses the time it hears)."""

    task_id: str
    attempt: int
    value: Any
    error: BaseException | None
    at: float | None = None
    answered: bool = True
    """False: the attempt did not answer the waiters it was lent (`Execution.waiters`);
    the manager answers them (see `actors.runtime._execution.complete`, ``busy``)."""


Report: TypeAlias = Callable[[AttemptDone], None]
"""Where an attempt's outcome goes (a manager's ``tell``, or its batching `OnLoop`)."""
Args: TypeAlias = tuple[Any, ...]
Kwargs: TypeAlias = dict[str, Any]


class FunctionStarted(NamedTuple):
    """Manager: a plain function's attempt left the pool's queue and starts (at clock
    time ``at``); the task is running, and its timeout counts, from then on."""

    task_id: str
    attempt: int
    at: float


class AttemptTimedOut(NamedTuple):
    """Manager (a timer): attempt ``attempt`` of ``task_id`` ran out of time."""

    task_id: str
    attempt: int


class RetryDue(NamedTuple):
    """Manager (a timer): the retry delay after attempt ``attempt`` has passed."""

    task_id: str
    attempt: int


class Crashed(NamedTuple):
    """Manager (from its previous incarnation, `SupervisedActor.hand_over`, or from the
    facade): handling a ``message`` (its type's name) about ``task_id`` crashed
    ``actor`` (None: this manager; the facade, for a task's outcome it was routing)
    with ``reason``. That message is dropped, not re-run (it may crash again): the
    task, unless it ended, fails with an `ActorSystemError` saying so, and ``caller``
    (the request's reply, if it was one) gets that error."""

    task_id: str | None
    message: str
    reason: str
    caller: ReplyTo | None = None
    actor: str | None = None


class SetLimit(NamedTuple):
    """Manager: the governor's new concurrency limit."""

    limit: int


class Rerun(NamedTuple):
    """Manager (itself): execute the next chunk of the tasks recovered from the journal."""


class CleanupTick(NamedTuple):
    """Manager (a timer): time for the periodic cleanup of old finished tasks."""


class Batch(NamedTuple):
    """Facade: the requests one caller's event loop made in one iteration, in order
    (one message and one wake-up of the facade for a burst of calls)."""

    items: tuple[Any, ...]


class Forget(NamedTuple):
    """Facade: a manager removed these task ids (evicted, cleaned up, or refused their
    registration); drop their routing entries. ``recheck``: the messages the facade
    bounced off this manager (`Recheck`), to route again now that it knows every id this
    manager removed before them."""

    task_ids: tuple[str, ...]
    recheck: tuple[Bounced, ...] = ()


class Recheck(NamedTuple):
    """Manager: the facade still routes an id ``message`` names here, and that stands in
    its way (the id is taken; a dependency is in the other system): send ``message``
    back with every id removed and not told yet (`Forget`)."""

    message: Bounced


class Unrouted(NamedTuple):
    """Manager: the facade could not send it durable registrations of ``task_ids`` (its
    restart buffer was full); tell the facade to `Forget` those it does not hold (the
    facade routed them for those registrations), and keep the routes of the others."""

    task_ids: tuple[str, ...]


class Bounced(NamedTuple):
    """Facade: ``message``, bounced off the managers in ``visited`` (`Recheck`), the
    last of which sent it back: its routes to those managers are live, a route to
    another one may still be stale (each manager tells only of its own ids)."""

    message: Register | SubmitTask | AddDependency
    visited: frozenset[str]

    @property
    def reply(self) -> ReplyTo:
        """The caller's reply (a manager that cannot send it back fails it here)."""
        return self.message.reply


class RunFunction(NamedTuple):
    """Thread pool: run a plain function for one attempt and report to ``report``."""

    execution: Execution
    func: Callable[..., Any]
    args: Args
    kwargs: Kwargs
    report: Report
    executor: str | None = None
    """The task's ``executor``, or None for ``THREAD_POOL_BACKEND``."""


class PoolBroken(NamedTuple):
    """Thread pool: a worker process of ``pool`` died; the actor crashes so that a new
    incarnation replaces the pool."""

    pool: ProcessPoolExecutor


class Transitions(NamedTuple):
    """Monitor: a batch of task transitions from one manager, oldest first."""

    items: tuple[Transition, ...]
    backend: str = ""
    """The manager's task system (``"new"`` or ``"old"``)."""


class ChildRestarted(NamedTuple):
    """Monitor: the supervisor restarted ``child_id``."""

    child_id: str


class BreakerChanged(NamedTuple):
    """Monitor, and both managers: a circuit breaker changed state (a manager releases
    the tasks that wait for it)."""

    transition: BreakerTransition


class BreakerDue(NamedTuple):
    """Manager (a timer): open circuit breaker ``name`` half-opens now; release the
    tasks that wait for it."""

    name: str


class ResourceTick(NamedTuple):
    """Monitor (a timer): time for the governor to sample CPU and memory."""


REQUEST_TYPES: tuple[type, ...] = tuple(
    kind
    for kind in list(globals().values())
    if isinstance(kind, type)
    and issubclass(kind, tuple)
    and "reply" in getattr(kind, "_fields", ())
)
"""Callers' requests (the messages with a ``reply``): at most MAILBOX_BUFFER_CAPACITY of
them wait for a restarting child, and one more fails the call with
`SystemOverloadedError`. Every other message is the system's own and always waits."""


# -- the journal (issue 14; only with JOURNAL_PATH) --------------------------------------


class JournalBatch(NamedTuple):
    """Journal: records to write, then ``answers`` to give once they are committed
    (``(reply, value)``: the replies of durable registrations and executions);
    ``starts`` (durable attempts, `start_all`) may run as soon as the records of the
    ``starting`` tasks are committed. Lists the sender hands over and no longer uses."""

    records: Sequence[Record]
    answers: Sequence[tuple[Any, Any]]
    starts: Sequence[Any] = ()
    starting: Sequence[str] = ()


class JournalDue(NamedTuple):
    """Task manager (a timer): write the held queued records (`JournalLink.due`)."""


class JournalRetry(NamedTuple):
    """Journal (a timer, while a write fails): try the pending records again."""


class JournalFailed(NamedTuple):
    """Monitor: a journal write failed with ``error``; ``records`` stay pending and the
    system goes on from memory."""

    error: JournalError
    records: int
