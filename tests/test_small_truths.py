"""Small truths, on both task systems: wall-clock times in `TaskInfo`, the task's name
in events, `events()` subscribing when called, and `wait_for_task` on a task that was
never executed. Time is a `FakeClock`; every wait is bounded by `WAIT`."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import WAIT, double, gated

from actors import (
    ActorSystem,
    ActorSystemError,
    EventKind,
    TaskNotExecutedError,
    TaskStatus,
    UnifiedTaskManager,
    WaitTimeoutError,
)
from actors.core import LoopBridge, Reply
from actors.core._bridge import DRAIN_CHUNK
from supervisors.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def tm(backend: str, clock: FakeClock) -> AsyncIterator[UnifiedTaskManager]:
    config = {"USE_NEW_TASK_SYSTEM": backend == "new", "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=clock) as system:
        yield system.task_manager


async def test_task_info_carries_aware_utc_wall_times(
    tm: UnifiedTaskManager, clock: FakeClock
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    before = datetime.now(UTC)
    task_id = await tm.register_task("work", gated(started, release, "done"))
    after = datetime.now(UTC)
    info = await tm.get_task(task_id)
    assert info.created_utc is not None
    assert info.created_utc.tzinfo is UTC
    assert before - timedelta(milliseconds=1) <= info.created_utc <= after
    assert (info.started_utc, info.finished_utc) == (None, None)
    clock.advance(1.25)
    await tm.execute_task(task_id)
    await asyncio.wait_for(started.wait(), WAIT)
    clock.advance(2.5)
    release.set()
    assert await asyncio.wait_for(tm.wait_for_task(task_id), WAIT) == "done"
    done = await tm.get_task(task_id)
    created, began, ended = done.created_utc, done.started_utc, done.finished_utc
    assert created is not None
    assert began is not None
    assert ended is not None
    # Wall times are the registration's wall clock plus the clock's elapsed time.
    assert (began - created, ended - began) == (timedelta(seconds=1.25), timedelta(seconds=2.5))
    assert done.duration == 2.5
    assert created == info.created_utc
    assert dataclasses.replace(done, wall_offset=None) == done  # how times show: not compared


async def test_events_carry_the_tasks_name(tm: UnifiedTaskManager) -> None:
    async with tm.events() as stream:
        assert await asyncio.wait_for(tm.submit(double, 2, name="doubler", task_id="d"), WAIT) == 4
        seen = []
        async for event in stream:
            seen.append((event.kind, event.task_id, event.task_name))
            if event.kind is EventKind.COMPLETED:
                break
    assert seen[0] == (EventKind.REGISTERED, "d", "doubler")
    assert seen[-1] == (EventKind.COMPLETED, "d", "doubler")
    assert {name for _kind, _id, name in seen} == {"doubler"}


async def test_events_subscribes_when_called_not_on_first_iteration(
    tm: UnifiedTaskManager,
) -> None:
    stream = tm.events()
    # The task runs and completes, and its events reach the monitor, before iterating.
    assert await asyncio.wait_for(tm.submit(double, 21, task_id="early"), WAIT) == 42
    assert await tm.get_metrics() is not None  # the managers flushed every transition
    kinds: list[EventKind] = []
    try:
        while not kinds or kinds[-1] is not EventKind.COMPLETED:
            event = await asyncio.wait_for(anext(stream), WAIT)
            assert event.task_id == "early"
            kinds.append(event.kind)
    finally:
        await stream.aclose()
    assert kinds[0] is EventKind.REGISTERED
    assert kinds[-1] is EventKind.COMPLETED


def test_events_called_outside_a_loop_subscribes_on_first_iteration() -> None:
    config = {"CLEANUP_INTERVAL": 0}
    with ActorSystem(config) as system:
        stream = system.task_manager.events()  # no running loop here: lazy

        async def first_event() -> tuple[EventKind, str | None]:
            async with stream:
                await system.task_manager.register_task("late", double, (1,), task_id="l")
                event = await asyncio.wait_for(anext(stream), WAIT)
                return event.kind, event.task_id

        runner = system._loop_thread_for_blocking()
        result = runner.call(first_event(), WAIT, "test")
    assert result == (EventKind.REGISTERED, "l")


async def test_waiting_without_timeout_for_a_task_never_executed_says_so(
    tm: UnifiedTaskManager,
) -> None:
    task_id = await tm.register_task("parse", double, (1,), task_id="p1")
    with pytest.raises(
        TaskNotExecutedError,
        match=(
            r"^task 'parse' \(p1\) was registered but never executed, so nothing would end "
            r"this wait: call execute_task\('p1'\) first \(or execute_task\(\.\.\., "
            r"wait=True\)\), or pass a timeout to wait for another caller to execute it$"
        ),
    ):
        await asyncio.wait_for(tm.wait_for_task(task_id), WAIT)
    assert await tm.get_task_status(task_id) is TaskStatus.PENDING  # nothing changed


async def test_waiting_with_a_timeout_waits_for_someone_to_execute_it(
    tm: UnifiedTaskManager,
) -> None:
    task_id = await tm.register_task("parse", double, (4,))
    waiter = asyncio.ensure_future(tm.wait_for_task(task_id, timeout=WAIT))
    await tm.get_task_status(task_id)  # the Wait went in before this call
    assert not waiter.done()
    assert await tm.execute_task(task_id) is True
    assert await waiter == 8


async def test_waiting_with_a_timeout_for_a_task_nobody_executes_times_out(
    tm: UnifiedTaskManager,
) -> None:
    task_id = await tm.register_task("parse", double, (4,))
    with pytest.raises(WaitTimeoutError, match=r"did not finish within 0\.05s"):
        await tm.wait_for_task(task_id, timeout=0.05)
    assert await tm.get_task_status(task_id) is TaskStatus.PENDING


async def test_a_burst_of_answers_is_drained_in_bounded_chunks() -> None:
    """A burst posted to a `LoopBridge` runs at most DRAIN_CHUNK callbacks per loop
    iteration: the loop's other callbacks run between the chunks."""
    bridge = LoopBridge(asyncio.get_running_loop())
    ran: list[int] = []
    count = DRAIN_CHUNK * 2 + 10
    for i in range(count):
        assert bridge.post(ran.append, i)
    seen = []
    for _ in range(3):
        await asyncio.sleep(0)  # one loop iteration: one drain runs before this resumes
        seen.append(len(ran))
    assert seen == [DRAIN_CHUNK, DRAIN_CHUNK * 2, count]
    assert ran == list(range(count))


