"""The ``journal`` actor: the sixth supervised child, only with ``JOURNAL_PATH``.

It receives `JournalBatch` messages from the task managers, adds their records to its
`JournalWriter` (coalesced per task) and, when its mailbox is empty, writes them all
in one transaction (group commit), then runs the batches' actions: the replies of
durable registrations and executions, and the starts of durable attempts. It is the
only actor that waits for the disk.

Its `JournalState` outlives incarnations and holds the writer (with the records not
written yet) and the actions not run yet: a `Kill` mid-run loses nothing, the next
incarnation writes them (the state handover of the other children). A failed write
(full disk, locked file) is reported to the monitor (`JournalFailed`: an error event
and the ``journal_errors`` metric; logged once per cause); the records stay pending for
the next write, tried with the next batch or by a `JournalRetry` timer (`RETRY_EVERY`),
and the actions run anyway: the system goes on from memory and never crashes for it.
Until a write succeeds, its error is in the `JournalHealth` the managers share, and
they refuse new durable tasks with it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from loguru import logger

from actors.core import ActorSystemError, tell_later
from actors.journal import JournalStore, JournalWriter
from actors.runtime._journal_link import (
    RETRY_EVERY,
    Answer,
    JournalHealth,
    Start,
    answer_all,
    start_all,
)
from actors.runtime._shared import SystemChild
from actors.runtime.messages import Crashed, JournalBatch, JournalFailed, JournalRetry

if TYPE_CHECKING:
    from actors.core import JournalError
    from actors.runtime._shared import SystemContext
    from supervisors import TimerHandle

__all__ = ["FLUSH_AT", "JournalActor", "JournalState"]

FLUSH_AT = 8192
"""Pending records (or actions) that trigger a write before the mailbox is empty."""

_log = logger.bind(actor="journal")

T = TypeVar("T")


class JournalState:
    """What outlives the journal actor's incarnations."""

    def __init__(
        self, store: JournalStore, ctx: SystemContext, health: JournalHealth | None = None
    ) -> None:
        self.store = store
        self.ctx = ctx
        self.health = JournalHealth() if health is None else health
        """The last write's error, for the managers (`JournalHealth`)."""
        self.retry: TimerHandle | None = None
        """The timer that tries a failed write again (`RETRY_EVERY`), while one is armed."""
        self.writer = JournalWriter(store, on_error=self._failed)
        self.answers: list[Answer] = []
        self.starts: list[Start] = []
        """What waits for the next commit (the state handover keeps them)."""
        self.starting: list[str] = []
        self.early: list[Start] = []
        """Attempts whose tasks' ``running`` records (of ``starting``) are written in a
        transaction of their own as soon as the mailbox holds no more batch
        (`JournalActor.start_attempts`): one for the batches that came meanwhile."""
        self.failures = 0
        """Writes failed since the last one that succeeded."""
        self.failing: str | None = None
        """The error of the last failed write logged: the same again is not (a full disk
        fails every write; the metric and the events count each)."""
        self.stopped = threading.Event()
        """Set once an incarnation has stopped (not crashed) and made its last write:
        the system closes the file after it (`Journal.close`)."""

    def _failed(self, error: JournalError, records: int) -> None:
        self.failures += 1
        self.health.error = error
        message = str(error)
        if message != self.failing:
            self.failing = message
            _log.error(
                "journal write failed ({} records kept pending): {}; until a write "
                "succeeds, the same error is not logged again (each is a journal_error "
                "event and counts in the journal_errors metric)",
                records,
                error,
            )
        with contextlib.suppress(Exception):
            self.ctx.handle("task_monitor").tell(JournalFailed(error, records))


