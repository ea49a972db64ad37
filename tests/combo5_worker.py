"""The process of the SIGKILL scenario of tests/test_combos5.py; run as a script.

``python combo5_worker.py JOURNAL OUT``: with MAX_FINISHED_TASKS=1, registers durable
``a`` and ``c`` (``double``), ``b`` (``take``, ``result_of(a)``) and ``d``; runs ``a``
and ``c`` (``a`` is kept, in the file too, only because ``b`` takes its result),
executes ``b``, whose body blocks once started, then runs ``d`` (which finishes after
``a``), registers ``marker`` (committed after ``d``'s end) and prints ``ready``: the
test kills this process with SIGKILL while ``b`` is running. The test's own process
opens the journal again and imports the task functions from this module (so their
journaled references, ``combo5_worker:...``, resolve there too). Each body run appends a
line to OUT.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

from helpers import ready_until_sigkill

from actors import ActorSystem, result_of

OUT: Path | None = None
BLOCK = False
"""True in the worker process: ``take`` blocks once started."""
STARTED = threading.Event()


def ran(line: str) -> None:
    assert OUT is not None
    with OUT.open("a") as out:
        out.write(f"{line}\n")


def double(x: int) -> int:
    ran(f"double {x}")
    return 2 * x


def take(x: int) -> int:
    ran(f"take {x}")
    if BLOCK:
        STARTED.set()
        threading.Event().wait()  # until the SIGKILL
    return x + 1


async def first(journal: str) -> None:
    config = {"JOURNAL_PATH": journal, "CLEANUP_INTERVAL": 0, "MAX_FINISHED_TASKS": 1}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        await tm.register_task("a", double, (2,), task_id="a")
        await tm.register_task("c", double, (3,), task_id="c")
        await tm.register_task("b", take, (result_of("a"),), task_id="b")
        await tm.execute_task("a", wait=True)
        await tm.execute_task("c", wait=True)
        await tm.register_task("d", double, (5,), task_id="d")
        await tm.execute_task("b")
        await asyncio.to_thread(STARTED.wait, 30)
        await tm.execute_task("d", wait=True)
        await ready_until_sigkill(tm, double)  # marker, after what d's end changed


if __name__ == "__main__":
    import combo5_worker  # the functions as the journal names them

    combo5_worker.OUT = Path(sys.argv[2])
    combo5_worker.BLOCK = True
    asyncio.run(combo5_worker.first(sys.argv[1]))
