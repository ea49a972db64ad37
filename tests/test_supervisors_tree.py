"""Supervision trees: a child supervisor that gives up is restarted by its parent."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pykka
import pytest
from helpers import Escalations, Logged
from helpers import SupervisorEvents as Events
from tenacity import wait_none

from supervisors import (
    ChildHandle,
    ChildSpec,
    Kill,
    RestartIntensityExceeded,
    RestartPolicy,
    Supervisor,
    SupervisorEventKind,
)
from supervisors.testing import FakeClock

TIMEOUT = 5.0


class Tree:
    """root -> [w, sub -> [g1, g2]]; sub tolerates one restart in 5 s."""

    def __init__(self, root_max_restarts: int = 3) -> None:
        self.log: list[str] = []
        self.clock = FakeClock()
        self.root_events = Events()
        self.escalations = Escalations()
        sub = Supervisor.spec(
            "sub",
            [self.logged("g1"), self.logged("g2")],
            policy=RestartPolicy(wait=wait_none(), max_restarts=1, within_seconds=5.0),
            clock=self.clock,
            watchdog_interval=None,
        )
        self.ref = Supervisor.start(
            [self.logged("w"), sub],
            policy=RestartPolicy(wait=wait_none(), max_restarts=root_max_restarts),
            clock=self.clock,
            watchdog_interval=None,
            name="root",
            listener=self.root_events,
            on_escalation=self.escalations,
        )
        self.w = self.handle("w")
        self.sub = self.handle("sub")
        self.g1: ChildHandle = self.sub.call("child", "g1").get(timeout=TIMEOUT)
        self.g2: ChildHandle = self.sub.call("child", "g2").get(timeout=TIMEOUT)

    def logged(self, name: str) -> ChildSpec:
        return ChildSpec(name, Logged, kwargs={"name": name, "log": self.log})

    def handle(self, child_id: str) -> ChildHandle:
        return self.ref.proxy().child(child_id).get(timeout=TIMEOUT)  # type: ignore[no-any-return]


@pytest.fixture
def tree(request: pytest.FixtureRequest) -> Iterator[Tree]:
    t = Tree(getattr(request, "param", 3))
    yield t
    t.ref.stop(timeout=TIMEOUT)


def test_an_escalating_child_supervisor_is_restarted_by_its_parent(tree: Tree) -> None:
    urns = {name: h.ask("ping", timeout=TIMEOUT) for name, h in [("w", tree.w), ("g2", tree.g2)]}
    sub_urn = tree.sub.actor_urn
    tree.g1.tell(Kill())
    tree.g1.ask("ping", timeout=TIMEOUT)  # one restart: within sub's intensity
    tree.log.clear()

    tree.g1.tell(Kill())  # the second restart in 5 s: sub gives up
    tree.root_events.wait_for(SupervisorEventKind.RESTARTED)

    # Handles to grandchildren obtained before the escalation reach the new incarnations.
    new_g1 = tree.g1.ask("ping", timeout=TIMEOUT)
    new_g2 = tree.g2.ask("ping", timeout=TIMEOUT)
    assert new_g2 != urns["g2"]
    assert new_g1 == tree.g1.actor_urn
    assert tree.w.ask("ping", timeout=TIMEOUT) == urns["w"]
    assert tree.sub.actor_urn not in (None, sub_urn)
    assert tree.log == ["crash:g1", "stop:g2", "start:g1", "start:g2"]

    [crashed] = tree.root_events.of(SupervisorEventKind.CRASHED)
    assert crashed.child_id == "sub"
    assert isinstance(crashed.reason, RestartIntensityExceeded)
    assert str(crashed.reason) == (
        "restart intensity exceeded: 2 restarts in 5.0s (max 1) for child 'g1' of "
        "supervisor 'sub'; last reason: ActorKilled('killed by a Kill message')"
    )
    rows = tree.ref.proxy().which_children().get(timeout=TIMEOUT)
    assert [(r.id, r.status, r.restarts, r.is_supervisor) for r in rows] == [
        ("w", "running", 0, False),
        ("sub", "running", 1, True),
    ]
    sub_rows = tree.sub.call("which_children").get(timeout=TIMEOUT)
    assert [(r.id, r.status, r.restarts, r.actor_urn) for r in sub_rows] == [
        ("g1", "running", 0, new_g1),
        ("g2", "running", 0, new_g2),
    ]
    assert tree.escalations.errors == []


@pytest.mark.parametrize("tree", [0], indirect=True)
def test_a_root_escalation_fails_the_grandchildren_handles_too(tree: Tree) -> None:
    tree.w.tell(Kill())
    assert tree.escalations.done.wait(TIMEOUT)
    assert tree.ref.actor_stopped.wait(TIMEOUT)

    message = (
        "restart intensity exceeded: 1 restart in 5.0s (max 0) for child 'w' of "
        "supervisor 'root'; last reason: ActorKilled('killed by a Kill message')"
    )
    for handle in (tree.w, tree.sub, tree.g1, tree.g2):
        with pytest.raises(RestartIntensityExceeded, match=f"^{re.escape(message)}$"):
            handle.ask("ping", timeout=TIMEOUT)
    assert tree.log == [
        "start:w",
        "start:g1",
        "start:g2",
        "crash:w",
        "stop:g2",
        "stop:g1",
    ]
    assert pykka.ActorRegistry.get_all() == []