class JournalActor(SystemChild[JournalState]):
    CHILD_ID = "journal"

    def __init__(self, ctx: SystemContext, state: JournalState) -> None:
        super().__init__(ctx, state)
        self.writer = state.writer

    def on_start(self) -> None:
        self.commit()  # what the previous incarnation had not written

    def on_stop(self) -> None:
        try:
            self.commit()
        finally:
            timer, self.state.retry = self.state.retry, None
            if timer is not None:
                timer.cancel()
            self.state.stopped.set()

    def on_idle(self) -> None:
        self.commit()

    def on_receive(self, message: Any) -> Any:
        if type(message) is JournalBatch:
            state = self.state
            writer = self.writer
            state.answers += message.answers
            if message.starts:  # started by the next `commit`, first
                state.starting += message.starting
                state.early += message.starts
            records = iter(message.records)  # (what is left of them if one crashes)
            try:
                writer.add_all(records)
            except BaseException:
                # This actor crashes: the records after the one that raised go to its
                # next incarnation first (that one is dropped, as a failed write), with
                # the batch's actions, taken back from the state: they wait for those
                # records (its first `commit` would have run them before adding them).
                if message.answers:
                    del state.answers[-len(message.answers) :]
                if message.starts:
                    del state.early[-len(message.starts) :]
                    if message.starting:  # (never [-0:]: the whole list)
                        del state.starting[-len(message.starting) :]
                self.hand_over(
                    JournalBatch(tuple(records), message.answers, message.starts, message.starting)
                )
                raise
            if len(writer) >= FLUSH_AT or max(len(state.answers), len(state.early)) >= FLUSH_AT:
                self.commit()
        elif type(message) is JournalRetry:
            self.state.retry = None  # the write is tried again when the mailbox is empty
        else:
            _log.warning("unexpected message {!r}", message)
        return None

    def start_attempts(self) -> None:
        """Start the waiting attempts as soon as their tasks' ``running`` records are
        committed: in a transaction of their own, before the rest of what is pending (the
        attempts then run while the rest is written). The mailbox ran dry first: the
        batches of a burst share one transaction (one per batch cost S12 ~1 us per task).
        If one of those tasks has a row not yet written, or the write failed, they wait
        for the next `commit` with the rest."""
        state = self.state
        starting, starts = state.starting, state.early
        state.starting, state.early = [], []
        try:
            written = self.writer.flush_changes(starting)
        except BaseException:
            state.starts += starts  # a crash: started by the next incarnation's commit
            raise
        if written:
            _run_all(start_all, starts, state.starts, _start_lost)
        else:
            state.starts += starts

    def commit(self) -> None:
        """Start the waiting attempts (`start_attempts`), write the rest of what is
        pending in one transaction, then give the waiting answers and start the attempts
        waiting for it."""
        state = self.state
        if state.early:
            self.start_attempts()
        if self.writer.flush():
            if state.failures:
                _log.warning(
                    "journal writes succeed again after {} failed: the records kept pending "
                    "are written",
                    state.failures,
                )
                state.failures = 0
                state.failing = None
                state.health.error = None
        elif state.retry is None:  # tried again then, even if no batch comes meanwhile
            state.retry = tell_later(
                self.ctx.clock, RETRY_EVERY, self.ctx.handle(self.CHILD_ID), JournalRetry()
            )
        if state.starts:
            starts, state.starts = state.starts, []
            _run_all(start_all, starts, state.starts, _start_lost)
        if state.answers:
            answers, state.answers = state.answers, []
            _run_all(answer_all, answers, state.answers, _answer_lost)


def _run_all(
    run: Callable[[Iterator[T]], None],
    actions: list[T],
    kept: list[T],
    lost: Callable[[T, BaseException], None],
) -> None:
    """``run(actions)`` (`start_all`, `answer_all`) after a commit. If it crashes this
    actor (a BaseException: each action's Exception is its own), the actions it had not
    reached go back first into ``kept``, the state's list, for the next incarnation's
    first commit: else their callers waited for ever and their attempts never started.
    The one that raised is dropped, as a crashing message is, and ``lost`` says so (its
    caller hears the crash, its task fails): else that one waited for ever."""
    rest = iter(actions)
    try:
        run(rest)
    except BaseException as exc:
        left = list(rest)
        kept[:0] = left
        taken = len(actions) - len(left)
        if taken:  # (none: it raised before its first action)
            try:
                lost(actions[taken - 1], exc)
            except Exception as error:
                _log.error("a crash's dropped action not reported: {!r}", error)
        raise


def _answer_lost(answer: Answer, exc: BaseException) -> None:
    """The journal crashed giving this answer (`_run_all`): its caller hears why."""
    answer[0].set_exception(
        ActorSystemError(
            f"the journal crashed answering this call after its commit ({exc!r}): what the"
            " call did is journaled, its answer was dropped, not retried; ask the task"
            " for its state"
        )
    )


def _start_lost(start: Start, exc: BaseException) -> None:
    """The journal crashed starting this attempt (`_run_all`): its task fails through
    its manager (`BaseManager._crashed`), as for a message that crashed the manager."""
    manager, _, view = start
    manager.report(Crashed(view.task_id, "Start", repr(exc), None, JournalActor.CHILD_ID))
