"""Issue 12 in the pure engine: no actors, no loop; a recording port and the fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from actors.core import TaskStatus
from actors.engine import (
    BreakerState,
    CircuitBreaker,
    Engine,
    Policy,
    TaskRecord,
    result_of,
    validate_registration,
)
from supervisors.testing import FakeClock

QUEUED, RUNNING, COMPLETED = TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.COMPLETED


def work(*args: Any) -> None:
    """Registered, never run (the engine runs nothing)."""


class Attempt:
    def __init__(self) -> None:
        self.token = object()

    def claim(self) -> bool:
        return True

    def cancel(self, error: BaseException | None = None) -> None:
        pass


class Timer:
    def cancel(self) -> None:
        pass


class Port:
    def __init__(self) -> None:
        self.started: list[tuple[str, tuple[Any, ...] | None]] = []
        self.breaker_timers: list[tuple[float, str]] = []

    def start_attempt(self, record: TaskRecord) -> Attempt:
        self.started.append((record.task_id, record.args))
        return Attempt()

    def timeout_after(self, delay: float, task_id: str, attempt: int) -> Timer:
        return Timer()

    def retry_after(self, delay: float, task_id: str, attempt: int) -> Timer:
        return Timer()

    def breaker_after(self, delay: float, name: str) -> Timer:
        self.breaker_timers.append((delay, name))
        return Timer()


def make(policy: Policy) -> tuple[Engine, Port, FakeClock]:
    clock = FakeClock()
    engine = Engine(policy, clock, wall=lambda: 0.0)
    port = Port()
    engine.attach(port)
    return engine, port, clock


def register(engine: Engine, task_id: str, *args: Any, **options: Any) -> None:
    spec = validate_registration(task_id, work, args, task_id=task_id, **options)
    engine.register(spec, task_id, None)  # type: ignore[arg-type]


def complete(engine: Engine, task_id: str, value: Any) -> None:
    engine.function_started(task_id, engine.tasks[task_id].attempts, engine.clock.monotonic())
    engine.attempt_done(task_id, engine.tasks[task_id].attempts, value, None, None)


@pytest.mark.parametrize("policy", [Policy.scheduler(1), Policy.simple()], ids=["new", "old"])
def test_a_task_waiting_for_its_breaker_holds_no_slot_and_no_attempt(policy: Policy) -> None:
    engine, port, clock = make(policy)
    breaker = CircuitBreaker("svc", failure_threshold=1, recovery_timeout=2.0, clock=clock)
    breaker.release(breaker.acquire(), ConnectionError("down"))
    register(engine, "gated", circuit_breaker=breaker)
    register(engine, "free")
    engine.execute("gated")
    engine.execute("free")
    gated = engine.tasks["gated"]
    assert (gated.status, gated.attempts, gated.parked) == (QUEUED, 0, True)
    assert [task_id for task_id, _ in port.started] == ["free"]  # the one slot is free's
    assert port.breaker_timers == [(pytest.approx(2.0), "svc")]
    complete(engine, "free", 1)
    clock.advance(2.0 + 1e-6)
    engine.breaker_ready("svc", timer=True)  # the timer's message
    assert [task_id for task_id, _ in port.started] == ["free", "gated"]
    assert (gated.attempts, gated.parked, breaker.state) == (1, False, BreakerState.HALF_OPEN)


def test_results_are_filled_in_and_kept_until_taken() -> None:
    engine, port, _ = make(Policy.scheduler(4, max_finished=1))
    register(engine, "a")
    engine.execute("a")
    complete(engine, "a", "A")
    register(engine, "b", [result_of("a")], {"k": (result_of("a"),)})
    assert engine.tasks["a"].pins == 1
    register(engine, "c")
    engine.execute("c")
    complete(engine, "c", "C")  # the bound (1) would drop a: it is held instead
    assert set(engine.tasks) == {"a", "b", "c"}
    assert engine.cleanup(0.0) == ["c"]
    engine.execute("b")
    assert port.started[-1] == ("b", (["A"], {"k": ("A",)}))
    assert (engine.tasks["a"].pins, engine.tasks["b"].results) == (0, None)
    complete(engine, "b", "B")  # now a is the oldest finished task beyond the bound
    assert set(engine.tasks) == {"b"}
