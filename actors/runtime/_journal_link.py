"""A manager's side of the journal: which tasks are durable, and what to send.

With ``JOURNAL_PATH`` set, a task manager's state (the engine that outlives its
incarnations) is a `DurableEngine`: the engine plus the journal rows of its durable
tasks and the work waiting for the next batch. The manager's `JournalLink` turns the
engine's transitions into journal records when it flushes them to the monitor, and
hands the journal what must wait for the commit:

- the reply to ``register_task`` / ``execute_task`` of a durable task (acknowledged
  means durable);
- the start of each attempt of a durable task, so no attempt runs before the journal
  says it may be running (then a crash that loses an attempt's outcome finds the task
  marked ``running`` and runs it again, marked ``recovered``: at-least-once).

The journal runs these actions after its commit, on its own thread; a failed commit
runs them too (the system goes on from memory, see the README).

A batch with no reply to give *holds* the record of a task that its first execution
put in the queue (or made wait for its dependencies): nobody has been told it is
durable (an ``execute_task(wait=True)`` answers with the result, after its running
record), so the record may wait, up to `DEFER_FOR` seconds, for the task's running
record, which makes it needless: one write instead of two for a task that starts soon.
A held record is not even built: the link keeps the task's id, and builds its record
from the task's state when the timer (`messages.JournalDue`, on the system's clock)
or the manager's stop or shutdown asks for it.
"""

from __future__ import annotations

import dataclasses
import operator
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from loguru import logger

from actors.core import (
    BULK,
    DuplicateTaskError,
    JournalEncodeError,
    JournalError,
    TaskInfo,
    TaskStatus,
    gc_paused,
    tell_later,
)
from actors.engine import Engine, StartFailed
from actors.journal import (
    STATE_AT,
    Codec,
    Deletion,
    Record,
    StatusChange,
    TaskRow,
    error_fields,
)
from actors.runtime import messages
from actors.runtime._durable import codec_for, same_definition

if TYPE_CHECKING:
    from actors.engine import TaskRecord, Transition
    from actors.runtime._attempt import Execution
    from actors.runtime._shared import SystemContext
    from supervisors import ChildHandle, TimerHandle

__all__ = [
    "DEFER_FOR",
    "RERUN_CHUNK",
    "RETRY_EVERY",
    "Answer",
    "DurableEngine",
    "JournalHealth",
    "JournalLink",
    "Start",
    "answer_all",
    "journal_link",
    "start_all",
]

DEFER_FOR = 1.0
"""Seconds a held record may wait for a later record of its task (each its own)."""
RETRY_EVERY = 1.0
"""Seconds between the journal's tries of a write that failed (the system's clock)."""
_EPSILON = 1e-6
"""Slack in comparing clock readings (a timer armed for ``t`` may read ``t - ulp``)."""

RERUN_CHUNK = 1000
"""Recovered tasks a manager executes again per message: between two chunks it answers
calls, so a recovery of 100,000 tasks does not hold the first call back."""

_log = logger.bind(actor="journal")

Answer = tuple[Any, Any]
"""``(reply, value)``: ``reply.set_result(value)`` once the journal has committed."""


class Launcher(Protocol):
    """The manager as a durable attempt's start sees it (`BaseManager`)."""

    @property
    def report(self) -> Callable[[Any], object]: ...

    def _launch(self, execution: Execution, record: TaskRecord) -> None: ...


class AttemptView(NamedTuple):
    """What starting an attempt reads from its record, read when the engine started it
    (the record may change before the journal has committed its running record)."""

    task_id: str
    attempts: int
    func: Callable[..., Any]
    args: tuple[Any, ...] | None
    kwargs: dict[str, Any] | None
    bridge: Any
    executor: str | None
    is_coroutine: bool


Start = tuple[Launcher, "Execution", AttemptView]
"""An attempt to start once its task's running record is committed (`start_all`)."""


