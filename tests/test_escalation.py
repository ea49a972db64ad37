"""Escalation through the public API: a child that cannot start again fails the system.

The task manager starts once, then every later start raises. After a `Kill`, its
restarts exhaust the restart intensity (2 restarts within 1 s of fake time); the root
supervisor escalates and the system fails every call still waiting and every later call
with an `ActorSystemError` naming the child and the reason. Time is a `FakeClock`: the
test moves it from one backoff timer to the next, and the whole escalation takes less
than one second of it. Nothing here waits without a bound.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from helpers import SupervisorEvents as Events
from helpers import Unprintable, gated, returns

from actors import ActorSystem, ActorSystemError, TaskStatus
from actors.runtime._manager import TaskManagerActor
from supervisors import Kill, SupervisorEvent, SupervisorEventKind
from supervisors.testing import FakeClock

WAIT = 5.0
"""Upper bound, in real seconds, on waiting for anything here."""

MAX_RESTARTS = 2
WITHIN = 1.0

START_TEXT = "task_manager cannot start: its database is gone"
# raised fresh each time: a module-level instance would keep the traceback of its
# last raise (and the system in its frames) alive for the whole session

FAILURE = (
    "the actor system failed: child 'task_manager' exhausted its restarts "
    f"(3 in {WITHIN}s, max {MAX_RESTARTS}); last reason: {RuntimeError(START_TEXT)!r}"
)


CONFIG = {
    "RESTART_MAX_RESTARTS": MAX_RESTARTS,
    "RESTART_WITHIN_SECONDS": WITHIN,
    "RESTART_BACKOFF_INITIAL": 0.01,
    "RESTART_BACKOFF_MAX": 0.1,
    "CLEANUP_INTERVAL": 0,  # no cleanup timers among the ones the test waits on
}


class FailingRestarts:
    """Patches the system so that its task manager starts once and every later start
    raises ``error()``, counting the starts in ``starts``; ``events`` records every
    event of the system's root supervisor (which the system still handles)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: Callable[[], Exception]) -> None:
        self.starts = 0
        self.events = Events()
        original_on_start = TaskManagerActor.on_start
        original_listener = ActorSystem._supervisor_event

        def on_start(actor: TaskManagerActor) -> None:
            self.starts += 1
            if self.starts > 1:
                raise error()
            original_on_start(actor)

        def listener(system: ActorSystem, event: SupervisorEvent) -> None:
            self.events(event)
            original_listener(system, event)

        monkeypatch.setattr(TaskManagerActor, "on_start", on_start)
        monkeypatch.setattr(ActorSystem, "_supervisor_event", listener)

    async def until_escalated(self, clock: FakeClock) -> list[float]:
        """After the task manager's crash: moves ``clock`` to each restart's timer
        until the root supervisor escalates; the steps it moved."""
        steps: list[float] = []
        for restart in range(1, MAX_RESTARTS + 1):
            await asyncio.to_thread(
                self.events.wait_for, SupervisorEventKind.RESTART_SCHEDULED, None, restart
            )
            steps.append(await advance_to_next_timer(clock))
        await asyncio.to_thread(self.events.wait_for, SupervisorEventKind.ESCALATED)
        return steps


async def advance_to_next_timer(clock: FakeClock) -> float:
    """Wait (in real time, bounded) until a timer is armed, then move time to it."""
    await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)
    deadline = clock.next_deadline()
    assert deadline is not None
    step = max(0.0, deadline - clock.monotonic())
    clock.advance(step)
    return step


