"""The runtime picture: replies reach the loop without blocking it, the facade never
waits, user code carries its task id in log lines, configuration is checked at start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from loguru import logger

from actors import (
    ActorSystem,
    ActorSystemError,
    ConfigError,
    TaskStatus,
    configure_logging,
    current_task_id,
)
from actors.engine import Engine, TaskRecord
from actors.runtime._shared import CHILD_IDS
from supervisors import ChildHandle, Kill

WAIT = 5.0


async def noop(x: int = 0) -> int:
    return x


async def test_system_exposes_its_tree_and_child_handles() -> None:
    async with ActorSystem() as system:
        rows = await system.supervisor.which_children()
        assert [r.id for r in rows] == list(CHILD_IDS)
        assert [r.status for r in rows] == ["running"] * 5
        handle = system.supervisor.child("task_manager")
        assert isinstance(handle, ChildHandle)
        with pytest.raises(ActorSystemError, match=r"^the actor system has no child 'nope'"):
            system.supervisor.child("nope")


async def test_a_busy_actor_does_not_block_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the manager is stuck inside a call, the caller's loop keeps running: it turns
    100 times with the call pending (counted, not timed); released, the call answers."""
    entered = threading.Event()
    release = threading.Event()
    original = Engine.get

    def stuck_get(self: Engine, task_id: str) -> TaskRecord:
        entered.set()
        release.wait(WAIT)  # the actor is busy until the test lets it go
        return original(self, task_id)

    async with ActorSystem() as system:
        tm = system.task_manager
        task_id = await tm.register_task("t", noop)
        monkeypatch.setattr(Engine, "get", stuck_get)
        call = asyncio.create_task(tm.get_task_status(task_id))
        turns = 0

        async def turn_while_pending() -> None:
            nonlocal turns
            while turns < 100 or not entered.is_set():
                await asyncio.sleep(0)
                assert not call.done()
                turns += 1

        try:
            await asyncio.wait_for(turn_while_pending(), WAIT)
        finally:
            release.set()
        status = await asyncio.wait_for(call, WAIT)
    assert status is TaskStatus.PENDING
    assert entered.is_set()
    assert turns >= 100


