"""Issue 17, items 1, 2, 4, 7 and 13: supervision must lose nothing, hang nothing, and
fail loudly, in the `actors` error family.

1. The system's own messages (an attempt's outcome, a timer) are never refused by the
   back-pressure cap a restarting child puts on callers' calls.
2. One clock serves every timer: no delay (1e10, 1e300, inf) and no raising callback
   stops it.
4. A child that fails in every incarnation escalates after its consecutive failures,
   even when its growing backoff keeps it under the restart window.
7. ``shutdown()`` is bounded by ``SHUTDOWN_TIMEOUT`` while a child is in backoff, and by
   one deadline past a function that ignores its token and an ``on_stop`` that hangs.
13. A call refused for room fails with `SystemOverloadedError`, an `ActorsError`.

Nothing here sleeps: tests wait on events, futures and the fake clock, each with a bound.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from helpers import Escalations, Ledger, StartsOnce, gated
from loguru import logger
from tenacity import wait_fixed

import actors
from actors import ActorsError, ActorSystem, ActorSystemError, SystemOverloadedError, TaskStatus
from actors.core import bridge_for
from actors.runtime._monitor import TaskMonitorActor
from supervisors import (
    BufferFullError,
    ChildHandle,
    ChildSpec,
    ChildSpecError,
    ChildStatus,
    ConsecutiveFailuresExceeded,
    Kill,
    RealClock,
    RestartPolicy,
    SupervisedActor,
    Supervisor,
    SupervisorEvent,
    SupervisorEventKind,
)
from supervisors.testing import FakeClock

WAIT = 10.0
"""Upper bound, in real seconds, on waiting for anything here."""


def overloaded(child: str, capacity: int) -> str:
    return (
        f"the actor system is overloaded: child {child!r} is restarting and already holds "
        f"{capacity} buffered calls (MAILBOX_BUFFER_CAPACITY); the call was not accepted: "
        "retry after a short backoff, or raise MAILBOX_BUFFER_CAPACITY"
    )


class BufferWatch:
    """Lets a test wait (bounded) until a handle buffers some number of messages."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._cond = threading.Condition()
        original = ChildHandle._enqueue

        def enqueue(handle: ChildHandle, *args: Any) -> None:
            original(handle, *args)
            with self._cond:
                self._cond.notify_all()

        monkeypatch.setattr(ChildHandle, "_enqueue", enqueue)

    def wait_for(self, handle: ChildHandle, count: int) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: handle.buffered >= count, WAIT):
                msg = f"{handle!r} buffers {handle.buffered} messages, expected {count}"
                raise TimeoutError(msg)


async def first_done(futures: list[asyncio.Future[Any]], count: int) -> None:
    """Wait (bounded) until ``count`` of ``futures`` are done."""
    pending = set(futures)
    async with asyncio.timeout(WAIT):
        while len(futures) - len(pending) < count:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


async def advance_to_next_timer(clock: FakeClock) -> None:
    """Wait (in real time, bounded) until a timer is armed, then move time to it."""
    await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)
    deadline = clock.next_deadline()
    assert deadline is not None
    clock.advance(max(0.0, deadline - clock.monotonic()))


# -- 1 and 13: outcomes are never refused; callers are, with an ActorsError ------------------


class Request:
    """A caller's request in the supervisor-level tests below."""

    def __init__(self, n: int) -> None:
        self.n = n


class Recorder(SupervisedActor):
    def __init__(self, state: Ledger) -> None:
        super().__init__()
        self.state = state

    def on_receive(self, message: Any) -> Any:
        if message == "items":
            return list(self.state.items)
        self.state.items.append(message.n if isinstance(message, Request) else message)
        return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder(clock: FakeClock) -> Iterator[tuple[pykka.ActorRef[Supervisor], ChildHandle]]:
    sup = Supervisor.start(
        [ChildSpec("w", Recorder, state_factory=Ledger)],
        policy=RestartPolicy(wait=wait_fixed(5.0)),
        clock=clock,
        watchdog_interval=None,
        buffer_capacity=2,
        request_types=(Request,),
        name="root",
    )
    try:
        handle = sup.proxy().child("w").get(timeout=WAIT)
        yield sup, handle
    finally:
        sup.stop(timeout=WAIT)


