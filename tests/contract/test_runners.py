"""Where task code runs: coroutines on the registering loop, plain functions on a pool thread.

Part of the contract both task systems satisfy (see conftest.py).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from helpers import Boom

import actors
from actors import (
    UnifiedTaskManager,
)
from actors.core import COMPLETED, FAILED

# -- coroutines and plain functions -----------------------------------------------------


async def test_coroutine_runs_on_the_registering_loop(tm: UnifiedTaskManager) -> None:
    loop = asyncio.get_running_loop()
    seen: list[Any] = []

    async def body() -> str:
        seen.append((asyncio.get_running_loop(), threading.current_thread()))
        seen.append(actors.current_task_id())
        return "ok"

    await tm.register_task("coro", body, task_id="coro")
    assert await tm.execute_task("coro", wait=True) == "ok"
    assert seen == [(loop, threading.current_thread()), "coro"]


async def test_plain_function_runs_in_a_pool_thread(tm: UnifiedTaskManager) -> None:
    loop_thread = threading.current_thread()
    seen: list[Any] = []

    def body(x: int, y: int = 0) -> int:
        seen.append(threading.current_thread())
        seen.append(actors.current_task_id())
        return x + y

    await tm.register_task("plain", body, [1], {"y": 2}, task_id="plain")
    assert await tm.execute_task("plain", wait=True) == 3
    assert len(seen) == 2
    assert seen[0] is not loop_thread
    assert seen[1] == "plain"
    assert (await tm.get_task("plain")).status is COMPLETED


async def test_plain_function_failure_raises_its_exception(tm: UnifiedTaskManager) -> None:
    def body() -> None:
        raise Boom("from a thread")

    await tm.register_task("plain", body, task_id="plain")
    with pytest.raises(Boom, match=r"^from a thread$"):
        await tm.execute_task("plain", wait=True)
    assert await tm.get_task_status("plain") is FAILED
