"""Retries (fixed delay, tenacity waits) and timeouts, on the fake clock.

Part of the contract both task systems satisfy (see conftest.py).
"""

from __future__ import annotations

import asyncio

import pytest
import tenacity
from helpers import WAIT, Boom, WaitsForToken, hangs, make_system, timers_armed, until

from actors import (
    TaskTimeoutError,
    UnifiedTaskManager,
)
from actors.core import COMPLETED, FAILED, RETRYING
from supervisors.testing import FakeClock

# -- retries ----------------------------------------------------------------------------


async def test_retries_until_success(tm: UnifiedTaskManager) -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(len(calls) + 1)
        if len(calls) < 3:
            raise Boom(len(calls))
        return "third time"

    await tm.register_task("flaky", flaky, max_retries=2, task_id="flaky")
    assert await tm.execute_task("flaky", wait=True) == "third time"
    assert calls == [1, 2, 3]
    info = await tm.get_task("flaky")
    assert (info.status, info.attempts, info.max_retries) == (COMPLETED, 3, 2)
    assert await tm.get_task_result("flaky") == "third time"
    assert await tm.get_task_error("flaky") is None


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_max_retries_n_means_n_plus_one_attempts(
    tm: UnifiedTaskManager, max_retries: int
) -> None:
    calls: list[int] = []

    def always_fails() -> None:
        calls.append(len(calls) + 1)
        raise Boom(len(calls))

    await tm.register_task("doomed", always_fails, max_retries=max_retries, task_id="doomed")
    with pytest.raises(Boom) as raised:
        await tm.execute_task("doomed", wait=True)
    attempts = max_retries + 1
    assert raised.value.args == (attempts,)
    assert calls == list(range(1, attempts + 1))
    info = await tm.get_task("doomed")
    assert (info.status, info.attempts) == (FAILED, attempts)
    error = await tm.get_task_error("doomed")
    assert isinstance(error, Boom)
    assert error.args == (attempts,)


async def test_retrying_status_between_attempts(tm: UnifiedTaskManager, clock: FakeClock) -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise Boom("first")
        return "second"

    await tm.register_task("flaky", flaky, max_retries=1, retry_delay=5, task_id="flaky")
    assert await tm.execute_task("flaky") is True
    await timers_armed(clock)
    assert clock.pending_delays() == [5.0]
    info = await tm.get_task("flaky")
    assert (info.status, info.attempts) == (RETRYING, 1)
    assert isinstance(info.error, Boom)
    assert calls == [1]
    clock.advance(4.9)
    assert await tm.get_task_status("flaky") is RETRYING
    clock.advance(0.1)
    assert await tm.wait_for_task("flaky", timeout=WAIT) == "second"
    info = await tm.get_task("flaky")
    assert (info.status, info.attempts) == (COMPLETED, 2)
    assert calls == [1, 2]


async def test_retry_wait_strategy_replaces_the_fixed_delay(
    tm: UnifiedTaskManager, clock: FakeClock
) -> None:
    calls: list[int] = []

    def flaky() -> int:
        calls.append(len(calls) + 1)
        if len(calls) < 3:
            raise Boom(len(calls))
        return len(calls)

    await tm.register_task(
        "flaky",
        flaky,
        max_retries=2,
        retry_delay=100,
        retry_wait=tenacity.wait_exponential(multiplier=2),
        task_id="flaky",
    )
    await tm.execute_task("flaky")
    await timers_armed(clock)
    assert clock.pending_delays() == [2.0]
    assert (await tm.get_task("flaky")).attempts == 1
    clock.advance(2)
    # The second attempt fails and arms the next retry timer: 2 * 2**1 seconds.
    await timers_armed(clock)
    assert clock.pending_delays() == [4.0]
    info = await tm.get_task("flaky")
    assert (info.status, info.attempts) == (RETRYING, 2)
    clock.advance(4)
    assert await tm.wait_for_task("flaky", timeout=WAIT) == 3
    assert (await tm.get_task("flaky")).attempts == 3


# -- timeouts ---------------------------------------------------------------------------


async def test_coroutine_timeout_fails_the_task(tm: UnifiedTaskManager, clock: FakeClock) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    await tm.register_task("hangs", hangs(started, cancelled), timeout=2, task_id="hangs")
    await tm.execute_task("hangs")
    await until(started)
    await timers_armed(clock)
    assert clock.pending_delays() == [2.0]
    clock.advance(2)
    with pytest.raises(
        TaskTimeoutError, match=r"^task 'hangs' attempt 1 timed out after 2\.0s$"
    ) as raised:
        await tm.wait_for_task("hangs", timeout=WAIT)
    assert isinstance(raised.value, TimeoutError)
    await until(cancelled)
    info = await tm.get_task("hangs")
    assert (info.status, info.attempts, info.error) == (FAILED, 1, raised.value)


async def test_timeout_is_retried_while_retries_remain(
    tm: UnifiedTaskManager, clock: FakeClock
) -> None:
    calls: list[int] = []
    started = asyncio.Event()
    never = asyncio.Event()

    async def hangs_once() -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            started.set()
            await never.wait()
        return "on time"

    await tm.register_task("job", hangs_once, max_retries=1, timeout=2, task_id="job")
    await tm.execute_task("job")
    await until(started)
    await timers_armed(clock)
    clock.advance(2)
    assert await tm.wait_for_task("job", timeout=WAIT) == "on time"
    info = await tm.get_task("job")
    assert (info.status, info.attempts) == (COMPLETED, 2)
    assert calls == [1, 2]


async def test_timed_out_plain_function_gets_its_token_set(backend: str, clock: FakeClock) -> None:
    slow = WaitsForToken()
    async with make_system(backend, clock, MAX_THREAD_WORKERS=1) as system:
        tm = system.task_manager
        await tm.register_task("slow", slow.run, timeout=2, task_id="slow")
        await tm.execute_task("slow")
        await asyncio.to_thread(slow.started.wait, WAIT)
        await timers_armed(clock)
        clock.advance(2)
        with pytest.raises(
            TaskTimeoutError, match=r"^task 'slow' attempt 1 timed out after 2\.0s$"
        ):
            await tm.wait_for_task("slow", timeout=WAIT)
        await slow.assert_token_was_set(tm)
        info = await tm.get_task("slow")
        assert (info.status, info.attempts) == (FAILED, 1)
        assert isinstance(info.error, TaskTimeoutError)
        assert await tm.get_task_result("slow") is None