def test_only_requests_count_against_the_buffer_and_system_messages_always_wait(
    recorder: tuple[pykka.ActorRef[Supervisor], ChildHandle], clock: FakeClock
) -> None:
    sup, recorder = recorder
    recorder.tell(Kill())
    clock.wait_for_timers(1, WAIT)
    assert recorder.status is ChildStatus.RESTARTING

    recorder.tell(Request(1))
    for i in range(50):  # the system's own messages: far more than the capacity
        recorder.tell(("outcome", i))
    recorder.tell(Request(2))
    assert (recorder.buffered, recorder.buffered_requests) == (52, 2)
    overflow = (
        "child 'w' is restarting and its buffer is full (2 messages); the message was not delivered"
    )
    with pytest.raises(BufferFullError, match=f"^{re.escape(overflow)}$") as refused:
        recorder.tell(Request(3))
    assert (refused.value.child_id, refused.value.capacity) == ("w", 2)
    with pytest.raises(BufferFullError, match=f"^{re.escape(overflow)}$"):
        recorder.ask("items", timeout=WAIT)  # an ask is a request too
    recorder.tell(("outcome", 50))  # still accepted
    assert (recorder.buffered, recorder.buffered_requests) == (53, 2)

    clock.advance(5.0)
    rows = sup.proxy().which_children().get(timeout=WAIT)  # after the restart
    assert [(r.id, r.restarts) for r in rows] == [("w", 1)]
    assert recorder.ask("items", timeout=WAIT) == [
        1,
        *[("outcome", i) for i in range(50)],
        2,
        ("outcome", 50),
    ]
    assert (recorder.buffered, recorder.buffered_requests) == (0, 0)


@pytest.mark.parametrize("bad", [[Request], (Request, "x"), Request])
def test_request_types_are_validated(bad: Any) -> None:
    with pytest.raises(
        ChildSpecError,
        match=rf"^request_types must be a tuple of message classes, got {re.escape(repr(bad))}$",
    ):
        Supervisor(request_types=bad)