async def test_a_cohort_of_100_posts_runs_over_two_loop_iterations() -> None:
    """100 posts at once (S7's 100 paced callers: their answers and attempt starts) are
    not drained in one iteration: 64, then 36. A cohort drained whole leaves enough
    GC-tracked objects alive into the next iteration to trigger the cyclic GC's young
    collections about thrice as often, and a full collection within 20,000 tasks."""
    bridge = LoopBridge(asyncio.get_running_loop())
    ran: list[int] = []
    for i in range(100):
        assert bridge.post(ran.append, i)
    seen = []
    for _ in range(2):
        await asyncio.sleep(0)  # one loop iteration: one drain runs before this resumes
        seen.append(len(ran))
    assert seen == [64, 100]
    assert ran == list(range(100))


async def test_answers_wait_for_their_drain_without_a_tuple_each_and_keep_their_order() -> None:
    """An answer posted to a loop (a `Reply`'s, from an actor's thread) waits in the
    bridge as three entries of its deque, no tuple per answer for the cyclic GC to
    track while a burst drains; mixed with other posts, all run in the order posted,
    DRAIN_CHUNK posts per loop iteration."""
    loop = asyncio.get_running_loop()
    bridge = LoopBridge(loop)
    futures = [loop.create_future() for _ in range(DRAIN_CHUNK + 1)]
    ran: list[Any] = []
    bridge.post(ran.append, "first")

    def answer() -> None:  # from another thread, as an actor answers
        for index, future in enumerate(futures):
            Reply(bridge, future).set_result(index)
        Reply(bridge, futures[0]).set_exception(ValueError("late"))  # dropped: answered
        bridge.post(ran.append, "last")

    thread = threading.Thread(target=answer)
    thread.start()
    thread.join(WAIT)
    queued = list(bridge._pending)
    assert len(queued) == 3 * (len(futures) + 3)
    assert [type(entry) for entry in queued if isinstance(entry, tuple)] == [tuple, tuple]
    assert queued[4:8:3] == [futures[0], futures[1]]  # each future, then its value
    await asyncio.sleep(0)  # the first drain: DRAIN_CHUNK posts, "first" among them
    assert ran == ["first"]
    assert [f.done() for f in futures[-3:]] == [True, False, False]
    await asyncio.sleep(0)  # the rest, in order
    assert ran == ["first", "last"]
    assert [f.result() for f in futures] == list(range(len(futures)))
    assert list(bridge._pending) == []


