"""Recovery at start: the journal's tasks back into a task manager's engine.

`ActorSystem.start` with ``JOURNAL_PATH`` opens the file, reads every row, and
`restore` puts each task back with its id, name, priority, dependencies, arguments and
state:

- ``pending``: pending again (not executed);
- ``completed``: completed with its result (never run again); ``failed`` and
  ``cancelled``: with their error as a `JournaledError` (type name and message);
- ``waiting``, ``queued``, ``retrying``: executed again once the manager has started,
  in chunks of `RERUN_CHUNK` (calls are answered in between; a call about one executes
  it at once), with the attempts they had used (so their remaining retries);
- ``running`` (an attempt may have been running at the crash): executed again and
  marked recovered (``TaskInfo.recoveries`` counts the times); the interrupted attempt
  does not count against ``max_retries``. Past ``MAX_RECOVERIES`` the task ends
  ``failed`` with `TaskRecoveryError` instead (a poison task).

A task whose function can no longer be imported, or whose arguments cannot be decoded,
ends ``failed`` with the `JournalDecodeError`. A task that had not ended keeps its
journaled creation time. A failed task's function and arguments are not decoded here:
`retry_task` decodes its row (`DurableEngine.rows`) if it is retried. Coroutine tasks
(and, in the old task system, every task) run on a loop thread the system owns
(`SystemLoop`), since the loop that registered them is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors.core import (
    ActorsError,
    JournalDecodeError,
    JournaledError,
    LoopBridge,
    TaskRecoveryError,
    TaskStatus,
    bridge_for,
    end_tasks,
    gc_paused,
)
from actors.engine import find_results, is_coroutine_callable
from actors.journal import Codec, JournalStore, TaskRow, resolve_function
from actors.observe import new_trace
from actors.runtime._durable import codec_for, journaled_spec
from actors.runtime._journal import JournalActor, JournalState
from actors.runtime._journal_link import DurableEngine, JournalHealth
from supervisors import ChildSpec

if TYPE_CHECKING:
    from actors.engine import CircuitBreaker, Policy
    from actors.runtime._facade import FacadeState
    from actors.runtime._shared import SystemContext

__all__ = ["BUSY_TIMEOUT", "Journal", "SystemLoop", "restore"]

BUSY_TIMEOUT = 2.0
"""Seconds a journal write waits for a file another connection locked, then fails
(reported; the system goes on from memory and tries again with the next batch)."""

_log = logger.bind(system="actorflow")

_TERMINAL = {"completed", "failed", "cancelled"}
_EMPTY = "{}"
"""An empty mapping as the JSON codec writes it (most kwargs and metadata)."""
_RERUN = {"waiting", "queued", "retrying", "running"}
_VALUES = {status: status.value for status in TaskStatus}
_STATUS = TaskRow._fields.index("status")


def _ended(*args: Any, **kwargs: Any) -> None:
    """The function of a restored task that had ended: it never runs again."""


class SystemLoop:
    """An event loop on a daemon thread the system owns, for recovered tasks that have
    no caller's loop. Stopped with the system."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name="actorflow-recovered-loop", daemon=True
        )
        self._thread.start()
        self.bridge: LoopBridge = bridge_for(self.loop)

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                # The recovered tasks still running are cancelled and their cleanups
                # run (the system's stop cancelled them: the loop stopped before their
                # cancellation was delivered), as the loop of `asyncio.run` does.
                end_tasks(loop, default_executor=True)
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def stop(self, timeout: float) -> None:
        """Stop the loop and wait at most ``timeout`` seconds (the time left of the
        system's stop) for its thread, which ends the loop's tasks and closes it; one
        still running then (a recovered task blocking the loop, or ignoring its
        cancellation) is abandoned, with a warning."""
        loop = self.loop
        if loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile, by its thread
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return
        _log.warning(
            "the recovered tasks' loop thread did not end within {:.3f}s (the time left "
            "of the stop's deadline); abandoned while a task of it blocks the loop",
            timeout,
        )


