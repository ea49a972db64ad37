"""The task engine on its own: no actors, no loop; a recording port and the fake clock."""

from __future__ import annotations

import ast
import dataclasses
import gc
import itertools
from pathlib import Path
from typing import Any, cast

import pytest
from helpers import Replies

from actors.core._errors import ActorSystemError, ConfigError, TaskTimeoutError
from actors.core._types import TaskInfo, TaskPriority, TaskStatus
from actors.engine import Engine, Policy, StartFailed, TaskRecord, Transition
from actors.engine._breaker import BreakerState, CircuitBreaker
from actors.engine._record import LiveRecord
from actors.engine._validate import validate_registration
from supervisors.testing import FakeClock

PENDING, WAITING, QUEUED = TaskStatus.PENDING, TaskStatus.WAITING, TaskStatus.QUEUED
RUNNING, RETRYING = TaskStatus.RUNNING, TaskStatus.RETRYING
COMPLETED, FAILED = TaskStatus.COMPLETED, TaskStatus.FAILED


async def job() -> None:
    """A coroutine function: registered, never run (the engine runs nothing)."""


def work() -> None:
    """A plain function: registered, never run."""


class Attempt:
    def __init__(self) -> None:
        self.token = object()
        self.claimed = False
        self.cancelled = False
        self.reason: BaseException | None = None

    def claim(self) -> bool:
        first, self.claimed = not self.claimed, True
        return first

    def cancel(self, error: BaseException | None = None) -> None:
        self.cancelled = True
        self.reason = error


class Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Port:
    """Records what the engine asks of the world."""

    def __init__(self, refuse: StartFailed | None = None) -> None:
        self.refuse = refuse
        self.started: list[tuple[str, int]] = []
        self.attempts: list[Attempt] = []
        self.timers: list[tuple[str, float, str, int]] = []

    def start_attempt(self, record: TaskRecord) -> Attempt:
        if self.refuse is not None:
            raise self.refuse
        self.started.append((record.task_id, record.attempts))
        self.attempts.append(Attempt())
        return self.attempts[-1]

    def timeout_after(self, delay: float, task_id: str, attempt: int) -> Timer:
        self.timers.append(("timeout", delay, task_id, attempt))
        return Timer()

    def retry_after(self, delay: float, task_id: str, attempt: int) -> Timer:
        self.timers.append(("retry", delay, task_id, attempt))
        return Timer()


def make(policy: Policy, port: Port | None = None) -> tuple[Engine, Port, FakeClock]:
    clock = FakeClock(100.0)
    walls = itertools.count(1_000_000)
    engine = Engine(policy, clock, wall=lambda: float(next(walls)))
    engine.attach(port or Port())
    return engine, cast(Port, engine.port), clock


def register(engine: Engine, task_id: str, func: Any = job, **options: Any) -> str:
    spec = validate_registration(task_id, func, **options)
    return engine.register(spec, task_id, cast(Any, None))


def moves(engine: Engine) -> list[tuple[str, TaskStatus | None, TaskStatus | None]]:
    return [(t.task_id, t.old, t.new) for t in engine.transitions]


def test_each_change_of_status_is_one_transition() -> None:
    engine, port, clock = make(Policy.simple())
    register(engine, "a", task_type="io")
    assert engine.execute("a") is True
    clock.advance(2.5)
    replies = Replies()
    engine.wait("a", replies)  # after the start: the engine answers it, not the attempt
    engine.attempt_done("a", 1, 42, None, at=clock.monotonic())
    assert engine.transitions == [
        Transition("a", "a", "io", None, PENDING, 0, 100.0, 1_000_000.0, None),
        Transition("a", "a", "io", PENDING, RUNNING, 1, 100.0, 1_000_001.0, None),
        Transition("a", "a", "io", RUNNING, COMPLETED, 1, 102.5, 1_000_002.0, None),
    ]
    assert (port.started, replies.got, engine.running) == ([("a", 1)], [("result", 42)], 0)


