"""Breakers keep retries (issue 12, point 3).

While a task's breaker is open, or half-open with its trial calls taken, the task waits
for it: ``queued``, holding no concurrency slot, counting no attempt (attempts count
real calls of the function only). It is released in priority order when the breaker
lets calls through: as many as its trial calls when it half-opens, all when it closes.
A task's timeout is per attempt, so it does not run while the task waits; cancel works.
On both task systems, under the fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors import (
    ActorSystem,
    BreakerState,
    CircuitBreaker,
    TaskCancelledError,
    TaskPriority,
    TaskStatus,
)
from supervisors.testing import FakeClock

WAIT = 10.0
QUEUED = TaskStatus.QUEUED


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["new", "old"])
async def system(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[ActorSystem]:
    config = {
        "USE_NEW_TASK_SYSTEM": request.param == "new",
        "CLEANUP_INTERVAL": 0,  # no timers but the ones the tests wait on
        "MAX_CONCURRENT_TASKS": 8,
    }
    async with ActorSystem(config, clock=clock) as started:
        yield started


async def timer_armed(clock: FakeClock) -> None:
    await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)


def open_breaker(system: ActorSystem, clock: FakeClock, **settings: Any) -> CircuitBreaker:
    """A breaker "svc" on ``clock`` with ``settings``, added to ``system``, then opened
    by as many failed calls as its threshold."""
    breaker = system.circuit_breakers.add(CircuitBreaker("svc", clock=clock, **settings))
    for _ in range(breaker.failure_threshold):
        with pytest.raises(ConnectionError):
            breaker.call(_fails)
    assert breaker.state is BreakerState.OPEN
    return breaker


def _fails() -> None:
    raise ConnectionError("down")


async def test_the_issue_scenario_ends_with_all_60_completed(
    system: ActorSystem, clock: FakeClock
) -> None:
    """60 tasks with max_retries=3 share a breaker (threshold 3, recovery 0.3 s); the
    service is healthy from t = 0.2 s. Before: 1 success and 59 CircuitOpenError."""
    tm = system.task_manager
    breaker = system.circuit_breakers.add(
        CircuitBreaker("svc", failure_threshold=3, recovery_timeout=0.3, clock=clock)
    )
    calls: list[int] = []

    async def call_service(index: int) -> int:
        calls.append(index)
        if clock.monotonic() < 0.2:
            raise ConnectionError("service unavailable")
        return index

    ids = [
        await tm.register_task(
            f"call{i}", call_service, (i,), max_retries=3, circuit_breaker=breaker
        )
        for i in range(60)
    ]
    await asyncio.gather(*(tm.execute_task(t) for t in ids))
    await timer_armed(clock)  # the breaker opened: a timer for when it half-opens
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.31)
    results = await asyncio.gather(*(tm.wait_for_task(t, timeout=WAIT) for t in ids))
    assert results == list(range(60))
    infos = [await tm.get_task(t) for t in ids]
    assert {info.status for info in infos} == {TaskStatus.COMPLETED}
    assert len(calls) == sum(info.attempts for info in infos)  # only real calls count
    assert max(info.attempts for info in infos) <= 4
    stats = breaker.stats()
    assert (stats.state, stats.successes) == (BreakerState.CLOSED, 60)


async def test_waiting_tasks_spend_no_attempt_and_are_released_in_priority_order(
    system: ActorSystem, clock: FakeClock
) -> None:
    tm = system.task_manager
    breaker = open_breaker(system, clock, failure_threshold=2, recovery_timeout=5.0)
    order: list[str] = []

    async def call(name: str) -> str:
        order.append(name)
        return name

    priorities = {
        "low": TaskPriority.LOW,
        "high": TaskPriority.HIGH,
        "normal": TaskPriority.NORMAL,
        "critical": TaskPriority.CRITICAL,
    }
    ids = {}
    for name, priority in priorities.items():
        ids[name] = await tm.register_task(
            name, call, (name,), priority=priority, circuit_breaker="svc"
        )
        assert await tm.execute_task(ids[name]) is True
    for task_id in ids.values():
        info = await tm.get_task(task_id)
        assert (info.status, info.attempts) == (QUEUED, 0)
    assert (await tm.get_metrics()).tasks_by_status.get("running", 0) == 0
    await timer_armed(clock)
    assert clock.pending_delays() == [pytest.approx(5.0)]
    clock.advance(5.001)
    for task_id in ids.values():
        await tm.wait_for_task(task_id, timeout=WAIT)
    # The trial call goes to the most urgent; its success closes the breaker and
    # releases the rest, most urgent first.
    assert order == ["critical", "high", "normal", "low"]
    assert [(await tm.get_task(t)).attempts for t in ids.values()] == [1, 1, 1, 1]
    assert breaker.state is BreakerState.CLOSED


async def test_half_open_releases_as_many_as_its_trial_calls(
    system: ActorSystem, clock: FakeClock
) -> None:
    tm = system.task_manager
    open_breaker(system, clock, failure_threshold=1, recovery_timeout=1.0, half_open_max_calls=2)
    gate = asyncio.Event()
    two_started = asyncio.Event()
    started: list[int] = []

    async def call(index: int) -> int:
        started.append(index)
        if len(started) == 2:
            two_started.set()
        await gate.wait()
        return index

    ids = []
    for i in range(5):
        ids.append(await tm.register_task(f"t{i}", call, (i,), circuit_breaker="svc"))
        await tm.execute_task(ids[-1])
    await timer_armed(clock)
    clock.advance(1.001)
    await asyncio.wait_for(two_started.wait(), WAIT)  # the two trial calls
    statuses = [await tm.get_task_status(t) for t in ids]
    assert statuses == [TaskStatus.RUNNING] * 2 + [QUEUED] * 3
    assert started == [0, 1]
    gate.set()
    assert [await tm.wait_for_task(t, timeout=WAIT) for t in ids] == [0, 1, 2, 3, 4]
    assert sorted(started) == [0, 1, 2, 3, 4]


async def test_a_waiting_task_can_be_cancelled_and_its_timeout_does_not_run(
    system: ActorSystem, clock: FakeClock
) -> None:
    tm = system.task_manager
    breaker = open_breaker(system, clock, failure_threshold=1, recovery_timeout=60.0)

    async def call() -> str:
        return "done"

    patient = await tm.register_task("patient", call, timeout=1.0, circuit_breaker="svc")
    doomed = await tm.register_task("doomed", call, timeout=1.0, circuit_breaker="svc")
    await tm.execute_task(patient)
    await tm.execute_task(doomed)
    await timer_armed(clock)
    clock.advance(30.0)  # far past its timeout: no attempt runs, so none times out
    assert [await tm.get_task_status(t) for t in (patient, doomed)] == [QUEUED, QUEUED]
    assert await tm.cancel_task(doomed) is True
    with pytest.raises(TaskCancelledError):
        await tm.wait_for_task(doomed, timeout=WAIT)
    assert (await tm.get_task(doomed)).attempts == 0
    clock.advance(30.001)  # the breaker half-opens: the trial call is `patient`
    assert await tm.wait_for_task(patient, timeout=WAIT) == "done"
    assert breaker.state is BreakerState.CLOSED


async def test_a_breaker_closed_from_outside_releases_the_tasks(
    system: ActorSystem, clock: FakeClock
) -> None:
    """The manager hears of changes it did not make (its listener): a reset closes it."""
    tm = system.task_manager
    breaker = open_breaker(system, clock, failure_threshold=1, recovery_timeout=60.0)

    async def call(index: int) -> int:
        return index

    ids = [await tm.register_task(f"t{i}", call, (i,), circuit_breaker="svc") for i in range(3)]
    for task_id in ids:
        await tm.execute_task(task_id)
    assert [await tm.get_task_status(t) for t in ids] == [QUEUED] * 3
    breaker.reset()
    assert [await tm.wait_for_task(t, timeout=WAIT) for t in ids] == [0, 1, 2]


async def test_a_failed_trial_reopens_and_the_tasks_wait_again(
    system: ActorSystem, clock: FakeClock
) -> None:
    tm = system.task_manager
    open_breaker(system, clock, failure_threshold=1, recovery_timeout=1.0)
    healthy = False

    async def call(index: int) -> Any:
        if not healthy:
            raise ConnectionError("still down")
        return index

    first = await tm.register_task("first", call, (0,), max_retries=1, circuit_breaker="svc")
    second = await tm.register_task("second", call, (1,), circuit_breaker="svc")
    await tm.execute_task(first)
    await tm.execute_task(second)
    await timer_armed(clock)
    clock.advance(1.001)  # trial: `first` fails (attempt 1), the breaker opens again
    await timer_armed(clock)
    info = await tm.get_task(first)
    assert (info.status, info.attempts) == (QUEUED, 1)
    assert (await tm.get_task(second)).attempts == 0
    healthy = True
    clock.advance(1.001)
    assert await tm.wait_for_task(first, timeout=WAIT) == 0
    assert await tm.wait_for_task(second, timeout=WAIT) == 1
    assert [(await tm.get_task(t)).attempts for t in (first, second)] == [2, 1]