@gc_paused()  # bulk loading: the GC waits until the tasks are back
def restore(
    engine: DurableEngine,
    rows: list[TaskRow],
    *,
    codec: Codec,
    bridge: Callable[[], LoopBridge],
    max_recoveries: int,
) -> list[str]:
    """Put ``rows`` (in load order) back into ``engine``; returns their task ids.

    A live task's circuit breaker is its name: ``engine`` shares the breaker of that
    name as it registers the task (`Engine.breakers`). ``bridge()`` gives the loop of
    the recovered tasks (called only if one needs it).
    """
    functions: dict[str, tuple[Callable[..., Any], bool]] = {}
    loop_bridge: LoopBridge | None = None
    tasks = engine.tasks
    restored: list[str] = []
    later: list[tuple[str, str]] = []
    trace = new_trace()
    """Recovered attempts' spans are roots: the journal keeps no trace context."""
    lost: dict[str, str] = {}
    """Completed task id -> why its result is not in the journal (a dependent of it
    cannot run again: it would take None)."""
    with engine.restoring():  # the MAX_FINISHED_TASKS bound once every pin is in place
        for row in rows:
            task_id = row.task_id
            if task_id in tasks:
                continue
            status = row.status
            ended = status in _TERMINAL
            problem: JournalDecodeError | None = None
            func: Callable[..., Any] = _ended
            is_coroutine = False
            args: tuple[Any, ...] = ()
            kwargs: dict[str, Any] = {}
            metadata: dict[str, Any] = {}
            try:
                if row.metadata != _EMPTY:
                    metadata = codec.decode_value(row.metadata, what="its metadata", task=task_id)
                if not ended:
                    found = functions.get(row.function)
                    if found is None:
                        resolved = resolve_function(row.function, task=task_id)
                        found = functions[row.function] = (
                            resolved,
                            is_coroutine_callable(resolved),
                        )
                    func, is_coroutine = found
                    if row.kwargs == _EMPTY:
                        args = tuple(
                            codec.decode_value(row.args, what="its arguments", task=task_id)
                        )
                    else:
                        args, kwargs = codec.decode_args(row.args, row.kwargs, task=task_id)
            except JournalDecodeError as exc:
                problem = exc
                func, is_coroutine = _ended, False
            results = find_results(args, kwargs) if args or kwargs else ()
            missing = [dep for dep in results if dep not in tasks]
            if missing and problem is None:  # its result_of task was not journaled before it
                problem = JournalDecodeError(
                    f"journaled task {task_id!r} cannot be read back: the task of its "
                    f"result_of({missing[0]!r}) is not in the journal"
                )
                func, is_coroutine, args, kwargs, results = _ended, False, (), {}, ()
            elif lost and problem is None:
                gone = next((dep for dep in results if dep in lost), None)
                if gone is not None:
                    problem = JournalDecodeError(
                        f"journaled task {task_id!r} cannot run again: the result of its "
                        f"result_of({gone!r}) is not in the journal ({lost[gone]})"
                    )
                    func, is_coroutine, args, kwargs, results = _ended, False, (), {}, ()
            spec = journaled_spec(
                row,
                func,
                is_coroutine,
                args,
                kwargs,
                metadata,
                tuple(dep for dep in row.dependencies if dep in tasks) if row.dependencies else (),
                results,
                None if ended else row.circuit_breaker,
                None if ended else trace,
            )
            if loop_bridge is None and not ended and (is_coroutine or engine.backend == "old"):
                loop_bridge = bridge()
            engine.register(spec, task_id, loop_bridge)  # type: ignore[arg-type]
            engine.rows[task_id] = tuple(row)  # untracked by the garbage collector
            restored.append(task_id)
            if row.dependencies:
                # An edge added with add_dependency may point to a task journaled later.
                later.extend((task_id, dep) for dep in row.dependencies if dep not in tasks)
            record = tasks[task_id]
            if record.status is not TaskStatus.PENDING:
                continue  # cancelled at registration: a dependency had failed
            if not ended and record.wall_offset is not None:  # registered when the file says
                record.created_at = row.created_at - record.wall_offset
            if problem is not None and status not in _TERMINAL:
                engine.end(record, TaskStatus.FAILED, error=problem)
                record.spec = None  # its function (`_ended`): a retry reads its row again
                continue
            record.attempts = row.attempts
            if ended:
                at = _journaled_times(record, row)
            if status == "completed":
                result = None
                if row.result is not None:
                    try:
                        result = codec.decode_value(row.result, what="its result", task=task_id)
                    except JournalDecodeError as exc:
                        lost[task_id] = str(exc)
                elif row.result_note is not None:  # "result not serializable: <type>"
                    lost[task_id] = row.result_note
                engine.end(record, TaskStatus.COMPLETED, result=result, at=at)
            elif status in ("failed", "cancelled"):
                journaled = JournaledError(row.error_type or "Exception", row.error_message or "")
                engine.end(record, TaskStatus(status), error=journaled, at=at)
                # Nor is an ended task's: a retry decodes its row (`BaseManager._definition`),
                # not recovery (100,000 restored tasks do not pay for the few retried).
                record.spec = None
            elif status == "running":
                count = row.recoveries + 1
                engine.recoveries[task_id] = count
                engine.touched.add(task_id)
                if count > max_recoveries:
                    error = TaskRecoveryError(
                        f"task {task_id!r} was running when the process died {count} times "
                        f"(MAX_RECOVERIES is {max_recoveries}); it is not run again"
                    )
                    engine.end(record, TaskStatus.FAILED, error=error)
                else:
                    record.attempts = max(0, row.attempts - 1)
                    engine.rerun.append(task_id)
            elif status in _RERUN:
                engine.rerun.append(task_id)
        for task_id, dep in later:
            if dep not in tasks:
                continue  # cleaned up
            with contextlib.suppress(ActorsError):  # a damaged file: a cycle
                if tasks[task_id].status is TaskStatus.PENDING:
                    engine.add_dependency(task_id, dep)  # what a failed dependency means
                else:
                    engine.graph.add_edge(task_id, dep)  # ended: the edge is history
    _mark_rewrites(engine, restored)
    return restored