def test_a_task_evicted_past_the_bound_is_one_removal_transition_read_now() -> None:
    engine, _, clock = make(Policy.simple(max_finished=1))
    for task_id in ("a", "b"):
        register(engine, task_id, task_type="io")
        engine.execute(task_id)
        clock.advance(1.0)
        engine.attempt_done(task_id, 1, task_id, None, at=clock.monotonic())
    assert engine.transitions[-2:] == [
        Transition("b", "b", "io", RUNNING, COMPLETED, 1, 102.0, 1_000_005.0, None),
        Transition("a", "a", "io", COMPLETED, None, 1, 102.0, 1_000_006.0, None),
    ]
    assert (list(engine.tasks), engine.forgotten, "a" in engine.graph) == (["b"], ["a"], False)


def test_the_scheduler_queues_past_its_limit_highest_priority_first() -> None:
    engine, port, _ = make(Policy.scheduler(1))
    register(engine, "first", work)
    register(engine, "low", work, priority=TaskPriority.LOW)
    register(engine, "high", work, priority=TaskPriority.HIGH)
    for task_id in ("first", "low", "high"):
        engine.execute(task_id)
    # A plain function holds its slot from the hand-off, and runs once the pool says so.
    assert [engine.tasks[t].status for t in ("first", "low", "high")] == [QUEUED] * 3
    engine.function_started("first", 1, 101.0)
    assert (engine.tasks["first"].status, engine.tasks["first"].started_at) == (RUNNING, 101.0)
    engine.attempt_done("first", 1, None, None, at=102.0)
    assert port.started == [("first", 1), ("high", 1)]


def test_tasks_queued_out_of_rank_order_start_by_priority_then_registration() -> None:
    # Ranks queued in ascending order wait in the run, the others in the heap: the
    # queue is taken in the heap's order all the same (the smaller head of the two).
    engine, port, _ = make(Policy.scheduler(1))
    order = [
        ("busy", TaskPriority.NORMAL),
        ("normal1", TaskPriority.NORMAL),
        ("low1", TaskPriority.LOW),
        ("low2", TaskPriority.LOW),
        ("high", TaskPriority.HIGH),
        ("normal", TaskPriority.NORMAL),
        ("low3", TaskPriority.LOW),
        ("crit", TaskPriority.CRITICAL),
        ("normal2", TaskPriority.NORMAL),
    ]
    for task_id, priority in order:
        register(engine, task_id, priority=priority)
    for task_id, _ in order:
        engine.execute(task_id)
    # normal1, low1, low2 and low3 came in rank order; high, normal, crit and normal2 not
    assert (len(engine.ready_run), len(engine.ready)) == (4, 4)
    for task_id, attempt in port.started:
        engine.attempt_done(task_id, attempt, None, None, at=None)
    assert [task_id for task_id, _ in port.started] == [
        "busy",
        "crit",
        "high",
        "normal1",
        "normal",
        "normal2",
        "low1",
        "low2",
        "low3",
    ]
    assert (engine.ready, list(engine.ready_run), engine.queued, engine.running) == ([], [], {}, 0)


def test_a_task_executed_with_a_free_slot_and_nothing_queued_takes_no_queue_entry() -> None:
    engine, port, _ = make(Policy.scheduler(2))
    for task_id in ("a", "b", "c", "d"):
        register(engine, task_id, priority=3 if task_id == "d" else TaskPriority.LOW)
    engine.execute("a")  # a free slot, nothing queued: started at once
    replies = Replies()
    spec = validate_registration("b2", job)
    engine.submit(spec, "s", cast(Any, None), replies)  # the same for submit
    engine.execute("b")  # no slot left: queued
    engine.execute("c")
    engine.execute("d")
    # Queued in rank order ("b", "c": the run) but for "d" (more urgent: the heap).
    pushed = [*engine.ready_run, *engine.ready]
    assert [engine.queued[rank].task_id for rank in pushed] == ["b", "c", "d"]
    assert len(engine.queued) == 3
    assert port.started == [("a", 1), ("s", 1)]
    assert moves(engine)[4:] == [
        ("a", PENDING, QUEUED),
        ("a", QUEUED, RUNNING),
        ("s", None, PENDING),
        ("s", PENDING, QUEUED),
        ("s", QUEUED, RUNNING),
        ("b", PENDING, QUEUED),
        ("c", PENDING, QUEUED),
        ("d", PENDING, QUEUED),
    ]
    engine.attempt_done("a", 1, None, None, at=101.0)  # a slot: the most urgent first
    assert port.started[2:] == [("d", 1)]


