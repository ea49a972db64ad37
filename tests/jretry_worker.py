"""The process of the SIGKILL scenario of tests/test_journal_retry.py; run as a script.

``python jretry_worker.py JOURNAL OUT``: registers ``p`` (``double(5)``, left
pending), then durable tasks in both task systems that fail, as they do in this process
only (``FAILING``): ``g`` (``shaky``, new system) takes ``result_of(a)`` (``double(2)``,
completed) and has keyword arguments, metadata and every option set; ``o``
(``ashaky``, a coroutine, old system); ``v`` (``vanishing``, a function only this
process defines). Then ``run`` (``block``) is running, ``marker`` is registered and
``ready`` is printed: the test kills this process with SIGKILL. The test's own process
opens the journal again and imports the task functions from this module (so their
journaled references, ``jretry_worker:...``, resolve there too; ``vanishing`` does
not). Each body run appends a line to OUT.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import Any

from helpers import ready_until_sigkill

from actors import ActorSystem, TaskPriority, result_of

OUT: Path | None = None
FAILING = False
"""True in the worker process: ``shaky`` and ``ashaky`` raise, ``block`` blocks."""
STARTED = threading.Event()
LOOPS: list[asyncio.AbstractEventLoop] = []
"""The loops ``ashaky`` ran on (in the test's process)."""


def ran(line: str) -> None:
    assert OUT is not None
    with OUT.open("a") as out:
        out.write(f"{line}\n")


def double(x: int) -> int:
    ran(f"double {x}")
    return 2 * x


def shaky(x: int, *, times: int = 1) -> int:
    ran(f"shaky {x}")
    if FAILING:
        raise ValueError(f"shaky {x}")
    return x * times


async def ashaky(x: int) -> str:
    ran(f"ashaky {x}")
    LOOPS.append(asyncio.get_running_loop())
    if FAILING:
        raise ValueError(f"ashaky {x}")
    return f"async {x}"


def block(x: int) -> int:
    ran(f"block {x}")
    if FAILING:
        STARTED.set()
        threading.Event().wait()  # until the SIGKILL
    return x


if os.environ.get("JRETRY_WORKER") == "1":  # defined in the worker process only

    def vanishing(x: int) -> int:
        ran(f"vanishing {x}")
        raise ValueError(f"vanishing {x}")


async def failed(tm: Any, task_id: str) -> None:
    try:
        await tm.execute_task(task_id, wait=True)
    except ValueError:
        return
    raise AssertionError(f"{task_id} did not fail")


async def first(journal: str) -> None:
    config = {"JOURNAL_PATH": journal, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        await tm.register_task("p", double, (5,), task_id="p")
        await tm.register_task("a", double, (2,), task_id="a")
        assert await tm.execute_task("a", wait=True) == 4
        await tm.register_task(
            "g",
            shaky,
            (result_of("a"),),
            {"times": 10},
            task_id="g",
            task_type="io",
            description="takes a's result",
            metadata={"owner": "ops", "tags": ("x", 1)},
            priority=TaskPriority.HIGH,
            max_retries=1,
            retry_delay=0.01,
            timeout=30.0,
        )
        await failed(tm, "g")
        await tm.use_new_task_system(False)
        await tm.register_task("o", ashaky, (7,), task_id="o", task_type="async")
        await failed(tm, "o")
        await tm.use_new_task_system(True)
        await tm.register_task("v", vanishing, (3,), task_id="v")
        await failed(tm, "v")
        await tm.register_task("run", block, (9,), task_id="run")
        await tm.execute_task("run")
        await asyncio.to_thread(STARTED.wait, 30)
        await ready_until_sigkill(tm, double)  # marker, after run's running record


if __name__ == "__main__":
    import jretry_worker  # the functions as the journal names them

    jretry_worker.OUT = Path(sys.argv[2])
    jretry_worker.FAILING = True
    asyncio.run(jretry_worker.first(sys.argv[1]))
