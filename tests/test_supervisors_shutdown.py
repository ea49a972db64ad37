"""Stopping a supervisor: reverse order, each child within its timeout, never hanging."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import helpers
import pykka
import pytest

from supervisors import (
    ChildSpec,
    ChildStatus,
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