def test_a_task_waiting_on_dependencies_starts_when_they_complete() -> None:
    engine, port, _ = make(Policy.simple())
    register(engine, "dep")
    register(engine, "top", dependencies=["dep"])
    engine.execute("top")
    assert moves(engine)[2:] == [("dep", PENDING, RUNNING), ("top", PENDING, WAITING)]
    engine.attempt_done("dep", 1, "x", None, at=None)
    assert port.started == [("dep", 1), ("top", 1)]


def test_a_failed_attempt_is_retried_on_a_timer_of_the_port() -> None:
    engine, port, _ = make(Policy.simple())
    register(engine, "a", max_retries=1, retry_delay=2.0)
    engine.execute("a")
    engine.attempt_done("a", 1, None, ValueError("boom"), at=None)
    assert port.timers == [("retry", 2.0, "a", 1)]
    assert engine.transitions[-1].error == "ValueError"
    engine.retry_due("a", 1)
    assert (port.started, engine.tasks["a"].status) == ([("a", 1), ("a", 2)], RUNNING)
    engine.attempt_done("a", 2, None, ValueError("again"), at=None)
    assert moves(engine)[-3:] == [
        ("a", RUNNING, RETRYING),
        ("a", RETRYING, RUNNING),
        ("a", RUNNING, FAILED),
    ]
    assert [f.error_type for f in engine.tasks["a"].failures or ()] == ["ValueError"] * 2


def test_a_timeout_cancels_the_attempt_and_is_a_failure_for_its_breaker() -> None:
    engine, port, clock = make(Policy.scheduler(4))
    breaker = CircuitBreaker("svc", failure_threshold=1, clock=clock)
    register(engine, "a", timeout=3.0, circuit_breaker=breaker)
    engine.execute("a")
    assert port.timers == [("timeout", 3.0, "a", 1)]
    engine.timed_out("a", 1)
    record = engine.tasks["a"]
    assert (record.status, type(record.error), port.attempts[0].cancelled) == (
        FAILED,
        TaskTimeoutError,
        True,
    )
    assert port.attempts[0].reason is record.error  # what the attempt's span ends with
    assert (breaker.state, engine.running) == (BreakerState.OPEN, 0)


def test_an_attempt_that_cannot_start_fails_without_holding_a_slot() -> None:
    closed = ActorSystemError("the loop is closed")
    engine, _, _ = make(Policy.scheduler(1), Port(refuse=StartFailed(closed, retry=False)))
    register(engine, "a", max_retries=3)
    engine.execute("a")
    assert (engine.tasks["a"].status, engine.tasks["a"].error, engine.running) == (
        FAILED,
        closed,
        0,
    )


def test_a_bad_policy_is_refused_when_it_is_built() -> None:
    with pytest.raises(ConfigError, match=r"^max_concurrent must be an int >= 1 or None, got 0$"):
        Policy("new", 0)


def test_only_the_engine_assigns_a_task_status() -> None:
    """Every status change is a transition: one assignment site, in `Engine._move`
    (`LiveRecord.kept` copies the status into the record that replaces it, unchanged)."""
    sites = []
    for path in sorted(Path(__file__).parent.parent.joinpath("actors").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            for node in ast.walk(func):
                targets = node.targets if isinstance(node, ast.Assign) else []
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and target.attr == "status"
                        and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                    ):
                        sites.append((path.name, func.name))
    assert sites == [("_engine.py", "_move"), ("_record.py", "kept")]


class QuietPort(Port):
    """Starts every attempt with one shared attempt and keeps no per-task record."""

    def __init__(self) -> None:
        super().__init__()
        self.attempt = Attempt()

    def start_attempt(self, record: TaskRecord) -> Attempt:
        return self.attempt


def test_a_retained_finished_task_is_one_object_for_the_cyclic_gc() -> None:
    """What a finished task keeps alive is what every full collection walks: its record
    and nothing else (the ``max_finished`` bound keeps records, not (id, record) pairs)."""
    engine, _, clock = make(Policy.simple(max_finished=1000), QuietPort())

    def run(ids: range) -> None:
        for i in ids:
            register(engine, f"t{i}")
            engine.execute(f"t{i}")
            engine.attempt_done(f"t{i}", 1, i, None, at=clock.monotonic())
        engine.transitions.clear()

    run(range(10))  # lazily made objects, made once
    gc.collect()
    before = len(gc.get_objects())
    run(range(10, 510))
    gc.collect()
    assert len(gc.get_objects()) - before == 500
    assert [r.task_id for r in engine.finished][-2:] == ["t508", "t509"]
    assert engine.tasks["t509"].result == 509


