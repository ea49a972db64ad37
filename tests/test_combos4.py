"""The supervision layer under stress, as a demanding user drives it: restart intensity
exceeded while another child waits out its backoff, escalation to the parent under each
strategy, a child that fails in ``on_start`` every time, ``on_stop`` that raises or
blocks, a stop while a child waits for its backoff, calls through a handle during a
restart, and a tree stopped from one of its own children. Time is a `FakeClock`; every
real wait has a bound."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pykka
import pytest
from helpers import (
    Echo,
    Escalations,
    Ledger,
    StartsOnce,
    Unprintable,
    fails_unprintably,
    supervise,
)
from helpers import SupervisorEvents as Events
from tenacity import wait_fixed, wait_none

from actors import ActorSystem, BreakerState, CircuitBreaker, TaskStatus
from supervisors import (
    BufferFullError,
    ChildSpec,
    ConsecutiveFailuresExceeded,
    Kill,
    RestartIntensityExceeded,
    RestartPolicy,
    Strategy,
    SupervisedActor,
    Supervisor,
    SupervisorError,
    SupervisorEventKind,
)
from supervisors.testing import FakeClock

TIMEOUT = 5.0
K = SupervisorEventKind


THREE_FAILED_STARTS = RestartPolicy(
    wait=wait_fixed(2), max_restarts=100, within_seconds=60, max_consecutive_failures=3
)
"""A child's 4th failure in a row escalates (each restart waits 2 s), not its restarts."""

DB_GIVES_UP = [
    K.STARTED,
    K.CRASHED,
    K.RESTART_SCHEDULED,
    *[K.START_FAILED, K.RESTART_SCHEDULED] * 2,
    K.START_FAILED,
    K.INTENSITY_EXCEEDED,
    K.ESCALATED,
]
"""The events about db under `THREE_FAILED_STARTS`: killed, it fails in on_start three
times, then escalates."""


# -- restart intensity exceeded while another child waits out its backoff --------------


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ONE, Strategy.REST_FOR_ONE])
def test_intensity_exceeded_mid_backoff_cancels_the_backoff_and_fails_every_handle(
    stopper: list[pykka.ActorRef[Any]], strategy: Strategy
) -> None:
    # c crashes and waits 5 s for its restart; a crashes meanwhile: 2 restarts in the
    # window, max 1. (Under ONE_FOR_ALL nothing runs during a backoff to crash.)
    clock, events, escalations = FakeClock(), Events(), Escalations()
    ref = supervise(
        stopper,
        [ChildSpec(cid, Echo) for cid in ("a", "b", "c")],
        strategy=strategy,
        policy=RestartPolicy(wait=wait_fixed(5), max_restarts=1, within_seconds=60),
        clock=clock,
        name="app",
        listener=events,
        on_escalation=escalations,
    )
    sup = ref.proxy()
    a, b, c = (sup.child(cid).get(timeout=TIMEOUT) for cid in "abc")
    c.tell(Kill())
    clock.wait_for_timers(1)
    waiting = c.ask("buffered", block=False)  # waits in c's buffer for the restart
    assert b.ask("b runs", timeout=TIMEOUT) == "b runs"
    a.tell(Kill())
    assert escalations.done.wait(TIMEOUT)
    assert ref.actor_stopped.wait(TIMEOUT)
    message = (
        "restart intensity exceeded: 2 restarts in 60.0s (max 1) for child 'a' of "
        "supervisor 'app'; last reason: ActorKilled('killed by a Kill message')"
    )
    assert [str(e) for e in escalations.errors] == [message]
    assert clock.pending() == 0  # c's backoff timer was cancelled
    assert clock.advance(5) == 0
    assert [e.child_id for e in events.of(K.STOPPED)] == ["b"]  # a and c were down
    assert events.kinds("c") == [K.STARTED, K.CRASHED, K.RESTART_SCHEDULED]
    assert events.of(K.ESCALATED)[0].child_id == "a"
    for handle in (a, b, c):
        with pytest.raises(RestartIntensityExceeded, match=f"^{re.escape(message)}$"):
            handle.ask("late", timeout=TIMEOUT)
    with pytest.raises(RestartIntensityExceeded, match=f"^{re.escape(message)}$"):
        waiting.get(timeout=TIMEOUT)


