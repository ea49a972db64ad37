"""Stopping a supervisor: reverse order, each child within its timeout, never hanging."""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import helpers
import pykka
import pytest

from supervisors import (
    ChildHandle,
    ChildSpec,
    ChildSpecError,
    ChildStatus,
    StopBy,
    Supervisor,
    SupervisorError,
    SupervisorEvent,
    SupervisorEventKind,
    SupervisorState,
)
from supervisors._actor import Envelope
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


class StuckOnStop(helpers.Logged):
    """Its ``on_stop`` waits until ``release`` is set (``entered`` says it began)."""

    def __init__(
        self, name: str, log: list[str], entered: threading.Event, release: threading.Event
    ) -> None:
        super().__init__(name, log)
        self.entered = entered
        self.release = release

    def on_stop(self) -> None:
        self.entered.set()
        self.release.wait(TIMEOUT)
        super().on_stop()


@pytest.mark.parametrize("how", ["StopBy", "stop"])
def test_a_nested_supervisor_stops_its_children_by_its_parents_bound(how: str) -> None:
    # outer -> inner -> [stuck (30 s to stop; its on_stop hangs), a]. The stop's bound,
    # 0.3 s from now (a `StopBy` deadline, or inner's shutdown_timeout on a plain stop),
    # holds for the whole tree: inner stops `a`, abandons `stuck` by that bound and
    # answers, so outer reports inner stopped. With a plain stop sent to inner, inner
    # would wait 30 s for `stuck` and outer would abandon inner instead.
    log: list[str] = []
    events: list[SupervisorEvent] = []
    entered, release = threading.Event(), threading.Event()
    stuck = ChildSpec(
        "stuck",
        StuckOnStop,
        kwargs={"name": "stuck", "log": log, "entered": entered, "release": release},
        shutdown_timeout=30.0,
    )
    inner = Supervisor.spec(
        "inner",
        [stuck, ChildSpec("a", Logged, kwargs={"name": "a", "log": log})],
        shutdown_timeout=0.3 if how == "stop" else 30.0,
        clock=FakeClock(),
        watchdog_interval=None,
        listener=events.append,
    )
    outer = Supervisor.start(
        [inner], clock=FakeClock(), watchdog_interval=None, name="outer", listener=events.append
    )
    inner_handle = outer.proxy().child("inner").get(timeout=TIMEOUT)
    stuck_ref = inner_handle.call("child", "stuck").get(timeout=TIMEOUT).actor_ref
    assert stuck_ref is not None
    [thread] = [t for t in threading.enumerate() if t.name.endswith(stuck_ref.actor_urn[-12:])]
    try:
        if how == "StopBy":
            assert outer.ask(StopBy(time.monotonic() + 0.3), timeout=TIMEOUT) is None
        else:
            assert outer.stop(timeout=TIMEOUT) is True
        assert entered.wait(TIMEOUT)  # told to stop, it is still in on_stop

        ended = {SupervisorEventKind.STOPPED, SupervisorEventKind.ABANDONED}
        stops = [(e.supervisor, e.kind, e.child_id) for e in events if e.kind in ended]
        assert stops == [
            ("inner", SupervisorEventKind.STOPPED, "a"),
            ("inner", SupervisorEventKind.ABANDONED, "stuck"),
            ("outer", SupervisorEventKind.STOPPED, "inner"),
        ]
        [abandoned] = [e for e in events if e.kind is SupervisorEventKind.ABANDONED]
        assert re.fullmatch(
            r"child 'stuck' did not stop by the supervisor's stop deadline "
            r"\(0\.[0-3]\d\ds left\); abandoned",
            str(abandoned.reason),
        )
        assert log == ["start:stuck", "start:a", "stop:a"]
        assert not outer.is_alive()
        assert thread.is_alive()  # abandoned, still in its on_stop
    finally:
        release.set()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert log[-1] == "stop:stuck"


class Deaf(Supervisor):
    """A supervisor that never takes `StopBy` (a subclass's own on_receive, say)."""

    def on_receive(self, message: Any) -> Any:
        return None if type(message) is StopBy else super().on_receive(message)


def test_a_nested_supervisor_that_never_takes_stop_by_is_still_told_to_stop() -> None:
    log: list[str] = []
    events: list[SupervisorEvent] = []
    deaf = ChildSpec(
        "deaf",
        Deaf,
        args=([ChildSpec("a", Logged, kwargs={"name": "a", "log": log})],),
        kwargs={"name": "deaf", "clock": FakeClock(), "watchdog_interval": None},
        state_factory=SupervisorState,
    )
    outer = Supervisor.start(
        [deaf], clock=FakeClock(), watchdog_interval=None, name="outer", listener=events.append
    )
    deaf_ref = outer.proxy().child("deaf").get(timeout=TIMEOUT).actor_ref
    assert deaf_ref is not None
    [thread] = [t for t in threading.enumerate() if t.name.endswith(deaf_ref.actor_urn[-12:])]

    assert outer.stop(timeout=TIMEOUT) is True

    # It stops at the plain stop sent after the StopBy, its child with it.
    assert [(e.kind, e.child_id) for e in events[1:]] == [(SupervisorEventKind.STOPPED, "deaf")]
    assert log == ["start:a", "stop:a"]
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_a_stop_by_left_in_a_stopped_incarnations_inbox_is_answered_not_kept() -> None:
    # A nested supervisor that crashes with its parent's StopBy still in its inbox: the
    # StopBy was for that incarnation. Kept in the handle's buffer, it would stop the
    # next incarnation as soon as it started (a one_for_all restart, say).
    handle = ChildHandle("inner")
    inbox: queue.SimpleQueue[Envelope[Any]] = queue.SimpleQueue()
    stop_by: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    inbox.put(Envelope(StopBy(time.monotonic()), reply_to=stop_by))  # asked
    inbox.put(Envelope(StopBy(time.monotonic())))  # told, as a parent sends it
    inbox.put(Envelope("ping"))

    handle._absorb("urn:uuid:gone", inbox)

    assert stop_by.get(timeout=0) is None
    assert handle.buffered == 1  # only "ping" waits for the next incarnation


@pytest.mark.parametrize("deadline", ["soon", float("nan"), True, None])
def test_stop_by_refuses_a_deadline_that_is_not_a_monotonic_time(deadline: Any) -> None:
    message = (
        rf"^StopBy.deadline must be a time.monotonic\(\) value, got {re.escape(repr(deadline))}$"
    )
    with pytest.raises(ChildSpecError, match=message):
        StopBy(deadline)
