"""Regressions: group restarts survive terminating the failed child; timers armed by a
crashed supervisor incarnation do nothing in the next one."""

from __future__ import annotations

import threading

from helpers import Echo
from tenacity import wait_fixed

from supervisors import (
    ChildSpec,
    Kill,
    RestartPolicy,
    Strategy,
    Supervisor,
    SupervisorEvent,
    SupervisorEventKind,
)
from supervisors._messages import WatchdogTick
from supervisors.testing import FakeClock

TIMEOUT = 5.0


def test_terminating_the_failed_child_during_backoff_still_restarts_its_group() -> None:
    clock = FakeClock()
    ref = Supervisor.start(
        [ChildSpec(id, Echo) for id in ("a", "b", "c")],
        strategy=Strategy.ONE_FOR_ALL,
        policy=RestartPolicy(wait=wait_fixed(5), max_restarts=10),
        clock=clock,
        watchdog_interval=None,
    )
    try:
        sup = ref.proxy()
        a = sup.child("a").get(timeout=TIMEOUT)
        c = sup.child("c").get(timeout=TIMEOUT)
        a.tell(Kill())
        clock.wait_for_timers(1)
        sup.terminate_child("a").get(timeout=TIMEOUT)
        assert clock.pending() == 1  # b and c still wait for the shared timer
        clock.advance(5)
        assert c.ask("hello", timeout=TIMEOUT) == "hello"
        rows = {r.id: r.status for r in sup.which_children().get(timeout=TIMEOUT)}
        assert rows == {"a": "stopped", "b": "running", "c": "running"}
    finally:
        ref.stop(timeout=TIMEOUT)


def test_a_watchdog_tick_left_by_a_crashed_supervisor_arms_nothing() -> None:
    clock = FakeClock()
    scheduled = threading.Event()

    def listen(event: SupervisorEvent) -> None:
        if event.kind is SupervisorEventKind.RESTART_SCHEDULED:
            scheduled.set()

    ref = Supervisor.start(
        [Supervisor.spec("inner", [ChildSpec("w", Echo)], clock=clock, watchdog_interval=1.0)],
        policy=RestartPolicy(wait=wait_fixed(1), max_restarts=10),
        clock=clock,
        watchdog_interval=None,
        listener=listen,
    )
    try:
        outer = ref.proxy()
        inner = outer.child("inner").get(timeout=TIMEOUT)
        old_urn = inner.actor_urn
        assert old_urn is not None
        assert clock.pending() == 1  # the inner supervisor's watchdog
        inner.tell(Kill())
        inner.tell(WatchdogTick(old_urn))  # left in the inbox, handed to the next one
        assert scheduled.wait(TIMEOUT)
        assert clock.pending() == 1  # the restart timer; the old watchdog was cancelled
        clock.advance(1)
        rows = inner.proxy().which_children().get(timeout=TIMEOUT)
        assert [r.status for r in rows] == ["running"]
        assert inner.actor_urn != old_urn
        assert clock.pending() == 1  # exactly one watchdog: the new incarnation's
    finally:
        ref.stop(timeout=TIMEOUT)
