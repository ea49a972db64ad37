"""An attempt's outcome is decided once: by the attempt when it ends, or by the manager
when it times the attempt out or cancels it — never both."""

from __future__ import annotations

import threading
from typing import Any

from actors.core import CancellationToken
from actors.runtime._attempt import Execution
from actors.runtime._execution import complete
from actors.runtime.messages import AttemptDone


class Recorder:
    def __init__(self) -> None:
        self.results: list[Any] = []
        self.errors: list[BaseException] = []

    def set_result(self, value: Any) -> None:
        self.results.append(value)

    def set_exception(self, error: BaseException) -> None:
        self.errors.append(error)


def test_the_first_claim_wins_and_only_it() -> None:
    execution = Execution("t", 1, None)
    wins = []
    barrier = threading.Barrier(8)

    def contend() -> None:
        barrier.wait()
        wins.append(execution.claim())

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(wins) == [False] * 7 + [True]


def test_a_successful_attempt_reports_then_answers_its_delegated_waiters() -> None:
    order: list[str] = []
    waiter = Recorder()
    execution = Execution("t", 2, None)
    execution.waiters = [waiter]

    def report(done: AttemptDone) -> None:
        order.append("report")
        assert waiter.results == []  # the manager hears first

    complete(execution, report, 42, None)
    assert order == ["report"]
    assert waiter.results == [42]


def test_a_failed_attempt_leaves_the_waiters_to_the_manager() -> None:
    waiter = Recorder()
    execution = Execution("t", 1, None)
    execution.waiters = [waiter]
    reports: list[AttemptDone] = []
    error = ValueError("boom")
    complete(execution, reports.append, None, error)
    assert reports == [AttemptDone("t", 1, None, error)]
    assert (waiter.results, waiter.errors) == ([], [])


def test_an_attempt_the_manager_decided_first_reports_nothing() -> None:
    waiter = Recorder()
    execution = Execution("t", 1, None)
    execution.waiters = [waiter]
    assert execution.claim()  # the manager timed it out
    reports: list[AttemptDone] = []
    complete(execution, reports.append, "late", None)
    assert reports == []
    assert waiter.results == []


async def test_an_attempt_answering_its_waiter_stamps_its_own_end_time() -> None:
    """The caller may get the result before the manager hears of it; the recorded end
    time is still when the attempt ended, not when the manager processed it."""
    from actors import ActorSystem
    from supervisors.testing import FakeClock

    async def noop(x: int) -> int:
        return x

    clock = FakeClock()
    async with ActorSystem(clock=clock) as system:
        tm = system.task_manager
        for i in range(20):
            task_id = await tm.register_task(f"t{i}", noop, (i,))
            assert await tm.execute_task(task_id, wait=True) == i
            started = clock.monotonic()
            clock.advance(50)
            info = await tm.get_task(task_id)
            assert (info.started_at, info.finished_at) == (started, started)


def test_a_token_cancelled_before_anyone_waits_wakes_a_wait_at_once() -> None:
    token = CancellationToken()
    assert token.cancelled is False
    assert token.wait(0) is False  # not cancelled: the bound passes
    token.cancel()
    assert token.cancelled is True
    assert token.wait(0) is True
    token.cancel()  # idempotent
    assert token.wait() is True


def test_a_token_cancelled_while_threads_wait_wakes_every_waiter() -> None:
    token = CancellationToken()
    woken: list[bool] = []
    barrier = threading.Barrier(5)

    def waiter() -> None:
        barrier.wait()
        woken.append(token.wait(30))

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for thread in threads:
        thread.start()
    barrier.wait()  # the waiters race the cancel: each must see it, however they interleave
    token.cancel()
    for thread in threads:
        thread.join(30)
    assert woken == [True] * 4
