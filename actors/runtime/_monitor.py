"""The task monitor actor: metrics, the event stream, and the resource governor.

It hears every lifecycle transition from the managers in batches, restarts from the
supervisor and state changes from the circuit breakers. It keeps aggregates (counts,
streaming timing sketches per task type) plus the start time of tasks in flight, all in
its child state so a restart loses nothing. Subscribers of the event stream get their
events from here.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors.core import (
    COMPLETED,
    FAILED,
    NO_REPLY,
    PENDING,
    QUEUED,
    RETRYING,
    RUNNING,
    TERMINAL,
    ActorSystemError,
    ConfigError,
    SafeRepr,
    TaskStatus,
    safe_repr,
    tell_later,
)
from actors.observe import (
    Event,
    EventKind,
    GovernorPolicy,
    Histogram,
    MetricsSnapshot,
    Pressure,
    QuantileSketch,
    ResourceSample,
    Subscriber,
    TimingStats,
    decide,
    kind_of_transition,
)
from actors.runtime._shared import SystemChild
from actors.runtime.messages import (
    BreakerChanged,
    ChildRestarted,
    Flush,
    GetMetrics,
    JournalFailed,
    Marked,
    ResourceTick,
    SetLimit,
    Subscribe,
    Transitions,
    Unsubscribe,
)
from supervisors import TimerHandle

if TYPE_CHECKING:
    from actors.engine import BreakerTransition, Transition
    from actors.runtime._shared import SystemContext

__all__ = ["MonitorState", "TaskMonitorActor"]


OTHER = "__other__"
"""The metrics label of task types past ``METRICS_MAX_TASK_TYPES``."""


class MonitorState:
    """Aggregates, plus the queue/start times of tasks in flight (bounded by them).

    Per-type aggregates are keyed by a label: the task type itself for the first
    ``METRICS_MAX_TASK_TYPES`` types, `OTHER` for the rest. A type keeps its label while
    it has tasks (registered and not cleaned up); when its last task is cleaned up, an
    own label is freed with its counts and timing sketches.
    """

    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter()
        self.by_type: dict[str, Counter[str]] = {}
        """label -> status -> tasks."""
        self.labels: dict[str, str] = {}
        """task type -> its label, for types that have tasks."""
        self.live: Counter[str] = Counter()
        """task type -> its tasks not cleaned up yet."""
        self.own_labels = 0
        """Types labelled by their own name (at most ``METRICS_MAX_TASK_TYPES``)."""
        self.restarts: Counter[str] = Counter()
        self.execution: dict[str, QuantileSketch] = {}
        self.waiting: dict[str, QuantileSketch] = {}
        # The same durations in cumulative buckets, for Prometheus histograms.
        self.execution_buckets: dict[str, Histogram] = {}
        self.waiting_buckets: dict[str, Histogram] = {}
        self.queued_at: dict[str, float] = {}
        self.started_at: dict[str, float] = {}
        self.retries = 0
        self.failures = 0
        self.timeouts = 0
        self.subscribers: list[Subscriber] = []
        self.muted: dict[str, list[Subscriber]] = {}
        """backend -> the subscribers that hear none of its manager's transitions yet
        (until its `Marked`)."""
        self.marks: dict[object, Subscriber] = {}
        """A muted subscriber by its subscription's token."""
        self.dropped = 0
        self.resource: dict[str, float] = {}
        self.pressure = Pressure.OK
        self.resource_timer: TimerHandle | None = None
        self.limit = 0  # the governor's last decision (0: it has not decided yet)
        self.journal_errors = 0