async def test_outcomes_meeting_a_full_restart_buffer_are_kept_and_every_task_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 1 (50 thread tasks, a Kill, a flood of status calls; then all complete) and
    item 13 (the calls refused for room fail with `SystemOverloadedError`)."""
    capacity, n_tasks, extra = 20, 50, 5
    watch = BufferWatch(monkeypatch)
    gate = threading.Event()
    started = threading.Semaphore(0)

    def blocked(i: int) -> int:
        started.release()
        gate.wait(WAIT)
        return i * 2

    clock = FakeClock()
    config = {
        "MAILBOX_BUFFER_CAPACITY": capacity,
        "MAX_THREAD_WORKERS": n_tasks,
        "RESTART_BACKOFF_INITIAL": 1.0,
        "RESTART_BACKOFF_MAX": 1.0,
        "CLEANUP_INTERVAL": 0.0,  # the fake clock's only timers are the restart's
    }
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        ids = [await tm.register_task(f"t{i}", blocked, (i,)) for i in range(n_tasks)]
        for task_id in ids:
            assert await tm.execute_task(task_id) is True
        for _ in range(n_tasks):
            assert await asyncio.to_thread(started.acquire, timeout=WAIT)

        handle = system.supervisor.child("task_manager")
        handle.tell(Kill())
        await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)  # the restart's backoff
        assert handle.status is ChildStatus.RESTARTING

        calls = [
            asyncio.ensure_future(tm.get_task_status(ids[i % n_tasks]))
            for i in range(capacity + extra)
        ]
        await first_done(calls, extra)
        for call in calls[capacity:]:
            with pytest.raises(
                SystemOverloadedError, match=f"^{re.escape(overloaded('task_manager', capacity))}$"
            ):
                await call
        assert not any(call.done() for call in calls[:capacity])
        assert handle.buffered_requests == capacity

        gate.set()  # every attempt ends while the buffer is full of calls
        await asyncio.to_thread(watch.wait_for, handle, capacity + n_tasks)
        await advance_to_next_timer(clock)  # the restart

        statuses = await asyncio.wait_for(asyncio.gather(*calls[:capacity]), WAIT)
        assert statuses == [TaskStatus.RUNNING] * capacity  # asked before the outcomes
        results = [await tm.wait_for_task(task_id, timeout=WAIT) for task_id in ids]
        assert results == [i * 2 for i in range(n_tasks)]
        infos = await tm.get_all_tasks()
        assert [info.status for info in infos] == [TaskStatus.COMPLETED] * n_tasks


@pytest.mark.parametrize("child", ["facade", "thread_pool"])
async def test_a_call_refused_for_room_is_a_system_overloaded_error(child: str) -> None:
    clock = FakeClock()
    # No periodic cleanup: the fake clock's only timer is the restart's backoff.
    config = {"MAILBOX_BUFFER_CAPACITY": 3, "RESTART_BACKOFF_INITIAL": 1.0, "CLEANUP_INTERVAL": 0.0}
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        handle = system.supervisor.child(child)
        handle.tell(Kill())
        await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)

        def call() -> Any:
            if child == "facade":
                return tm.get_all_tasks()
            return tm.thread_pool.submit(int, "7")

        accepted = [asyncio.ensure_future(call()) for _ in range(3)]
        await asyncio.sleep(0)  # let them send (they then wait for the restart)
        with pytest.raises(
            SystemOverloadedError, match=f"^{re.escape(overloaded(child, 3))}$"
        ) as refused:
            await asyncio.wait_for(call(), WAIT)
        assert isinstance(refused.value, ActorsError)
        assert isinstance(refused.value.__cause__, BufferFullError)

        await advance_to_next_timer(clock)
        answers = await asyncio.wait_for(asyncio.gather(*accepted), WAIT)
        assert answers == ([[]] * 3 if child == "facade" else [7] * 3)


async def double(x: int) -> int:
    return x * 2


@pytest.mark.parametrize("sent", ["alone", "in a burst"])
@pytest.mark.parametrize("call", ["register_task", "submit"])
async def test_a_registration_refused_for_room_leaves_no_route_and_its_id_is_free(
    call: str, sent: str
) -> None:
    # The facade routes a new id before it sends the registration on; the manager's
    # full restart buffer refuses it (SystemOverloadedError), so the manager never holds
    # the id and never tells the facade to forget it. The route must go with the refusal:
    # else it stays for ever (one per refused task) and the id is refused as a duplicate.
    clock = FakeClock()
    config = {"MAILBOX_BUFFER_CAPACITY": 2, "RESTART_BACKOFF_INITIAL": 1.0, "CLEANUP_INTERVAL": 0.0}
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        owners = system._state.states["facade"].owners
        handle = system.supervisor.child("task_manager")
        handle.tell(Kill())
        await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)

        def register(task_id: str) -> Any:
            if call == "submit":
                return tm.submit(int, "7", task_id=task_id)
            return tm.register_task(task_id, int, ("7",), task_id=task_id)

        # In a burst the facade gets one Batch and sends on what it routed after it;
        # alone, it sends the registration on as it routes it.
        burst = 3 if sent == "in a burst" else 2
        calls = [asyncio.ensure_future(register(f"a{i}")) for i in range(burst)]
        accepted = calls[:2]
        await asyncio.sleep(0)  # let them send (they then wait for the restart)
        with pytest.raises(
            SystemOverloadedError, match=f"^{re.escape(overloaded('task_manager', 2))}$"
        ):
            await asyncio.wait_for(calls[2] if burst == 3 else register("a2"), WAIT)
        assert sorted(owners) == ["a0", "a1"]

        await advance_to_next_timer(clock)  # the restart
        registered = call == "register_task"
        answers = await asyncio.wait_for(asyncio.gather(*accepted), WAIT)
        assert answers == (["a0", "a1"] if registered else [7, 7])
        assert await asyncio.wait_for(register("a2"), WAIT) == ("a2" if registered else 7)
        assert sorted(owners) == ["a0", "a1", "a2"]


async def test_a_wait_refused_by_a_full_restart_buffer_is_system_overloaded() -> None:
    """submit, execute_task(wait=True) and wait_for_task send through the outbox, which
    fails their reply with the `BufferFullError` that refused the request: the caller
    gets the same `SystemOverloadedError` as any other call refused so (not a bare
    `ActorSystemError`), caused by it, and the call leaves nothing tracked."""
    clock = FakeClock()
    config = {"MAILBOX_BUFFER_CAPACITY": 2, "RESTART_BACKOFF_INITIAL": 1.0, "CLEANUP_INTERVAL": 0.0}
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        task_id = await tm.register_task("double", double, (4,))
        handle = system.supervisor.child("facade")
        handle.tell(Kill())
        await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)
        accepted = [asyncio.ensure_future(tm.get_all_tasks()) for _ in range(2)]
        await asyncio.sleep(0)  # let them send (they then wait for the restart)

        calls = {
            "submit": lambda: tm.submit(double, 1),
            "execute_task": lambda: tm.execute_task(task_id, wait=True),
            "wait_for_task": lambda: tm.wait_for_task(task_id, timeout=WAIT),
        }
        for name, call in calls.items():
            with pytest.raises(SystemOverloadedError) as refused:
                await asyncio.wait_for(call(), WAIT)
            cause = refused.value.__cause__
            assert isinstance(cause, BufferFullError), name
            assert str(refused.value) == (
                "the actor system is overloaded: child 'facade' is restarting and already "
                "holds 2 buffered calls (MAILBOX_BUFFER_CAPACITY); the call was not "
                "accepted: retry after a short backoff, or raise MAILBOX_BUFFER_CAPACITY"
            ), name
        bridge = bridge_for(asyncio.get_running_loop())
        assert len(bridge.calls) == 2  # only the accepted calls' answers are awaited

        await advance_to_next_timer(clock)
        answers = await asyncio.wait_for(asyncio.gather(*accepted), WAIT)
        assert [[info.task_id for info in infos] for infos in answers] == [[task_id]] * 2
        assert await asyncio.wait_for(tm.execute_task(task_id, wait=True), WAIT) == 8


def test_system_overloaded_error_is_public() -> None:
    assert "SystemOverloadedError" in actors.__all__
    assert issubclass(actors.SystemOverloadedError, actors.ActorsError)


# -- 2: the clock survives any delay and any callback -----------------------------------------


def test_the_clock_survives_delays_past_timeout_max() -> None:
    clock = RealClock("test-clock")
    fired = threading.Event()
    never = [clock.call_later(delay, fired.clear) for delay in (1e10, 1e300, float("inf"))]
    never.append(clock.call_later(10**400, fired.clear))  # too large for a float
    clock.call_later(0.01, fired.set)
    try:
        assert fired.wait(WAIT)
        assert clock.pending() == 4
        again = threading.Event()
        clock.call_later(0.01, again.set)  # the same thread serves later timers too
        assert again.wait(WAIT)
    finally:
        for timer in never:
            timer.cancel()


def test_a_raising_callback_does_not_stop_later_timers() -> None:
    clock = RealClock("test-clock")
    fired = threading.Event()
    logged: list[str] = []
    logger.enable("supervisors")
    sink = logger.add(lambda m: logged.append(m.record["message"]), level="ERROR")

    def boom() -> None:
        raise RuntimeError("callback failed")

    def exits() -> None:
        raise SystemExit(3)

    try:
        clock.call_later(0.0, boom)
        clock.call_later(0.001, exits)
        clock.call_later(0.01, fired.set)
        assert fired.wait(WAIT)
    finally:
        logger.remove(sink)
        logger.disable("supervisors")
    assert [re.sub(r"<function .*>", "<fn>", m) for m in logged] == [
        "timer callback <fn> raised; the clock goes on"
    ] * 2


async def test_a_huge_task_timeout_and_retry_delay_leave_the_system_working() -> None:
    """timeout=1e10 and retry_delay=1e300 once stopped the process's one clock thread:
    no killed child restarted again, and leaving ``async with`` hung."""
    gate = asyncio.Event()
    started = asyncio.Event()

    async def fails() -> None:
        raise RuntimeError("try again much later")

    system = ActorSystem({"RESTART_BACKOFF_INITIAL": 0.01, "CALL_TIMEOUT": WAIT})
    system.start()
    try:
        tm = system.task_manager
        slow = await tm.register_task("slow", gated(started, gate, "done"), timeout=1e10)
        later = await tm.register_task("later", fails, max_retries=1, retry_delay=1e300)
        assert await tm.execute_task(slow) is True
        assert await tm.execute_task(later) is True
        await asyncio.wait_for(started.wait(), WAIT)
        assert await tm.get_task_status(later) is TaskStatus.RETRYING

        system.supervisor.child("task_manager").tell(Kill())
        # Answered only after the restart, which the clock schedules.
        assert await asyncio.wait_for(tm.get_task_status(slow), WAIT) is TaskStatus.RUNNING
        rows = await system.supervisor.which_children()
        assert {r.id: r.restarts for r in rows}["task_manager"] == 1
        gate.set()
        assert await tm.wait_for_task(slow, timeout=WAIT) == "done"
        assert await tm.cancel_task(later) is True
    finally:
        await asyncio.wait_for(system.shutdown(), WAIT)
    assert system.running is False


# -- 4: a crash loop escalates -------------------------------------------------------------


def escalating_root(
    factory: type[SupervisedActor],
    policy: RestartPolicy,
    clock: FakeClock,
    escalations: Escalations,
) -> pykka.ActorRef[Supervisor]:
    """A supervisor "root" on ``clock``, without watchdog, of one child "w" (``factory``,
    its state a `Ledger`) restarted under ``policy``; it escalates to ``escalations``."""
    return Supervisor.start(
        [ChildSpec("w", factory, state_factory=Ledger)],
        policy=policy,
        clock=clock,
        watchdog_interval=None,
        on_escalation=escalations,
        name="root",
    )


def test_a_child_failing_in_every_incarnation_escalates_after_its_consecutive_failures(
    clock: FakeClock,
) -> None:
    escalations = Escalations()
    # 3 s between restarts: never more than 2 restarts in any 5 s window.
    policy = RestartPolicy(
        wait=wait_fixed(3.0), max_restarts=3, within_seconds=5.0, max_consecutive_failures=3
    )
    sup = escalating_root(StartsOnce, policy, clock, escalations)
    try:
        handle = sup.proxy().child("w").get(timeout=WAIT)
        assert handle.ask("ping", timeout=WAIT) == "pong"
        handle.tell(Kill())  # failure 1; then 3 failed starts
        pending = handle.ask("ping", block=False)
        for _ in range(3):
            clock.wait_for_timers(1, WAIT)
            clock.advance(3.0)
        assert escalations.done.wait(WAIT)
        message = (
            "consecutive failures exceeded: child 'w' of supervisor 'root' failed 4 times "
            "in a row, each incarnation within 10.0s of its start (max 3); "
            "last reason: RuntimeError('start 4 failed')"
        )
        [error] = escalations.errors
        assert isinstance(error, ConsecutiveFailuresExceeded)
        assert str(error) == message
        assert (error.child_id, error.failures, error.max_failures) == ("w", 4, 3)
        with pytest.raises(ConsecutiveFailuresExceeded, match=f"^{re.escape(message)}$"):
            pending.get(timeout=WAIT)
        assert sup.actor_stopped.wait(WAIT)
        assert clock.monotonic() == 9.0
    finally:
        if sup.is_alive():
            sup.stop(timeout=WAIT)


def test_a_child_stable_between_rare_crashes_never_escalates(clock: FakeClock) -> None:
    escalations = Escalations()
    policy = RestartPolicy(
        wait=wait_fixed(1.0),
        max_restarts=3,
        within_seconds=5.0,
        reset_after=10.0,
        max_consecutive_failures=1,
    )
    sup = escalating_root(Recorder, policy, clock, escalations)
    try:
        handle = sup.proxy().child("w").get(timeout=WAIT)
        for _ in range(10):
            clock.advance(10.0)  # stable for reset_after
            handle.tell(Kill())
            clock.wait_for_timers(1, WAIT)
            clock.advance(1.0)
            assert handle.ask("items", timeout=WAIT) == []
        assert escalations.errors == []
        rows = sup.proxy().which_children().get(timeout=WAIT)
        assert [(r.id, r.status, r.restarts) for r in rows] == [("w", "running", 10)]
    finally:
        sup.stop(timeout=WAIT)


@pytest.mark.parametrize("value", [-1, 1.5, True, "3"])
def test_max_consecutive_failures_is_validated(value: Any) -> None:
    with pytest.raises(
        ChildSpecError,
        match=(
            r"^RestartPolicy.max_consecutive_failures must be an int >= 0 or None, "
            rf"got {re.escape(repr(value))}$"
        ),
    ):
        RestartPolicy(max_consecutive_failures=value)


def test_max_consecutive_failures_defaults_to_max_restarts() -> None:
    assert RestartPolicy(max_restarts=7).failures_limit == 7
    assert RestartPolicy(max_restarts=7, max_consecutive_failures=2).failures_limit == 2


class Events:
    """The root supervisor's events for one child, to wait on (bounded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, child_id: str) -> None:
        self.kinds: list[SupervisorEventKind] = []
        self._cond = threading.Condition()
        original = ActorSystem._supervisor_event

        def listener(system: ActorSystem, event: SupervisorEvent) -> None:
            if event.child_id == child_id:
                with self._cond:
                    self.kinds.append(event.kind)
                    self._cond.notify_all()
            original(system, event)

        monkeypatch.setattr(ActorSystem, "_supervisor_event", listener)

    def next_decision(self, seen: int) -> SupervisorEventKind:
        """The supervisor's decision after failure number ``seen + 1``: a restart
        scheduled, or an escalation."""
        decisions = (SupervisorEventKind.RESTART_SCHEDULED, SupervisorEventKind.ESCALATED)

        def made() -> list[SupervisorEventKind]:
            return [k for k in self.kinds if k in decisions]

        with self._cond:
            if not self._cond.wait_for(lambda: len(made()) > seen, WAIT):
                raise TimeoutError(f"no decision {seen + 1} within {WAIT}s: {self.kinds}")
            return made()[seen]


