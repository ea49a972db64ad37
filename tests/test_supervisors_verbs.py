"""OTP's supervisor verbs: which_children, count_children, start/terminate/restart/delete_child."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from helpers import FailsToStart, Hostile, Logged
from tenacity import wait_fixed

from supervisors import (
    ChildCounts,
    ChildHandle,
    ChildInfo,
    ChildSpec,
    ChildSpecError,
    ChildStatus,
    Kill,
    Restart,
    RestartPolicy,
    Supervisor,
    SupervisorError,
)
from supervisors.testing import FakeClock

TIMEOUT = 5.0


def logged(child_id: str, log: list[str], **kwargs: Any) -> ChildSpec:
    return ChildSpec(child_id, Logged, kwargs={"name": child_id, "log": log}, **kwargs)


class Tree:
    """A root supervisor with two workers and one nested supervisor."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.clock = FakeClock()
        self.ref = Supervisor.start(
            [
                logged("a", self.log),
                logged("b", self.log, restart=Restart.TRANSIENT),
                Supervisor.spec(
                    "sub", [logged("g", self.log)], clock=self.clock, watchdog_interval=None
                ),
            ],
            policy=RestartPolicy(wait=wait_fixed(5)),
            clock=self.clock,
            watchdog_interval=None,
            name="root",
        )
        self.sup = self.ref.proxy()

    def handle(self, child_id: str) -> ChildHandle:
        return self.sup.child(child_id).get(timeout=TIMEOUT)  # type: ignore[no-any-return]

    def rows(self) -> list[tuple[str, str, int]]:
        return [
            (r.id, r.status, r.restarts) for r in self.sup.which_children().get(timeout=TIMEOUT)
        ]


@pytest.fixture
def tree() -> Iterator[Tree]:
    t = Tree()
    yield t
    t.ref.stop(timeout=TIMEOUT)


def test_which_children_and_count_children(tree: Tree) -> None:
    a, b, sub = tree.handle("a"), tree.handle("b"), tree.handle("sub")
    rows = tree.sup.which_children().get(timeout=TIMEOUT)
    assert rows == [
        ChildInfo("a", "running", 0, a.actor_urn, Restart.PERMANENT, False),
        ChildInfo("b", "running", 0, b.actor_urn, Restart.TRANSIENT, False),
        ChildInfo("sub", "running", 0, sub.actor_urn, Restart.PERMANENT, True),
    ]
    assert tree.sup.count_children().get(timeout=TIMEOUT) == ChildCounts(
        specs=3, active=3, restarting=0, stopped=0, supervisors=1, workers=2
    )

    a.tell(Kill())
    tree.clock.wait_for_timers(1)
    tree.sup.terminate_child("b").get(timeout=TIMEOUT)
    assert tree.rows() == [("a", "restarting", 0), ("b", "stopped", 0), ("sub", "running", 0)]
    assert tree.sup.count_children().get(timeout=TIMEOUT) == ChildCounts(
        specs=3, active=1, restarting=1, stopped=1, supervisors=1, workers=2
    )

    tree.clock.advance(5)
    a.ask("ping", timeout=TIMEOUT)
    assert tree.rows() == [("a", "running", 1), ("b", "stopped", 0), ("sub", "running", 0)]


def test_start_child_adds_and_starts_a_child_at_the_end(tree: Tree) -> None:
    handle = tree.sup.start_child(logged("c", tree.log)).get(timeout=TIMEOUT)
    assert isinstance(handle, ChildHandle)
    assert handle is tree.handle("c")
    assert handle.ask("ping", timeout=TIMEOUT) == handle.actor_urn
    assert tree.log[-1] == "start:c"
    assert [r[0] for r in tree.rows()] == ["a", "b", "sub", "c"]

    tree.ref.stop(timeout=TIMEOUT)
    assert tree.log[-4:] == ["stop:c", "stop:g", "stop:b", "stop:a"]


def test_start_child_with_a_taken_id_is_refused(tree: Tree) -> None:
    before = tree.handle("a").actor_urn
    with pytest.raises(
        ChildSpecError, match=r"^duplicate child id 'a': supervisor 'root' already has it$"
    ):
        tree.sup.start_child(logged("a", tree.log)).get(timeout=TIMEOUT)
    with pytest.raises(ChildSpecError, match=r"^start_child needs a ChildSpec, got 'a'$"):
        tree.sup.start_child("a").get(timeout=TIMEOUT)
    assert tree.handle("a").actor_urn == before
    assert [r[0] for r in tree.rows()] == ["a", "b", "sub"]


def test_start_child_that_fails_to_start_is_not_kept(tree: Tree) -> None:
    with pytest.raises(
        SupervisorError, match=r"^child 'bad' failed to start: RuntimeError\('no database'\)$"
    ):
        tree.sup.start_child(ChildSpec("bad", FailsToStart)).get(timeout=TIMEOUT)
    assert [r[0] for r in tree.rows()] == ["a", "b", "sub"]


def test_terminate_child_stops_it_and_its_handle_says_to_restart_it(tree: Tree) -> None:
    a = tree.handle("a")
    tree.sup.terminate_child("a").get(timeout=TIMEOUT)

    assert tree.log[-1] == "stop:a"
    assert tree.sup.which_children().get(timeout=TIMEOUT)[0] == ChildInfo(
        "a", "stopped", 0, None, Restart.PERMANENT, False
    )
    assert a.status is ChildStatus.STOPPED
    message = r"^child 'a' was terminated; restart_child\('a'\) starts it again$"
    with pytest.raises(SupervisorError, match=message):
        a.tell("ping")
    with pytest.raises(SupervisorError, match=message):
        a.ask("ping", timeout=TIMEOUT)
    with pytest.raises(SupervisorError, match=message):
        a.proxy().anything().get(timeout=TIMEOUT)