class TaskMonitorActor(SystemChild[MonitorState]):
    CHILD_ID = "task_monitor"

    def __init__(self, ctx: SystemContext, state: MonitorState) -> None:
        super().__init__(ctx, state)
        self.me = ctx.handle(self.CHILD_ID)
        self.policy = GovernorPolicy.from_config(ctx.config)  # the config is frozen

    def on_start(self) -> None:
        if self.ctx.config.RESOURCE_CHECK_INTERVAL > 0 and self.state.resource_timer is None:
            self._arm_governor()

    def on_stop(self) -> None:
        if self.state.resource_timer is not None:
            self.state.resource_timer.cancel()
            self.state.resource_timer = None
        for subscriber in self.state.subscribers:
            subscriber.close()
        self.state.subscribers.clear()
        self.state.muted.clear()
        self.state.marks.clear()

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is Transitions:
            self._apply(message.items, message.backend)
        elif kind is ChildRestarted:
            self.state.restarts[message.child_id] += 1
        elif kind is BreakerChanged:
            self._breaker_changed(message.transition)
        elif kind is JournalFailed:
            self._journal_failed(message)
        elif kind is ResourceTick:
            self.state.resource_timer = None
            self._govern()
            self._arm_governor()
        elif kind is GetMetrics:
            self._answer(message, self.snapshot)
        elif kind is Subscribe:
            self._answer(message, lambda: self._subscribe(message))
        elif kind is Marked:
            self._marked(message)
        elif kind is Unsubscribe:
            self._drop(message.subscriber)
            message.reply.set_result(None)
        return None

    def _subscribe(self, message: Subscribe) -> Subscriber:
        subscriber = Subscriber(
            message.bridge, self.ctx.config.EVENT_BUFFER_SIZE, message.task_type
        )
        state = self.state
        state.subscribers.append(subscriber)
        if message.muted:  # until each manager's mark (`FacadeActor._subscribe`)
            state.marks[message.token] = subscriber
            for backend in message.muted:
                state.muted.setdefault(backend, []).append(subscriber)
        # The managers send their transitions as they go from now on (they keep them
        # while nobody subscribes): what they hold now comes now, not with their next
        # call (a manager that took its mark before this still held what came after).
        for manager in ("task_manager", "legacy_task_manager"):
            with contextlib.suppress(Exception):
                self.ctx.handle(manager).tell(Flush(NO_REPLY))
        return subscriber

    def _marked(self, message: Marked) -> None:
        """``message.backend``'s transitions from now on reach the subscriber too."""
        state = self.state
        subscriber = state.marks.get(message.token)
        if subscriber is None:
            return
        muted = state.muted.get(message.backend)
        if muted is not None and subscriber in muted:
            muted.remove(subscriber)
            if not muted:
                del state.muted[message.backend]
        if not any(subscriber in muted for muted in state.muted.values()):
            del state.marks[message.token]

    def _drop(self, subscriber: Subscriber) -> None:
        state = self.state
        with contextlib.suppress(ValueError):
            state.subscribers.remove(subscriber)
        if state.marks:
            for backend, muted in list(state.muted.items()):
                if subscriber in muted:
                    muted.remove(subscriber)
                    if not muted:
                        del state.muted[backend]
            for token, marked in list(state.marks.items()):
                if marked is subscriber:
                    del state.marks[token]

    @staticmethod
    def _answer(message: GetMetrics | Subscribe, make: Callable[[], Any]) -> None:
        try:
            result = make()
        except Exception as exc:
            message.reply.set_exception(exc)
        except BaseException as exc:  # this monitor crashes: its caller hears why
            message.reply.set_exception(
                ActorSystemError(
                    f"the {TaskMonitorActor.CHILD_ID} crashed handling its"
                    f" {type(message).__name__} ({exc!r}); the message was dropped, not"
                    " retried"
                )
            )
            raise
        else:
            message.reply.set_result(result)

    # -- lifecycle events -----------------------------------------------------------------

    def _apply(self, items: tuple[Transition, ...], backend: str = "") -> None:
        state = self.state
        queued_at = state.queued_at
        started_at = state.started_at
        labels = state.labels
        live = state.live
        # The status counts move by (label, old, new) pairs, and the run and wait times
        # are counted per label: both are gathered over the batch and applied once at
        # its end (`_settle`), as they come (a batch holds a few kinds of moves, many
        # times each, and a few labels). The removal of a type's last task applies them
        # first (`_forget` frees its label, and drops its counts and sketches).
        # A task's usual life (registered, queued, running, completed, removed) is
        # counted in a list of five ints per run of one label (``tally`` at its end); its first
        # of each kind in a run goes to ``moves`` too, so the counts are applied in the
        # order each move first came (as ``moves`` alone did, at ~0.1 us more a move).
        moves: list[tuple[str, TaskStatus | None, TaskStatus | None]] = []
        move = moves.append  # (counted at the end, in C: `_settle`)
        tally: list[tuple[str, list[int]]] = []  # (label, its counts in `_USUAL`'s order)
        usual = [0, 0, 0, 0, 0]
        next_of = _NEXT
        ran: defaultdict[str, list[float]] = defaultdict(list)
        waited: defaultdict[str, list[float]] = defaultdict(list)
        # The label of the previous item's type, and its lists of times: a batch is
        # mostly runs of one type (a burst of one kind of task).
        last_type: str | None = None
        label = ""
        took: list[float] = []
        wait: list[float] = []
        rest = iter(items)  # (what is left of them if one crashes this actor)
        try:
            for task_id, _name, task_type, old, new, _attempt, at, _wall, detail in rest:
                if task_type is not last_type:
                    if any(usual):
                        tally.append((label, usual))
                        usual = [0, 0, 0, 0, 0]
                    known = labels.get(task_type)
                    label = self._label(task_type) if known is None else known
                    last_type = task_type
                    took = ran[label]
                    wait = waited[label]
                usual_next = next_of.get(old)  # (one usual move leaves each status)
                if usual_next is not None and usual_next[0] is new:
                    index = usual_next[1]
                    usual[index] += 1
                    if usual[index] == 1:
                        move((label, old, new))
                else:
                    move((label, old, new))
                if new is None:
                    queued_at.pop(task_id, None)
                    started_at.pop(task_id, None)
                    left = live[task_type]
                    if left > 1:
                        live[task_type] = left - 1
                    else:  # its type's last task: `_forget` frees the label
                        tally.append((label, usual))
                        usual = [0, 0, 0, 0, 0]
                        self._settle(moves, tally, ran, waited)
                        self._forget(task_type)
                        last_type = None  # (its lists were applied: new ones from here)
                    continue
                if old is None:
                    live[task_type] += 1
                elif old is RUNNING:
                    since = started_at.pop(task_id, None)
                    if since is not None:
                        took.append(at - since if at > since else 0.0)
                if new is QUEUED:
                    queued_at[task_id] = at
                elif new is RUNNING:
                    since = queued_at.pop(task_id, None)
                    if since is not None:
                        wait.append(at - since if at > since else 0.0)
                    started_at[task_id] = at
                elif new is COMPLETED:  # (the common ending: no error to count)
                    queued_at.pop(task_id, None)
                elif new is not PENDING:
                    if new is RETRYING:
                        state.retries += 1
                    elif new is FAILED and not (old is PENDING and detail == "JournaledError"):
                        # (a failed task restored by recovery failed in an earlier
                        # process: the per-process counter does not count it again)
                        state.failures += 1
                    if detail == "TaskTimeoutError" and (new is RETRYING or new is FAILED):
                        state.timeouts += 1
                    if new in TERMINAL:
                        queued_at.pop(task_id, None)
        except BaseException:
            # This monitor crashes: what the items before the one that raised gathered
            # is applied (and that one's status move, if it got that far: it happened),
            # and the items after it go to the next incarnation, else the status counts
            # drift for good (a later move subtracts from a status never added to).
            # The one that raised goes on with them if it had not got its label
            # (`_label`, its type's first): nothing of it was applied, and its move lost
            # would leave its status counted one short for good.
            unhandled = tuple(rest)
            done = items[: len(items) - len(unhandled)]
            if done and done[-1][2] is not last_type:
                unhandled = (done[-1], *unhandled)
                done = done[:-1]
            if unhandled:
                self.hand_over(Transitions(unhandled, backend))
            if moves:
                tally.append((label, usual))
                self._settle(moves, tally, ran, waited)
            if state.subscribers:
                self._publish(_events(done), self.state.muted.get(backend))
            raise
        if moves:
            tally.append((label, usual))
            self._settle(moves, tally, ran, waited)
        if state.subscribers:
            self._publish(_events(items), self.state.muted.get(backend))

    def _settle(
        self,
        moves: list[tuple[str, TaskStatus | None, TaskStatus | None]],
        tally: list[tuple[str, list[int]]],
        ran: dict[str, list[float]],
        waited: dict[str, list[float]],
    ) -> None:
        """Apply what a run of transitions gathered, and clear it: the status moves
        (``(label, old, new)`` each, and in ``tally`` per label the usual ones past the
        first of each kind in ``moves``: registered, queued, started, completed and
        removed), the run and wait times (label -> seconds, in order; a label's empty
        list counts nothing)."""
        counts = Counter(moves)
        for label, numbers in tally:
            for (old, new), n in zip(_USUAL, numbers, strict=True):
                if n > 1:
                    counts[label, old, new] += n - 1
        self._count(counts)
        moves.clear()
        tally.clear()
        state = self.state
        if ran:
            self._took(ran, state.execution, state.execution_buckets)
        if waited:
            self._took(waited, state.waiting, state.waiting_buckets)

    def _took(
        self,
        times: dict[str, list[float]],
        sketches: dict[str, QuantileSketch],
        histograms: dict[str, Histogram],
    ) -> None:
        """Count ``times`` (label -> durations) in their labels' sketches and histograms
        (made here for a label's first), and clear it."""
        for label, seconds in times.items():
            if not seconds:  # (`_apply` looks a label's lists up before it has times)
                continue
            sketch = sketches.get(label)
            if sketch is None:
                sketch = sketches[label] = QuantileSketch()
            histogram = histograms.get(label)
            if histogram is None:
                bounds = self.ctx.config.METRICS_HISTOGRAM_BUCKETS
                histogram = histograms[label] = Histogram(bounds)
            sketch.add_many(seconds)
            histogram.observe_many(seconds)
        times.clear()

    def _count(self, moves: dict[tuple[str, TaskStatus | None, TaskStatus | None], int]) -> None:
        """Apply the status counts of a run of transitions: ``(label, old, new) -> n``."""
        state = self.state
        by_status = state.by_status
        by_type = state.by_type
        for (label, old, new), n in moves.items():
            counts = by_type.get(label)
            if counts is None:
                counts = by_type[label] = Counter()
            if old is not None:
                by_status[old] -= n
                counts[old] -= n
            if new is not None:
                by_status[new] += n
                counts[new] += n

    def _label(self, task_type: str) -> str:
        """Give ``task_type`` its metrics label: its own name while there is room."""
        state = self.state
        if state.own_labels < self.ctx.config.METRICS_MAX_TASK_TYPES and task_type != OTHER:
            state.own_labels += 1
            label = task_type
        else:
            label = OTHER
        state.labels[task_type] = label
        return label

    def _forget(self, task_type: str) -> None:
        """A task of ``task_type`` was cleaned up: the last one frees the type's label."""
        state = self.state
        live = state.live[task_type] - 1
        if live > 0:
            state.live[task_type] = live
            return
        del state.live[task_type]
        label = state.labels.pop(task_type, None)
        if label == task_type:
            state.own_labels -= 1
            state.by_type.pop(label, None)
            state.execution.pop(label, None)
            state.waiting.pop(label, None)
            state.execution_buckets.pop(label, None)
            state.waiting_buckets.pop(label, None)

    def _publish(self, events: list[Event], muted: list[Subscriber] | None = None) -> None:
        """Offer ``events`` to every subscriber but the ``muted`` ones."""
        for subscriber in list(self.state.subscribers):
            if subscriber.closed:
                self._drop(subscriber)
                continue
            if muted and subscriber in muted:
                continue
            mine = [e for e in events if subscriber.wants(e.task_type)]
            if mine:
                self.state.dropped += subscriber.offer(mine)

    def _breaker_changed(self, transition: BreakerTransition) -> None:
        if self.state.subscribers:
            detail = {
                "breaker": transition.name,
                "old": transition.old.value,
                "new": transition.new.value,
                "reason": transition.reason,
            }
            self._publish([Event(EventKind.CIRCUIT_BREAKER, transition.at, detail=detail)])

    def _journal_failed(self, message: JournalFailed) -> None:
        self.state.journal_errors += 1
        if self.state.subscribers:
            detail = {
                "error": type(message.error).__name__,
                "message": str(message.error),
                "records": message.records,
            }
            event = Event(EventKind.JOURNAL_ERROR, self.ctx.clock.monotonic(), detail=detail)
            self._publish([event])

    # -- resource governor ----------------------------------------------------------------

    def _arm_governor(self) -> None:
        interval = self.ctx.config.RESOURCE_CHECK_INTERVAL
        if interval <= 0 or self.actor_stopped.is_set():
            return
        self.state.resource_timer = tell_later(self.ctx.clock, interval, self.me, ResourceTick())

    def _govern(self) -> None:
        try:
            sample: object = self.ctx.probe()
            if not isinstance(sample, ResourceSample):
                # Taken as one, it crashed this monitor at every tick (a crash loop).
                msg = f"the resource probe must return a ResourceSample, got {safe_repr(sample)}"
                raise ConfigError(msg)
        except Exception as exc:
            logger.bind(actor=self.CHILD_ID).warning("resource probe failed: {}", SafeRepr(exc))
            return
        manager_state = self.ctx.supervisor_state.states["task_manager"]
        current = self.state.limit or manager_state.limit or self.policy.max_limit
        limit, level = decide(current, sample, self.policy)
        self.state.limit = limit
        self.state.resource = {
            "cpu_percent": sample.cpu_percent,
            "memory_percent": sample.memory_percent,
        }
        if limit != current:
            with contextlib.suppress(Exception):
                self.ctx.handle("task_manager").tell(SetLimit(limit))
        previous, self.state.pressure = self.state.pressure, level
        if level is Pressure.OK and previous is Pressure.OK:
            return
        kind = {
            Pressure.OK: EventKind.RESOURCE_OK,
            Pressure.WARNING: EventKind.RESOURCE_WARNING,
            Pressure.CRITICAL: EventKind.RESOURCE_CRITICAL,
        }[level]
        logger.bind(actor=self.CHILD_ID).log(
            "INFO" if level is Pressure.OK else "WARNING",
            "resource {}: cpu {:.0f}%, memory {:.0f}%; concurrency limit {} -> {}",
            level.value,
            sample.cpu_percent,
            sample.memory_percent,
            current,
            limit,
        )
        if self.state.subscribers:
            detail = {**self.state.resource, "limit": limit, "previous_limit": current}
            self._publish([Event(kind, self.ctx.clock.monotonic(), detail=detail)])

    # -- metrics --------------------------------------------------------------------------

    def snapshot(self) -> MetricsSnapshot:
        state = self.state
        ctx = self.ctx
        states = ctx.supervisor_state.states
        mailboxes = {}
        for child_id, handle in ctx.supervisor_state.handles.items():
            ref = handle.actor_ref
            depth = handle.buffered
            if ref is not None:
                depth += ref.actor_inbox.qsize()  # type: ignore[attr-defined]
            mailboxes[child_id] = depth
        pool = states["thread_pool"].executor
        manager = states["task_manager"]
        return MetricsSnapshot(
            tasks_by_status={k: v for k, v in state.by_status.items() if v},
            tasks_by_type={
                t: {k: v for k, v in c.items() if v} for t, c in state.by_type.items() if +c
            },
            execution_time=_stats(state.execution),
            wait_time=_stats(state.waiting),
            retries=state.retries,
            failures=state.failures,
            timeouts=state.timeouts,
            mailbox_depth=mailboxes,
            ready_queue=state.by_status.get("queued", 0),
            pool_queue=0 if pool is None else pool.qsize(),
            restarts=dict(state.restarts),
            # The governor's decision, even if the manager has not received it yet.
            concurrency_limit=state.limit or manager.limit,
            max_concurrency=ctx.config.MAX_CONCURRENT_TASKS,
            events_dropped=state.dropped,
            journal_errors=None if ctx.config.JOURNAL_PATH is None else state.journal_errors,
            breakers={b.name: b.state.value for b in ctx.breakers.all()},
            resource=dict(state.resource),
            taken_at=ctx.clock.monotonic(),
            execution_histogram={t: h.counts() for t, h in state.execution_buckets.items()},
            wait_histogram={t: h.counts() for t, h in state.waiting_buckets.items()},
        )


_USUAL = (
    (None, PENDING),
    (PENDING, QUEUED),
    (QUEUED, RUNNING),
    (RUNNING, COMPLETED),
    (COMPLETED, None),
)
"""The moves of a task's usual life, in the order of `TaskMonitorActor._apply`'s ints."""
_NEXT: dict[TaskStatus | None, tuple[TaskStatus | None, int]] = {
    old: (new, index) for index, (old, new) in enumerate(_USUAL)
}
"""A usual move's old status -> its new status and the index of its count in `_USUAL`."""


def _events(items: tuple[Transition, ...]) -> list[Event]:
    return [
        Event(
            kind_of_transition(t.new),
            t.at,
            t.task_id,
            t.task_type,
            {"error": t.error} if t.error is not None else {},
            t.name,
            t.wall,
        )
        for t in items
    ]


def _stats(sketches: dict[str, QuantileSketch]) -> dict[str, TimingStats]:
    return {task_type: sketch.stats() for task_type, sketch in sketches.items()}