_PENDING = TaskStatus.PENDING
_COMPLETED = TaskStatus.COMPLETED
_MAY_WAIT = frozenset((TaskStatus.QUEUED, TaskStatus.WAITING))
"""The states of a task executed and not started yet whose record may be held."""
_RUNNING_VALUE = TaskStatus.RUNNING.value
_VALUES = {status: status.value for status in TaskStatus}
_CREATED = TaskRow._fields.index("created_at")
_BACKEND = TaskRow._fields.index("backend")
_DEPENDENCIES = TaskRow._fields.index("dependencies")
_EXECUTED = TaskRow._fields.index("executed")


class JournalHealth:
    """The error of the journal's last write if it failed (None once one succeeds):
    written by the journal actor, read by the managers, which refuse new durable tasks
    while it is set (an acknowledged durable task must be in the file)."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: JournalError | None = None


class DurableEngine(Engine):
    """An engine whose durable tasks are journaled (the manager's state object)."""

    def _init_extension(self) -> None:
        """The journal's state of the engine (made by `Engine.__init__`)."""
        self.rows: dict[str, tuple[Any, ...]] = {}
        """Durable task id -> its journaled definition (state fields not kept up to date):
        the values of a `TaskRow` in a plain tuple, which the garbage collector stops
        tracking (a named tuple it visits at every collection, with its 29 fields)."""
        self.unwritten: set[str] = set()
        """Durable tasks registered whose row has not been sent to the journal yet."""
        self.rewrite: set[str] = set()
        """Durable tasks written already whose definition changed (a dependency added):
        their whole row is written again."""
        self.touched: set[str] = set()
        """Durable tasks whose state changed without a transition (an attempt handed off)."""
        self.recoveries: dict[str, int] = {}
        """Task id -> times recovery ran it again (only tasks recovered at least once)."""
        self.answers: list[Answer] = []
        """To answer once the next batch is committed."""
        self.starts: list[Start] = []
        """Attempts to start once the records of ``starting`` are committed."""
        self.starting: list[str] = []
        self.rerun: list[str] = []
        """Recovered tasks to execute again once the manager has started, in load order."""
        self.rerunning: set[str] = set()
        """The tasks of ``rerun`` not executed again yet (`JournalLink.promote`)."""
        self.quiet = 0
        """The first transitions that recovery made putting the journal's tasks back:
        the file holds their states already (what differs from it is ``touched``)."""
        self.holding: dict[str, float] = {}
        """Durable task id -> when its queued (or waiting) record was held, not built yet
        (the engine's clock; in that order). Not `Engine.held`: the finished tasks kept
        for a dependent to take their result."""
        self.held_timer: TimerHandle | None = None
        """Writes the held records `DEFER_FOR` after they were held, while one is armed."""
        self.releasing: list[str] = []
        """Held tasks whose records the next batch writes (it holds none)."""
        self.detached = False
        """The system shuts down: its cancellations are not journaled."""
        self.health = JournalHealth()
        """Shared with the journal actor (`runtime._recovery.Journal.engine`)."""
        self.unsent: messages.JournalBatch | None = None
        """A batch whose tell crashed the manager (a BaseException, before it delivered):
        its next incarnation sends it first (`JournalLink.start`). Its records were taken
        from the state (a new task's row, a removed one's deletion), its answers and
        starts too: lost, the journal missed them and their callers waited for ever."""

    def end(
        self,
        record: TaskRecord,
        status: TaskStatus,
        *,
        result: Any = None,
        error: BaseException | None = None,
        at: float | None = None,
    ) -> None:
        """End a restored ``record`` as the journal says it ended (recovery only), at
        ``at`` (default: now)."""
        record.result = result
        record.error = error
        self._finish(record, status, propagate=False, at=at)

    def _fill(self, record: TaskRecord) -> None:
        """A durable task keeps its `result_of` dependencies pinned until it ends, not
        until it takes their results: its row keeps the placeholders, so a run again
        after a crash takes their results from the file once more (`Engine._finish`
        lets them go: ``results`` stays set; a retry fills its arguments again, a no-op
        that pins and lets go once more)."""
        results = record.results
        if results is None or record.task_id not in self.rows:
            super()._fill(record)
            return
        tasks = self.tasks
        for dep in results:  # before the engine lets them go: none may be evicted
            tasks[dep].pins += 1
        super()._fill(record)
        record.results = results

    def info(self, record: TaskRecord) -> TaskInfo:
        info = super().info(record)
        count = self.recoveries.get(record.task_id)
        return info if count is None else dataclasses.replace(info, recoveries=count)


def _refuse_memory_results(engine: DurableEngine, name: str, results: Iterable[str]) -> None:
    """A durable task may not take the result of a task kept in memory only: after a
    restart that result is gone, and the task could never run."""
    for dep in results:
        if dep not in engine.rows and dep in engine.tasks:
            msg = (
                f"task {name!r} cannot be durable: it takes result_of({dep!r}), a task "
                "kept in memory only (durable=False), whose result a restart loses; make "
                f"{dep!r} durable too, or pass durable=False to keep this task in memory only"
            )
            raise JournalEncodeError(msg)


@dataclasses.dataclass(slots=True, eq=False)
class JournalLink:
    """What one manager incarnation uses to talk to the journal."""

    engine: DurableEngine
    journal: ChildHandle
    codec: Codec
    me: ChildHandle
    """The manager: where the timer of the held records tells `messages.JournalDue`."""

    def start(self) -> bool:
        """Whether recovered tasks wait to be executed again (`rerun_next` does it, a
        chunk at a time, so the system answers calls meanwhile). A recovered task is
        pending until then; a call about it (`promote`) executes it at once."""
        engine = self.engine
        if engine.unsent is not None:  # what the previous incarnation crashed sending
            self._resend(engine.unsent)
        if engine.rerun and not engine.rerunning:
            engine.rerunning = set(engine.rerun)
        # Those that were running at the crash now, first: their record (recovered once
        # more) must not say "pending" in the file, or a crash before their chunk would
        # leave them unexecuted.
        for task_id in [t for t in engine.touched if t in engine.rerunning]:
            self.promote(task_id)
        if engine.holding:  # the timer's message may have reached no incarnation
            if engine.held_timer is not None:
                engine.held_timer.cancel()
            self._arm(engine.clock.monotonic())
        return bool(engine.rerun)

    def _arm(self, now: float) -> None:
        """Arm the timer of the held records for the first one's `DEFER_FOR`."""
        engine = self.engine
        first = next(iter(engine.holding.values()))
        delay = max(first + DEFER_FOR - now, 0.0)
        engine.held_timer = tell_later(engine.clock, delay, self.me, messages.JournalDue())

    def rerun_next(self) -> bool:
        """Execute again the next `RERUN_CHUNK` recovered tasks (those still pending:
        one executed meanwhile is left as it is); whether more wait."""
        engine = self.engine
        chunk = engine.rerun[:RERUN_CHUNK]
        del engine.rerun[:RERUN_CHUNK]
        rerunning = engine.rerunning
        tasks = engine.tasks
        for task_id in chunk:
            rerunning.discard(task_id)
            record = tasks.get(task_id)
            if record is not None and record.status is _PENDING:
                engine.execute(task_id)
        return bool(engine.rerun)

    def promote(self, task_id: str) -> None:
        """Execute recovered ``task_id`` again now if its chunk has not come yet (a call
        about it answers as if every recovered task had been executed again)."""
        engine = self.engine
        if task_id in engine.rerunning:
            engine.rerunning.discard(task_id)
            record = engine.tasks.get(task_id)
            if record is not None and record.status is _PENDING:
                engine.execute(task_id)

    def detach(self) -> None:
        """Journal no more changes: the system is shutting down, and its cancellations
        must not reach the file (unfinished durable tasks come back at the next start).
        The held records are sent first: a task queued now comes back queued."""
        self.stop()
        self.engine.detached = True

    def due(self) -> None:
        """The timer of the held records: the next batch (`send`) writes those held
        `DEFER_FOR` ago (a record held since may still be made needless by its task's
        running record); the timer is armed again for the rest."""
        engine = self.engine
        engine.held_timer = None
        holding = engine.holding
        if not holding:
            return
        now = engine.clock.monotonic()
        cutoff = now - DEFER_FOR + _EPSILON
        due = []
        for task_id, held_at in holding.items():
            if held_at > cutoff:
                break
            due.append(task_id)
        for task_id in due:
            del holding[task_id]
        engine.releasing += due
        if holding:
            self._arm(now)

    def stop(self) -> None:
        """The manager stops: send the held records now (the journal stops after the
        managers), and disarm their timer. Only those: the answers and attempt starts
        waiting for a batch stay with the engine (for a next incarnation, if any)."""
        engine = self.engine
        timer, engine.held_timer = engine.held_timer, None
        if timer is not None:
            timer.cancel()
        if engine.holding and not engine.detached:
            kept = engine.answers, engine.starts, engine.starting, engine.touched
            engine.answers, engine.starts, engine.starting, engine.touched = [], [], [], set()
            engine.releasing += engine.holding
            engine.holding.clear()
            try:
                self.send([])
            finally:
                engine.answers, engine.starts, engine.starting, engine.touched = kept

    def busy(self) -> bool:
        """Whether there is something to send without a transition."""
        engine = self.engine
        return bool(engine.answers or engine.starts or engine.touched or engine.releasing)

    # -- requests -------------------------------------------------------------------------

    def register(self, message: messages.Register, task_id: str) -> None:
        """Register a durable task (``message.journal`` is set); its reply waits for the
        commit. A task id the journal holds already answers with the id (idempotent
        start-up code), or raises if the definition differs."""
        engine = self.engine
        given = cast(tuple[Any, ...], message.journal)
        # Its id and task system (`_replace` costs ten times more).
        row = (task_id, *given[1:_BACKEND], engine.backend, *given[_BACKEND + 1 :])
        if task_id in engine.tasks:
            journaled = engine.rows.get(task_id)
            if journaled is None:
                msg = f"task id {task_id!r} is already registered; pick another or omit task_id"
                raise DuplicateTaskError(msg)
            differs = same_definition(journaled, row, self.codec)
            if differs is not None:
                msg = (
                    f"task id {task_id!r} is journaled with another definition: {differs}; "
                    "pick another task_id, or clean the old task up first"
                )
                raise DuplicateTaskError(msg)
        else:
            error = engine.health.error
            if error is not None:
                msg = (
                    f"durable task {message.spec.name!r} not registered: {error}; the journal "
                    f"tries that write again every {RETRY_EVERY:g} s and refuses new durable "
                    "tasks until it succeeds (durable=False keeps a task in memory only)"
                )
                raise type(error)(msg)
            results = message.spec.results
            if results:
                _refuse_memory_results(engine, message.spec.name, results)
            engine.register(message.spec, task_id, message.bridge)
            engine.rows[task_id] = row
            engine.unwritten.add(task_id)
        engine.answers.append((message.reply, task_id))

    def dependency_added(self, task_id: str, reply: Any) -> None:
        """``add_dependency`` added an edge to durable ``task_id``: its row is written
        again with every dependency it has now, and ``reply`` answered once committed."""
        engine = self.engine
        graph = engine.graph
        row = engine.rows[task_id]
        dependencies = tuple(graph.dependencies(task_id)) if task_id in graph else ()
        engine.rows[task_id] = (*row[:_DEPENDENCIES], dependencies, *row[_DEPENDENCIES + 1 :])
        engine.rewrite.add(task_id)
        engine.touched.add(task_id)
        engine.answers.append((reply, None))

    def answer_later(self, reply: Any, value: Any) -> None:
        """Answer ``reply`` with ``value`` once what happened so far is committed."""
        self.engine.answers.append((reply, value))

    def durable(self, task_id: str) -> bool:
        return task_id in self.engine.rows

    # -- attempts -------------------------------------------------------------------------

    def defer_start(self, manager: Launcher, execution: Execution, record: TaskRecord) -> None:
        """Start the attempt once the journal says the task may be running."""
        engine = self.engine
        engine.touched.add(record.task_id)
        engine.starting.append(record.task_id)
        engine.starts.append((manager, execution, _make_view(_read_attempt(record))))

    # -- the batch ------------------------------------------------------------------------

    def send(self, transitions: list[Transition]) -> None:
        """Send the journal the records of ``transitions`` (and of tasks touched since
        the last batch) with the actions waiting for their commit."""
        if len(transitions) < BULK:
            self._send(transitions)
        else:
            with gc_paused(len(transitions)):  # the re-runs of a recovery, all at once
                self._send(transitions)

    def _send(self, transitions: list[Transition]) -> None:
        engine = self.engine
        if engine.detached:
            answers, starts = engine.answers, engine.starts
            engine.answers, engine.starts, engine.starting = [], [], []
            answer_all(answers)
            start_all(starts)
            return
        rows = engine.rows
        # The durable tasks that changed, each once, in order: a removed one is no
        # longer in ``engine.tasks`` (whatever else happened to it in the batch).
        if engine.quiet:  # the first batch: skip recovery's own transitions
            quiet, engine.quiet = engine.quiet, 0
            changed = dict.fromkeys([t[0] for t in transitions[quiet:] if t[0] in rows])
        else:
            changed = dict.fromkeys([t[0] for t in transitions if t[0] in rows])
        if engine.touched:
            changed.update(dict.fromkeys(engine.touched))
            engine.touched.clear()
        held = engine.holding
        if engine.releasing:  # the held records due are written now, and none is held
            changed.update(dict.fromkeys(engine.releasing))
            engine.releasing = []
            hold = False
        else:  # with no reply to give, a first execution's queued record may wait
            hold = not engine.answers
        records: list[Record] = []
        append = records.append
        tasks = engine.tasks
        unwritten = engine.unwritten
        recoveries = engine.recoveries
        rewrite = engine.rewrite
        encode_result = self.codec.encode_result
        wall = time.time()
        now = engine.clock.monotonic()
        offset = wall - now  # monotonic -> wall-clock times
        for task_id in changed:
            record = tasks.get(task_id)
            if record is None:
                if rows.pop(task_id, None) is not None and task_id not in unwritten:
                    append(Deletion(task_id))
                held.pop(task_id, None)
                unwritten.discard(task_id)
                rewrite.discard(task_id)
                recoveries.pop(task_id, None)
                continue
            status = record.status
            execution = record.execution
            row = None
            if task_id in unwritten:
                unwritten.discard(task_id)
                row = rows[task_id]
                if status is _PENDING and execution is None:
                    # Just registered: the definition row holds its state already.
                    append(_make_row((*row[:_CREATED], wall, wall, *row[_EXECUTED:])))
                    continue
            elif rewrite and task_id in rewrite:
                row = rows[task_id]
            elif (
                hold
                and execution is None
                and status in _MAY_WAIT
                and not record.attempts
                and task_id not in recoveries
            ):
                if task_id not in held:  # (held again: it waits since it was first held)
                    held[task_id] = now
                continue
            if held:
                held.pop(task_id, None)  # this record says more than the held one
            # The state of the task (`StatusChange`'s fields after ``task_id``). An
            # attempt handed off may be running already: say so, so recovery runs it again.
            result = note = error_type = error_message = None
            if status is _COMPLETED:
                result, note = encode_result(record.result, task=task_id)
            elif status is not _PENDING and record.error is not None:
                error_type, error_message = error_fields(record.error)
            started = record.started_at
            finished = record.finished_at
            value = _RUNNING_VALUE if execution is not None else _VALUES[status]
            if started is not None:
                started += offset
            if finished is not None:
                finished += offset
            # 1 or 0, not a bool: sqlite3 binds an int as it is, but takes a bool for a
            # type to adapt and looks it up first (two failed attribute lookups that raise
            # and format an AttributeError each: ~0.4 us per parameter, two per task).
            executed = 0 if status is _PENDING else 1
            attempts = record.attempts
            recovered = recoveries.get(task_id, 0) if recoveries else 0
            if row is None:  # one tuple, no `_make` call: the cheapest record to build
                append(_new(StatusChange, (task_id, value, wall, executed, attempts, recovered,
                                           result, note, error_type, error_message, started,
                                           finished)))  # fmt: skip
            else:  # the definition's fields, then the state (`TaskRow` ends with them)
                created = record.created_at + offset
                append(_make_row((*row[:STATE_AT], value, created, wall, executed, attempts,
                                  recovered, result, note, error_type, error_message, started,
                                  finished)))  # fmt: skip
        rewrite.clear()
        if held and engine.held_timer is None:
            self._arm(now)
        answers = engine.answers
        starts = engine.starts
        if not records and not answers and not starts:
            return
        engine.answers = []
        if starts:
            engine.starts = []
            starting, engine.starting = engine.starting, []
            batch = messages.JournalBatch(records, answers, starts, starting)
        else:
            batch = messages.JournalBatch(records, answers)
        try:
            self.journal.tell(batch)
        except Exception:  # the system is stopping (an ActorsError): go on from memory
            start_all(starts)
            answer_all(answers)
        except BaseException:  # a crash: the next incarnation sends it (`start`)
            engine.unsent = batch
            raise

    def _resend(self, batch: messages.JournalBatch) -> None:
        """Send the batch the previous incarnation crashed sending (`_send`)."""
        self.engine.unsent = None
        try:
            self.journal.tell(batch)
        except Exception:  # as in `_send`
            start_all(batch.starts)
            answer_all(batch.answers)
        except BaseException:
            self.engine.unsent = batch
            raise


_make_row = TaskRow._make
_new = tuple.__new__


def journal_link(ctx: SystemContext, engine: Engine, me: ChildHandle) -> JournalLink | None:
    """The link of manager ``me`` whose state is ``engine``; None without a journal."""
    if not isinstance(engine, DurableEngine):
        return None
    codec = codec_for(ctx.config.JOURNAL_SERIALIZER)
    return JournalLink(engine, ctx.handle("journal"), codec, me)


_read_attempt = operator.attrgetter(*AttemptView._fields)
_make_view = AttemptView._make


def answer_all(answers: Iterable[Answer]) -> None:
    """Answer each reply with its value (after a commit, on the journal's thread)."""
    for reply, value in answers:
        try:
            reply.set_result(value)
        except Exception as exc:  # a caller that left
            _log.debug("an answer after a commit failed: {!r}", exc)


def start_all(starts: Iterable[Start]) -> None:
    """Start each attempt (its running record is committed), unless it was cancelled or
    timed out meanwhile; one that cannot start is reported done with the error."""
    for manager, execution, view in starts:
        if getattr(execution, "cancel_requested", False):
            continue  # cancelled (or timed out) before it could start
        try:
            try:
                manager._launch(execution, cast("TaskRecord", view))
            except StartFailed as failed:
                manager.report(messages.AttemptDone(view.task_id, view.attempts, None,
                                                    failed.error))  # fmt: skip
            except Exception as exc:
                manager.report(messages.AttemptDone(view.task_id, view.attempts, None, exc))
        except Exception as lost:  # a stopped pool or system: not the journal's
            _log.debug("a post-commit start failed: {!r}", lost)