# -- escalation to the parent, under each of the parent's strategies ---------------------


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        (Strategy.ONE_FOR_ONE, {"w1": 0, "inner": 1, "w2": 0}),
        (Strategy.ONE_FOR_ALL, {"w1": 1, "inner": 1, "w2": 1}),
        (Strategy.REST_FOR_ONE, {"w1": 0, "inner": 1, "w2": 1}),
    ],
)
def test_a_nested_supervisor_that_gives_up_is_restarted_by_its_parents_strategy(
    stopper: list[pykka.ActorRef[Any]], strategy: Strategy, restarted: dict[str, int]
) -> None:
    clock, events = FakeClock(), Events()
    inner = Supervisor.spec(
        "inner",
        [ChildSpec("x", Echo)],
        policy=RestartPolicy(wait=wait_none(), max_restarts=0),
        clock=clock,
        watchdog_interval=None,
    )
    ref = supervise(
        stopper,
        [ChildSpec("w1", Echo), inner, ChildSpec("w2", Echo)],
        strategy=strategy,
        policy=RestartPolicy(wait=wait_none(), max_restarts=5, within_seconds=60),
        clock=clock,
        name="root",
        listener=events,
    )
    sup = ref.proxy()
    x = sup.child("inner").get(timeout=TIMEOUT).call("child", "x").get(timeout=TIMEOUT)
    first_x = x.actor_urn
    x.tell(Kill())  # max_restarts=0: the inner supervisor escalates at once
    events.wait_for(K.RESTARTED, "inner")
    crash = events.of(K.CRASHED, "inner")
    assert len(crash) == 1
    assert type(crash[0].reason) is RestartIntensityExceeded
    assert str(crash[0].reason) == (
        "restart intensity exceeded: 1 restart in 5.0s (max 0) for child 'x' of supervisor "
        "'inner'; last reason: ActorKilled('killed by a Kill message')"
    )
    # The handle taken before the crash reaches x's new incarnation.
    assert x.ask("again", timeout=TIMEOUT) == "again"
    assert x.actor_urn != first_x
    rows = sup.which_children().get(timeout=TIMEOUT)
    assert {r.id: (r.status, r.restarts) for r in rows} == {
        cid: ("running", n) for cid, n in restarted.items()
    }


# -- a child that fails in on_start every time ------------------------------------------