def test_a_completed_task_is_kept_with_only_the_fields_it_shows() -> None:
    """Every collection that looks at a retained record walks each of its slots: a
    completed task's record is swapped for a plain `TaskRecord` with 4 (issue 13: the
    gen-1 pauses of a burst walk thousands of them); its fields read as before."""
    engine, _, clock = make(Policy.simple(max_finished=10), QuietPort())
    register(engine, "t", work, args=(7,), metadata={"k": "v"}, task_type="io")
    engine.execute("t")
    live = engine.tasks["t"]
    assert (type(live), len(gc.get_referents(live))) == (LiveRecord, 44)  # its type + 43
    clock.advance(1.5)
    engine.attempt_done("t", 1, "done", None, at=clock.monotonic())
    kept = engine.tasks["t"]
    assert (type(kept), len(gc.get_referents(kept))) == (TaskRecord, 5)  # its type + 4
    assert list(engine.finished) == [kept]
    assert engine.info(kept) == engine.info(live)
    assert engine.info(kept) == TaskInfo(
        "t", "t", COMPLETED, "io", "", {"k": "v"}, (), TaskPriority.NORMAL, 1, 0,
        100.0, 100.0, 101.5, None, "old", 1_000_000.0 - 100.0,
    )  # fmt: skip
    assert (kept.result, kept.pins, kept.failures, kept.seq) == ("done", 0, None, live.seq)
    dropped = (kept.func, kept.args, kept.kwargs, kept.waiters, kept.execution, kept.spec)
    assert dropped == (None,) * 6
    with pytest.raises(AttributeError, match="'TaskRecord' object attribute 'func' is read-only"):
        kept.func = work


def test_a_completed_tasks_other_fields_are_one_tuple_the_gc_stops_tracking() -> None:
    """A kept record's slots are its status, result, pins and one tuple of its other
    fields; with the default metadata (and no failure) that tuple holds only strings,
    numbers and None, so the GC untracks it when it survives a collection (issue 13):
    a collection then walks 4 slots per completed task. Its fields read as before."""
    engine, _, clock = make(Policy.simple(max_finished=10), QuietPort())
    register(engine, "t", work, args=(7,), priority=TaskPriority.HIGH, description="d")
    engine.execute("t")
    live = engine.tasks["t"]
    before = engine.info(live)
    clock.advance(0.25)
    engine.attempt_done("t", 1, [1, 2], None, at=clock.monotonic())
    kept = engine.tasks["t"]
    assert TaskRecord.__slots__ == ("_kept", "pins", "result", "status")
    assert gc.get_referents(kept) == [kept._kept, 0, [1, 2], COMPLETED, TaskRecord]
    assert kept._kept == (
        "t", "t", "default", "d", None, 2, 1, 0, 100.0, 100.0, 100.25, live.seq,
        1_000_000.0 - 100.0, None,
    )  # fmt: skip
    gc.collect()
    assert gc.is_tracked(kept._kept) is False
    assert (kept.priority, kept.metadata, kept.task_id, kept.attempts) == (
        TaskPriority.HIGH, {}, "t", 1
    )  # fmt: skip
    assert type(kept.priority) is TaskPriority
    assert engine.info(kept) == TaskInfo(
        "t", "t", COMPLETED, "default", "d", {}, (), TaskPriority.HIGH, 1, 0,
        100.0, 100.0, 100.25, None, "old", 1_000_000.0 - 100.0,
    )  # fmt: skip
    assert engine.info(kept) == dataclasses.replace(
        before, status=COMPLETED, finished_at=100.25
    )  # fmt: skip
    error = r"^property 'started_at' of 'TaskRecord' object has no setter$"
    with pytest.raises(AttributeError, match=error):
        kept.started_at = 1.0


