"""`ChildHandle`: calls reach the current incarnation; during a backoff they are buffered."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from helpers import Ledger
from tenacity import wait_fixed

from supervisors import (
    ChildHandle,
    ChildSpec,
    ChildStatus,
    Kill,
    RestartPolicy,
    SupervisedActor,
    Supervisor,
    SupervisorError,
)
from supervisors.testing import FakeClock

TIMEOUT = 5.0
BACKOFF = 5.0


class Recorder(SupervisedActor):
    def __init__(self, state: Ledger) -> None:
        super().__init__()
        self.state = state

    def on_receive(self, message: Any) -> Any:
        match message:
            case "ping":
                return self.actor_urn
            case "items":
                return list(self.state.items)
            case ("record", item):
                self.state.items.append((self.actor_urn, item))
                return item
        return None

    def add(self, x: int, y: int) -> int:
        self.state.items.append((self.actor_urn, ("add", x, y)))
        return x + y


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def supervisor(
    request: pytest.FixtureRequest, clock: FakeClock
) -> Iterator[pykka.ActorRef[Supervisor]]:
    capacity = getattr(request, "param", 1000)
    sup = Supervisor.start(
        [ChildSpec("w", Recorder, state_factory=Ledger)],
        policy=RestartPolicy(wait=wait_fixed(BACKOFF)),
        clock=clock,
        watchdog_interval=None,
        buffer_capacity=capacity,
        # Told tuples play the callers' requests here (bounded while the child
        # restarts); other told messages are the system's own and are never refused.
        request_types=(tuple,),
        name="root",
    )
    yield sup
    sup.stop(timeout=TIMEOUT)


@pytest.fixture
def handle(supervisor: pykka.ActorRef[Supervisor]) -> ChildHandle:
    h = supervisor.proxy().child("w").get(timeout=TIMEOUT)
    assert isinstance(h, ChildHandle)
    return h


def kill_and_wait_for_backoff(handle: ChildHandle, clock: FakeClock) -> str:
    """Kill the child; return once its restart is scheduled. Returns the old urn."""
    urn = handle.ask("ping", timeout=TIMEOUT)
    handle.tell(Kill())
    clock.wait_for_timers(1)
    assert clock.pending_delays() == [BACKOFF]
    assert handle.status is ChildStatus.RESTARTING
    assert handle.actor_ref is None
    return str(urn)


def test_calls_reach_the_running_incarnation(handle: ChildHandle) -> None:
    assert handle.status is ChildStatus.RUNNING
    assert repr(handle) == "<ChildHandle 'w' running>"
    urn = handle.ask("ping", timeout=TIMEOUT)
    assert urn == handle.actor_urn
    assert handle.proxy().add(2, 3).get(timeout=TIMEOUT) == 5
    assert handle.call("add", 4, 5).get(timeout=TIMEOUT) == 9
    handle.tell(("record", "told"))
    assert handle.ask(("record", "asked"), timeout=TIMEOUT) == "asked"
    assert handle.ask("items", timeout=TIMEOUT) == [
        (urn, ("add", 2, 3)),
        (urn, ("add", 4, 5)),
        (urn, "told"),
        (urn, "asked"),
    ]


def test_a_hundred_messages_sent_during_backoff_reach_the_new_incarnation_in_order(
    handle: ChildHandle, clock: FakeClock
) -> None:
    old_urn = kill_and_wait_for_backoff(handle, clock)
    assert repr(handle) == "<ChildHandle 'w' restarting>"
    replies = {}
    for i in range(100):
        if i % 10 == 9:
            replies[i] = handle.ask(("record", i), block=False)
        elif i % 10 == 4:
            replies[i] = handle.proxy().add(i, 0)
        else:
            handle.tell(("record", i))
    assert handle.buffered == 100

    clock.advance(BACKOFF)
    items = handle.ask("items", timeout=TIMEOUT)

    new_urn = handle.actor_urn
    assert new_urn not in (None, old_urn)
    expected = [(new_urn, ("add", i, 0) if i % 10 == 4 else i) for i in range(100)]
    assert items == expected
    assert {i: f.get(timeout=TIMEOUT) for i, f in replies.items()} == {i: i for i in replies}
    assert handle.buffered == 0
    assert handle.status is ChildStatus.RUNNING


OVERFLOW = (
    "child 'w' is restarting and its buffer is full (10 messages); the message was not delivered"
)


@pytest.mark.parametrize("supervisor", [10], indirect=True)
def test_with_a_capacity_of_ten_exactly_the_overflowing_calls_fail(
    handle: ChildHandle, clock: FakeClock
) -> None:
    kill_and_wait_for_backoff(handle, clock)
    match = f"^{re.escape(OVERFLOW)}$"
    for i in range(8):
        handle.tell(("record", i))
    accepted = [handle.ask(("record", 8), block=False), handle.proxy().add(9, 0)]
    assert handle.buffered == 10

    for i in range(10, 13):
        with pytest.raises(SupervisorError, match=match):
            handle.tell(("record", i))
    refused = [
        handle.ask(("record", 13), block=False),
        handle.proxy().add(14, 0),
        handle.call("add", 15, 0),
    ]
    for future in refused:
        with pytest.raises(SupervisorError, match=match):
            future.get(timeout=TIMEOUT)
    with pytest.raises(SupervisorError, match=match):
        handle.ask(("record", 16), timeout=TIMEOUT)
    assert handle.buffered == 10

    clock.advance(BACKOFF)
    assert [f.get(timeout=TIMEOUT) for f in accepted] == [8, 9]
    new_urn = handle.actor_urn
    assert handle.ask("items", timeout=TIMEOUT) == [
        *[(new_urn, i) for i in range(9)],
        (new_urn, ("add", 9, 0)),
    ]


def test_calls_buffered_when_the_supervisor_stops_fail_instead_of_hanging(
    supervisor: pykka.ActorRef[Supervisor], handle: ChildHandle, clock: FakeClock
) -> None:
    kill_and_wait_for_backoff(handle, clock)
    pending = [handle.ask(("record", i), block=False) for i in range(3)]

    supervisor.stop(timeout=TIMEOUT)

    for future in pending:
        with pytest.raises(SupervisorError, match=r"^supervisor 'root' stopped$"):
            future.get(timeout=TIMEOUT)
    with pytest.raises(SupervisorError, match=r"^supervisor 'root' stopped$"):
        handle.tell("ping")
    assert handle.status is ChildStatus.STOPPED
    assert clock.pending() == 0


@pytest.mark.parametrize("capacity", [-1, 1.5, True])
def test_handle_capacity_is_validated(capacity: Any) -> None:
    with pytest.raises(
        SupervisorError, match=rf"^ChildHandle capacity must be an int >= 0, got {capacity!r}$"
    ):
        ChildHandle("w", capacity)


def _frames(error: BaseException) -> int:
    count, tb = 0, error.__traceback__
    while tb is not None:
        count, tb = count + 1, tb.tb_next
    return count


def test_each_call_to_a_stopped_child_raises_an_error_of_its_own(
    supervisor: pykka.ActorRef[Supervisor], handle: ChildHandle
) -> None:
    """Every later call to a gone child raises a copy of the handle's error (its type,
    message and cause), its traceback that call's frames only: raising the one stored
    error added each caller's frames to it, for as long as the handle lived."""
    supervisor.stop(timeout=TIMEOUT)
    errors: list[SupervisorError] = []
    depths: list[int] = []
    for _ in range(3):
        with pytest.raises(SupervisorError, match=r"^supervisor 'root' stopped$") as raised:
            handle.tell("ping")
        errors.append(raised.value)
        depths.append(_frames(raised.value))
    assert len({id(error) for error in errors}) == 3
    assert depths[0] == depths[1] == depths[2]
    assert {type(error) for error in errors} == {SupervisorError}
