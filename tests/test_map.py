"""`tm.map(func, items, **options)`: one task per item, one message and one future for
the list, results in item order; on both task systems. Waits are bounded by `WAIT`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, Boom, add, double

from actors import (
    ActorSystem,
    InvalidTaskError,
    TaskCancelledError,
    TaskStatus,
    UnifiedTaskManager,
    result_of,
)
from actors.api import _client
from actors.runtime import messages
from supervisors.testing import FakeClock


def odd_fails(x: int) -> int:
    if x % 2:
        raise Boom(f"odd {x}")
    return x


def _spy(system: ActorSystem, monkeypatch: pytest.MonkeyPatch) -> list[tuple[type, int]]:
    """Record what reaches the facade: each message's type and how many requests."""
    facade = system._check()
    sent: list[tuple[type, int]] = []

    class Spy:
        @property
        def actor_ref(self) -> Any:
            return facade.actor_ref

        def tell(self, message: Any) -> None:
            count = len(message.items) if isinstance(message, messages.Batch) else 1
            sent.append((type(message), count))
            facade.tell(message)

    monkeypatch.setattr(system, "_facade", Spy())
    return sent


async def test_map_returns_every_result_in_item_order(tm: UnifiedTaskManager, backend: str) -> None:
    assert await asyncio.wait_for(tm.map(double, range(6)), WAIT) == [0, 2, 4, 6, 8, 10]
    assert await asyncio.wait_for(tm.map(add, [1, 2, 3], kwargs={"y": 10}), WAIT) == [11, 12, 13]
    infos = await tm.get_all_tasks()
    assert sorted(info.name for info in infos) == ["add"] * 3 + ["double"] * 6
    assert {(info.status, info.backend, info.attempts) for info in infos} == {
        (TaskStatus.COMPLETED, backend, 1)
    }