def test_a_failed_or_cancelled_task_keeps_its_live_record_to_be_retried() -> None:
    engine, _, clock = make(Policy.simple(), QuietPort())
    register(engine, "f", work, args=(1,))
    register(engine, "c", work)
    engine.execute("f")
    engine.attempt_done("f", 1, None, ValueError("no"), at=clock.monotonic())
    engine.cancel("c", cast(Any, Replies()))
    failed, cancelled = engine.tasks["f"], engine.tasks["c"]
    assert (type(failed), failed.status, type(cancelled), cancelled.status) == (
        LiveRecord, FAILED, LiveRecord, TaskStatus.CANCELLED
    )  # fmt: skip
    assert failed.spec is not None
    assert (failed.spec.func, failed.spec.args) == (work, (1,))


def test_a_registered_task_is_one_object_for_the_cyclic_gc() -> None:
    """A task waiting to run keeps its record, not its registration besides: a burst of
    registered tasks is what every full collection walks meanwhile."""
    engine, _, _ = make(Policy.simple(), QuietPort())
    for i in range(10):  # lazily made objects, made once
        register(engine, f"warm{i}")
    engine.transitions.clear()
    gc.collect()
    before = len(gc.get_objects())
    for i in range(500):
        register(engine, f"t{i}", job, args=(i,), task_type="io")
    engine.transitions.clear()  # the manager's to send on
    gc.collect()
    assert len(gc.get_objects()) - before == 500
    assert engine.tasks["t499"].args == (499,)


class KeepingPort(Port):
    """Keeps each attempt's ``record.waiters`` as it is, as the manager does."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[Any] = []

    def start_attempt(self, record: TaskRecord) -> Attempt:
        self.kept.append(record.waiters)
        return super().start_attempt(record)


def test_an_attempt_keeps_the_waiters_list_it_started_with_unchanged() -> None:
    """The attempt answers the callers it started with on success: it holds the task's
    waiters themselves (no copy per attempt), so the engine must never change a list
    of them in place. A task's only waiter is kept as it is, not in a list of one."""
    engine, port, _ = make(Policy.scheduler(2), KeepingPort())
    first, second, third, fourth = Replies(), Replies(), Replies(), Replies()
    register(engine, "t", max_retries=2)
    engine.execute("t", cast(Any, first))
    kept = cast(KeepingPort, port).kept
    assert kept == [first]
    assert (engine.tasks["t"].waiters, engine.tasks["t"].delegated) == (first, 1)
    engine.wait("t", cast(Any, second))  # while it runs: a list of the engine's own
    engine.unwait("t", cast(Any, first))
    assert kept[0] is first
    assert (engine.tasks["t"].waiters, engine.tasks["t"].delegated) == ([second], 0)
    engine.attempt_done("t", 1, None, ValueError("again"), None)  # retried
    assert engine.tasks["t"].status is RUNNING
    assert kept[1] == [second]
    lent = kept[1]
    engine.wait("t", cast(Any, third))
    assert kept[1] == [second]
    assert kept[1] is lent
    assert engine.tasks["t"].waiters == [second, third]
    engine.attempt_done("t", 2, None, ValueError("again"), None)  # retried
    assert engine.tasks["t"].delegated == 2
    engine.unwait("t", cast(Any, second))
    assert kept[2] == [second, third]
    assert (engine.tasks["t"].waiters, engine.tasks["t"].delegated) == ([third], 1)
    engine.wait("t", cast(Any, fourth))
    engine.attempt_done("t", 3, 7, None, None)
    # The attempt answered ``third`` (delegated); the engine answers only ``fourth``.
    assert (first.got, second.got, third.got) == ([], [], [])
    assert fourth.got == [("result", 7)]


def test_a_task_s_only_waiter_is_kept_as_it_is_and_withdrawn_as_it_is() -> None:
    """No list of one per task in flight: the only waiter is the record's ``waiters``;
    withdrawn (its wait ended), the task has none, and the attempt answers nobody."""
    engine, port, _ = make(Policy.scheduler(2), KeepingPort())
    only, later = Replies(), Replies()
    register(engine, "t")
    engine.execute("t", cast(Any, only))
    assert cast(KeepingPort, port).kept == [only]
    assert (engine.tasks["t"].waiters, engine.tasks["t"].delegated) == (only, 1)
    engine.unwait("t", cast(Any, Replies()))  # not its waiter: nothing changes
    assert (engine.tasks["t"].waiters, engine.tasks["t"].delegated) == (only, 1)
    engine.unwait("t", cast(Any, only))
    assert (engine.tasks["t"].waiters, engine.tasks["t"].delegated) == (None, 0)
    engine.wait("t", cast(Any, later))
    assert (engine.tasks["t"].waiters, engine.tasks["t"].delegated) == (later, 0)
    engine.attempt_done("t", 1, 5, None, None)
    # Not delegated to the attempt: the engine answers ``later`` itself.
    assert (only.got, later.got) == ([], [("result", 5)])
    engine.wait("t", cast(Any, only))  # ended: answered at once
    assert only.got == [("result", 5)]