async def test_a_child_that_cannot_restart_fails_every_pending_and_later_call(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    restarts = FailingRestarts(monkeypatch, lambda: RuntimeError(START_TEXT))
    events = restarts.events

    release = asyncio.Event()
    started = asyncio.Event()

    clock = FakeClock()
    system = ActorSystem(CONFIG, clock=clock)
    async with system:
        tm = system.task_manager
        running = await tm.register_task("running", gated(started, release, "late"))
        pending = await tm.register_task("pending", returns(1), dependencies=[running])
        assert await tm.execute_task(running) is True
        await asyncio.wait_for(started.wait(), WAIT)
        waiting = asyncio.ensure_future(tm.wait_for_task(running))
        executing = asyncio.ensure_future(tm.execute_task(pending, wait=True))
        # Both calls have reached the task manager before it is killed.
        assert await tm.get_task_status(running) is TaskStatus.RUNNING
        assert await tm.get_task_status(pending) is TaskStatus.WAITING

        system.supervisor.child("task_manager").tell(Kill())
        # Calls made while the child is down are buffered for its next incarnation.
        buffered = asyncio.ensure_future(tm.get_task(pending))

        steps = await restarts.until_escalated(clock)
        fake_elapsed = sum(steps)
        assert fake_elapsed < 1.0
        assert restarts.starts == 1 + MAX_RESTARTS
        assert events.kinds("task_manager") == [
            SupervisorEventKind.STARTED,
            SupervisorEventKind.CRASHED,
            SupervisorEventKind.RESTART_SCHEDULED,
            SupervisorEventKind.START_FAILED,
            SupervisorEventKind.RESTART_SCHEDULED,
            SupervisorEventKind.START_FAILED,
            SupervisorEventKind.INTENSITY_EXCEEDED,
            SupervisorEventKind.ESCALATED,
        ]
        # The other children were stopped in reverse start order.
        assert [e.child_id for e in events.of(SupervisorEventKind.STOPPED)] == [
            "facade",
            "legacy_task_manager",
            "thread_pool",
            "task_monitor",
        ]

        # Every call that was waiting fails with the system's failure, without a hang.
        for pending_call in (waiting, executing, buffered):
            with pytest.raises(ActorSystemError, match=f"^{re.escape(FAILURE)}$"):
                await asyncio.wait_for(pending_call, WAIT)
        assert system.running is False
        root = system.supervisor.actor_ref
        assert await asyncio.to_thread(root.actor_stopped.wait, WAIT)
        with pytest.raises(ActorSystemError, match=f"^{re.escape(FAILURE)}$"):
            await system.supervisor.which_children()

        # Every later call fails the same way, at once.
        later_calls: list[Any] = [
            tm.register_task("later", returns(1)),
            tm.execute_task(pending),
            tm.wait_for_task(running),
            tm.get_task(running),
            tm.get_all_tasks(),
            tm.cancel_task(running),
            tm.cleanup_completed_tasks(0.0),
            tm.get_metrics(),
            tm.use_new_task_system(False),
            tm.thread_pool.submit(int, "1"),
        ]
        for later in later_calls:
            with pytest.raises(ActorSystemError, match=f"^{re.escape(FAILURE)}$") as caught:
                await asyncio.wait_for(later, WAIT)
            # An error of its own (its traceback is this call's), with the failure's cause.
            assert caught.value is not system._failure
            assert system._failure is not None
            assert caught.value.__cause__ is system._failure.__cause__
        release.set()

    # Shutdown after the failure is clean (the leak fixture checks threads and actors)
    # and idempotent; the coroutine released above has finished on this loop.
    await system.shutdown()
    with capsys.disabled():
        print(
            f"\nescalation: 1 kill, {restarts.starts - 1} failed restarts, "
            f"{fake_elapsed:.3f}s of fake time ({', '.join(f'{s:.3f}' for s in steps)}), "
            f"3 pending + {len(later_calls)} later calls failed with ActorSystemError"
        )


async def test_a_last_reason_whose_repr_raises_still_fails_the_system_naming_the_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The system's failure message showed the last reason with !r: building it raised
    # in the escalation callback, so the system never recorded its failure.
    restarts = FailingRestarts(monkeypatch, Unprintable)
    clock = FakeClock()
    failure = (
        "the actor system failed: child 'task_manager' exhausted its restarts "
        f"(3 in {WITHIN}s, max {MAX_RESTARTS}); "
        "last reason: <Unprintable object; repr() raised RuntimeError>"
    )
    async with ActorSystem(CONFIG, clock=clock) as system:
        system.supervisor.child("task_manager").tell(Kill())
        await restarts.until_escalated(clock)
        assert restarts.starts == 1 + MAX_RESTARTS
        with pytest.raises(ActorSystemError, match=f"^{re.escape(failure)}$"):
            await asyncio.wait_for(system.task_manager.get_all_tasks(), WAIT)
        assert system.running is False


KILLED = (
    "the actor system failed: child 'task_manager' exhausted its restarts "
    "(1 in 5.0s, max 0); last reason: ActorKilled('killed by a Kill message')"
)


@pytest.fixture
async def failed_system() -> AsyncIterator[ActorSystem]:
    """A system that failed (`KILLED`): its task manager was killed, no restart allowed;
    its root supervisor has stopped."""
    config = {"RESTART_MAX_RESTARTS": 0, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=FakeClock()) as system:
        root = system.supervisor.actor_ref
        system.supervisor.child("task_manager").tell(Kill())
        assert await asyncio.to_thread(root.actor_stopped.wait, WAIT)
        yield system


async def test_a_failed_system_refuses_to_serve_a_dashboard_saying_why(
    failed_system: ActorSystem,
) -> None:
    # serve_dashboard checked only for a shut-down system: a failed one served a
    # dashboard whose every request failed.
    pytest.importorskip("starlette")
    system = failed_system
    assert system.running is False
    with pytest.raises(ActorSystemError, match=f"^{re.escape(KILLED)}$"):
        system.serve_dashboard(port=0)
    with pytest.raises(ActorSystemError, match=f"^{re.escape(KILLED)}$"):
        await system.task_manager.get_all_tasks()


async def test_the_supervisor_of_a_failed_system_says_the_system_failed(
    failed_system: ActorSystem,
) -> None:
    # which_children()/count_children() said only 'the root supervisor is stopped'.
    system = failed_system
    for query in (system.supervisor.which_children, system.supervisor.count_children):
        with pytest.raises(ActorSystemError, match=f"^{re.escape(KILLED)}$"):
            await query()
