"""Specs, policies and supervisor arguments are validated when built, naming the bad value."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pykka
import pytest
from helpers import Hostile
from tenacity import wait_none

from supervisors import (
    ChildHandle,
    ChildSpec,
    ChildSpecError,
    Kill,
    Restart,
    RestartPolicy,
    StopBy,
    SupervisedActor,
    Supervisor,
    SupervisorError,
)

HUGE = 10**400
"""An int too large for a float (``math.isfinite`` raises `OverflowError`)."""


class Worker(SupervisedActor):
    pass


def spec(**overrides: Any) -> ChildSpec:
    fields: dict[str, Any] = {"id": "w", "factory": Worker}
    fields.update(overrides)
    return ChildSpec(**fields)


def test_defaults_are_filled_in_one_place() -> None:
    s = ChildSpec("w", Worker)
    assert (s.args, dict(s.kwargs), s.restart, s.shutdown_timeout, s.start_timeout) == (
        (),
        {},
        Restart.PERMANENT,
        5.0,
        10.0,
    )
    assert s.state_factory is None


def test_specs_and_policies_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec().restart = Restart.TEMPORARY  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RestartPolicy().max_restarts = 9  # type: ignore[misc]


def test_child_spec_error_is_a_supervisor_error_and_a_value_error() -> None:
    assert issubclass(ChildSpecError, SupervisorError)
    assert issubclass(ChildSpecError, ValueError)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": ""}, "ChildSpec.id must be a non-empty string, got ''"),
        ({"id": 7}, "ChildSpec.id must be a non-empty string, got 7"),
        (
            {"factory": "Worker"},
            "ChildSpec 'w': factory must be a pykka actor class or a callable returning an "
            "unstarted actor, got 'Worker'",
        ),
        ({"args": [1, 2]}, "ChildSpec 'w': args must be a tuple, got list"),
        ({"kwargs": [("a", 1)]}, "ChildSpec 'w': kwargs must be a mapping, got list"),
        (
            {"restart": "permanent"},
            "ChildSpec 'w': restart must be a Restart member (PERMANENT, TRANSIENT, "
            "TEMPORARY), got 'permanent'",
        ),
        (
            {"shutdown_timeout": 0},
            "ChildSpec 'w': shutdown_timeout must be a finite number > 0, got 0",
        ),
        (
            {"shutdown_timeout": -1.5},
            "ChildSpec 'w': shutdown_timeout must be a finite number > 0, got -1.5",
        ),
        (
            {"shutdown_timeout": float("inf")},
            "ChildSpec 'w': shutdown_timeout must be a finite number > 0, got inf",
        ),
        (
            {"shutdown_timeout": True},
            "ChildSpec 'w': shutdown_timeout must be a finite number > 0, got True",
        ),
        (
            {"start_timeout": float("nan")},
            "ChildSpec 'w': start_timeout must be a finite number > 0, got nan",
        ),
        (
            # An int too large for a float: its isfinite check raised OverflowError.
            {"shutdown_timeout": HUGE},
            f"ChildSpec 'w': shutdown_timeout must be a finite number > 0, got {HUGE!r}",
        ),
        (
            {"start_timeout": "10"},
            "ChildSpec 'w': start_timeout must be a finite number > 0, got '10'",
        ),
        (
            {"state_factory": 42},
            "ChildSpec 'w': state_factory must be callable or None, got 42",
        ),
    ],
)
def test_child_spec_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ChildSpecError, match=f"^{re.escape(message)}$"):
        spec(**overrides)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"wait": 3},
            "RestartPolicy.wait must be a tenacity wait strategy, got 3",
        ),
        ({"max_restarts": -1}, "RestartPolicy.max_restarts must be an int >= 0, got -1"),
        ({"max_restarts": 2.5}, "RestartPolicy.max_restarts must be an int >= 0, got 2.5"),
        ({"max_restarts": True}, "RestartPolicy.max_restarts must be an int >= 0, got True"),
        (
            {"within_seconds": 0},
            "RestartPolicy.within_seconds must be a finite number > 0, got 0",
        ),
        (
            {"within_seconds": float("inf")},
            "RestartPolicy.within_seconds must be a finite number > 0, got inf",
        ),
        (
            {"reset_after": -10.0},
            "RestartPolicy.reset_after must be a finite number > 0, got -10.0",
        ),
        (
            {"within_seconds": HUGE},
            f"RestartPolicy.within_seconds must be a finite number > 0, got {HUGE!r}",
        ),
        (
            {"reset_after": "10"},
            "RestartPolicy.reset_after must be a finite number > 0, got '10'",
        ),
    ],
)
def test_restart_policy_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ChildSpecError, match=f"^{re.escape(message)}$"):
        RestartPolicy(**fields)


def test_a_valid_policy_keeps_its_values() -> None:
    wait = wait_none()
    policy = RestartPolicy(wait=wait, max_restarts=0, within_seconds=1, reset_after=0.5)
    assert (policy.wait, policy.max_restarts, policy.within_seconds, policy.reset_after) == (
        wait,
        0,
        1,
        0.5,
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            ([spec(), spec(factory=Worker)],),
            {},
            "duplicate child id 'w': child ids must be unique",
        ),
        ((spec(),), {}, f"children must be a sequence of ChildSpec, got {spec()!r}"),
        (("w",), {}, "children must be a sequence of ChildSpec, got 'w'"),
        (([spec(), "x"],), {}, "children must contain ChildSpec objects, got 'x'"),
        (
            ([],),
            {"strategy": "one_for_all"},
            "strategy must be a Strategy member (ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE), "
            "got 'one_for_all'",
        ),
        (
            ([],),
            {"policy": {"max_restarts": 3}},
            "policy must be a RestartPolicy, got {'max_restarts': 3}",
        ),
        (([],), {"name": ""}, "supervisor name must be a non-empty string, got ''"),
        (([],), {"buffer_capacity": -1}, "buffer_capacity must be an int >= 0, got -1"),
        (([],), {"buffer_capacity": 1.0}, "buffer_capacity must be an int >= 0, got 1.0"),
        *(
            (
                ([],),
                {"watchdog_interval": bad},
                "watchdog_interval must be a finite number of seconds > 0, or None to turn "
                f"the watchdog off, got {bad!r}",
            )
            # NaN once made every tick due at once: the supervisor spun a core.
            for bad in (0, -1.0, True, math.nan, math.inf, "1", HUGE)
        ),
        (([],), {"state": object}, f"state must be a SupervisorState, got {object!r}"),
        (
            ([],),
            {"clock": 3},
            "clock must have monotonic() and call_later(delay, callback) (a Clock), got 3",
        ),
        (([],), {"on_escalation": 3}, "on_escalation must be callable or None, got 3"),
        (([],), {"listener": "log"}, "listener must be callable or None, got 'log'"),
    ],
)
def test_supervisor_arguments_are_validated_before_anything_starts(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ChildSpecError, match=f"^{re.escape(message)}$"):
        Supervisor.start(*args, **kwargs)
    assert pykka.ActorRegistry.get_all() == []


def test_supervisor_spec_builds_a_nested_supervisor_spec() -> None:
    child = spec()
    s = Supervisor.spec("sub", [child], restart=Restart.TRANSIENT, watchdog_interval=None)
    assert s.id == "sub"
    assert s.factory is Supervisor
    assert s.args == ([child],)
    assert dict(s.kwargs) == {"watchdog_interval": None, "name": "sub"}
    assert s.restart is Restart.TRANSIENT
    assert s.shutdown_timeout == 30.0
    assert s.state_factory is not None


SHOWN = "<Hostile object; repr() raised RuntimeError>"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: spec(id=Hostile()), f"ChildSpec.id must be a non-empty string, got {SHOWN}"),
        (
            lambda: spec(factory=Hostile()),
            "ChildSpec 'w': factory must be a pykka actor class or a callable returning an "
            f"unstarted actor, got {SHOWN}",
        ),
        (
            lambda: spec(restart=Hostile()),
            "ChildSpec 'w': restart must be a Restart member (PERMANENT, TRANSIENT, "
            f"TEMPORARY), got {SHOWN}",
        ),
        (
            lambda: spec(start_timeout=Hostile()),
            f"ChildSpec 'w': start_timeout must be a finite number > 0, got {SHOWN}",
        ),
        (
            lambda: spec(state_factory=Hostile()),
            f"ChildSpec 'w': state_factory must be callable or None, got {SHOWN}",
        ),
        (
            lambda: RestartPolicy(wait=Hostile()),
            f"RestartPolicy.wait must be a tenacity wait strategy, got {SHOWN}",
        ),
        (
            lambda: RestartPolicy(max_restarts=Hostile()),
            f"RestartPolicy.max_restarts must be an int >= 0, got {SHOWN}",
        ),
        (
            lambda: Supervisor.start(Hostile()),
            f"children must be a sequence of ChildSpec, got {SHOWN}",
        ),
        (
            lambda: Supervisor.start([Hostile()]),
            f"children must contain ChildSpec objects, got {SHOWN}",
        ),
        (
            lambda: Supervisor.start([], strategy=Hostile()),
            "strategy must be a Strategy member (ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE), "
            f"got {SHOWN}",
        ),
        (
            lambda: Supervisor.start([], name=Hostile()),
            f"supervisor name must be a non-empty string, got {SHOWN}",
        ),
        (
            lambda: StopBy(Hostile()),
            f"StopBy.deadline must be a time.monotonic() value, got {SHOWN}",
        ),
        (
            lambda: ChildHandle(Hostile()),
            f"ChildHandle child_id must be a non-empty str, got {SHOWN}",
        ),
        (lambda: ChildHandle(""), "ChildHandle child_id must be a non-empty str, got ''"),
        (lambda: ChildHandle(3), "ChildHandle child_id must be a non-empty str, got 3"),
        (lambda: Kill(3), "Kill.reason must be a str, got 3"),
        (lambda: Kill(Hostile()), f"Kill.reason must be a str, got {SHOWN}"),
        (lambda: Supervisor.spec("sub", 3), "children must be a sequence of ChildSpec, got 3"),
        (
            lambda: Supervisor.spec("sub", [spec(), spec()]),
            "duplicate child id 'w': child ids must be unique",
        ),
        (
            lambda: ChildHandle("w", Hostile()),
            f"ChildHandle capacity must be an int >= 0, got {SHOWN}",
        ),
    ],
)
def test_a_value_whose_repr_raises_is_refused_with_the_specific_error(
    build: Any, message: str
) -> None:
    with pytest.raises(SupervisorError, match=f"^{re.escape(message)}$"):
        build()
    assert pykka.ActorRegistry.get_all() == []