def test_an_attempt_that_did_not_answer_its_waiters_leaves_them_all_to_the_engine() -> None:
    # A worker with calls queued behind it reports ``answered=False``: the engine
    # answers every waiter, the ones lent to the attempt included, and only them once.
    engine, port, _ = make(Policy.scheduler(2), KeepingPort())
    first, second, gone = Replies(), Replies(), Replies()
    register(engine, "t")
    engine.execute("t", cast(Any, first))
    engine.wait("t", cast(Any, gone))
    engine.wait("t", cast(Any, second))
    engine.unwait("t", cast(Any, gone))
    assert cast(KeepingPort, port).kept == [first]  # its only waiter, as it is
    engine.attempt_done("t", 1, 7, None, None, answered=False)
    assert engine.tasks["t"].status is TaskStatus.COMPLETED
    assert (first.got, second.got, gone.got) == ([("result", 7)], [("result", 7)], [])


def test_a_failed_task_keeps_its_registration_to_be_retried() -> None:
    engine, _, clock = make(Policy.simple(), QuietPort())
    breaker = CircuitBreaker("svc")
    spec = validate_registration(
        "flaky",
        job,
        (1, [2]),
        {"k": 3},
        task_type="io",
        description="d",
        metadata={"m": 4},
        priority=TaskPriority.HIGH,
        max_retries=0,
        retry_delay=1.5,
        timeout=9.0,
        task_id="given",
        circuit_breaker=breaker,
        on_dependency_failure="run",
    )
    engine.register(spec, "flaky", cast(Any, None))
    engine.execute("flaky")
    record = engine.tasks["flaky"]
    assert record.spec is None  # rebuilt when it fails
    engine.attempt_done("flaky", 1, None, ValueError("no"), at=clock.monotonic())
    assert record.status is TaskStatus.FAILED
    assert record.spec == spec._replace(task_id=None, dependencies=())
    assert (record.spec.args, record.spec.kwargs, record.spec.circuit_breaker) == (
        (1, [2]),
        {"k": 3},
        breaker,
    )


class BreakerPort(Port):
    """A `Port` that arms breaker timers too."""

    def breaker_after(self, delay: float, name: str) -> Timer:
        self.timers.append(("breaker", delay, name, 0))
        return Timer()


def test_a_task_whose_message_crashed_the_manager_fails_in_any_state_and_leaves_no_slot() -> None:
    # `Engine.crashed` (a message about the task crashed its manager) fails a task that
    # has not ended, whatever it waits for -- a retry timer, a slot (a heap entry), its
    # breaker (parked), its dependencies, its attempt -- and leaves every count and
    # queue exact: the running slots, the timers, the heap and the parked entries.
    engine, port, clock = make(Policy.scheduler(2), BreakerPort())
    breaker = CircuitBreaker("svc", failure_threshold=1, clock=clock)
    breaker.release(breaker.acquire(), RuntimeError("down"))  # open: its tasks park
    register(engine, "a")
    register(engine, "r", max_retries=1, retry_delay=2.0)
    register(engine, "b")
    register(engine, "q")
    register(engine, "w", dependencies=["q"])
    register(engine, "p", circuit_breaker=breaker)
    for task_id in ("a", "r"):
        engine.execute(task_id)
    engine.attempt_done("r", 1, None, ValueError("boom"), at=None)  # retrying on a timer
    for task_id in ("p", "b", "q", "w"):  # "p" parks (its breaker is open) on a free slot
        engine.execute(task_id)
    tasks = engine.tasks
    assert [tasks[t].status for t in "arbqwp"] == [
        RUNNING,
        RETRYING,
        RUNNING,
        QUEUED,
        WAITING,
        QUEUED,
    ]
    queue = (len(engine.ready), len(engine.ready_run))
    assert (engine.running, queue, list(engine.parked)) == (2, (0, 1), ["svc"])
    crash = ActorSystemError("crashed")
    assert [engine.crashed(t, crash) for t in "rpwb"] == [True] * 4
    # "w" failed: its dependency "q" is untouched; "b"'s slot went to "q" at once.
    assert [tasks[t].status for t in "arbqwp"] == [
        RUNNING,
        FAILED,
        FAILED,
        RUNNING,
        FAILED,
        FAILED,
    ]
    queue = (engine.ready, list(engine.ready_run))
    assert (engine.running, queue, port.attempts[2].cancelled) == (2, ([], []), True)
    engine.retry_due("r", 1)  # its retry timer, had it fired anyway: nothing starts
    clock.advance(3600.0)  # the breaker half-opens; its timer fires: nothing to start
    engine.breaker_ready("svc", timer=True)
    assert (list(engine.parked), port.started[-1], engine.running) == ([], ("q", 1), 2)
    assert sorted(port.started) == [("a", 1), ("b", 1), ("q", 1), ("r", 1)]
    assert engine.crashed("r", crash) is False  # ended: nothing more
    for attempt, task_id in enumerate("aq", start=1):
        engine.attempt_done(task_id, 1, attempt, None, at=None)
    assert ([tasks[t].status for t in "aq"], engine.running) == ([COMPLETED] * 2, 0)


