"""A durable registration's route in the facade (issue 13): forwarded as it is, the
manager dropping the route of a task it refuses, and keeping that of one it holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import WAIT, add, journal_config

from actors import (
    ActorSystem,
    DuplicateTaskError,
    SystemOverloadedError,
    TaskNotFoundError,
    TaskStatus,
)
from actors.runtime import messages
from actors.runtime._facade import FacadeActor
from supervisors.testing import FakeClock


async def test_a_durable_registration_its_manager_refuses_leaves_no_routing_entry(
    tmp_path: Path, backend: str
) -> None:
    """Here the manager refuses a dependency the facade still routes but it no longer
    has: the facade forgets the new id again, and a later registration may take it."""
    config = journal_config(tmp_path / "tasks.db", USE_NEW_TASK_SYSTEM=backend == "new")
    async with ActorSystem(config, clock=FakeClock()) as system:
        tm = system.task_manager
        assert system._state is not None
        owners = system._state.states["facade"].owners
        owners["ghost"] = backend  # gone from the manager
        with pytest.raises(TaskNotFoundError, match=r"^dependency 'ghost' of task 'r' is not"):
            await asyncio.wait_for(
                tm.register_task("r", add, (1, 2), dependencies=["ghost"], task_id="r"), WAIT
            )
        await asyncio.wait_for(tm.get_metrics(), WAIT)  # the facade took the manager's Forget
        assert sorted(owners) == ["ghost"]
        assert await asyncio.wait_for(tm.register_task("r", add, (3, 4), task_id="r"), WAIT) == "r"
        assert await asyncio.wait_for(tm.execute_task("r", wait=True), WAIT) == 7
        assert owners["r"] == backend


async def test_a_durable_registration_refused_as_a_duplicate_keeps_the_route(
    tmp_path: Path, backend: str
) -> None:
    """An id the manager holds, registered again with another definition: refused, and
    the task stays routed (and found)."""
    config = journal_config(tmp_path / "tasks.db", USE_NEW_TASK_SYSTEM=backend == "new")
    async with ActorSystem(config, clock=FakeClock()) as system:
        tm = system.task_manager
        assert system._state is not None
        owners = system._state.states["facade"].owners
        assert await asyncio.wait_for(tm.register_task("a", add, (1, 2), task_id="a"), WAIT) == "a"
        with pytest.raises(DuplicateTaskError, match=r"^task id 'a' is journaled with another"):
            await asyncio.wait_for(tm.register_task("a", add, (5, 6), task_id="a"), WAIT)
        await asyncio.wait_for(tm.get_metrics(), WAIT)
        assert owners == {"a": backend}
        assert await asyncio.wait_for(tm.execute_task("a", wait=True), WAIT) == 3


async def test_a_durable_registration_with_its_id_is_forwarded_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No reply wrapper nor second message per durable task: the manager gets the very
    `messages.Register` the caller sent, its reply the caller's own."""
    seen: list[messages.Register] = []
    forward = FacadeActor._to

    def spy(self: FacadeActor, backend: str, message: object) -> None:
        if type(message) is messages.Register:
            seen.append(message)
        forward(self, backend, message)

    monkeypatch.setattr(FacadeActor, "_to", spy)
    sent: list[messages.Register] = []
    receive = FacadeActor._register

    def register(self: FacadeActor, message: messages.Register) -> None:
        sent.append(message)
        receive(self, message)

    monkeypatch.setattr(FacadeActor, "_register", register)
    async with ActorSystem(journal_config(tmp_path / "tasks.db"), clock=FakeClock()) as system:
        tm = system.task_manager
        assert await asyncio.wait_for(tm.register_task("a", add, (1, 2), task_id="a"), WAIT) == "a"
        assert await asyncio.wait_for(tm.register_task("b", add, (3, 4)), WAIT) != "b"
    assert len(sent) == 2
    assert [m is s for m, s in zip(seen, sent, strict=True)] == [True, True]
    assert [m.journal is not None for m in seen] == [True, True]


async def test_a_durable_registration_refused_for_room_leaves_no_route(
    tmp_path: Path, backend: str
) -> None:
    """The manager's full restart buffer refuses a durable registration of a new id
    (`SystemOverloadedError`): it never reaches the manager. The facade cannot tell a new
    id from one the manager holds (a durable registration of a routed id goes on to its
    manager), so it asks the manager (`messages.Unrouted`), which tells it to forget the
    id it does not hold once it is back."""
    from supervisors import Kill

    clock = FakeClock()
    config = journal_config(
        tmp_path / "tasks.db",
        USE_NEW_TASK_SYSTEM=backend == "new",
        MAILBOX_BUFFER_CAPACITY=1,
        RESTART_BACKOFF_INITIAL=1.0,
    )
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        assert system._state is not None
        owners = system._state.states["facade"].owners
        assert await asyncio.wait_for(tm.register_task("a", add, (1, 2), task_id="a"), WAIT) == "a"
        manager = "task_manager" if backend == "new" else "legacy_task_manager"
        system.supervisor.child(manager).tell(Kill())
        await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)  # the restart's backoff
        held = asyncio.ensure_future(tm.get_task_status("a"))  # fills the buffer
        await asyncio.sleep(0)
        with pytest.raises(SystemOverloadedError):
            await asyncio.wait_for(tm.register_task("b", add, (3, 4), task_id="b"), WAIT)
        # An id it holds, registered again: bounced off the manager first (which waits).
        again = asyncio.ensure_future(tm.register_task("a", add, (1, 2), task_id="a"))
        deadline = clock.next_deadline()
        assert deadline is not None
        clock.advance(deadline - clock.monotonic())  # the restart
        assert await asyncio.wait_for(held, WAIT) is TaskStatus.PENDING
        assert await asyncio.wait_for(again, WAIT) == "a"
        await asyncio.wait_for(tm.get_metrics(), WAIT)  # the facade took the manager's Forget
        assert owners == {"a": backend}