async def test_map_is_one_message_to_the_facade(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _spy(system, monkeypatch)
    assert await asyncio.wait_for(tm.map(add, range(40), name="n"), WAIT) == list(range(40))
    assert sent == [(messages.Batch, 40)]


async def test_a_long_map_is_sent_in_bounded_chunks(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No loop iteration sends more than `_MAP_CHUNK` tasks: a big list lets the loop
    run its other callbacks in between."""
    monkeypatch.setattr(_client, "_MAP_CHUNK", 10)
    sent = _spy(system, monkeypatch)
    assert await asyncio.wait_for(tm.map(add, range(25)), WAIT) == list(range(25))
    assert sent == [(messages.Batch, 10), (messages.Batch, 10), (messages.Batch, 5)]


async def test_map_raises_the_first_error_in_item_order_once_all_ended(
    tm: UnifiedTaskManager,
) -> None:
    with pytest.raises(Boom, match=r"^odd 3$"):  # item 1, not item 3
        await asyncio.wait_for(tm.map(odd_fails, [4, 3, 2, 1], name="o"), WAIT)
    # Every task ended before the call raised.
    statuses = sorted(info.status.value for info in await tm.get_all_tasks())
    assert statuses == ["completed", "completed", "failed", "failed"]


async def test_map_return_exceptions_puts_each_error_in_its_place(
    tm: UnifiedTaskManager,
) -> None:
    outcomes = await asyncio.wait_for(tm.map(odd_fails, [0, 1, 2, 3], return_exceptions=True), WAIT)
    assert [type(o).__name__ for o in outcomes] == ["int", "Boom", "int", "Boom"]
    assert (outcomes[0], str(outcomes[1]), outcomes[2], str(outcomes[3])) == (
        0,
        "odd 1",
        2,
        "odd 3",
    )


async def test_a_result_of_item_is_a_dependency(tm: UnifiedTaskManager) -> None:
    first = await tm.register_task("first", add, (20,), task_id="first")
    await tm.execute_task(first)
    assert await asyncio.wait_for(tm.map(add, [1, result_of("first")]), WAIT) == [1, 20]


async def test_bad_calls_are_refused_before_anything_is_sent(tm: UnifiedTaskManager) -> None:
    with pytest.raises(InvalidTaskError, match=r"^map\(\) got unknown option\(s\) 'y'; .*kwargs"):
        await tm.map(add, [1], y=2)  # type: ignore[call-overload]
    with pytest.raises(
        InvalidTaskError, match=r"^map\(\) gives each task its own id; got task_id='a'"
    ):
        await tm.map(add, [1], task_id="a")  # type: ignore[call-overload]
    with pytest.raises(InvalidTaskError, match=r"^map\(\) takes an iterable of arguments .*got 3;"):
        await tm.map(add, 3)  # type: ignore[call-overload]
    with pytest.raises(InvalidTaskError, match=r"^map\(\) takes an iterable .*got 'ab';"):
        await tm.map(add, "ab")
    with pytest.raises(InvalidTaskError, match=r"^return_exceptions must be a bool, got 1$"):
        await tm.map(add, [1], return_exceptions=1)  # type: ignore[call-overload]
    with pytest.raises(InvalidTaskError, match=r"^max_retries must be an int >= 0, got -1$"):
        await tm.map(add, [1, 2], max_retries=-1)
    with pytest.raises(InvalidTaskError, match=r"cannot depend on itself|each dependency"):
        await tm.map(add, [1, 2], dependencies=[""])
    assert await tm.map(add, []) == []
    assert await tm.get_all_tasks() == []


async def test_cancelling_the_call_cancels_the_tasks_that_have_not_ended(
    tm: UnifiedTaskManager,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def hang(x: int) -> int:
        if x:
            started.set()
            await release.wait()
        return x

    call = asyncio.ensure_future(tm.map(hang, [0, 1], name="hang"))
    await asyncio.wait_for(started.wait(), WAIT)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The Cancel left before the call returned: the facade delivers it first.
    infos = sorted(await tm.get_all_tasks(), key=lambda info: info.status.value)
    assert [info.status for info in infos] == [TaskStatus.CANCELLED, TaskStatus.COMPLETED]
    assert isinstance(infos[0].error, TaskCancelledError)


async def test_map_from_inside_a_task_lends_its_slot(backend: str) -> None:
    """A task that maps children and waits for them must not starve them of the only slot."""
    config = {"USE_NEW_TASK_SYSTEM": backend == "new", "MAX_CONCURRENT_TASKS": 1}
    async with ActorSystem(config) as running:
        tm = running.task_manager

        async def parent() -> int:
            return sum(await tm.map(double, [1, 2, 3])) + 1

        assert await asyncio.wait_for(tm.submit(parent), WAIT) == 13


def value_or_boom(x: int) -> Any:
    """Returns an exception object (a legal result) for 0, raises for 1."""
    if x == 1:
        raise Boom("raised 1")
    return ValueError(f"returned {x}") if x == 0 else x


async def test_a_durable_map_returns_a_returned_exception_as_a_value(
    backend: str, tmp_path: Path
) -> None:
    """With the journal on, a task that returns an exception object has completed: map
    puts that object in its place; a raised error is handled as by a non-durable map."""
    config = {
        "USE_NEW_TASK_SYSTEM": backend == "new",
        "CLEANUP_INTERVAL": 0,
        "JOURNAL_PATH": str(tmp_path / "journal.db"),
        "JOURNAL_SERIALIZER": "pickle",
    }
    async with ActorSystem(config, clock=FakeClock()) as running:
        tm = running.task_manager
        outcomes = await asyncio.wait_for(tm.map(value_or_boom, [0, 2]), WAIT)
        assert [type(o).__name__ for o in outcomes] == ["ValueError", "int"]
        assert (str(outcomes[0]), outcomes[1]) == ("returned 0", 2)
        collected = await asyncio.wait_for(
            tm.map(value_or_boom, [0, 1, 2], return_exceptions=True), WAIT
        )
        assert [(type(o).__name__, str(o)) for o in collected] == [
            ("ValueError", "returned 0"),
            ("Boom", "raised 1"),
            ("int", "2"),
        ]
        with pytest.raises(Boom, match=r"^raised 1$"):  # the raised one, not the returned
            await asyncio.wait_for(tm.map(value_or_boom, [0, 1, 2]), WAIT)
        statuses = [info.status.value for info in await tm.get_all_tasks()]
        assert sorted(statuses) == ["completed"] * 6 + ["failed"] * 2


async def odd_fails_async(x: int) -> int:
    return odd_fails(x)


async def test_every_task_of_maps_naming_one_breaker_goes_through_it(
    tm: UnifiedTaskManager,
) -> None:
    """The first map naming a breaker makes it once its items are checked; later maps
    find it made (their items carry it as they are made), a result_of item's task too,
    and a registered breaker passed itself is that same one: every call counts on it."""
    system = tm._get_system()
    first = await tm.register_task("first", double, (10,), task_id="first")
    await tm.execute_task(first)
    assert await asyncio.wait_for(tm.map(double, [1, 2], circuit_breaker="svc"), WAIT) == [2, 4]
    breaker = system.circuit_breakers.get("svc")
    assert breaker is not None
    assert await asyncio.wait_for(
        tm.map(double, [3, result_of("first")], circuit_breaker="svc"), WAIT
    ) == [6, 40]
    failed, two = await asyncio.wait_for(
        tm.map(odd_fails_async, [1, 2], circuit_breaker=breaker, return_exceptions=True), WAIT
    )
    assert (type(failed), str(failed), two) == (Boom, "odd 1", 2)
    await tm.get_all_tasks()  # (after the outcomes, which this loop sent first)
    stats = breaker.stats()
    assert (stats.successes, stats.failures, len(system.circuit_breakers)) == (5, 1, 1)