@pytest.mark.parametrize("outcome_lost", [False, True])
def test_a_crash_while_the_attempt_s_outcome_is_on_its_way_leaves_it_to_that_outcome(
    outcome_lost: bool,
) -> None:
    # The attempt ended (its runner claimed it, and may have answered its waiters with
    # the result) and its outcome is on the way when a message about its task crashes
    # the manager: the outcome decides, as for a cancel, and the task completes. Unless
    # the crash dropped that very outcome (an AttemptDone): then the task fails. Before,
    # the task failed either way: a caller answered 42 saw it FAILED.
    engine, port, _ = make(Policy.scheduler(1))
    register(engine, "a")
    engine.execute("a")
    assert port.attempts[0].claim() is True  # the runner: it ended
    crash = ActorSystemError("crashed")
    lost = (True,) if outcome_lost else ()  # (the default: another message was dropped)
    assert engine.crashed("a", crash, *lost) is outcome_lost
    engine.attempt_done("a", 1, 42, None, at=None)
    record = engine.tasks["a"]
    if outcome_lost:
        assert (record.status, record.error, engine.running) == (FAILED, crash, 0)
    else:
        assert (record.status, record.result, engine.running) == (COMPLETED, 42, 0)


class _Crash(BaseException):
    """Not an `Exception`: raised in a handler, it crashes the manager."""


class FailingCancel(Attempt):
    """An attempt whose first `cancel` crashes the manager calling it."""

    def cancel(self, error: BaseException | None = None) -> None:
        if not self.cancelled:
            self.cancelled = True
            raise _Crash("cancel")


class FailingCancelPort(Port):
    def start_attempt(self, record: TaskRecord) -> Attempt:
        self.started.append((record.task_id, record.attempts))
        self.attempts.append(FailingCancel())
        return self.attempts[-1]


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
def test_a_crash_after_the_manager_claimed_the_attempt_fails_the_task(stop: str) -> None:
    # A cancel or a timeout claims the attempt, then crashes the manager stopping it:
    # no outcome is on its way (its runner lost the claim: it reports nothing), so
    # `Engine.crashed` fails the task, as before it claimed the attempt first (a5caa34).
    # Else the task stayed RUNNING for ever, its slot taken and its waiters waiting.
    engine, port, _ = make(Policy.scheduler(1), FailingCancelPort())
    register(engine, "a", timeout=5.0)
    register(engine, "b")
    engine.execute("a")
    engine.execute("b")  # queued behind "a"
    stops = {
        "cancel": lambda: engine.cancel("a", Replies()),
        "timeout": lambda: engine.timed_out("a", 1),
    }
    with pytest.raises(_Crash):
        stops[stop]()
    assert port.attempts[0].claim() is False  # the manager has it: its runner reports nothing
    crash = ActorSystemError("crashed")
    assert engine.crashed("a", crash) is True
    record = engine.tasks["a"]
    assert (record.status, record.error, engine.running) == (FAILED, crash, 1)
    assert (port.started, engine.tasks["b"].status) == ([("a", 1), ("b", 1)], RUNNING)