def test_a_child_failing_in_on_start_every_time_escalates_after_its_consecutive_limit(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock, events, escalations = FakeClock(), Events(), Escalations()
    ledger = Ledger()
    ref = supervise(
        stopper,
        [ChildSpec("db", StartsOnce, state_factory=lambda: ledger), ChildSpec("web", Echo)],
        policy=THREE_FAILED_STARTS,
        clock=clock,
        name="app",
        listener=events,
        on_escalation=escalations,
    )
    sup = ref.proxy()
    db, web = sup.child("db").get(timeout=TIMEOUT), sup.child("web").get(timeout=TIMEOUT)
    db.tell(Kill())
    for scheduled in range(1, 4):  # the kill, then two failed starts: each waits 2 s
        events.wait_for(K.RESTART_SCHEDULED, "db", scheduled)
        clock.wait_for_timers(1)
        assert clock.pending_delays() == [2.0]
        # The supervisor answers, and its other child works, while db waits.
        rows = sup.which_children().get(timeout=TIMEOUT)
        assert [(r.id, r.status) for r in rows] == [("db", "restarting"), ("web", "running")]
        assert web.ask("web works", timeout=TIMEOUT) == "web works"
        assert clock.advance(2) == 1
    assert escalations.done.wait(TIMEOUT)
    assert ledger.items == ["start"] * 4
    error = escalations.errors[0]
    assert type(error) is ConsecutiveFailuresExceeded
    assert str(error) == (
        "consecutive failures exceeded: child 'db' of supervisor 'app' failed 4 times in a "
        "row, each incarnation within 10.0s of its start (max 3); last reason: "
        "RuntimeError('start 4 failed')"
    )
    assert events.kinds("db") == DB_GIVES_UP
    assert clock.pending() == 0


# -- on_stop that raises or blocks ------------------------------------------------------


class RaisesOnStop(SupervisedActor):
    def on_stop(self) -> None:
        raise RuntimeError("on_stop failed")

    def on_receive(self, message: Any) -> Any:
        return message


class BlocksOnStop(SupervisedActor):
    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def on_stop(self) -> None:
        self.release.wait(TIMEOUT)

    def on_receive(self, message: Any) -> Any:
        return message


def test_an_on_stop_that_raises_still_stops_the_child_and_it_restarts(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    events = Events()
    ref = supervise(
        stopper,
        [ChildSpec("r", RaisesOnStop)],
        clock=FakeClock(),
        listener=events,
    )
    sup = ref.proxy()
    r = sup.child("r").get(timeout=TIMEOUT)
    first = r.actor_ref
    assert first is not None
    sup.terminate_child("r").get(timeout=TIMEOUT)
    assert first.actor_stopped.is_set()
    assert events.kinds("r") == [K.STARTED, K.STOPPED]
    assert sup.restart_child("r").get(timeout=TIMEOUT) is r
    assert r.ask("back", timeout=TIMEOUT) == "back"
    ref.stop(timeout=TIMEOUT)
    assert events.kinds("r") == [K.STARTED, K.STOPPED, K.STARTED, K.STOPPED]


def test_an_on_stop_that_blocks_is_abandoned_after_its_shutdown_timeout(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    events, release = Events(), threading.Event()
    ref = supervise(
        stopper,
        [ChildSpec("slow", BlocksOnStop, args=(release,), shutdown_timeout=0.2)],
        clock=FakeClock(),
        name="app",
        listener=events,
    )
    sup = ref.proxy()
    slow = sup.child("slow").get(timeout=TIMEOUT)
    stuck = slow.actor_ref
    assert stuck is not None
    try:
        sup.terminate_child("slow").get(timeout=TIMEOUT)
        assert events.kinds("slow") == [K.STARTED, K.ABANDONED]
        reason = events.of(K.ABANDONED, "slow")[0].reason
        assert str(reason) == "child 'slow' did not stop within 0.2s; abandoned"
        rows = sup.which_children().get(timeout=TIMEOUT)
        assert [(r.id, r.status, r.actor_urn) for r in rows] == [("slow", "stopped", None)]
        with pytest.raises(SupervisorError, match=r"^child 'slow' was terminated; "):
            slow.ask("late", timeout=TIMEOUT)
    finally:
        release.set()
    assert stuck.actor_stopped.wait(TIMEOUT)


# -- a stop while a child waits for its backoff ------------------------------------------


def test_stopping_the_supervisor_during_a_backoff_cancels_it_and_fails_the_buffer(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock, events = FakeClock(), Events()
    ref = supervise(
        stopper,
        [ChildSpec("a", Echo), ChildSpec("b", Echo)],
        policy=RestartPolicy(wait=wait_fixed(5), max_restarts=3, within_seconds=60),
        clock=clock,
        name="app",
        listener=events,
    )
    sup = ref.proxy()
    a = sup.child("a").get(timeout=TIMEOUT)
    a.tell(Kill())
    clock.wait_for_timers(1)
    buffered = [a.ask(n, block=False) for n in range(3)]
    assert a.buffered_requests == 3
    ref.stop(timeout=TIMEOUT)
    assert clock.pending() == 0
    assert clock.advance(5) == 0
    for future in buffered:
        with pytest.raises(SupervisorError, match=r"^supervisor 'app' stopped$"):
            future.get(timeout=TIMEOUT)
    with pytest.raises(SupervisorError, match=r"^supervisor 'app' stopped$"):
        a.ask("late", timeout=TIMEOUT)
    assert events.kinds("a") == [K.STARTED, K.CRASHED, K.RESTART_SCHEDULED]
    assert [e.child_id for e in events.of(K.STOPPED)] == ["b"]


# -- calls through a handle during a restart ----------------------------------------------


def test_calls_during_a_restart_are_answered_in_order_or_refused_at_capacity(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock = FakeClock()
    ref = supervise(
        stopper,
        [ChildSpec("a", Echo)],
        policy=RestartPolicy(wait=wait_fixed(1), max_restarts=3, within_seconds=60),
        clock=clock,
        buffer_capacity=2,
    )
    sup = ref.proxy()
    a = sup.child("a").get(timeout=TIMEOUT)
    a.tell(Kill())
    clock.wait_for_timers(1)
    futures = [a.ask("first", block=False), a.proxy().on_receive("second")]
    with pytest.raises(BufferFullError) as refused:
        a.ask("third", timeout=TIMEOUT)
    assert str(refused.value) == (
        "child 'a' is restarting and its buffer is full (2 messages); the message was not delivered"
    )
    for n in range(5):  # the system's own told messages are never refused for room
        a.tell(("event", n))
    assert (a.buffered, a.buffered_requests) == (7, 2)
    clock.advance(1)
    assert [f.get(timeout=TIMEOUT) for f in futures] == ["first", "second"]
    assert a.ask("after", timeout=TIMEOUT) == "after"
    assert (a.buffered, a.buffered_requests) == (0, 0)


# -- a tree stopped from one of its own children -------------------------------------------


class StopsTheRoot(SupervisedActor):
    def __init__(self, root: list[pykka.ActorRef[Any]]) -> None:
        super().__init__()
        self.root = root

    def on_receive(self, message: Any) -> Any:
        if message == "stop the root from a thread":
            root = self.root[0]
            threading.Thread(target=lambda: root.stop(timeout=TIMEOUT), name="stopper").start()
            return "asked"
        if message == "stop the root and wait":
            self.root[0].stop(block=True, timeout=TIMEOUT)
            return "stopped"
        return message


@pytest.mark.parametrize("how", ["stop the root from a thread", "stop the root and wait"])
def test_a_nested_tree_stopped_from_a_grandchild_stops_whole_and_bounded(
    stopper: list[pykka.ActorRef[Any]], how: str
) -> None:
    # Stopping the root from the grandchild's own handler waits for that handler: the
    # grandchild is abandoned after its shutdown_timeout, then stops once it returns.
    root: list[pykka.ActorRef[Any]] = []
    events = Events()
    inner = Supervisor.spec(
        "inner",
        [
            ChildSpec("stopper", StopsTheRoot, args=(root,), shutdown_timeout=0.2),
            ChildSpec("peer", Echo),
        ],
        clock=FakeClock(),
        watchdog_interval=None,
        listener=events,
        shutdown_timeout=2.0,
    )
    ref = supervise(
        stopper,
        [ChildSpec("w", Echo), inner],
        clock=FakeClock(),
        name="root",
        listener=events,
    )
    root.append(ref)
    inner_handle = ref.proxy().child("inner").get(timeout=TIMEOUT)
    stopping = inner_handle.call("child", "stopper").get(timeout=TIMEOUT)
    peer = inner_handle.call("child", "peer").get(timeout=TIMEOUT)
    thread_ref = stopping.actor_ref
    assert thread_ref is not None
    answer = stopping.ask(how, block=False)
    assert answer.get(timeout=TIMEOUT) == ("asked" if how.endswith("thread") else "stopped")
    # root.stop() returns once the whole tree has stopped (pykka sets actor_stopped
    # before on_stop runs, so that is no sign of it): in the stopper thread, or in the
    # handler that answered.
    for thread in threading.enumerate():
        if thread.name == "stopper":
            thread.join(TIMEOUT)
            assert not thread.is_alive()
    assert not ref.is_alive()
    assert thread_ref.actor_stopped.wait(TIMEOUT)
    stopped_or_abandoned = [
        (e.supervisor, e.child_id, e.kind)
        for e in events.items
        if e.kind in (K.STOPPED, K.ABANDONED)
    ]
    stopper_end = K.ABANDONED if how.endswith("wait") else K.STOPPED
    assert stopped_or_abandoned == [
        ("inner", "peer", K.STOPPED),
        ("inner", "stopper", stopper_end),
        ("root", "inner", K.STOPPED),
        ("root", "w", K.STOPPED),
    ]
    for handle in (stopping, peer, inner_handle):
        with pytest.raises(SupervisorError, match=r"^supervisor 'root' stopped$"):
            handle.ask("late", timeout=TIMEOUT)


# -- a task's error whose repr raises, under a circuit breaker ------------------------------


async def test_a_breaker_opened_by_an_unprintable_task_error_leaves_the_manager_running() -> None:
    # Opening the breaker built its reason with !r of the task's error: it raised in the
    # task manager, which crashed at every failure past the threshold (a crash loop that
    # ends in the system's failure), and the breaker never opened.
    async with ActorSystem({"CLEANUP_INTERVAL": 0}, clock=FakeClock()) as system:
        tm = system.task_manager
        breaker = CircuitBreaker("driver", failure_threshold=2)
        for n in range(2):
            task = await tm.register_task(f"t{n}", fails_unprintably, circuit_breaker=breaker)
            with pytest.raises(Unprintable):
                await asyncio.wait_for(tm.execute_task(task, wait=True), TIMEOUT)
        assert breaker.state is BreakerState.OPEN
        # The next task waits for the open breaker, queued (the fake clock never half-opens it).
        held = await tm.register_task("t2", fails_unprintably, circuit_breaker=breaker)
        assert await tm.execute_task(held) is True
        assert await tm.get_task_status(held) is TaskStatus.QUEUED
        assert [t.status for t in await tm.get_all_tasks()] == [
            TaskStatus.FAILED,
            TaskStatus.FAILED,
            TaskStatus.QUEUED,
        ]
        rows = await system.supervisor.which_children()
        children = ("task_monitor", "thread_pool", "legacy_task_manager", "task_manager", "facade")
        assert {r.id: (r.status, r.restarts) for r in rows} == dict.fromkeys(
            children, ("running", 0)
        )


# -- escalation up two levels, and an abandoned incarnation that ends late -----------------


def test_a_nested_supervisor_giving_up_twice_escalates_the_root_and_fails_grandchildren(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock, events, escalations = FakeClock(), Events(), Escalations()
    inner = Supervisor.spec(
        "inner",
        [ChildSpec("x", Echo)],
        policy=RestartPolicy(wait=wait_none(), max_restarts=0),
        clock=clock,
        watchdog_interval=None,
        listener=events,
    )
    ref = supervise(
        stopper,
        [ChildSpec("w", Echo), inner],
        policy=RestartPolicy(wait=wait_none(), max_restarts=1, within_seconds=60),
        clock=clock,
        name="root",
        listener=events,
        on_escalation=escalations,
    )
    x = ref.proxy().child("inner").get(timeout=TIMEOUT).call("child", "x").get(timeout=TIMEOUT)
    x.tell(Kill())
    events.wait_for(K.RESTARTED, "inner")
    assert x.ask("first restart", timeout=TIMEOUT) == "first restart"
    x.tell(Kill())
    assert escalations.done.wait(TIMEOUT)
    inner_error = (
        "restart intensity exceeded: 1 restart in 5.0s (max 0) for child 'x' of supervisor "
        "'inner'; last reason: ActorKilled('killed by a Kill message')"
    )
    root_error = (
        "restart intensity exceeded: 2 restarts in 60.0s (max 1) for child 'inner' of "
        f"supervisor 'root'; last reason: RestartIntensityExceeded({inner_error!r})"
    )
    assert [str(e) for e in escalations.errors] == [root_error]
    with pytest.raises(RestartIntensityExceeded, match=f"^{re.escape(root_error)}$"):
        x.ask("late", timeout=TIMEOUT)
    assert [(e.supervisor, e.child_id, e.kind) for e in events.items[-5:]] == [
        ("inner", "x", K.ESCALATED),
        ("root", "inner", K.CRASHED),
        ("root", "inner", K.INTENSITY_EXCEEDED),
        ("root", "w", K.STOPPED),
        ("root", "inner", K.ESCALATED),
    ]


def test_an_incarnation_abandoned_in_a_group_restart_ends_late_without_disturbing_its_successor(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    events, release = Events(), threading.Event()
    ref = supervise(
        stopper,
        [
            ChildSpec("slow", BlocksOnStop, args=(release,), shutdown_timeout=0.2),
            ChildSpec("a", Echo),
        ],
        strategy=Strategy.ONE_FOR_ALL,
        policy=RestartPolicy(wait=wait_none(), max_restarts=3, within_seconds=60),
        clock=FakeClock(),
        listener=events,
    )
    sup = ref.proxy()
    slow, a = sup.child("slow").get(timeout=TIMEOUT), sup.child("a").get(timeout=TIMEOUT)
    old = slow.actor_ref
    assert old is not None
    old_thread = next(t for t in threading.enumerate() if t.name.endswith(old.actor_urn[-12:]))
    try:
        a.tell(Kill())  # one_for_all: slow is stopped too, and does not stop in time
        events.wait_for(K.RESTARTED, "a")
        assert [(e.child_id, e.kind) for e in events.items] == [
            ("slow", K.STARTED),
            ("a", K.STARTED),
            ("a", K.CRASHED),
            ("slow", K.ABANDONED),
            ("a", K.RESTART_SCHEDULED),
            ("slow", K.STARTED),
            ("slow", K.RESTARTED),
            ("a", K.STARTED),
            ("a", K.RESTARTED),
        ]
        new_urn = slow.actor_urn
        assert new_urn is not None
        assert new_urn != old.actor_urn
    finally:
        release.set()
    old_thread.join(TIMEOUT)
    assert not old_thread.is_alive()
    # The late end of the abandoned incarnation is ignored: no crash, no restart.
    assert slow.ask("still here", timeout=TIMEOUT) == "still here"
    rows = sup.which_children().get(timeout=TIMEOUT)
    assert [(r.id, r.status, r.restarts) for r in rows] == [
        ("slow", "running", 1),
        ("a", "running", 1),
    ]
    assert slow.actor_urn == new_urn
    assert len(events.items) == 9


@pytest.mark.parametrize(
    ("strategy", "others"),
    [
        (
            Strategy.ONE_FOR_ALL,
            [
                ("last", K.STOPPED),
                ("first", K.STOPPED),
                *[("first", K.STARTED), ("first", K.RESTARTED), ("first", K.STOPPED)] * 3,
            ],
        ),
        (Strategy.REST_FOR_ONE, [("last", K.STOPPED), ("first", K.STOPPED)]),
    ],
)
def test_a_group_restart_whose_member_fails_in_on_start_every_time_escalates(
    stopper: list[pykka.ActorRef[Any]], strategy: Strategy, others: list[tuple[str, Any]]
) -> None:
    # Each failed start of db restarts its group again (one_for_all: first starts and is
    # stopped again each time; rest_for_one: last, after db, stays down) until db's
    # consecutive failures pass the limit.
    clock, events, escalations = FakeClock(), Events(), Escalations()
    ledger = Ledger()
    ref = supervise(
        stopper,
        [
            ChildSpec("first", Echo),
            ChildSpec("db", StartsOnce, state_factory=lambda: ledger),
            ChildSpec("last", Echo),
        ],
        strategy=strategy,
        policy=THREE_FAILED_STARTS,
        clock=clock,
        name="app",
        listener=events,
        on_escalation=escalations,
    )
    ref.proxy().child("db").get(timeout=TIMEOUT).tell(Kill())
    for scheduled in range(1, 4):
        events.wait_for(K.RESTART_SCHEDULED, "db", scheduled)
        clock.wait_for_timers(1)
        assert clock.advance(2) == 1
    assert escalations.done.wait(TIMEOUT)
    assert ref.actor_stopped.wait(TIMEOUT)
    assert ledger.items == ["start"] * 4
    assert type(escalations.errors[0]) is ConsecutiveFailuresExceeded
    assert events.kinds("db") == DB_GIVES_UP
    assert [(e.child_id, e.kind) for e in events.items if e.child_id != "db"][2:] == others


def test_stopping_the_root_while_a_grandchild_waits_for_its_backoff_ends_everything(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock, events = FakeClock(), Events()
    inner = Supervisor.spec(
        "inner",
        [ChildSpec("x", Echo), ChildSpec("y", Echo)],
        policy=RestartPolicy(wait=wait_fixed(10), max_restarts=3, within_seconds=60),
        clock=clock,
        watchdog_interval=None,
        listener=events,
    )
    ref = supervise(stopper, [inner], clock=clock, name="root", listener=events)
    inner_handle = ref.proxy().child("inner").get(timeout=TIMEOUT)
    x = inner_handle.call("child", "x").get(timeout=TIMEOUT)
    x.tell(Kill())
    clock.wait_for_timers(1)
    waiting = x.ask("buffered", block=False)
    ref.stop(timeout=TIMEOUT)
    assert clock.pending() == 0  # the grandchild's backoff timer was cancelled
    assert clock.advance(10) == 0
    with pytest.raises(SupervisorError, match=r"^supervisor 'root' stopped$"):
        waiting.get(timeout=TIMEOUT)
    assert [(e.supervisor, e.child_id, e.kind) for e in events.items[3:]] == [
        ("inner", "x", K.CRASHED),
        ("inner", "x", K.RESTART_SCHEDULED),
        ("inner", "y", K.STOPPED),
        ("root", "inner", K.STOPPED),
    ]
