"""What counts as a crash and what the supervisor does about it (OTP's restart table)."""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import pykka
import pytest
from helpers import FailsToStart, Ledger, Logged, StartsOnce
from helpers import SupervisorEvents as Events
from tenacity import wait_exponential, wait_none

from supervisors import (
    ChildHandle,
    ChildInfo,
    ChildSpec,
    Kill,
    Restart,
    RestartPolicy,
    SupervisedActor,
    Supervisor,
    SupervisorError,
    SupervisorEventKind,
)
from supervisors.testing import FakeClock

TIMEOUT = 5.0
ZERO_BACKOFF = RestartPolicy(wait=wait_none(), max_restarts=1000, within_seconds=60.0)


@dataclass(frozen=True)
class Crash:
    error: BaseException


@dataclass(frozen=True)
class StopSelf:
    pass


@dataclass(frozen=True)
class Block:
    entered: threading.Event
    release: threading.Event


class Worker(SupervisedActor):
    def __init__(self, state: Ledger | None = None) -> None:
        super().__init__()
        self.state = state

    def on_receive(self, message: Any) -> Any:
        match message:
            case "ping":
                return self.actor_urn
            case "state-id":
                return id(self.state)
            case "items":
                assert self.state is not None
                return list(self.state.items)
            case ("record", item):
                assert self.state is not None
                self.state.items.append(item)
            case ("record-here", item):
                assert self.state is not None
                self.state.items.append((self.actor_urn, item))
            case ("bad-ask", text):
                raise LookupError(text)
            case Crash(error):
                raise error
            case StopSelf():
                self.stop()
            case Block(entered, release):
                entered.set()
                release.wait(TIMEOUT)
            case ("hand-over-and-raise", rest, error):
                self.hand_over(*rest)
                raise error
        return None


def start_supervisor(
    children: list[ChildSpec], events: Events | None = None, **kwargs: Any
) -> pykka.ActorRef[Supervisor]:
    kwargs.setdefault("policy", ZERO_BACKOFF)
    kwargs.setdefault("clock", FakeClock())
    kwargs.setdefault("name", "root")
    return Supervisor.start(children, watchdog_interval=None, listener=events, **kwargs)


@pytest.fixture
def events() -> Events:
    return Events()


def child(sup: pykka.ActorRef[Supervisor], child_id: str) -> ChildHandle:
    handle = sup.proxy().child(child_id).get(timeout=TIMEOUT)
    assert isinstance(handle, ChildHandle)
    return handle


# -- the restart table: restart type x exit reason ------------------------------------------

EXITS: dict[str, tuple[Any, SupervisorEventKind, str]] = {
    "normal": (StopSelf(), SupervisorEventKind.EXITED, "None"),
    "crash": (Crash(ValueError("boom")), SupervisorEventKind.CRASHED, "ValueError('boom')"),
    "kill": (Kill(), SupervisorEventKind.CRASHED, "ActorKilled('killed by a Kill message')"),
}

OUTCOME = {
    (Restart.PERMANENT, "normal"): "restarted",
    (Restart.PERMANENT, "crash"): "restarted",
    (Restart.PERMANENT, "kill"): "restarted",
    (Restart.TRANSIENT, "normal"): "stopped",
    (Restart.TRANSIENT, "crash"): "restarted",
    (Restart.TRANSIENT, "kill"): "restarted",
    (Restart.TEMPORARY, "normal"): "removed",
    (Restart.TEMPORARY, "crash"): "removed",
    (Restart.TEMPORARY, "kill"): "removed",
}