def test_terminate_child_during_backoff_cancels_the_restart(tree: Tree) -> None:
    a = tree.handle("a")
    a.tell(Kill())
    tree.clock.wait_for_timers(1)
    pending = a.ask("ping", block=False)

    tree.sup.terminate_child("a").get(timeout=TIMEOUT)

    assert tree.clock.pending() == 0
    with pytest.raises(SupervisorError, match=r"^child 'a' was terminated; "):
        pending.get(timeout=TIMEOUT)
    tree.clock.advance(10)
    assert tree.rows()[0] == ("a", "stopped", 0)


def test_terminate_child_removes_a_temporary_child(tree: Tree) -> None:
    handle = tree.sup.start_child(logged("t", tree.log, restart=Restart.TEMPORARY)).get(
        timeout=TIMEOUT
    )
    tree.sup.terminate_child("t").get(timeout=TIMEOUT)
    assert [r[0] for r in tree.rows()] == ["a", "b", "sub"]
    with pytest.raises(SupervisorError, match=r"^child 't' was terminated; "):
        handle.tell("ping")


def test_restart_child_starts_a_terminated_child_behind_the_same_handle(tree: Tree) -> None:
    a = tree.handle("a")
    old = a.ask("ping", timeout=TIMEOUT)
    tree.sup.terminate_child("a").get(timeout=TIMEOUT)

    again = tree.sup.restart_child("a").get(timeout=TIMEOUT)

    assert again is a
    new = a.ask("ping", timeout=TIMEOUT)
    assert new != old
    assert tree.log[-2:] == ["stop:a", "start:a"]
    assert tree.sup.which_children().get(timeout=TIMEOUT)[0] == ChildInfo(
        "a", "running", 0, new, Restart.PERMANENT, False
    )


def test_restart_child_refuses_a_running_child(tree: Tree) -> None:
    with pytest.raises(
        SupervisorError, match=r"^child 'a' is running; only a stopped child can be restarted$"
    ):
        tree.sup.restart_child("a").get(timeout=TIMEOUT)


def test_delete_child_only_when_stopped(tree: Tree) -> None:
    b = tree.handle("b")
    with pytest.raises(
        SupervisorError, match=r"^child 'b' is running; terminate_child it before deleting$"
    ):
        tree.sup.delete_child("b").get(timeout=TIMEOUT)

    tree.sup.terminate_child("b").get(timeout=TIMEOUT)
    tree.sup.delete_child("b").get(timeout=TIMEOUT)

    assert [r[0] for r in tree.rows()] == ["a", "sub"]
    with pytest.raises(SupervisorError, match=r"^child 'b' was deleted$"):
        b.tell("ping")
    with pytest.raises(
        SupervisorError,
        match=r"^supervisor 'root' has no child 'b' \(children: 'a', 'sub'\)$",
    ):
        tree.sup.child("b").get(timeout=TIMEOUT)
    # The id is free again.
    fresh = tree.sup.start_child(logged("b", tree.log)).get(timeout=TIMEOUT)
    assert fresh is not b
    assert fresh.ask("ping", timeout=TIMEOUT) == fresh.actor_urn


@pytest.mark.parametrize("verb", ["child", "terminate_child", "restart_child", "delete_child"])
def test_verbs_on_an_unknown_child_name_it(tree: Tree, verb: str) -> None:
    message = "supervisor 'root' has no child 'nope' (children: 'a', 'b', 'sub')"
    with pytest.raises(SupervisorError, match=f"^{re.escape(message)}$"):
        getattr(tree.sup, verb)("nope").get(timeout=TIMEOUT)
    assert tree.ref.is_alive()


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        (["a"], "['a'] (list)"),
        ({"a": 1}, "{'a': 1} (dict)"),
        (Hostile(), "<Hostile object; repr() raised RuntimeError> (Hostile)"),
    ],
)
@pytest.mark.parametrize("verb", ["child", "terminate_child", "restart_child", "delete_child"])
def test_verbs_refuse_an_id_that_is_no_str_and_change_nothing(
    tree: Tree, verb: str, bad: object, shown: str
) -> None:
    before = tree.sup.which_children().get(timeout=TIMEOUT)
    message = f"supervisor 'root': a child id is a str, got {shown}"
    with pytest.raises(SupervisorError, match=f"^{re.escape(message)}$"):
        getattr(tree.sup, verb)(bad).get(timeout=TIMEOUT)
    assert tree.sup.which_children().get(timeout=TIMEOUT) == before
    assert tree.ref.is_alive()


def test_handles_of_a_stopped_supervisor_fail(tree: Tree) -> None:
    a, g = tree.handle("a"), tree.handle("sub").call("child", "g").get(timeout=TIMEOUT)
    tree.ref.stop(timeout=TIMEOUT)
    for handle in (a, g):
        with pytest.raises(SupervisorError, match=r"^supervisor 'root' stopped$"):
            handle.tell("ping")
    assert pykka.ActorRegistry.get_all() == []
