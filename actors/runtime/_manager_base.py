"""The task manager actor: a thin shell over an `Engine` (the child's state).

It receives typed messages, calls the engine, and answers. It is the engine's `Port`:
it starts attempts (coroutines on their owner loop here; plain functions as the
subclass says) and arms the timers that come back to it as messages through its stable
handle, so they reach the next incarnation if this one crashed. Transitions go to the
monitor, in batches: when the mailbox runs dry while someone subscribes to events (or
the journal needs them), else every `FLUSH_AT` of them, or when asked (`Flush`,
`Mark`). The ids it removes go to the facade in batches too (`FORGET_AT`, and with
every cleanup), so that a task evicted past `MAX_FINISHED_TASKS` costs no wake-up of
the facade of its own; the facade bounces a registration whose id it still routes here
(`messages.Recheck`), and this manager sends it back with the ids removed so far.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from loguru import logger

from actors.core import (
    TERMINAL,
    ActorsError,
    ActorSystemError,
    InvalidTaskError,
    TaskStatus,
    tell_later,
)
from actors.engine import (
    Engine,
    StartFailed,
    TaskDetail,
    TaskRecord,
    TaskRow,
    Timer,
    page_keys,
    page_rows,
)
from actors.observe import stop_span
from actors.runtime import messages
from actors.runtime._attempt import Execution
from actors.runtime._durable import JournaledDefinition, journaled_results, result_gone
from actors.runtime._execution import start_coroutine
from actors.runtime._journal_link import journal_link
from actors.runtime._outbox import OnLoop
from actors.runtime.messages import AttemptDone
from supervisors import SupervisedActor

if TYPE_CHECKING:
    from actors.core import LoopBridge
    from actors.engine import TaskSpec
    from actors.runtime._shared import SystemContext

__all__ = ["DEFERRED", "FLUSH_AT", "FORGET_AT", "BaseManager"]

DEFERRED: Any = object()
"""Returned by a request handler that answers later (the engine keeps the reply)."""

FLUSH_AT = 256
"""Transitions sent to the monitor at the latest once this many wait, even if the
mailbox never runs dry: a burst of 20,000 tasks kept up to 40,000 of them (tuples the
cyclic GC tracks) until its end, long enough to be promoted to the oldest generation,
and then handed the monitor one batch of them to work through."""

FORGET_AT = 256
"""Removed ids told to the facade once this many wait (or at a cleanup, or when the
facade asks, `messages.Recheck`): past `MAX_FINISHED_TASKS` every task evicts one, and
telling the facade of each woke it once more per task (~15 us of CPU). Until then the
facade routes calls about them here, and this manager answers that they are not found;
whenever this manager's mailbox ran dry, its table holds fewer than this many of its
removed ids."""


_REGISTRATIONS = frozenset(("Register", "SubmitTask"))
"""The `messages.Crashed` of a registration: if it crashed before the task was
registered, the facade routed an id this manager never held (`BaseManager._crashed`)."""


class BaseManager(SupervisedActor):
    """A task manager actor. See `TaskManagerActor` and `LegacyTaskManagerActor`."""

    CHILD_ID: ClassVar[str]
    use_daemon_thread = True

    def __init__(self, ctx: SystemContext, state: Engine) -> None:
        super().__init__()
        self.ctx = ctx
        self.engine = engine = state
        self.backend = engine.backend
        self.clock = ctx.clock
        self.me = ctx.handle(self.CHILD_ID)
        self.report = self.me.tell
        self.report_on_loop = OnLoop(ctx.handle("facade"))
        """Reports an attempt's outcome from its own loop (batched per iteration), through
        the facade (`FacadeActor._attempt_done`): in order with that loop's calls."""
        self._log = logger.bind(actor=self.CHILD_ID)
        self.link = journal_link(ctx, engine, self.me)  # None without JOURNAL_PATH
        monitor = ctx.supervisor_state.states.get("task_monitor")
        self.watched: list[Any] | None = getattr(monitor, "subscribers", None)
        """The event stream's subscribers (the monitor's list; None: unknown, so
        transitions always go at once)."""
        engine.attach(self)
        e = engine
        self._requests: dict[type, Callable[[Any], Any]] = {
            messages.Register: self._register,
            messages.SubmitTask: self._submit,
            messages.Execute: self._execute,
            messages.Wait: self._wait,
            messages.Unwait: lambda m: e.unwait(m.task_id, m.waiter),
            messages.Block: lambda m: e.block(m.task_id, m.token, m.blocked),
            messages.Cancel: self._cancel,
            messages.GetTask: lambda m: e.info(e.get(m.task_id)),
            messages.GetStatus: lambda m: e.get(m.task_id).status,
            messages.GetResult: lambda m: e.get(m.task_id).result,
            messages.GetError: lambda m: e.error_of(m.task_id),
            messages.GetAll: lambda m: [e.info(r) for r in e.tasks.values()],
            messages.GetByStatus: lambda m: [
                e.info(r) for r in e.tasks.values() if r.status is m.status
            ],
            messages.GetByType: lambda m: [
                e.info(r) for r in e.tasks.values() if r.task_type == m.task_type
            ],
            messages.PageKeys: lambda m: page_keys(e.tasks.values(), m.query, e.backend),
            messages.PageRows: self._page_rows,
            messages.GetDetail: self._detail,
            messages.GetDefinition: self._definition,
            messages.AddDependency: self._add_dependency,
            messages.Flush: lambda m: self._flush(),
            messages.Cleanup: self._cleanup,
            messages.Shutdown: self._shutdown,
        }
        if engine.shut_down:
            self._refuse_new_tasks()
        self._internal: dict[type, Callable[[Any], None]] = {
            messages.FunctionStarted: lambda m: e.function_started(m.task_id, m.attempt, m.at),
            messages.AttemptTimedOut: lambda m: e.timed_out(m.task_id, m.attempt),
            messages.RetryDue: lambda m: e.retry_due(m.task_id, m.attempt),
            messages.BreakerDue: lambda m: e.breaker_ready(m.name, timer=True),
            messages.BreakerChanged: lambda m: e.breaker_ready(m.transition.name),
            messages.SetLimit: lambda m: e.set_limit(m.limit),
            messages.CleanupTick: self._cleanup_tick,
            messages.Rerun: self._rerun,
            messages.Recheck: lambda m: self._forget((m.message,)),
            messages.Unrouted: self._unrouted,
            messages.Mark: self._mark,
            messages.Batch: self._batch,
            messages.JournalDue: self._journal_due,
            messages.Crashed: self._crashed,
        }

    # -- lifecycle ----------------------------------------------------------------------

    def on_start(self) -> None:
        if self.link is not None and self.link.start():
            self.actor_ref.tell(messages.Rerun())  # recovered tasks, after what is queued
        self._flush()
        if self.engine.forgotten:  # the previous incarnation's (its crash may have been
            self._forget()  # in telling them, `_forget`): the facade hears them now
        if self.ctx.config.CLEANUP_INTERVAL > 0 and self.engine.cleanup_timer is None:
            self._arm_cleanup()

    def on_idle(self) -> None:
        # Transitions wait here (up to FLUSH_AT) while nobody needs them at once: the
        # monitor hears them with the next flush (a metrics call flushes first), and a
        # sequential caller's every call does not wake it. The journal, and the event
        # stream's subscribers, get them as soon as the mailbox runs dry.
        if self.engine.transitions:
            if self.link is not None or self.watched is None or self.watched:
                self._flush()
        elif self.link is not None and self.link.busy():
            self._flush()
        if len(self.engine.forgotten) >= FORGET_AT:
            self._forget()

    def on_stop(self) -> None:
        # A stop (not a crash) ends this manager's life: its timer must not outlive it.
        timer = self.engine.cleanup_timer
        if timer is not None:
            timer.cancel()
            self.engine.cleanup_timer = None
        if self.link is not None:
            self.link.stop()  # its held records go to the journal, which stops later

    def _forget(self, recheck: tuple[Any, ...] = ()) -> None:
        """Tell the facade which tasks were removed since it was last told, and hand it
        back the messages it bounced (``recheck``)."""
        forgotten = self.engine.forgotten
        if not forgotten and not recheck:
            return
        try:
            self.ctx.handle("facade").tell(messages.Forget(tuple(forgotten), recheck))
        except Exception as exc:  # the facade is gone (SupervisorError): nobody routes them
            for bounced in recheck:
                bounced.reply.set_exception(exc)
        # Taken only now: a BaseException from the tell (a crash: `ChildHandle.tell`
        # raises before it delivers) leaves them to the next incarnation (the engine is
        # its state; `on_start` sends them). The facade still routes them until then, so
        # it makes no new route for one of them that this late `Forget` could drop.
        forgotten.clear()

    def _unrouted(self, message: messages.Unrouted) -> None:
        """The facade routed these ids for registrations that never came: it forgets
        those this manager does not hold (before any later call about them, which the
        facade bounces here first, `Recheck`)."""
        tasks = self.engine.tasks
        gone = [task_id for task_id in message.task_ids if task_id not in tasks]
        if gone:
            self.engine.forgotten += gone
            self._forget()

    def _flush(self) -> None:
        """Send the transitions not sent yet to the monitor."""
        transitions = self.engine.transitions
        if self.link is not None:
            self.link.send(transitions)
        if transitions:
            batch = messages.Transitions(tuple(transitions), self.backend)
            try:
                self.ctx.handle("task_monitor").tell(batch)
            except ActorsError:
                pass
            except Exception as exc:
                self._log.debug("transitions not delivered to the monitor: {!r}", exc)
            # Taken only now: a BaseException from the tell (a crash, before it
            # delivered) leaves them to the next incarnation's first flush (`on_start`),
            # ahead of what it adds: the monitor hears each once (its counts stay exact),
            # and the journal's records of them are made again from the tasks' state.
            transitions.clear()

    def _mark(self, message: messages.Mark) -> None:
        """A subscription is routed here (`FacadeActor._subscribe`): what this manager
        sent the monitor so far is from before it, what it sends from now on is not.
        A crash in its tells (the flush's, the `Marked`) hands it on, to be taken again
        after the next incarnation's first flush (what was not sent is kept for it):
        dropped, it left the subscriber muted for this manager for ever."""
        try:
            self._flush()
            with contextlib.suppress(Exception):  # the monitor is gone (SupervisorError)
                self.ctx.handle("task_monitor").tell(messages.Marked(message.token, self.backend))
        except BaseException:
            self.hand_over(message)
            raise

    def _arm_cleanup(self) -> None:
        self.engine.cleanup_timer = tell_later(
            self.clock, self.ctx.config.CLEANUP_INTERVAL, self.me, messages.CleanupTick()
        )

    def _journal_due(self, message: messages.JournalDue) -> None:
        """The held queued records have waited `DEFER_FOR`: write them now."""
        if self.link is not None:
            self.link.due()
        self._flush()

    def _rerun(self, message: messages.Rerun) -> None:
        """Execute the next chunk of recovered tasks; the next chunk goes behind the
        calls that arrived meanwhile."""
        if self.link is not None and self.link.rerun_next():
            self.actor_ref.tell(message)
        self._flush()

    def _cleanup_tick(self, message: messages.CleanupTick) -> None:
        self.engine.cleanup_timer = None
        self.engine.cleanup(self.ctx.config.CLEANUP_MAX_AGE)
        self._end_attempts_of_closed_loops()
        self._forget()  # and what was evicted since: the facade's table shrinks in time
        self._arm_cleanup()

    def _end_attempts_of_closed_loops(self) -> None:
        """Fail the coroutine attempts whose event loop was closed without cancelling
        them (``loop.close()`` with their asyncio tasks pending, where ``asyncio.run``
        cancels them first): nothing runs them any more, and they said ``running`` for
        ever, holding their slots. A timeout or a cancel ends them too; with neither,
        this check, once per ``CLEANUP_INTERVAL``, does."""
        engine = self.engine
        for record in [r for r in engine.tasks.values() if r.execution is not None]:
            execution = record.execution
            if not isinstance(execution, Execution) or execution.bridge is None:
                continue
            if execution.atask is None and not record.is_coroutine:
                continue  # a plain function's: its worker thread ends it
            if execution.bridge.loop.is_closed() and execution.claim():
                error = ActorSystemError(
                    f"task {record.task_id!r} attempt {record.attempts} ended unfinished: "
                    "the event loop running it was closed without cancelling it"
                )
                if execution.trace is not None:  # its span ends with that, not when
                    stop_span(execution, error)  # the coroutine is freed (GeneratorExit)
                atask, execution.atask = execution.atask, None  # never to run again
                if atask is not None:
                    coroutine = atask.get_coro()
                    if (
                        inspect.iscoroutine(coroutine)
                        and inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED
                    ):
                        # Started after its loop's last iteration: close it, or freeing
                        # it warns "coroutine '_run_coroutine' was never awaited".
                        coroutine.close()
                engine.attempt_done(record.task_id, record.attempts, None, error, None)

    # -- dispatch -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        # (a batch's items directly: no nested `_receive` through the `Batch` handler)
        self._receive(message.items if type(message) is messages.Batch else (message,))
        return None

    def _batch(self, message: messages.Batch) -> None:
        self._receive(message.items)  # a loop's calls of one iteration: thousands, at times

    def _receive(self, items: tuple[Any, ...]) -> None:
        """Handle ``items`` in order: a request is answered (or its handler answers it
        later, `DEFERRED`); the transitions go to the monitor once `FLUSH_AT` wait (a
        long burst does not wait for the mailbox to run dry). One loop for a message and
        for the items of a batch: no call per item besides its handler's.

        A batch holds the GIL from its first item to its last, on purpose: handing it
        over every 16 or 32 items (`os.sched_yield` or `time.sleep(0)`) did not shorten
        S7 paced's longest loop stall (its long gaps are generation-1 collections, not
        these holds: 0.5-1.5 ms for a paced cohort) and cost S1 4-13% per task; handing
        over only after 0.5 or 1 ms of holding cost nothing and bought nothing."""
        requests = self._requests
        transitions = self.engine.transitions  # the list `_flush` empties
        attempt_done = self.engine.attempt_done
        message = None
        flushing = False  # a crash in a flush: the message before it was handled
        rest = iter(items)  # (what is left of them if one crashes this actor)
        try:
            for message in rest:
                kind = type(message)
                if kind is AttemptDone:  # one per task: no handler of its own (nor a lambda's
                    # call); its fields are `Engine.attempt_done`'s arguments, in order
                    attempt_done(*message)
                    if len(transitions) >= FLUSH_AT:
                        flushing = True
                        self._flush()
                        flushing = False
                    continue
                handler = requests.get(kind)
                if handler is None:
                    internal = self._internal.get(kind)
                    if internal is None:
                        self._log.warning("unexpected message {!r}", message)
                    else:
                        internal(message)
                else:
                    reply = message.reply
                    try:
                        result = handler(message)
                    except ActorsError as exc:
                        reply.set_exception(exc)
                    except Exception as exc:
                        self._log.opt(exception=exc).error("{} failed", kind.__name__)
                        reply.set_exception(exc)
                    else:
                        if result is not DEFERRED:
                            reply.set_result(result)
                if len(transitions) >= FLUSH_AT:
                    flushing = True
                    self._flush()
                    flushing = False
        except BaseException as exc:
            # This manager crashes: its next incarnation hears which message crashed it
            # (`Crashed`: that task fails, the message is not re-run), then the items
            # after it (a subscription's `Mark`, callers' requests), not lost.
            self._hand_over_rest(rest, message, None if flushing else exc)
            raise

    def _hand_over_rest(self, rest: Iterator[Any], failed: Any, exc: BaseException | None) -> None:
        """Hand over to the next incarnation: a `Crashed` for ``failed`` if it is about
        one task or a caller's request and its handling raised ``exc`` (None: the flush
        after it raised, `FLUSH_AT`: it was handled), then the items ``rest`` had not
        reached. A `messages.Recheck` carries a caller's request the facade bounced off
        this manager: that caller hears the crash (the request is about no task here:
        its id is another task's, or its dependency is in the other system)."""
        task_id = getattr(failed, "task_id", None)
        caller = getattr(failed, "reply", None)
        if type(failed) is messages.Recheck:
            caller = failed.message.reply
        if (
            exc is not None
            and (type(task_id) is str or caller is not None)
            and type(failed) is not messages.Crashed
        ):
            self.hand_over(
                messages.Crashed(
                    task_id if type(task_id) is str else None,
                    type(failed).__name__,
                    repr(exc),
                    caller,
                )
            )
        left = tuple(rest)
        if left:
            self.hand_over(messages.Batch(left))

    def _crashed(self, message: messages.Crashed) -> None:
        """The previous incarnation (or the facade: ``message.actor``) crashed handling a
        message about this task (or a caller's request): the task fails (if it had not
        ended) and the caller hears why. A registration that crashed before its task was
        registered leaves no route in the facade (as a refused one, `_refused`)."""
        about = "a request" if message.task_id is None else f"task {message.task_id!r}"
        actor = message.actor or self.CHILD_ID
        error = ActorSystemError(
            f"{about} failed: the {actor} crashed handling its {message.message}"
            f" ({message.reason}); the message was dropped, not retried"
        )
        task_id = message.task_id
        if task_id is not None:
            engine = self.engine
            if engine.crashed(task_id, error, message.message == "AttemptDone"):
                self._log.error("{}: {}", task_id, error)
            elif message.message in _REGISTRATIONS and task_id not in engine.tasks:
                self._refused(task_id)  # never registered: the facade drops its route
            elif task_id in engine.tasks and engine.tasks[task_id].status not in TERMINAL:
                # Left to its attempt's outcome, on the way (`Engine.crashed`): only the
                # request failed.
                error = ActorSystemError(f"a request about {error}")
        if message.caller is not None:
            message.caller.set_exception(error)

    # -- the engine's port ----------------------------------------------------------------

    def start_attempt(self, record: TaskRecord) -> Execution:
        """Start the attempt: a coroutine as an asyncio task on its owner loop, a plain
        function as `_start_function` says."""
        execution = Execution(record.task_id, record.attempts, record.bridge, record)
        execution.clock = self.clock
        execution.waiters = record.waiters  # the engine never changes it in place now
        if self.link is not None and self.link.durable(record.task_id):
            self.link.defer_start(self, execution, record)
        else:
            self._launch(execution, record)
        return execution

    def _launch(self, execution: Execution, record: TaskRecord) -> None:
        """Hand the attempt to its runner (raise `StartFailed` if it cannot start)."""
        if record.is_coroutine:
            bridge = record.bridge
            if bridge is None or not bridge.post_if_open(
                start_coroutine,
                execution,
                record.func,
                record.args,
                record.kwargs,
                self.report_on_loop,
            ):
                raise StartFailed(_loop_closed(record.task_id), retry=False)
        else:
            self._start_function(execution, record)

    def _start_function(self, execution: Execution, record: TaskRecord) -> None:
        raise NotImplementedError

    def timeout_after(self, delay: float, task_id: str, attempt: int) -> Timer:
        return tell_later(self.clock, delay, self.me, messages.AttemptTimedOut(task_id, attempt))

    def retry_after(self, delay: float, task_id: str, attempt: int) -> Timer:
        return tell_later(self.clock, delay, self.me, messages.RetryDue(task_id, attempt))

    def breaker_after(self, delay: float, name: str) -> Timer:
        return tell_later(self.clock, delay, self.me, messages.BreakerDue(name))

    # -- requests ---------------------------------------------------------------------------

    def _register(self, message: messages.Register) -> Any:
        task_id = message.task_id
        if task_id is None:
            raise InvalidTaskError("a registration reaches a manager with its task id")
        if message.journal is not None and self.link is not None:
            try:
                self.link.register(message, task_id)
            except ActorsError:
                # An id this manager holds stays routed (a durable registration of a task
                # it has already is refused if the definitions differ); a refused new
                # task's route is dropped, as below.
                if task_id not in self.engine.tasks:
                    self._refused(task_id)
                raise
            return DEFERRED
        try:
            return self.engine.register(message.spec, task_id, message.bridge)
        except ActorsError:
            self._refused(task_id)
            raise

    def _submit(self, message: messages.SubmitTask) -> Any:
        try:
            self.engine.submit(
                message.spec, message.task_id, message.bridge, message.reply, message.caller
            )
        except ActorsError:
            self._refused(message.task_id)
            raise
        return DEFERRED

    def _refused(self, task_id: str) -> None:
        """A registration was refused (not registered): the facade forgets the id it
        routed here (with the removed ids not told yet: a crash in the tell leaves them
        all to the next incarnation, `_forget`)."""
        self.engine.forgotten.append(task_id)
        self._forget()

    def _execute(self, message: messages.Execute) -> Any:
        if self.link is not None:
            self.link.promote(message.task_id)
        if message.wait:
            self.engine.execute(message.task_id, message.reply, message.caller)
            return DEFERRED
        if self.link is not None and self.link.durable(message.task_id):
            self.link.answer_later(message.reply, self.engine.execute(message.task_id))
            return DEFERRED
        return self.engine.execute(message.task_id)

    def _add_dependency(self, message: messages.AddDependency) -> Any:
        if self.link is not None:
            self.link.promote(message.task_id)
        self.engine.add_dependency(message.task_id, message.depends_on)
        if self.link is not None and self.link.durable(message.task_id):
            self.link.dependency_added(message.task_id, message.reply)  # answered once journaled
            return DEFERRED
        return None

    def _wait(self, message: messages.Wait) -> Any:
        if self.link is not None:
            self.link.promote(message.task_id)
        self.engine.wait(message.task_id, message.reply, message.bounded, message.caller)
        return DEFERRED

    def _cancel(self, message: messages.Cancel) -> Any:
        cancelled = self.engine.cancel(message.task_id, message.reply)
        return DEFERRED if cancelled is None else cancelled

    def _page_rows(self, message: messages.PageRows) -> list[TaskRow]:
        start, stop = message.slices[self.backend]
        engine = self.engine
        return page_rows(
            engine.tasks.values(),
            message.query,
            start,
            stop,
            self.backend,
            engine.graph.direct_dependencies,
        )

    def _detail(self, message: messages.GetDetail) -> TaskDetail:
        task_id = message.task_id
        record = self.engine.get(task_id)
        graph = self.engine.graph
        spec = record.spec
        live = record.args is not None
        return TaskDetail(
            info=self.engine.info(record),
            dependents=graph.dependents(task_id) if task_id in graph else (),
            failures=tuple(record.failures or ()),
            func=record.func if live else (spec.func if spec is not None else None),
            args=record.args if live else (spec.args if spec is not None else None),
            kwargs=record.kwargs if live else (spec.kwargs if spec is not None else None),
            retryable=record.status is TaskStatus.FAILED
            and (spec is not None or (self.link is not None and self.link.durable(task_id))),
        )

    def _definition(
        self, message: messages.GetDefinition
    ) -> tuple[TaskSpec | JournaledDefinition, LoopBridge | None, bool, str]:
        """A failed task's registration, loop, whether it is durable and its task
        system, to register it again there (`retry_task`). A durable task that failed
        before the restart gives its journal row instead, which the caller decodes
        (`JournaledDefinition.spec`), and no loop (the one it ran on is gone)."""
        task_id = message.task_id
        record = self.engine.get(task_id)
        spec = record.spec
        if record.status is not TaskStatus.FAILED:
            msg = f"task {task_id!r} is {record.status.value}; only a failed task can be retried"
            raise InvalidTaskError(msg)
        graph = self.engine.graph
        deps = tuple(graph.dependencies(task_id)) if task_id in graph else ()
        if spec is None:  # read back from the journal as failed (`recovery.restore`)
            rows = self.link.engine.rows if self.link is not None else {}
            row = rows.get(task_id)
            if row is None:
                msg = (
                    f"task {task_id!r} kept neither its function and arguments nor a "
                    "journal row of them, so it cannot be retried; register it again"
                )
                raise InvalidTaskError(msg)
            journaled = journaled_results(rows, deps)
            return JournaledDefinition(row, deps, journaled), None, True, self.backend
        result_gone(task_id, spec.results or (), deps)
        durable = self.link is not None and self.link.durable(task_id)
        kept = record.kept_bridge
        bridge = None if kept is None else kept()  # None: its loop is gone
        return spec._replace(dependencies=deps), bridge, durable, self.backend

    def _cleanup(self, message: messages.Cleanup) -> list[str]:
        removed = self.engine.cleanup(message.max_age)
        self._flush()  # the monitor hears of it before the caller does
        self._forget()  # and the facade: the caller's next call finds them gone
        return removed

    def _shutdown(self, message: messages.Shutdown) -> int:
        if self.link is not None:  # durable tasks stay in the journal as they are
            self._flush()
            self.link.detach()
        count = self.engine.shutdown()
        self._flush()
        self._refuse_new_tasks()
        return count

    def _refuse_new_tasks(self) -> None:
        """Once the system shuts down, a task registered, submitted or executed by a call
        that arrives after the shutdown began is refused (it would start, or stay, with
        nothing left to end it): the same error as a call made after the stop."""
        for kind in (messages.Register, messages.SubmitTask, messages.Execute):
            self._requests[kind] = _refuse_shut_down


def _refuse_shut_down(message: Any) -> Any:
    raise ActorSystemError("the actor system is shut down; create a new ActorSystem")


def _loop_closed(task_id: str) -> ActorSystemError:
    return ActorSystemError(
        f"task {task_id!r} cannot start: the event loop that registered it is closed"
    )
