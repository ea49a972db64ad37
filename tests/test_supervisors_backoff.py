"""Backoff schedules (tenacity's), restart intensity (a sliding window) and escalation."""

from __future__ import annotations

import copy
import pickle
import re
from collections.abc import Callable
from typing import Any

import pykka
import pytest
from helpers import Escalations, Logged, tenacity_schedule
from helpers import SupervisorEvents as Events
from tenacity import (
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_none,
)
from tenacity.wait import wait_base

from supervisors import (
    ActorKilled,
    BufferFullError,
    ChildHandle,
    ChildSpec,
    ConsecutiveFailuresExceeded,
    Kill,
    RestartIntensityExceeded,
    RestartPolicy,
    Supervisor,
    SupervisorError,
    SupervisorEventKind,
)
from supervisors.testing import FakeClock

TIMEOUT = 5.0


def start(
    stopper: list[pykka.ActorRef[Any]],
    children: list[ChildSpec],
    clock: FakeClock,
    policy: RestartPolicy,
    **kwargs: Any,
) -> pykka.ActorRef[Supervisor]:
    sup = Supervisor.start(
        children, policy=policy, clock=clock, watchdog_interval=None, name="root", **kwargs
    )
    stopper.append(sup)
    return sup


def handle_of(sup: pykka.ActorRef[Supervisor], child_id: str) -> ChildHandle:
    return sup.proxy().child(child_id).get(timeout=TIMEOUT)  # type: ignore[no-any-return]


def crash_and_restart(handle: ChildHandle, clock: FakeClock) -> float:
    """Kill the child, let its backoff pass, wait until it answers; return the delay."""
    handle.tell(Kill())
    clock.wait_for_timers(1)
    [delay] = clock.pending_delays()
    clock.advance(delay)
    handle.ask("ping", timeout=TIMEOUT)
    return delay


def lenient(wait: wait_base, reset_after: float = 1000.0) -> RestartPolicy:
    return RestartPolicy(
        wait=wait, max_restarts=100, within_seconds=1000.0, reset_after=reset_after
    )