async def test_a_hundred_kills_to_the_facade_end_every_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The facade dies in every incarnation (a buffered Kill awaits each one) while its
    backoff outgrows the restart window: it escalates after RESTART_MAX_RESTARTS (10)
    failures in a row, and every call, bounded or not, ends with the system's failure."""
    events = Events(monkeypatch, "facade")
    clock = FakeClock()
    # Restart defaults: 10 restarts in 5 s, 0.01 s to 5 s (no periodic cleanup timers).
    system = ActorSystem({"CLEANUP_INTERVAL": 0.0}, clock=clock)
    async with system:
        tm = system.task_manager
        gate = asyncio.Event()

        async def waits() -> None:
            await gate.wait()

        task_id = await tm.register_task("waits", waits)
        facade = system.supervisor.child("facade")
        for _ in range(100):
            facade.tell(Kill())
        calls: list[asyncio.Future[Any]] = [
            *(asyncio.ensure_future(tm.get_all_tasks()) for _ in range(50)),
            *(asyncio.ensure_future(tm.wait_for_task(task_id)) for _ in range(25)),
            *(asyncio.ensure_future(tm.execute_task(task_id, wait=True)) for _ in range(25)),
        ]
        restarts = 0
        while restarts < 30:
            decision = await asyncio.to_thread(events.next_decision, restarts)
            if decision is SupervisorEventKind.ESCALATED:
                break
            await advance_to_next_timer(clock)
            restarts += 1
        assert restarts == 10
        failure = (
            "the actor system failed: child 'facade' failed 11 times in a row, each "
            "incarnation within 10.0s of its start (max 10 in a row); "
            "last reason: ActorKilled('killed by a Kill message')"
        )
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT)
        assert [type(o) for o in outcomes] == [ActorSystemError] * len(calls)
        assert {str(o) for o in outcomes} == {failure}
        assert system.running is False
        gate.set()


