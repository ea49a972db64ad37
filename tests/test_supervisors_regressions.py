"""Regressions: group restarts survive terminating the failed child; timers armed by a
crashed supervisor incarnation do nothing in the next one; a crash reason whose repr
raises is restarted, escalated and logged like any other."""

from __future__ import annotations

import math
import re
import threading
from typing import Any

import pytest
from helpers import Echo, Escalations, Unprintable
from loguru import logger
from tenacity import wait_fixed, wait_none

from supervisors import (
    ChildSpec,
    Kill,
    RestartIntensityExceeded,
    RestartPolicy,
    Strategy,
    SupervisedActor,
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


class Fragile(SupervisedActor):
    """Crashes with `Unprintable` on "boom"; answers anything else with "ok"."""

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise Unprintable
        return "ok"


SHOWN = "<Unprintable object; repr() raised RuntimeError>"


def test_a_crash_reason_whose_repr_raises_still_escalates_naming_the_child() -> None:
    # The escalation error's message showed the reason with !r: building it raised in
    # the supervisor, which crashed instead of escalating (on_escalation never called).
    escalations = Escalations()
    ref = Supervisor.start(
        [ChildSpec("fragile", Fragile)],
        policy=RestartPolicy(wait=wait_none(), max_restarts=1, within_seconds=60),
        clock=FakeClock(),
        name="app",
        watchdog_interval=None,
        on_escalation=escalations,
    )
    try:
        handle = ref.proxy().child("fragile").get(timeout=TIMEOUT)
        handle.tell("boom")
        assert handle.ask("ping", timeout=TIMEOUT) == "ok"
        handle.tell("boom")
        assert escalations.done.wait(TIMEOUT)
        assert ref.actor_stopped.wait(TIMEOUT)
    finally:
        if ref.is_alive():
            ref.stop(timeout=TIMEOUT)
    message = (
        "restart intensity exceeded: 2 restarts in 60.0s (max 1) for child 'fragile' of "
        f"supervisor 'app'; last reason: {SHOWN}"
    )
    assert [str(e) for e in escalations.errors] == [message]
    assert type(escalations.errors[0].reason) is Unprintable
    with pytest.raises(RestartIntensityExceeded, match=f"^{re.escape(message)}$"):
        handle.ask("ping", timeout=TIMEOUT)


def test_with_logging_on_a_crash_reason_whose_repr_raises_is_restarted(
    log_records: list[dict[str, Any]],
) -> None:
    # The crash's log line formatted the reason with !r: with the package's logging on,
    # it raised in the dying actor's thread before its supervisor was told, so the child
    # was never restarted and every call to it waited out its bound.
    logger.enable("supervisors")
    ref = Supervisor.start(
        [ChildSpec("fragile", Fragile)],
        policy=RestartPolicy(wait=wait_none(), max_restarts=5, within_seconds=60),
        clock=FakeClock(),
        name="app",
        watchdog_interval=None,
    )
    try:
        handle = ref.proxy().child("fragile").get(timeout=TIMEOUT)
        first = handle.actor_urn
        handle.tell("boom")
        assert handle.ask("ping", timeout=TIMEOUT) == "ok"
        assert handle.actor_urn != first
        rows = ref.proxy().which_children().get(timeout=TIMEOUT)
        assert [(r.id, r.status, r.restarts) for r in rows] == [("fragile", "running", 1)]
    finally:
        ref.stop(timeout=TIMEOUT)
    crashed = [
        r["message"]
        for r in log_records
        if r["extra"].get("child") == "fragile" and r["level"].name == "WARNING"
    ]
    assert crashed == [f"child 'fragile' crashed: {SHOWN}"]


def test_the_fake_clock_refuses_a_nan_advance_and_keeps_its_time() -> None:
    # NaN passed the 'seconds < 0' check: the clock's time became NaN for good, and no
    # timer ever fell due again.
    clock = FakeClock(start=10.0)
    fired: list[str] = []
    clock.call_later(1.0, lambda: fired.append("due"))
    with pytest.raises(ValueError, match=r"^advance\(\) takes a number of seconds >= 0, got nan$"):
        clock.advance(math.nan)
    assert clock.monotonic() == 10.0
    assert clock.advance(1.0) == 1
    assert fired == ["due"]