# -- the schedule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wait",
    [
        wait_exponential(multiplier=1, max=100),
        wait_exponential_jitter(multiplier=1, max=100, jitter=0),
    ],
    ids=["wait_exponential", "wait_exponential_jitter(jitter=0)"],
)
def test_delays_are_tenacitys_exponential_sequence(
    wait: wait_base, stopper: list[pykka.ActorRef[Any]]
) -> None:
    clock = FakeClock()
    events = Events()
    sup = start(stopper, [ChildSpec("w", Logged)], clock, lenient(wait), listener=events)
    handle = handle_of(sup, "w")

    delays = [crash_and_restart(handle, clock) for _ in range(6)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert delays == tenacity_schedule(wait, 6)
    assert [e.delay for e in events.of(SupervisorEventKind.RESTART_SCHEDULED)] == delays
    assert [e.at for e in events.of(SupervisorEventKind.RESTARTED)] == [
        1.0,
        3.0,
        7.0,
        15.0,
        31.0,
        63.0,
    ]


def test_jittered_delays_fall_within_bounds(stopper: list[pykka.ActorRef[Any]]) -> None:
    clock = FakeClock()
    policy = lenient(wait_exponential_jitter(multiplier=1, max=100, jitter=0.5))
    sup = start(stopper, [ChildSpec("w", Logged)], clock, policy)
    handle = handle_of(sup, "w")

    delays = [crash_and_restart(handle, clock) for _ in range(6)]

    for n, delay in enumerate(delays, start=1):
        assert 2.0 ** (n - 1) <= delay <= 2.0 ** (n - 1) + 0.5, (n, delays)


def test_combined_waits_add_up(stopper: list[pykka.ActorRef[Any]]) -> None:
    clock = FakeClock()
    wait = wait_fixed(3) + wait_exponential(multiplier=1, max=100)
    sup = start(stopper, [ChildSpec("w", Logged)], clock, lenient(wait))
    handle = handle_of(sup, "w")

    delays = [crash_and_restart(handle, clock) for _ in range(4)]

    assert delays == [4.0, 5.0, 7.0, 11.0]
    assert delays == tenacity_schedule(wait, 4)


def test_after_reset_after_of_stability_the_next_delay_is_the_first_step(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock = FakeClock()
    policy = lenient(wait_exponential(multiplier=1, max=100), reset_after=10.0)
    sup = start(stopper, [ChildSpec("w", Logged)], clock, policy)
    handle = handle_of(sup, "w")

    assert crash_and_restart(handle, clock) == 1.0
    assert crash_and_restart(handle, clock) == 2.0
    clock.advance(9.5)  # stable, but not for long enough
    assert crash_and_restart(handle, clock) == 4.0
    clock.advance(10.0)  # stable for reset_after
    assert crash_and_restart(handle, clock) == 1.0
    assert crash_and_restart(handle, clock) == 2.0


# -- backoff never blocks the supervisor ---------------------------------------------------------


def test_a_second_childs_crash_is_handled_while_the_first_is_in_backoff(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock = FakeClock()
    events = Events()
    children = [ChildSpec(n, Logged, kwargs={"name": n}) for n in "ab"]
    sup = start(stopper, children, clock, RestartPolicy(wait=wait_fixed(5)), listener=events)
    a, b = handle_of(sup, "a"), handle_of(sup, "b")

    a.tell(Kill())
    clock.wait_for_timers(1)
    clock.advance(3)
    b.tell(Kill())
    clock.wait_for_timers(2)

    assert clock.pending_delays() == [2.0, 5.0]
    assert [
        (e.child_id, e.at, e.delay) for e in events.of(SupervisorEventKind.RESTART_SCHEDULED)
    ] == [
        ("a", 0.0, 5.0),
        ("b", 3.0, 5.0),
    ]
    reply_a, reply_b = a.ask("ping", block=False), b.ask("ping", block=False)

    clock.advance(2)
    assert reply_a.get(timeout=TIMEOUT) == a.actor_urn
    rows = sup.proxy().which_children().get(timeout=TIMEOUT)
    assert [(r.id, r.status, r.restarts) for r in rows] == [
        ("a", "running", 1),
        ("b", "restarting", 0),
    ]
    with pytest.raises(pykka.Timeout):
        reply_b.get(timeout=0)

    clock.advance(3)
    assert reply_b.get(timeout=TIMEOUT) == b.actor_urn
    assert [(e.child_id, e.at) for e in events.of(SupervisorEventKind.RESTARTED)] == [
        ("a", 5.0),
        ("b", 8.0),
    ]


# -- restart intensity --------------------------------------------------------------------------


INTENSITY_MESSAGE = (
    "restart intensity exceeded: 4 restarts in 5.0s (max 3) for child 'b' of supervisor "
    "'root'; last reason: ActorKilled('killed by a Kill message')"
)


def test_one_crash_too_many_inside_the_window_escalates(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock = FakeClock()
    log: list[str] = []
    events = Events()
    escalations = Escalations()
    children = [ChildSpec(n, Logged, kwargs={"name": n, "log": log}) for n in "abc"]
    policy = RestartPolicy(wait=wait_none(), max_restarts=3, within_seconds=5.0)
    sup = start(stopper, children, clock, policy, listener=events, on_escalation=escalations)
    a, b, c = (handle_of(sup, n) for n in "abc")
    for _ in range(3):
        b.tell(Kill())
        b.ask("ping", timeout=TIMEOUT)
        clock.advance(1.0)
    log.clear()

    b.tell(Kill())
    assert escalations.done.wait(TIMEOUT)
    assert sup.actor_stopped.wait(TIMEOUT)

    [error] = escalations.errors
    assert str(error) == INTENSITY_MESSAGE
    assert (error.supervisor, error.child_id, error.count) == ("root", "b", 4)
    assert (error.max_restarts, error.within_seconds) == (3, 5.0)
    assert isinstance(error.reason, ActorKilled)
    assert log == ["crash:b", "stop:c", "stop:a"]
    assert [e.child_id for e in events.of(SupervisorEventKind.INTENSITY_EXCEEDED)] == ["b"]
    assert [e.reason for e in events.of(SupervisorEventKind.ESCALATED)] == [error]
    assert len(events.of(SupervisorEventKind.RESTARTED)) == 3
    match = f"^{re.escape(INTENSITY_MESSAGE)}$"
    for handle in (a, b, c):
        with pytest.raises(RestartIntensityExceeded, match=match):
            handle.tell("ping")
        with pytest.raises(RestartIntensityExceeded, match=match):
            handle.ask("ping", timeout=TIMEOUT)
    assert pykka.ActorRegistry.get_all() == []


def test_escalation_fails_calls_buffered_during_a_backoff(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock = FakeClock()
    escalations = Escalations()
    children = [ChildSpec(n, Logged, kwargs={"name": n}) for n in "ab"]
    policy = RestartPolicy(wait=wait_fixed(1), max_restarts=1, within_seconds=5.0)
    sup = start(stopper, children, clock, policy, on_escalation=escalations)
    a, b = handle_of(sup, "a"), handle_of(sup, "b")

    a.tell(Kill())
    clock.wait_for_timers(1)
    pending = [a.ask(("ping", i), block=False) for i in range(3)]
    b.tell(Kill())
    assert escalations.done.wait(TIMEOUT)

    message = (
        "restart intensity exceeded: 2 restarts in 5.0s (max 1) for child 'b' of "
        "supervisor 'root'; last reason: ActorKilled('killed by a Kill message')"
    )
    for future in pending:
        with pytest.raises(RestartIntensityExceeded, match=f"^{re.escape(message)}$"):
            future.get(timeout=TIMEOUT)
    assert clock.pending() == 0
    assert sup.actor_stopped.wait(TIMEOUT)


def test_the_same_crashes_spread_wider_than_the_window_do_not_escalate(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    clock = FakeClock()
    escalations = Escalations()
    events = Events()
    # Each incarnation runs 2 s, longer than reset_after: the crashes are not a crash
    # loop (not consecutive failures), and the window alone decides.
    policy = RestartPolicy(wait=wait_none(), max_restarts=3, within_seconds=5.0, reset_after=1.5)
    sup = start(
        stopper,
        [ChildSpec("b", Logged)],
        clock,
        policy,
        on_escalation=escalations,
        listener=events,
    )
    b = handle_of(sup, "b")

    for _ in range(8):
        b.tell(Kill())
        b.ask("ping", timeout=TIMEOUT)
        clock.advance(2.0)  # at most 3 crashes in any 5 s window

    assert escalations.errors == []
    assert events.of(SupervisorEventKind.INTENSITY_EXCEEDED) == []
    assert [e.at for e in events.of(SupervisorEventKind.RESTARTED)] == [2.0 * i for i in range(8)]
    rows = sup.proxy().which_children().get(timeout=TIMEOUT)
    assert [(r.id, r.status, r.restarts) for r in rows] == [("b", "running", 8)]
    assert sup.is_alive()


@pytest.mark.parametrize(
    "make",
    [
        lambda: RestartIntensityExceeded("root", "b", 2, 1, 5.0, ActorKilled("killed")),
        lambda: ConsecutiveFailuresExceeded("root", "b", 4, 3, 1.5, None),
        lambda: BufferFullError("b", 8),
    ],
    ids=["intensity", "consecutive", "buffer"],
)
@pytest.mark.parametrize(
    "twin", [copy.copy, lambda e: pickle.loads(pickle.dumps(e))], ids=["copy", "pickle"]
)
def test_supervisor_errors_with_fields_copy_and_pickle(
    make: Callable[[], SupervisorError], twin: Callable[[SupervisorError], SupervisorError]
) -> None:
    """An error with fields rebuilds from them (`copy`, a process pool sending it back):
    its arguments are its message, which its constructor does not take."""
    error = make()
    error.add_note("seen by a test")
    again = twin(error)
    assert type(again) is type(error)
    assert (again.args, str(again), again.__notes__) == (
        error.args,
        str(error),
        ["seen by a test"],
    )
    names = ("supervisor", "child_id", "count", "max_restarts", "within_seconds", "capacity")
    shown = [(name, getattr(error, name)) for name in names if hasattr(error, name)]
    assert [(name, getattr(again, name)) for name, _ in shown] == shown
    assert repr(getattr(again, "reason", None)) == repr(getattr(error, "reason", None))


def test_restart_intensity_exceeded_keeps_its_fields_message_identity_and_repr() -> None:
    reason = ActorKilled("killed by a Kill message")
    error = RestartIntensityExceeded("root", "b", 2, 1, 5, reason)
    twin = RestartIntensityExceeded("root", "b", 2, 1, 5, reason)
    message = (
        "restart intensity exceeded: 2 restarts in 5.0s (max 1) for child 'b' of "
        "supervisor 'root'; last reason: ActorKilled('killed by a Kill message')"
    )
    fields = (error.supervisor, error.child_id, error.count, error.max_restarts)
    assert fields == ("root", "b", 2, 1)
    assert (error.within_seconds, error.reason) == (5, reason)
    assert error.args == (message,)
    assert repr(error) == f"RestartIntensityExceeded({message!r})"
    # An exception compares by identity (and stays hashable), whatever its fields.
    assert error != twin
    assert len({error, twin}) == 2