async def test_facade_never_waits_for_a_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call stuck in the old manager does not delay calls to the new one."""
    release = threading.Event()
    original = Engine.get

    def blocking_get(self: Engine, task_id: str) -> TaskRecord:
        if self.backend == "old":
            release.wait(10)
        return original(self, task_id)

    monkeypatch.setattr(Engine, "get", blocking_get)
    async with ActorSystem() as system:
        tm = system.task_manager
        await tm.use_new_task_system(False)
        old_id = await tm.register_task("old", noop)
        await tm.use_new_task_system(True)
        stuck = asyncio.create_task(tm.get_task(old_id))
        new_id = await tm.register_task("new", noop, (7,))
        assert await tm.execute_task(new_id, wait=True) == 7
        assert (await tm.get_task(new_id)).backend == "new"
        assert not stuck.done()
        release.set()
        assert (await stuck).backend == "old"


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_user_log_lines_carry_the_task_id(
    backend: str, log_records: list[dict[str, Any]]
) -> None:
    async def in_coroutine() -> str | None:
        logger.info("hello from a coroutine")
        return current_task_id()

    def in_thread() -> str | None:
        logger.info("hello from a thread")
        return current_task_id()

    async with ActorSystem({"USE_NEW_TASK_SYSTEM": backend == "new"}) as system:
        tm = system.task_manager
        coro_id = await tm.register_task("c", in_coroutine)
        thread_id = await tm.register_task("t", in_thread)
        assert await tm.execute_task(coro_id, wait=True) == coro_id
        assert await tm.execute_task(thread_id, wait=True) == thread_id
    by_message = {r["message"]: r for r in log_records}
    assert by_message["hello from a coroutine"]["extra"]["task_id"] == coro_id
    assert by_message["hello from a thread"]["extra"]["task_id"] == thread_id
    # The old system runs functions in the loop's default executor ("asyncio_0" on
    # asyncio's loop, "uvloop_0" on uvloop's: `pytest --event-loop uvloop`).
    assert by_message["hello from a thread"]["thread"].name.startswith(
        "actorflow-pool" if backend == "new" else ("asyncio_", "uvloop_")
    )


async def test_lifecycle_lines_are_bound_and_off_by_default(
    log_records: list[dict[str, Any]],
) -> None:
    async def fails() -> None:
        raise ValueError("boom")

    async with ActorSystem() as system:
        tm = system.task_manager
        quiet = await tm.register_task("quiet", noop)
        await tm.execute_task(quiet, wait=True)
        assert [r for r in log_records if r["extra"].get("task_id") == quiet] == []
        configure_logging(True)
        ok = await tm.register_task("ok", noop, task_type="demo")
        await tm.execute_task(ok, wait=True)
        bad = await tm.register_task("bad", fails, max_retries=1)
        with pytest.raises(ValueError, match=r"^boom$"):
            await tm.execute_task(bad, wait=True)
    lines = [
        (r["extra"]["task_name"], r["extra"]["task_type"], r["message"])
        for r in log_records
        if r["extra"].get("task_id") in (ok, bad) and "task_name" in r["extra"]
    ]
    assert lines == [
        ("ok", "demo", "task 'ok' registered"),
        ("ok", "demo", "task 'ok' started (attempt 1)"),
        ("ok", "demo", "task 'ok' completed"),
        ("bad", "default", "task 'bad' registered"),
        ("bad", "default", "task 'bad' started (attempt 1)"),
        ("bad", "default", "task 'bad' retrying after attempt 1: ValueError('boom')"),
        ("bad", "default", "task 'bad' started (attempt 2)"),
        ("bad", "default", "task 'bad' failed: ValueError('boom')"),
    ]


def test_configuration_is_checked_at_start(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"MAX_CONCURENT_TASKS"):
        ActorSystem({"MAX_CONCURENT_TASKS": 3})
    with pytest.raises(ConfigError, match=r"MAX_CONCURRENT_TASKS"):
        ActorSystem({"MAX_CONCURRENT_TASKS": "3"})
    monkeypatch.setenv("ACTORFLOW_MAX_CONCURRENT_TASKS", "7")
    assert ActorSystem().config.MAX_CONCURRENT_TASKS == 7
    monkeypatch.setenv("ACTORFLOW_MAX_CONCURRENT_TASKS", "seven")
    with pytest.raises(ConfigError, match=r"ACTORFLOW_MAX_CONCURRENT_TASKS"):
        ActorSystem()
    monkeypatch.delenv("ACTORFLOW_MAX_CONCURRENT_TASKS")
    toml = tmp_path / "actorflow.toml"
    toml.write_text("[actorflow]\nMAX_THREAD_WORKERS = 3\nUSE_NEW_TASK_SYSTEM = false\n")
    monkeypatch.setenv("ACTORFLOW_CONFIG", str(toml))
    config = ActorSystem().config
    assert (config.MAX_THREAD_WORKERS, config.USE_NEW_TASK_SYSTEM) == (3, False)


async def test_calls_after_shutdown_fail_clearly() -> None:
    system = ActorSystem()
    async with system:
        task_id = await system.task_manager.register_task("t", noop)
    with pytest.raises(ActorSystemError, match=r"^the actor system is shut down"):
        await system.task_manager.get_task(task_id)
    with pytest.raises(ActorSystemError, match=r"^the actor system is shut down"):
        await system.task_manager.thread_pool.submit(print)


async def test_shutdown_cancels_unfinished_tasks() -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    async def blocked() -> None:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    system = ActorSystem()
    async with system:
        tm = system.task_manager
        running = await tm.register_task("running", blocked)
        pending = await tm.register_task("pending", noop)
        await tm.execute_task(running)
        waiter = asyncio.create_task(tm.wait_for_task(running))
        while await tm.get_task_status(running) is not TaskStatus.RUNNING:
            await asyncio.sleep(0)
        assert pending
    with pytest.raises(Exception, match=r"shut down") as caught:
        await waiter
    assert type(caught.value).__name__ in ("TaskCancelledError", "ActorSystemError")
    assert seen == ["cancelled"]


def test_a_script_that_never_shuts_down_exits_by_itself() -> None:
    script = (
        "import asyncio\n"
        "from actors import unified_task_manager as tm\n"
        "def work(x):\n    return x * 2\n"
        "async def main():\n"
        "    t = await tm.register_task('t', work, (21,))\n"
        "    print(await tm.execute_task(t, wait=True))\n"
        "asyncio.run(main())\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert (done.returncode, done.stdout) == (0, "42\n"), done.stderr
    assert time.monotonic() - started < 5.0


async def test_kill_through_the_supervisor_handle_restarts_the_child() -> None:
    async with ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}) as system:
        tm = system.task_manager
        before = {r.id: r.actor_urn for r in await system.supervisor.which_children()}
        system.supervisor.child("task_manager").tell(Kill())
        task_id = await tm.register_task("t", noop, (5,))  # buffered across the restart
        assert await tm.execute_task(task_id, wait=True) == 5
        after = {r.id: r for r in await system.supervisor.which_children()}
    assert after["task_manager"].restarts == 1
    assert after["task_manager"].actor_urn != before["task_manager"]
    assert all(after[c].actor_urn == before[c] for c in CHILD_IDS if c != "task_manager")
