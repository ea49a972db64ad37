"""Stopping a supervisor: reverse order, each child within its timeout, never hanging."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import helpers
import pykka
import pytest

from supervisors import (
    ChildSpec,
    ChildSpecError,
    ChildStatus,
    StopBy,
    Supervisor,
    SupervisorError,
    SupervisorEvent,
    SupervisorEventKind,
)
from supervisors.testing import FakeClock

TIMEOUT = 5.0


@dataclass(frozen=True)
class Block:
    entered: threading.Event
    release: threading.Event


class Logged(helpers.Logged):
    """Blocks on `Block` until released."""

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Block):
            message.entered.set()
            message.release.wait(TIMEOUT)
        return self.actor_urn


def test_a_child_blocking_past_its_shutdown_timeout_is_abandoned_not_waited_on() -> None:
    log: list[str] = []
    events: list[SupervisorEvent] = []
    children = [
        ChildSpec("a", Logged, kwargs={"name": "a", "log": log}),
        ChildSpec("slow", Logged, kwargs={"name": "slow", "log": log}, shutdown_timeout=0.2),
        ChildSpec("c", Logged, kwargs={"name": "c", "log": log}),
    ]
    sup = Supervisor.start(
        children, clock=FakeClock(), watchdog_interval=None, listener=events.append
    )
    slow = sup.proxy().child("slow").get(timeout=TIMEOUT)
    slow_ref = slow.actor_ref
    assert slow_ref is not None
    [thread] = [t for t in threading.enumerate() if t.name == f"Logged-{slow_ref.actor_urn[-12:]}"]
    entered, release = threading.Event(), threading.Event()
    try:
        slow.tell(Block(entered, release))
        assert entered.wait(TIMEOUT)

        # Bounded by TIMEOUT: pykka.Timeout here would mean the stop hung.
        assert sup.stop(timeout=TIMEOUT) is True

        assert [(e.kind, e.child_id) for e in events[3:]] == [
            (SupervisorEventKind.STOPPED, "c"),
            (SupervisorEventKind.ABANDONED, "slow"),
            (SupervisorEventKind.STOPPED, "a"),
        ]
        abandoned = events[4]
        assert isinstance(abandoned.reason, SupervisorError)
        assert str(abandoned.reason) == "child 'slow' did not stop within 0.2s; abandoned"
        assert log == ["start:a", "start:slow", "start:c", "stop:c", "stop:a"]
        assert slow.status is ChildStatus.STOPPED
        with pytest.raises(SupervisorError, match=r"^supervisor 'supervisor' stopped$"):
            slow.tell("ping")
        assert pykka.ActorRegistry.get_all() == [slow_ref]
    finally:
        release.set()
    # The abandoned child stops as soon as its handler returns.
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert log[-1] == "stop:slow"


def test_stop_by_one_deadline_does_not_wait_for_each_child_in_turn() -> None:
    # Two children stuck in a handler, 30 s of shutdown_timeout each: a plain stop would
    # wait 60 s. With a deadline already passed, both are told to stop and abandoned at
    # once, in reverse order, and the stop is answered.
    log: list[str] = []
    events: list[SupervisorEvent] = []
    children = [
        ChildSpec(cid, Logged, kwargs={"name": cid, "log": log}, shutdown_timeout=30.0)
        for cid in ("a", "b")
    ]
    sup = Supervisor.start(
        children, clock=FakeClock(), watchdog_interval=None, listener=events.append
    )
    release = threading.Event()
    threads = []
    try:
        for cid in ("a", "b"):
            handle = sup.proxy().child(cid).get(timeout=TIMEOUT)
            ref = handle.actor_ref
            assert ref is not None
            [thread] = [t for t in threading.enumerate() if t.name.endswith(ref.actor_urn[-12:])]
            threads.append(thread)
            entered = threading.Event()
            handle.tell(Block(entered, release))
            assert entered.wait(TIMEOUT)

        # Bounded by TIMEOUT (not 60 s): pykka.Timeout here would mean it waited.
        assert sup.ask(StopBy(time.monotonic()), timeout=TIMEOUT) is None

        assert [(e.kind, e.child_id) for e in events[2:]] == [
            (SupervisorEventKind.ABANDONED, "b"),
            (SupervisorEventKind.ABANDONED, "a"),
        ]
        assert [str(e.reason) for e in events[2:]] == [
            f"child {cid!r} did not stop by the supervisor's stop deadline (0.000s left); abandoned"
            for cid in ("b", "a")
        ]
        assert log == ["start:a", "start:b"]
        assert not sup.is_alive()
    finally:
        release.set()
    for thread in threads:  # told to stop: each stops once its handler returns
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    assert sorted(log[2:]) == ["stop:a", "stop:b"]


@pytest.mark.parametrize("deadline", ["soon", float("nan"), True, None])
def test_stop_by_refuses_a_deadline_that_is_not_a_monotonic_time(deadline: Any) -> None:
    message = (
        rf"^StopBy.deadline must be a time.monotonic\(\) value, got {re.escape(repr(deadline))}$"
    )
    with pytest.raises(ChildSpecError, match=message):
        StopBy(deadline)
