"""Strategies restart exactly the right children, in the right order (OTP semantics)."""

from __future__ import annotations

from typing import Any

import pykka
import pytest
from helpers import Logged
from helpers import SupervisorEvents as Events
from tenacity import wait_fixed, wait_none

from supervisors import (
    ChildHandle,
    ChildSpec,
    Kill,
    Restart,
    RestartPolicy,
    Strategy,
    Supervisor,
    SupervisorError,
    SupervisorEventKind,
)
from supervisors.testing import FakeClock

TIMEOUT = 5.0
ZERO_BACKOFF = RestartPolicy(wait=wait_none(), max_restarts=100, within_seconds=60.0)


def specs(log: list[str], names: str = "abcd", **kwargs: Any) -> list[ChildSpec]:
    return [ChildSpec(n, Logged, kwargs={"name": n, "log": log}, **kwargs) for n in names]


def handles(sup: pykka.ActorRef[Supervisor], names: str) -> dict[str, ChildHandle]:
    return {n: sup.proxy().child(n).get(timeout=TIMEOUT) for n in names}


STARTS = ["start:a", "start:b", "start:c", "start:d"]


@pytest.mark.parametrize(
    ("strategy", "after_crash"),
    [
        (Strategy.ONE_FOR_ONE, ["crash:b", "start:b"]),
        (
            Strategy.ONE_FOR_ALL,
            ["crash:b", "stop:d", "stop:c", "stop:a", "start:a", "start:b", "start:c", "start:d"],
        ),
        (Strategy.REST_FOR_ONE, ["crash:b", "stop:d", "stop:c", "start:b", "start:c", "start:d"]),
    ],
)
def test_strategy_restarts_the_right_children_in_order(
    strategy: Strategy, after_crash: list[str], stopper: list[pykka.ActorRef[Any]]
) -> None:
    log: list[str] = []
    events = Events()
    sup = Supervisor.start(
        specs(log),
        strategy=strategy,
        policy=ZERO_BACKOFF,
        clock=FakeClock(),
        watchdog_interval=None,
        listener=events,
    )
    stopper.append(sup)
    h = handles(sup, "abcd")
    before = {n: h[n].ask("ping", timeout=TIMEOUT) for n in "abcd"}
    assert log == STARTS

    h["b"].tell(Kill())
    restarted = [entry.split(":")[1] for entry in after_crash if entry.startswith("start:")]
    events.wait_for(SupervisorEventKind.RESTARTED, count=len(restarted))
    rows = sup.proxy().which_children().get(timeout=TIMEOUT)

    assert log == STARTS + after_crash
    assert [e.child_id for e in events.of(SupervisorEventKind.RESTARTED)] == restarted
    after = {n: h[n].ask("ping", timeout=TIMEOUT) for n in "abcd"}
    assert [n for n in "abcd" if after[n] != before[n]] == restarted
    assert [(r.id, r.status, r.restarts) for r in rows] == [
        (n, "running", 1 if n in restarted else 0) for n in "abcd"
    ]


def test_children_stop_in_reverse_start_order(stopper: list[pykka.ActorRef[Any]]) -> None:
    log: list[str] = []
    sup = Supervisor.start(specs(log), clock=FakeClock(), watchdog_interval=None)
    assert sup.stop(timeout=TIMEOUT) is True
    assert log == [*STARTS, "stop:d", "stop:c", "stop:b", "stop:a"]


def test_one_for_all_removes_temporary_siblings_instead_of_restarting_them(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    log: list[str] = []
    events = Events()
    children = [
        *specs(log, "ab"),
        *specs(log, "c", restart=Restart.TEMPORARY),
        *specs(log, "d"),
    ]
    sup = Supervisor.start(
        children,
        strategy=Strategy.ONE_FOR_ALL,
        policy=ZERO_BACKOFF,
        clock=FakeClock(),
        watchdog_interval=None,
        listener=events,
    )
    stopper.append(sup)
    h = handles(sup, "abcd")

    h["a"].tell(Kill())
    events.wait_for(SupervisorEventKind.RESTARTED, count=3)
    rows = sup.proxy().which_children().get(timeout=TIMEOUT)

    assert log == [
        *STARTS,
        "crash:a",
        "stop:d",
        "stop:c",
        "stop:b",
        "start:a",
        "start:b",
        "start:d",
    ]
    assert [(r.id, r.status, r.restarts) for r in rows] == [
        ("a", "running", 1),
        ("b", "running", 1),
        ("d", "running", 1),
    ]
    with pytest.raises(SupervisorError, match=r"^temporary child 'c' was stopped$"):
        h["c"].tell("ping")


def test_one_for_all_with_backoff_stops_the_others_at_once_and_restarts_all_later(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    log: list[str] = []
    clock = FakeClock()
    sup = Supervisor.start(
        specs(log, "abc"),
        strategy=Strategy.ONE_FOR_ALL,
        policy=RestartPolicy(wait=wait_fixed(2)),
        clock=clock,
        watchdog_interval=None,
    )
    stopper.append(sup)
    h = handles(sup, "abc")

    h["b"].tell(Kill())
    clock.wait_for_timers(1)
    assert clock.pending_delays() == [2.0]
    rows = sup.proxy().which_children().get(timeout=TIMEOUT)
    assert [(r.id, r.status, r.actor_urn) for r in rows] == [
        ("a", "restarting", None),
        ("b", "restarting", None),
        ("c", "restarting", None),
    ]
    assert log == ["start:a", "start:b", "start:c", "crash:b", "stop:c", "stop:a"]
    replies = [h[n].ask("ping", block=False) for n in "abc"]

    clock.advance(2)
    urns = [reply.get(timeout=TIMEOUT) for reply in replies]
    assert urns == [h[n].actor_urn for n in "abc"]
    assert log[6:] == ["start:a", "start:b", "start:c"]