@pytest.mark.parametrize("exit_reason", list(EXITS))
@pytest.mark.parametrize("restart", list(Restart))
def test_restart_type_by_exit_reason(
    restart: Restart,
    exit_reason: str,
    events: Events,
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    sup = start_supervisor([ChildSpec("w", Worker, restart=restart)], events)
    stopper.append(sup)
    handle = child(sup, "w")
    first_urn = handle.ask("ping", timeout=TIMEOUT)
    message, exit_kind, reason_repr = EXITS[exit_reason]

    handle.tell(message)
    events.wait_for(exit_kind, "w")
    rows = sup.proxy().which_children().get(timeout=TIMEOUT)

    [exit_event] = events.of(exit_kind, "w")
    assert repr(exit_event.reason) == reason_repr
    outcome = OUTCOME[restart, exit_reason]
    if outcome == "restarted":
        new_urn = handle.ask("ping", timeout=TIMEOUT)
        assert new_urn != first_urn
        assert rows == [ChildInfo("w", "running", 1, new_urn, restart, False)]
        assert events.kinds("w") == [
            SupervisorEventKind.STARTED,
            exit_kind,
            SupervisorEventKind.RESTART_SCHEDULED,
            SupervisorEventKind.STARTED,
            SupervisorEventKind.RESTARTED,
        ]
    elif outcome == "stopped":
        assert rows == [ChildInfo("w", "stopped", 0, None, restart, False)]
        assert events.kinds("w") == [SupervisorEventKind.STARTED, exit_kind]
        expected = (
            r"^child 'w' stopped normally and is not restarted \(transient\); "
            r"call restart_child\('w'\) to start it again$"
        )
        with pytest.raises(SupervisorError, match=expected):
            handle.tell("ping")
        with pytest.raises(SupervisorError, match=expected):
            handle.ask("ping", timeout=TIMEOUT)
    else:
        assert rows == []
        assert events.kinds("w") == [SupervisorEventKind.STARTED, exit_kind]
        expected = re.escape(
            f"child 'w' is temporary and exited ({reason_repr}); it is not restarted"
        )
        expected = f"^{expected}$"
        with pytest.raises(SupervisorError, match=expected):
            handle.tell("ping")
        with pytest.raises(SupervisorError, match=expected):
            handle.ask("ping", timeout=TIMEOUT)
        with pytest.raises(
            SupervisorError, match=r"^supervisor 'root' has no child 'w' \(children: none\)$"
        ):
            sup.proxy().child("w").get(timeout=TIMEOUT)


# -- ask handlers, on_start ----------------------------------------------------------------


def test_an_exception_in_an_ask_handler_goes_to_the_caller_and_the_actor_lives_on(
    events: Events, stopper: list[pykka.ActorRef[Any]]
) -> None:
    sup = start_supervisor([ChildSpec("w", Worker)], events)
    stopper.append(sup)
    handle = child(sup, "w")
    urn = handle.ask("ping", timeout=TIMEOUT)

    with pytest.raises(LookupError, match=r"^no such key$"):
        handle.ask(("bad-ask", "no such key"), timeout=TIMEOUT)
    future = handle.ask(("bad-ask", "again"), block=False)
    with pytest.raises(LookupError, match=r"^again$"):
        future.get(timeout=TIMEOUT)

    assert handle.ask("ping", timeout=TIMEOUT) == urn
    rows = sup.proxy().which_children().get(timeout=TIMEOUT)
    assert rows == [ChildInfo("w", "running", 0, urn, Restart.PERMANENT, False)]
    assert events.kinds("w") == [SupervisorEventKind.STARTED]


def test_start_raises_what_on_start_raised() -> None:
    with pytest.raises(RuntimeError, match=r"^no database$"):
        FailsToStart.start()
    assert pykka.ActorRegistry.get_all() == []


def test_a_child_failing_to_start_fails_the_supervisor_start_and_stops_the_others() -> None:
    log: list[str] = []
    specs = [
        ChildSpec("a", Logged, kwargs={"name": "a", "log": log}),
        ChildSpec("b", Logged, kwargs={"name": "b", "log": log}),
        ChildSpec("c", FailsToStart),
        ChildSpec("d", Logged, kwargs={"name": "d", "log": log}),
    ]
    with pytest.raises(
        SupervisorError,
        match=r"^supervisor 'root': child 'c' failed to start: RuntimeError\('no database'\)$",
    ) as caught:
        start_supervisor(specs)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert log == ["start:a", "start:b", "stop:b", "stop:a"]
    assert pykka.ActorRegistry.get_all() == []


class Flaky(SupervisedActor):
    """Each start takes the next outcome from ``plan``: "ok" or "fail"."""

    def __init__(self, plan: deque[str]) -> None:
        super().__init__()
        self.plan = plan

    def on_start(self) -> None:
        outcome = self.plan.popleft()
        if outcome == "fail":
            raise RuntimeError(f"start failed ({len(self.plan)} left)")

    def on_receive(self, message: Any) -> Any:
        return self.actor_urn if message == "ping" else None


def test_a_restart_whose_on_start_raises_counts_as_a_failure_and_backs_off_further(
    events: Events, stopper: list[pykka.ActorRef[Any]]
) -> None:
    clock = FakeClock()
    plan = deque(["ok", "fail", "fail", "ok"])
    policy = RestartPolicy(
        wait=wait_exponential(multiplier=1, max=100),
        max_restarts=10,
        within_seconds=60.0,
        reset_after=60.0,
    )
    sup = start_supervisor(
        [ChildSpec("w", Flaky, kwargs={"plan": plan})], events, clock=clock, policy=policy
    )
    stopper.append(sup)
    handle = child(sup, "w")
    first_urn = handle.ask("ping", timeout=TIMEOUT)

    handle.tell(Kill())
    scheduled = []
    for _ in range(3):
        clock.wait_for_timers(1)
        [delay] = clock.pending_delays()
        scheduled.append(delay)
        clock.advance(delay)
    new_urn = handle.ask("ping", timeout=TIMEOUT)

    assert scheduled == [1.0, 2.0, 4.0]
    assert [e.delay for e in events.of(SupervisorEventKind.RESTART_SCHEDULED, "w")] == [
        1.0,
        2.0,
        4.0,
    ]
    assert [repr(e.reason) for e in events.of(SupervisorEventKind.START_FAILED, "w")] == [
        "RuntimeError('start failed (2 left)')",
        "RuntimeError('start failed (1 left)')",
    ]
    assert [e.at for e in events.of(SupervisorEventKind.RESTARTED, "w")] == [7.0]
    assert plan == deque()
    assert new_urn != first_urn
    rows = sup.proxy().which_children().get(timeout=TIMEOUT)
    assert rows == [ChildInfo("w", "running", 1, new_urn, Restart.PERMANENT, False)]


# -- what survives a crash -----------------------------------------------------------------


def test_state_handover_keeps_a_thousand_items_across_a_crash(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    sup = start_supervisor([ChildSpec("w", Worker, state_factory=Ledger)])
    stopper.append(sup)
    handle = child(sup, "w")
    first_urn = handle.ask("ping", timeout=TIMEOUT)
    state_id = handle.ask("state-id", timeout=TIMEOUT)

    for i in range(1000):
        handle.tell(("record", i))
    handle.tell(Crash(RuntimeError("crash after recording")))

    assert handle.ask("items", timeout=TIMEOUT) == list(range(1000))
    assert handle.ask("ping", timeout=TIMEOUT) != first_urn
    assert handle.ask("state-id", timeout=TIMEOUT) == state_id


def _a_blocked_worker(
    stopper: list[pykka.ActorRef[Any]],
) -> tuple[ChildHandle, str, threading.Event]:
    """A supervised worker held inside a handler: its handle, its first incarnation's
    urn, and the event that releases it."""
    sup = start_supervisor([ChildSpec("w", Worker, state_factory=Ledger)])
    stopper.append(sup)
    handle = child(sup, "w")
    first_urn: str = handle.ask("ping", timeout=TIMEOUT)
    entered, release = threading.Event(), threading.Event()
    handle.tell(Block(entered, release))
    assert entered.wait(TIMEOUT)
    return handle, first_urn, release


def test_messages_left_in_a_killed_incarnations_inbox_reach_the_next_one(
    stopper: list[pykka.ActorRef[Any]],
) -> None:
    handle, first_urn, release = _a_blocked_worker(stopper)
    handle.tell(Kill())
    for i in range(5):
        handle.tell(("record-here", i))
    answer = handle.ask("ping", block=False)
    release.set()

    new_urn = answer.get(timeout=TIMEOUT)
    assert new_urn != first_urn
    assert handle.ask("items", timeout=TIMEOUT) == [(new_urn, i) for i in range(5)]


@pytest.mark.parametrize("how", ["told", "asked"])
def test_messages_handed_over_before_a_crash_come_first_in_the_next_incarnation(
    how: str, stopper: list[pykka.ActorRef[Any]]
) -> None:
    # `hand_over`: what an incarnation took but will not handle (the rest of a batch)
    # goes to the next one ahead of its inbox's leftovers; an asked handler that raises
    # crashes nothing, and what it handed over is handled after the inbox.
    handle, first_urn, release = _a_blocked_worker(stopper)
    rest = (("record-here", "a"), ("record-here", "b"))
    message = ("hand-over-and-raise", rest, RuntimeError("mid-batch"))
    asked = handle.ask(message, block=False) if how == "asked" else None
    if asked is None:
        handle.tell(message)
    handle.tell(("record-here", "left in the inbox"))
    release.set()

    if asked is not None:
        with pytest.raises(RuntimeError, match=r"^mid-batch$"):
            asked.get(timeout=TIMEOUT)
    urn = handle.ask("ping", timeout=TIMEOUT)
    order = ["a", "b", "left in the inbox"] if how == "told" else ["left in the inbox", "a", "b"]
    assert handle.ask("items", timeout=TIMEOUT) == [(urn, item) for item in order]
    assert (urn != first_urn) is (how == "told")


# -- a BaseException is contained to its actor -----------------------------------------------


class Doom(BaseException):
    pass


@pytest.mark.parametrize("error", [SystemExit(3), Doom("the end")], ids=repr)
def test_a_base_exception_in_one_child_stops_neither_siblings_nor_other_supervisors(
    error: BaseException, events: Events, stopper: list[pykka.ActorRef[Any]]
) -> None:
    sup = start_supervisor([ChildSpec("a", Worker), ChildSpec("b", Worker)], events)
    stopper.append(sup)
    other = start_supervisor([ChildSpec("c", Worker)], name="other")
    stopper.append(other)
    a, b, c = child(sup, "a"), child(sup, "b"), child(other, "c")
    urns = [h.ask("ping", timeout=TIMEOUT) for h in (a, b, c)]

    a.tell(Crash(error))
    events.wait_for(SupervisorEventKind.RESTARTED, "a")

    assert b.ask("ping", timeout=TIMEOUT) == urns[1]
    assert c.ask("ping", timeout=TIMEOUT) == urns[2]
    new_a = a.ask("ping", timeout=TIMEOUT)
    assert new_a != urns[0]
    [crashed] = events.of(SupervisorEventKind.CRASHED, "a")
    assert crashed.reason is error
    assert sup.is_alive()
    assert other.is_alive()
    assert [r.restarts for r in sup.proxy().which_children().get(timeout=TIMEOUT)] == [1, 0]


class DoomWhenIdle(SupervisedActor):
    """Its idle hook raises a `Doom` the first time it runs (its state remembers)."""

    def __init__(self, state: Ledger) -> None:
        super().__init__()
        self.state = state

    def on_receive(self, message: Any) -> Any:
        return self.actor_urn

    def on_idle(self) -> None:
        if not self.state.items:
            self.state.items.append("doomed")
            raise Doom("idle")


def test_a_base_exception_in_the_idle_hook_is_a_crash_of_its_actor(
    events: Events, stopper: list[pykka.ActorRef[Any]]
) -> None:
    # The idle hook (`on_idle`, run when the mailbox runs dry) raises a BaseException:
    # its actor crashes and is restarted, as for one raised by a handler. Before, it
    # escaped the actor's loop: its thread died with no teardown, the supervisor never
    # heard (no restart), and the messages told to it afterwards waited for ever.
    sup = start_supervisor([ChildSpec("a", DoomWhenIdle, state_factory=Ledger)], events)
    stopper.append(sup)
    a = child(sup, "a")
    first = a.ask("ping", timeout=TIMEOUT)  # answered, then the mailbox is dry: the hook
    events.wait_for(SupervisorEventKind.RESTARTED, "a")
    assert a.ask("ping", timeout=TIMEOUT) != first
    [crashed] = events.of(SupervisorEventKind.CRASHED, "a")
    assert repr(crashed.reason) == "Doom('idle')"


# -- no leaks over many cycles ----------------------------------------------------------------


def test_two_hundred_crash_restart_cycles_leave_no_threads_and_no_dead_actors(
    events: Events, stopper: list[pykka.ActorRef[Any]]
) -> None:
    sup = start_supervisor([ChildSpec("a", Worker), ChildSpec("b", Worker)], events)
    stopper.append(sup)
    a, b = child(sup, "a"), child(sup, "b")
    b_urn = b.ask("ping", timeout=TIMEOUT)
    threads_before = set(threading.enumerate())
    seen = {a.ask("ping", timeout=TIMEOUT)}

    for i in range(200):
        a.tell(Kill() if i % 2 else Crash(RuntimeError(f"crash {i}")))
        seen.add(a.ask("ping", timeout=TIMEOUT))

    assert len(seen) == 201
    assert len(events.of(SupervisorEventKind.RESTARTED, "a")) == 200
    counts = sup.proxy().count_children().get(timeout=TIMEOUT)
    assert (counts.specs, counts.active, counts.restarting) == (2, 2, 0)
    a_urn = a.actor_urn
    assert a_urn is not None
    live = pykka.ActorRegistry.get_all()
    # The supervisor plus its live children, and nothing else.
    assert len(live) == 1 + counts.active
    assert {ref.actor_urn for ref in live} == {sup.actor_urn, a_urn, b_urn}
    # The crashed incarnations' threads are gone (each joined with a bound).
    current = f"Worker-{a_urn[-12:]}"  # the thread of a's current incarnation
    extra = [t for t in threading.enumerate() if t not in threads_before]
    assert current in [t.name for t in extra]
    for thread in extra:
        if thread.name != current:
            thread.join(TIMEOUT)
    assert [t.name for t in extra if t.is_alive()] == [current]
    assert threading.active_count() == len(threads_before)


def test_failed_restarts_with_zero_backoff_retry_until_the_intensity_escalates(
    events: Events, stopper: list[pykka.ActorRef[Any]]
) -> None:
    errors: list[BaseException] = []
    escalated = threading.Event()

    def on_escalation(error: BaseException) -> None:
        errors.append(error)
        escalated.set()

    policy = RestartPolicy(wait=wait_none(), max_restarts=1000, within_seconds=60.0)
    sup = start_supervisor(
        [ChildSpec("w", StartsOnce, state_factory=Ledger)],
        events,
        policy=policy,
        on_escalation=on_escalation,
    )
    stopper.append(sup)
    handle = child(sup, "w")
    handle.tell(Kill())
    pending = handle.ask("ping", block=False)  # never handled: no incarnation starts again
    assert escalated.wait(TIMEOUT)

    message = (
        "restart intensity exceeded: 1001 restarts in 60.0s (max 1000) for child 'w' of "
        "supervisor 'root'; last reason: RuntimeError('start 1001 failed')"
    )
    assert [str(e) for e in errors] == [message]
    assert len(events.of(SupervisorEventKind.START_FAILED, "w")) == 1000
    with pytest.raises(SupervisorError, match=f"^{re.escape(message)}$"):
        pending.get(timeout=TIMEOUT)