class _StillLoop:
    """What a `LoopBridge` asks of its loop for bounding calls, with a hand-set clock;
    the sweeps it schedules are recorded, not run."""

    def __init__(self) -> None:
        self.now = 100.0
        self.later: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any) -> None:
        self.later.append((delay, callback))

    def is_closed(self) -> bool:
        return False


async def test_the_sweep_fails_exactly_the_calls_past_their_bound() -> None:
    loop = _StillLoop()
    bridge = LoopBridge(loop)  # type: ignore[arg-type]
    real = asyncio.get_running_loop()
    short = [real.create_future() for _ in range(3)]
    answered, long, unbounded = real.create_future(), real.create_future(), real.create_future()
    for future in short:
        bridge.track(future, 5.0, "GetTask", "owner")
    bridge.track(answered, 5.0, "Register", "owner")
    bridge.track(long, 10.0, "Execute", "owner")
    bridge.track(unbounded, None, "Wait", "owner")
    answered.set_result("ok")
    bridge.untrack(answered)
    assert len(loop.later) == 1  # one sweep scheduled, not a timer per call

    loop.now = 105.5
    loop.later.pop()[1]()
    assert [type(f.exception()).__name__ for f in short] == ["CallTimeout"] * 3
    assert str(short[0].exception()) == (
        "no answer to 'GetTask' within CALL_TIMEOUT=5.0s; the actor system is overloaded or stuck"
    )
    assert (answered.result(), long.done(), unbounded.done()) == ("ok", False, False)
    assert set(bridge.calls) == {long, unbounded}
    assert len(loop.later) == 1  # a bounded call is left: the sweep goes on

    loop.now = 111.0
    loop.later.pop()[1]()
    assert str(long.exception()) == (
        "no answer to 'Execute' within CALL_TIMEOUT=10.0s; the actor system is overloaded or stuck"
    )
    assert (unbounded.done(), set(bridge.calls), loop.later) == (False, {unbounded}, [])
    unbounded.cancel()
    bridge.untrack(unbounded)
    assert bridge.calls == {}


async def test_calls_of_one_bound_op_and_owner_share_one_entry_while_any_is_tracked() -> None:
    # A burst of calls (submit's waits, register's asks) adds no tracked tuple per call,
    # and the shared entry keeps no owner (a stopped system) alive after its last call.
    bridge = LoopBridge(_StillLoop())  # type: ignore[arg-type]
    real = asyncio.get_running_loop()
    first, second, other = (real.create_future() for _ in range(3))
    owner, stranger = object(), object()
    bridge.track(first, None, "SubmitTask", owner)
    bridge.track(second, None, "SubmitTask", owner)
    bridge.track(other, None, "SubmitTask", stranger)
    assert bridge.calls[first] is bridge.calls[second]
    assert bridge.calls[first] == (None, "SubmitTask", owner)
    assert bridge.calls[other] == (None, "SubmitTask", stranger)
    bridge.fail_owned(owner, ActorSystemError("stopped"))
    assert [str(f.exception()) for f in (first, second)] == ["stopped"] * 2
    assert not other.done()
    assert [bridge.untrack(f) for f in (first, second, other)] == [owner, owner, stranger]
    assert bridge.untrack(other) is None  # no longer tracked
    assert all(who is not owner and who is not stranger for who in bridge._entry)
    other.cancel()

    bounded = [real.create_future() for _ in range(3)]
    bridge.track(bounded[0], 5.0, "Register", owner)
    bridge.track(bounded[1], 5.0, "Register", owner)
    bridge.track(bounded[2], 10.0, "Register", owner)
    assert bridge.calls[bounded[0]] is bridge.calls[bounded[1]]
    assert [bridge.calls[f] for f in bounded[1:]] == [
        (5.0, "Register", owner),
        (10.0, "Register", owner),
    ]
    for future in bounded:
        bridge.untrack(future)
    assert (bridge.calls, bridge._bounded) == ({}, {5.0: {}, 10.0: {}})
    assert owner not in bridge._entry