def _mark_rewrites(engine: DurableEngine, restored: list[str]) -> None:
    """After `restore`'s registrations: its transitions are quiet (``engine.quiet``: the
    file holds their states) but for the ``restored`` tasks that ended otherwise (a
    decode problem, a poison task, a failed dependency) and those evicted by
    MAX_FINISHED_TASKS (deleted from the file too): those are touched (written)."""
    tasks = engine.tasks
    touched = engine.touched
    rows_of = engine.rows
    for task_id in restored:
        kept = tasks.get(task_id)
        if kept is None:
            touched.add(task_id)
            continue
        current = kept.status
        if current is not TaskStatus.PENDING and _VALUES[current] != rows_of[task_id][_STATUS]:
            touched.add(task_id)
    engine.quiet = len(engine.transitions)


def _journaled_times(record: Any, row: TaskRow) -> float | None:
    """Give an ended ``record`` the times its row holds (wall clock) on the engine's
    clock, through the offset taken at its registration; returns its end, None if the
    row has none. Its age is then that of the first run: `cleanup` and the
    MAX_FINISHED_TASKS order see it, not the restart (else a service restarted more often
    than CLEANUP_MAX_AGE never cleaned up what it journaled)."""
    offset = record.wall_offset
    if offset is None:
        return None
    if row.created_at is not None:
        record.created_at = row.created_at - offset
    if row.started_at is not None:
        record.started_at = row.started_at - offset
    return None if row.finished_at is None else row.finished_at - offset


class Journal:
    """The journal of one `ActorSystem`: the file, its rows at start, the child spec.

    Built by `ActorSystem.start` when ``JOURNAL_PATH`` is set; `close` at stop.
    """

    def __init__(
        self, ctx: SystemContext, breakers: Callable[[str | CircuitBreaker], CircuitBreaker]
    ) -> None:
        config = ctx.config
        assert config.JOURNAL_PATH is not None
        self.ctx = ctx
        self.store = JournalStore(config.JOURNAL_PATH, sync=config.JOURNAL_SYNC,
                                  busy_timeout=BUSY_TIMEOUT)  # fmt: skip
        try:
            with gc_paused():  # 100,000 rows of 30 values: no cycles to look for
                rows = self.store.load()
        except BaseException:
            self.store.close()
            raise
        self.codec = codec_for(config.JOURNAL_SERIALIZER)
        self._breakers = breakers
        """The breaker a registration shares (`Engine.breakers`)."""
        self.loop: SystemLoop | None = None
        self.health = JournalHealth()
        """The last write's error: the journal child sets it, the managers read it."""
        self.state: JournalState | None = None
        """The journal child's state (created by the supervisor at start)."""
        self.restored: dict[str, str] = {}
        """Recovered task id -> the task system it was recovered into."""
        self.backend = "new" if config.USE_NEW_TASK_SYSTEM else "old"
        self.rows: dict[str, list[TaskRow]] = {}
        """Task system -> the journaled tasks it registered, in load order (a row of
        a version 1 file, with no task system, goes to the current one)."""
        current = self.backend
        for row in rows:
            backend = row.backend or current
            group = self.rows.get(backend)
            if group is None:
                group = self.rows[backend] = []
            group.append(row)

    def spec(self) -> ChildSpec:
        """The ``journal`` child (its state holds the writer and its pending records)."""
        return ChildSpec("journal", JournalActor, (self.ctx,), state_factory=self._state)

    def _state(self) -> JournalState:
        state = self.state = JournalState(self.store, self.ctx, self.health)
        return state

    def engine(self, policy: Policy) -> DurableEngine:
        """A manager's state, with the journal's tasks that its task system registered."""
        engine = DurableEngine(policy, self.ctx.clock, breakers=self._breakers)
        engine.health = self.health
        rows = self.rows.pop(policy.backend, None)
        if rows:
            ids = restore(
                engine,
                rows,
                codec=self.codec,
                bridge=self._bridge,
                max_recoveries=self.ctx.config.MAX_RECOVERIES,
            )
            self.restored.update(dict.fromkeys(ids, policy.backend))
        return engine

    def facade_state(self, state: FacadeState) -> FacadeState:
        state.owners.update(self.restored)
        return state

    def _bridge(self) -> LoopBridge:
        if self.loop is None:
            self.loop = SystemLoop()
        return self.loop.bridge

    def close(self, timeout: float) -> None:
        """Close the file once the journal child has made its last write, waiting for
        that and for the recovered tasks' loop at most ``timeout`` seconds in all. A
        write still under way then fails (its records are not written; logged)."""
        deadline = time.monotonic() + timeout
        state = self.state
        if state is not None and not state.stopped.wait(timeout):
            _log.warning(
                "the journal did not make its last write within {}s of the stop's end; "
                "closing the file ({} records not written)",
                timeout,
                len(state.writer),
            )
        elif state is not None and state.health.error is not None and len(state.writer):
            _log.error(
                "closing the journal with {} records never written ({}): the next start "
                "finds those tasks as the file last had them, or not at all",
                len(state.writer),
                state.health.error,
            )
        if self.loop is not None:
            self.loop.stop(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(Exception):
            self.store.close()
