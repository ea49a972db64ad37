"""A registration that is refused leaves no circuit breaker behind, on both task systems.

Before, the client made the breaker a registration names (or added the `CircuitBreaker`
it was given to the registry) before the facade or the manager checked the task id and
the dependencies: a refused ``register_task`` / ``submit`` / ``map`` left the breaker in
``system.circuit_breakers`` and in the metrics. The breaker is now shared only once the
manager accepted the registration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from actors import (
    ActorsError,
    ActorSystem,
    BreakerConfigError,
    CircuitBreaker,
    DuplicateTaskError,
    InvalidTaskError,
    TaskNotFoundError,
    UnifiedTaskManager,
    result_of,
)
from actors.engine import BreakerRegistry, Engine, Policy
from actors.engine._validate import validate_registration
from supervisors.testing import FakeClock


async def one() -> int:
    return 1


def echo(value: int) -> int:
    return value


Given = Callable[[ActorSystem], "str | CircuitBreaker"]
"""The ``circuit_breaker`` argument of a test: a new name, or a breaker object."""

BREAKERS: list[Any] = [
    pytest.param(lambda system: "svc", id="name"),
    pytest.param(lambda system: CircuitBreaker("svc", clock=system.clock), id="object"),
]

Refused = Callable[[UnifiedTaskManager, Any], Awaitable[object]]

REFUSALS: list[Any] = [
    pytest.param(
        lambda tm, b: tm.register_task("again", one, task_id="known", circuit_breaker=b),
        DuplicateTaskError,
        "task id 'known' is already registered; pick another or omit task_id",
        id="register-duplicate-id",
    ),
    pytest.param(
        lambda tm, b: tm.register_task("orphan", one, dependencies=["nope"], circuit_breaker=b),
        TaskNotFoundError,
        "dependency 'nope' of task 'orphan' is not registered",
        id="register-unknown-dependency",
    ),
    pytest.param(
        lambda tm, b: tm.register_task(
            "orphan", echo, args=(result_of("nope"),), circuit_breaker=b
        ),
        TaskNotFoundError,
        "dependency 'nope' of task 'orphan' is not registered",
        id="register-unknown-result-of",
    ),
    pytest.param(
        lambda tm, b: tm.submit(one, task_id="known", circuit_breaker=b),
        DuplicateTaskError,
        "task id 'known' is already registered; pick another or omit task_id",
        id="submit-duplicate-id",
    ),
    pytest.param(
        lambda tm, b: tm.submit(one, name="orphan", dependencies=["nope"], circuit_breaker=b),
        TaskNotFoundError,
        "dependency 'nope' of task 'orphan' is not registered",
        id="submit-unknown-dependency",
    ),
    pytest.param(
        lambda tm, b: tm.map(echo, [result_of("nope")], name="orphan", circuit_breaker=b),
        TaskNotFoundError,
        "dependency 'nope' of task 'orphan' is not registered",
        id="map-unknown-result-of",
    ),
]


async def settled(tm: UnifiedTaskManager, *task_ids: str) -> None:
    """Once the manager has ended these tasks (and given their permits back: a caller of
    `submit` may hear the result first)."""
    await asyncio.wait_for(asyncio.gather(*(tm.wait_for_task(i) for i in task_ids)), 10.0)


async def _breakers(system: ActorSystem, tm: UnifiedTaskManager) -> tuple[Any, ...]:
    """What a refused registration must leave as it was: the registry and the metrics'
    breakers."""
    return (system.circuit_breakers.all(), (await tm.get_metrics()).breakers)


@pytest.mark.parametrize("given", BREAKERS)
@pytest.mark.parametrize(("call", "error", "fragment"), REFUSALS)
async def test_a_refused_registration_makes_no_breaker(
    system: ActorSystem,
    tm: UnifiedTaskManager,
    given: Given,
    call: Refused,
    error: type[ActorsError],
    fragment: str,
) -> None:
    await tm.register_task("known", one, task_id="known")
    tasks = await tm.get_all_tasks()
    breaker = given(system)
    with pytest.raises(error) as raised:
        await call(tm, breaker)
    assert type(raised.value) is error
    assert fragment in str(raised.value)
    assert await _breakers(system, tm) == ([], {})
    assert await tm.get_all_tasks() == tasks

    # Accepted afterwards, the name gets one breaker, shared by every task naming it
    # (the given object, if it was one).
    assert await tm.submit(one, task_id="t1", circuit_breaker=breaker) == 1
    assert await tm.submit(one, task_id="t2", circuit_breaker="svc") == 1
    await settled(tm, "t1", "t2")
    [shared] = system.circuit_breakers.all()
    if isinstance(breaker, CircuitBreaker):
        assert shared is breaker
    assert shared.name == "svc"
    assert shared.stats().successes == 2
    assert (await tm.get_metrics()).breakers == {"svc": "closed"}


async def test_a_breaker_named_by_a_burst_of_registrations_is_one_breaker(
    system: ActorSystem, tm: UnifiedTaskManager
) -> None:
    ids = [f"t{n}" for n in range(20)]
    calls = (tm.submit(echo, n, task_id=ids[n], circuit_breaker="svc") for n in range(20))
    assert await asyncio.gather(*calls) == list(range(20))
    await settled(tm, *ids)
    [shared] = system.circuit_breakers.all()
    assert shared.name == "svc"
    assert shared.stats().successes == 20


async def test_a_different_breaker_of_a_registered_name_is_refused_and_changes_nothing(
    system: ActorSystem, tm: UnifiedTaskManager
) -> None:
    first = CircuitBreaker("svc", clock=system.clock)
    assert await tm.submit(one, circuit_breaker=first) == 1
    tasks = await tm.get_all_tasks()
    other = CircuitBreaker("svc", clock=system.clock)
    for call in (
        lambda: tm.register_task("other", one, circuit_breaker=other),
        lambda: tm.submit(one, circuit_breaker=other),
        lambda: tm.map(echo, [1, 2], circuit_breaker=other),
    ):
        with pytest.raises(BreakerConfigError) as raised:
            await call()
        assert str(raised.value) == (
            "a different circuit breaker is already registered as 'svc'; use get('svc') to share it"
        )
    assert system.circuit_breakers.all() == [first]
    assert await tm.get_all_tasks() == tasks


async def test_a_refused_durable_registration_makes_no_breaker(
    tmp_path: Path, backend: str
) -> None:
    """The manager (not the facade) refuses this one: the id is journaled with another
    definition."""
    config = {
        "USE_NEW_TASK_SYSTEM": backend == "new",
        "CLEANUP_INTERVAL": 0,
        "JOURNAL_PATH": str(tmp_path / "journal.db"),
    }
    async with ActorSystem(config) as system:
        tm = system.task_manager
        assert await tm.register_task("a", echo, args=(1,), task_id="a") == "a"
        tasks = await tm.get_all_tasks()
        with pytest.raises(DuplicateTaskError) as raised:
            await tm.register_task("a", echo, args=(1,), task_id="a", circuit_breaker="svc")
        assert "task id 'a' is journaled with another definition" in str(raised.value)
        assert await _breakers(system, tm) == ([], {})
        assert await tm.get_all_tasks() == tasks
        # The same definition again is the idempotent registration: no breaker either.
        assert await tm.register_task("a", echo, args=(1,), task_id="a") == "a"
        assert len(system.circuit_breakers) == 0
        assert await tm.submit(echo, 2, circuit_breaker="svc") == 2
        assert [b.name for b in system.circuit_breakers.all()] == ["svc"]


async def test_a_recovered_task_shares_its_breaker_by_name(tmp_path: Path, backend: str) -> None:
    config = {
        "USE_NEW_TASK_SYSTEM": backend == "new",
        "CLEANUP_INTERVAL": 0,
        "JOURNAL_PATH": str(tmp_path / "journal.db"),
    }
    async with ActorSystem(config) as system:
        await system.task_manager.register_task("a", echo, args=(3,), task_id="a",
                                                circuit_breaker="svc")  # fmt: skip
    async with ActorSystem(config) as system:
        tm = system.task_manager
        [recovered] = system.circuit_breakers.all()
        assert recovered.name == "svc"
        assert await tm.execute_task("a", wait=True) == 3
        assert await tm.submit(echo, 4, task_id="b", circuit_breaker="svc") == 4
        await settled(tm, "a", "b")
        assert system.circuit_breakers.all() == [recovered]
        assert recovered.stats().successes == 2


# The engine alone: where the breaker is shared, and what a refusal there leaves.


def _engine(registry: BreakerRegistry) -> Engine:
    def share(given: str | CircuitBreaker) -> CircuitBreaker:
        return registry.get_or_create(given) if isinstance(given, str) else registry.add(given)

    return Engine(Policy.simple(), FakeClock(100.0), breakers=share)


def test_the_engine_shares_a_breaker_only_for_a_registration_it_accepts() -> None:
    registry = BreakerRegistry()
    engine = _engine(registry)
    engine.register(validate_registration("a", one), "a", cast(Any, None))
    refusals: list[tuple[str, dict[str, Any], type[ActorsError], str]] = [
        (
            "a",
            {},
            DuplicateTaskError,
            "task id 'a' is already registered; pick another or omit task_id",
        ),
        (
            "b",
            {"dependencies": ["nope"]},
            TaskNotFoundError,
            "dependency 'nope' of task 'b' is not registered in the old task system; "
            "register it first",
        ),
    ]
    for task_id, options, error, message in refusals:
        spec = validate_registration(task_id, one, circuit_breaker="svc", **options)
        with pytest.raises(error) as raised:
            engine.register(spec, task_id, cast(Any, None))
        assert str(raised.value) == message
    assert len(registry) == 0
    assert list(engine.tasks) == ["a"]

    engine.register(validate_registration("b", one, circuit_breaker="svc"), "b", cast(Any, None))
    engine.register(validate_registration("c", one, circuit_breaker="svc"), "c", cast(Any, None))
    [shared] = registry.all()
    assert engine.tasks["b"].breaker is shared
    assert engine.tasks["c"].breaker is shared


def test_a_different_breaker_of_a_taken_name_is_refused_by_the_engine_before_any_change() -> None:
    """Two registrations with two breakers of one name, both checked by their clients
    before either was accepted: the second is refused where it is shared."""
    registry = BreakerRegistry()
    engine = _engine(registry)
    first = CircuitBreaker("svc")
    engine.register(validate_registration("a", one, circuit_breaker=first), "a", cast(Any, None))
    transitions = list(engine.transitions)
    spec = validate_registration("b", one, circuit_breaker=CircuitBreaker("svc"))
    with pytest.raises(BreakerConfigError) as raised:
        engine.register(spec, "b", cast(Any, None))
    assert str(raised.value) == (
        "a different circuit breaker is already registered as 'svc'; use get('svc') to share it"
    )
    assert registry.all() == [first]
    assert list(engine.tasks) == ["a"]
    assert "b" not in engine.graph
    assert engine.transitions == transitions


def test_an_engine_without_a_registry_refuses_a_breaker_name() -> None:
    engine = Engine(Policy.simple(), FakeClock(100.0))
    spec = validate_registration("a", one, circuit_breaker="svc")
    with pytest.raises(InvalidTaskError) as raised:
        engine.register(spec, "a", cast(Any, None))
    assert str(raised.value) == (
        "circuit breaker 'svc' is a name, and this engine has no breaker registry to find it "
        "in; pass the CircuitBreaker, or build the Engine with breakers=..."
    )
    assert (engine.tasks, engine.transitions) == ({}, [])


async def fails(value: int = 0) -> None:
    raise RuntimeError(f"boom {value}")


async def test_a_retried_task_shares_the_breaker_of_the_failed_one(
    system: ActorSystem, tm: UnifiedTaskManager
) -> None:
    """A retry is a registration like any other: its breaker (the failed task's, kept
    by name for a task whose arguments take a result) is shared once it is accepted."""
    dep = await tm.register_task("dep", one)
    plain = await tm.register_task("plain", fails, circuit_breaker="svc")
    fed = await tm.register_task("fed", fails, args=(result_of(dep),), circuit_breaker="svc")
    for task_id, message in ((plain, "boom 0"), (fed, "boom 1")):
        with pytest.raises(RuntimeError, match=f"^{message}$"):
            await tm.execute_task(task_id, wait=True)
    [shared] = system.circuit_breakers.all()
    assert shared.stats().failures == 2
    for task_id, message in ((plain, "boom 0"), (fed, "boom 1")):
        retry = await tm.retry_task(task_id)
        with pytest.raises(RuntimeError, match=f"^{message}$"):
            await asyncio.wait_for(tm.wait_for_task(retry), 10.0)
    assert system.circuit_breakers.all() == [shared]
    assert shared.stats().failures == 4