# -- 7: shutdown is bounded -----------------------------------------------------------------


async def test_shutdown_is_bounded_while_the_task_manager_waits_out_a_long_backoff() -> None:
    clock = FakeClock()  # never advanced: the backoff never ends
    config = {
        "RESTART_BACKOFF_INITIAL": 100.0,
        "RESTART_BACKOFF_MAX": 100.0,
        "SHUTDOWN_TIMEOUT": 0.2,
        "CLEANUP_INTERVAL": 0.0,
    }
    system = ActorSystem(config, clock=clock)
    system.start()
    tm = system.task_manager

    async def quick() -> int:
        return 1

    task_id = await tm.register_task("quick", quick)
    system.supervisor.child("task_manager").tell(Kill())
    await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)
    buffered = asyncio.ensure_future(tm.get_task(task_id))
    await asyncio.sleep(0)  # sent: it waits in the buffer for the restart

    await asyncio.wait_for(system.shutdown(), WAIT)

    assert system.running is False
    with pytest.raises(ActorSystemError, match=r"^the actor system was shut down$"):
        await asyncio.wait_for(buffered, WAIT)
    assert clock.pending() == 0


def spy_on_supervisor_events(
    system: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> list[SupervisorEvent]:
    """Every supervisor event of ``system`` from now on, in order (still handled)."""
    events: list[SupervisorEvent] = []
    listen = system._supervisor_event

    def spy(event: SupervisorEvent) -> None:
        events.append(event)
        listen(event)

    monkeypatch.setattr(system, "_supervisor_event", spy)
    return events


async def run_a_stuck_function(system: ActorSystem, release: threading.Event) -> None:
    """Start ``system`` with a function running that ignores its cancellation token
    until ``release`` is set: a stop waits for it until the deadline."""
    system.start()
    tm = system.task_manager
    started = threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(WAIT)  # ignores its cancellation token

    task_id = await tm.register_task("stuck", stuck)
    assert await tm.execute_task(task_id) is True
    assert await asyncio.to_thread(started.wait, WAIT)


async def test_shutdown_keeps_one_deadline_past_a_stuck_function_and_a_hanging_on_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pool waits for a function that ignores its cancellation token until the stop's
    # deadline; the monitor, stopped last, hangs in on_stop. With one deadline for the
    # whole stop, the monitor is abandoned (at once: nothing is left) before shutdown()
    # returns; with a wait per child, the supervisor would still be waiting for it
    # (its own 5 s) when shutdown() returned.
    release = threading.Event()
    on_stop = TaskMonitorActor.on_stop

    def hanging_on_stop(self: TaskMonitorActor) -> None:
        release.wait(WAIT)
        on_stop(self)

    monkeypatch.setattr(TaskMonitorActor, "on_stop", hanging_on_stop)
    system = ActorSystem({"SHUTDOWN_TIMEOUT": 0.2, "CLEANUP_INTERVAL": 0.0})
    events = spy_on_supervisor_events(system, monkeypatch)
    await run_a_stuck_function(system, release)
    try:
        before = time.monotonic()
        await asyncio.wait_for(system.shutdown(), WAIT)
        after = time.monotonic()
        ended = {SupervisorEventKind.STOPPED, SupervisorEventKind.ABANDONED}
        stops = [(e.child_id, e.kind, str(e.reason)) for e in events if e.kind in ended]
    finally:
        release.set()
    stopped = SupervisorEventKind.STOPPED
    assert [cid for cid, _, _ in stops] == [
        "facade",
        "task_manager",
        "legacy_task_manager",
        "thread_pool",  # stopped or abandoned: it waited for `stuck` until the deadline
        "task_monitor",
    ]
    assert stops[:3] == [
        ("facade", stopped, "None"),
        ("task_manager", stopped, "None"),
        ("legacy_task_manager", stopped, "None"),
    ]
    assert stops[4] == (
        "task_monitor",
        SupervisorEventKind.ABANDONED,
        "child 'task_monitor' did not stop by the supervisor's stop deadline (0.000s left); "
        "abandoned",
    )
    # The one deadline: set when shutdown() began, SHUTDOWN_TIMEOUT ahead.
    deadline = system._stop_deadline.at
    assert deadline is not None
    assert before + 0.2 <= deadline <= after + 0.2
    assert system.running is False


async def test_a_second_shutdown_returns_once_the_stop_under_way_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first shutdown's stop waits for a function that ignores its cancellation until
    # the deadline. A shutdown made meanwhile (the system is closed already) returns
    # only once that stop has stopped the tree, not at once.
    release = threading.Event()
    stopping = threading.Event()
    system = ActorSystem({"SHUTDOWN_TIMEOUT": 0.3, "CLEANUP_INTERVAL": 0.0})
    events = spy_on_supervisor_events(system, monkeypatch)
    stop_tree = system._stop_tree

    def marked_stop_tree(*args: Any) -> None:
        stopping.set()  # (after the system is closed: a later shutdown finds it so)
        stop_tree(*args)

    monkeypatch.setattr(system, "_stop_tree", marked_stop_tree)
    await run_a_stuck_function(system, release)
    try:
        first = asyncio.ensure_future(system.shutdown())
        assert await asyncio.to_thread(stopping.wait, WAIT)
        await asyncio.wait_for(system.shutdown(), WAIT)
        ended = {SupervisorEventKind.STOPPED, SupervisorEventKind.ABANDONED}
        stopped = [e.child_id for e in events if e.kind in ended]
        await asyncio.wait_for(first, WAIT)
    finally:
        release.set()
    order = ["facade", "task_manager", "legacy_task_manager", "thread_pool", "task_monitor"]
    assert stopped == order
