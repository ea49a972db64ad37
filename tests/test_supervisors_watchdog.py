"""The watchdog finds children that died without telling their supervisor (plain pykka actors)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from helpers import SupervisorEvents as Events
from tenacity import wait_none

from supervisors import (
    ChildHandle,
    ChildInfo,
    ChildSpec,
    Restart,
    RestartPolicy,
    Supervisor,
    SupervisorEventKind,
)
from supervisors.testing import FakeClock

TIMEOUT = 5.0
INTERVAL = 1.0


class Plain(pykka.ThreadingActor):
    """Not a SupervisedActor: its crash is reported to nobody."""

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("plain crash")
        return self.actor_urn


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def supervisor(clock: FakeClock, events: Events) -> Iterator[pykka.ActorRef[Supervisor]]:
    sup = Supervisor.start(
        [ChildSpec("p", Plain)],
        policy=RestartPolicy(wait=wait_none()),
        clock=clock,
        watchdog_interval=INTERVAL,
        listener=events,
        name="root",
    )
    yield sup
    sup.stop(timeout=TIMEOUT)
    assert clock.pending() == 0  # the watchdog is disarmed


@pytest.fixture
def handle(supervisor: pykka.ActorRef[Supervisor]) -> ChildHandle:
    return supervisor.proxy().child("p").get(timeout=TIMEOUT)  # type: ignore[no-any-return]


def tick(clock: FakeClock) -> None:
    """One watchdog tick; returns once the supervisor has handled it and re-armed."""
    assert clock.pending_delays() == [INTERVAL]
    assert clock.advance(INTERVAL) == 1
    clock.wait_for_timers(1)


def test_a_crashed_plain_actor_is_found_dead_after_two_ticks_and_restarted(
    supervisor: pykka.ActorRef[Supervisor], handle: ChildHandle, clock: FakeClock, events: Events
) -> None:
    old_ref = handle.actor_ref
    assert old_ref is not None
    old_urn = handle.ask("ping", timeout=TIMEOUT)

    handle.tell("crash")
    assert old_ref.actor_stopped.wait(TIMEOUT)
    reply = handle.ask("ping", block=False)  # buffered: the incarnation is dead

    tick(clock)
    rows = supervisor.proxy().which_children().get(timeout=TIMEOUT)
    assert rows == [ChildInfo("p", "running", 0, old_urn, Restart.PERMANENT, False)]
    assert events.of(SupervisorEventKind.RESTARTED) == []

    tick(clock)
    new_urn = reply.get(timeout=TIMEOUT)

    assert new_urn != old_urn
    assert len(events.of(SupervisorEventKind.RESTARTED)) == 1
    rows = supervisor.proxy().which_children().get(timeout=TIMEOUT)
    assert rows == [ChildInfo("p", "running", 1, new_urn, Restart.PERMANENT, False)]
    [crashed] = events.of(SupervisorEventKind.CRASHED)
    assert (crashed.child_id, str(crashed.reason), crashed.at) == (
        "p",
        "child 'p' was found dead by the watchdog",
        2.0,
    )


def test_a_healthy_plain_actor_is_left_alone(
    supervisor: pykka.ActorRef[Supervisor], handle: ChildHandle, clock: FakeClock, events: Events
) -> None:
    urn = handle.ask("ping", timeout=TIMEOUT)
    for _ in range(5):
        tick(clock)
    assert handle.ask("ping", timeout=TIMEOUT) == urn
    assert [e.kind for e in events.items] == [SupervisorEventKind.STARTED]
