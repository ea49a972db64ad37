"""Stopping a loaded system (ninth round): shutdown while tasks queue and run, and stops
called from where a service calls them (a task's own code, a pool function, twice at
once, a SIGTERM handler in a real process).

Found here: a coroutine task that shuts its own system down is cancelled by that very
shutdown, and the cancellation used to end ``shutdown()`` before it stopped anything
(the system stayed half-stopped: every actor alive, every new task cancelled at once).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pykka
import pytest
from helpers import WAIT

from actors import ActorSystem, ActorSystemError, TaskCancelledError

SHUTDOWN = 0.5
"""``SHUTDOWN_TIMEOUT`` of these tests' systems."""


def config(backend: str, **extra: Any) -> dict[str, Any]:
    return {
        "USE_NEW_TASK_SYSTEM": backend == "new",
        "CLEANUP_INTERVAL": 0,
        "SHUTDOWN_TIMEOUT": SHUTDOWN,
        **extra,
    }


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_a_coroutine_task_that_shuts_its_own_system_down_stops_it(backend: str) -> None:
    system = ActorSystem(config(backend)).start()
    tm = system.task_manager

    async def stopper() -> str:
        await system.shutdown()
        return "after"

    with pytest.raises(TaskCancelledError) as caught:
        await asyncio.wait_for(tm.submit(stopper, task_id="stopper"), WAIT)
    assert str(caught.value) == "task 'stopper' was cancelled: the actor system shut down"
    # The stop goes on without the cancelled caller, within its bound.
    assert await asyncio.to_thread(system._stop_over.wait, WAIT)
    assert pykka.ActorRegistry.get_all() == []
    await asyncio.wait_for(system.shutdown(), WAIT)  # a later call: nothing left to do


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_a_shutdown_whose_caller_is_cancelled_still_stops_the_system(backend: str) -> None:
    """``asyncio.run`` cancels its main task on Ctrl-C, a timeout around the call cancels
    it: the stop must not end half-way (every actor alive, the system not closed)."""
    system = ActorSystem(config(backend)).start()
    tm = system.task_manager
    task_id = await tm.register_task("queued", asyncio.sleep, (0,))
    stop = asyncio.ensure_future(system.shutdown())
    await asyncio.sleep(0)  # it has asked the managers to cancel their tasks, and waits
    stop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stop
    assert await asyncio.to_thread(system._stop_over.wait, WAIT)
    assert pykka.ActorRegistry.get_all() == []
    with pytest.raises(ActorSystemError) as caught:
        await tm.get_task(task_id)
    assert str(caught.value) == "the actor system is shut down; create a new ActorSystem"
    await asyncio.wait_for(system.shutdown(), WAIT)


def demo_until(out_dir: Path, marker: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``python -m actors demo --out OUT_DIR`` in a process of its own, read until a
    line holding ``marker``; the process and the lines read so far."""
    environ = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    command = [sys.executable, "-m", "actors", "demo", "--out", str(out_dir)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return process, lines
    process.wait(WAIT)
    raise AssertionError(f"no line with {marker!r} in {lines}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("signal_number", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
@pytest.mark.parametrize("marker", ["actorflow demo:", "durable tasks: phase 1"])
def test_the_demo_stops_on_a_signal_with_its_exit_code_and_no_traceback(
    tmp_path: Path, signal_number: int, code: int, said: str, marker: str
) -> None:
    """Ctrl-C or a process manager's SIGTERM, while the demo's service runs or while its
    durable phase has a journal open: the systems stop (their journal written and
    closed), the demo says so and exits 128 + the signal's number."""
    process, lines = demo_until(tmp_path, marker)
    process.send_signal(signal_number)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == code, [*lines, rest]
    assert "Traceback" not in rest
    assert rest.splitlines()[-1] == said
    journal = tmp_path / "journal.db"
    if journal.exists():
        with closing(sqlite3.connect(journal)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert (
            not (tmp_path / "journal.db-wal").exists()
            or (tmp_path / "journal.db-wal").stat().st_size == 0
        )
