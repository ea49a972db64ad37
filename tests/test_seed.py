"""Every snippet of the seed document runs against actorflow as written, import aside.

The document is docs/task_management_best_practices.md (a copy of the seed). Each
``python`` block is run inside an ``async def`` (the snippets use top-level ``await``
and ``return``), in a namespace that defines the names the snippet leaves to the
reader (``my_function``, ``arg1``, ...). Then the test checks what the snippet did.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from actors import ActorSystem, TaskStatus, unified_task_manager

SEED = Path(__file__).resolve().parent.parent / "docs" / "task_management_best_practices.md"
SEED_IMPORT = "from core.task.unified_manager import unified_task_manager"
OUR_IMPORT = "from actors import unified_task_manager"


def snippets() -> list[str]:
    text = SEED.read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


async def run_snippet(index: int, namespace: dict[str, Any]) -> dict[str, Any]:
    # The document imports once, in its first snippet; the others use that name.
    namespace.setdefault("unified_task_manager", unified_task_manager)
    namespace.setdefault("asyncio", asyncio)
    code = snippets()[index].replace(SEED_IMPORT, OUR_IMPORT)
    source = "async def __snippet__():\n" + textwrap.indent(code, "    ")
    source += "\n    return locals()\n"
    exec(compile(source, f"<seed snippet {index}>", "exec"), namespace)
    result: dict[str, Any] = await namespace["__snippet__"]()
    return result


@pytest.fixture(autouse=True)
async def stop_lazy_system() -> AsyncIterator[None]:
    yield
    await unified_task_manager.shutdown()


def test_the_seed_has_eleven_snippets_and_one_import_to_change() -> None:
    blocks = snippets()
    assert len(blocks) == 11
    assert sum(SEED_IMPORT in b for b in blocks) == 1


async def test_snippet_0_register_and_execute() -> None:
    def my_function(a: int, b: int, param1: str) -> tuple[int, int, str]:
        return (a, b, param1)

    ns = await run_snippet(0, {"my_function": my_function, "arg1": 1, "arg2": 2, "value1": "v"})
    task_id = ns["task_id"]
    assert await unified_task_manager.wait_for_task(task_id, timeout=10) == (1, 2, "v")
    info = await unified_task_manager.get_task(task_id)
    assert (info.name, info.task_type, info.description) == (
        "My Task",
        "my_task_type",
        "Description of my task",
    )
    assert dict(info.metadata) == {"key": "value"}
    assert info.status is TaskStatus.COMPLETED


async def test_snippet_1_semaphore_limits_concurrency() -> None:
    running = 0
    peak = 0

    # The snippet's `...` body is ours to fill: the namespace's process_item is replaced
    # after the snippet defines it, so count through a wrapper around the semaphore.
    class CountingSemaphore(asyncio.Semaphore):
        async def __aenter__(self) -> None:
            nonlocal running, peak
            await super().__aenter__()
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)

        async def __aexit__(self, *exc: object) -> None:
            nonlocal running
            running -= 1
            await super().__aexit__(*exc)

    fake_asyncio = type(
        "A", (), {"Semaphore": CountingSemaphore, "gather": staticmethod(asyncio.gather)}
    )
    ns = await run_snippet(
        1, {"asyncio": fake_asyncio, "concurrency_limit": 3, "items": list(range(20))}
    )
    assert len(ns["tasks"]) == 20
    assert peak == 3


async def test_snippet_2_thread_pool_submit() -> None:
    def cpu_bound_function(*args: int, **kwargs: int) -> int:
        return sum(args) + sum(kwargs.values())

    ns = await run_snippet(
        2, {"cpu_bound_function": cpu_bound_function, "args": (1, 2, 3), "kwargs": {"x": 4}}
    )
    assert ns["result"] == 10


async def test_snippet_3_task_function_with_try_except_runs_as_a_task() -> None:
    ns = await run_snippet(3, {"result": 42, "logger": logger})
    task_id = await unified_task_manager.register_task("fn", ns["my_task_function"])
    assert await unified_task_manager.execute_task(task_id, wait=True) == 42


async def test_snippet_4_retries() -> None:
    attempts = 0

    def my_function() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("transient")
        return "done"

    # The snippet asks for retry_delay=5.0: the lazy system runs on the wall clock, so
    # check the registration and run the same task on a fake clock below.
    ns = await run_snippet(4, {"my_function": my_function})
    info = await unified_task_manager.get_task(ns["task_id"])
    assert (info.max_retries, info.status) == (3, TaskStatus.PENDING)
    await unified_task_manager.cancel_task(ns["task_id"])

    from supervisors.testing import FakeClock

    clock = FakeClock()
    # No periodic cleanup: its timers would be counted with the retry's.
    async with ActorSystem({"CLEANUP_INTERVAL": 0}, clock=clock) as system:
        ns = await run_snippet(
            4, {"my_function": my_function, "unified_task_manager": system.task_manager}
        )
        tm = system.task_manager
        await tm.execute_task(ns["task_id"])
        for _ in range(2):
            await asyncio.to_thread(clock.wait_for_timers, 1)
            assert clock.pending_delays() == [5.0]
            clock.advance(5.0)
        assert await tm.wait_for_task(ns["task_id"], timeout=10) == "done"
        assert (await tm.get_task(ns["task_id"])).attempts == 3


async def test_snippet_5_cleanup_in_finally() -> None:
    log: list[str] = []

    def acquire_resource() -> str:
        log.append("acquire")
        return "r"

    def use_resource(resource: str) -> str:
        log.append(f"use {resource}")
        return "used"

    def release_resource(resource: str) -> None:
        log.append(f"release {resource}")

    result = await run_snippet(
        5,
        {
            "acquire_resource": acquire_resource,
            "use_resource": use_resource,
            "release_resource": release_resource,
        },
    )
    assert result == "used"
    assert log == ["acquire", "use r", "release r"]


async def test_snippet_6_async_context_manager() -> None:
    log: list[str] = []

    @contextlib.asynccontextmanager
    async def acquire_resource() -> AsyncIterator[str]:
        log.append("enter")
        yield "r"
        log.append("exit")

    result = await run_snippet(6, {"acquire_resource": acquire_resource, "use_resource": str.upper})
    assert result == "R"
    assert log == ["enter", "exit"]


async def test_snippet_7_timeout() -> None:
    async def my_coroutine() -> str:
        return "in time"

    assert await run_snippet(7, {"my_coroutine": my_coroutine, "logger": logger}) == "in time"


async def test_snippet_8_cleanup_completed_tasks() -> None:
    async def noop() -> None:
        return None

    task_id = await unified_task_manager.register_task("old", noop)
    await unified_task_manager.execute_task(task_id, wait=True)
    ns = await run_snippet(8, {"logger": logger})
    assert ns["cleaned_up"] == 0  # finished just now: younger than 24 hours
    assert await unified_task_manager.cleanup_completed_tasks(0.0) == 1


async def test_snippet_9_dependencies() -> None:
    order: list[str] = []

    async def first() -> None:
        order.append("dependency")

    async def my_function() -> None:
        order.append("task")

    dependency_task_id = await unified_task_manager.register_task("dep", first)
    ns = await run_snippet(
        9, {"my_function": my_function, "dependency_task_id": dependency_task_id}
    )
    await unified_task_manager.execute_task(ns["task_id"], wait=True)
    assert order == ["dependency", "task"]
    info = await unified_task_manager.get_task(ns["task_id"])
    assert info.dependencies == (dependency_task_id,)


async def test_snippet_10_config_selects_the_task_system() -> None:
    ns = await run_snippet(10, {})
    assert ns["config"] == {"USE_NEW_TASK_SYSTEM": True}

    async def noop() -> int:
        return 1

    async with ActorSystem(ns["config"]) as system:
        task_id = await system.task_manager.register_task("t", noop)
        assert (await system.task_manager.get_task(task_id)).backend == "new"
    async with ActorSystem({"USE_NEW_TASK_SYSTEM": False}) as system:
        task_id = await system.task_manager.register_task("t", noop)
        assert (await system.task_manager.get_task(task_id)).backend == "old"
