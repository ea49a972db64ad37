"""The process of the SIGKILL scenario of tests/test_combos8.py; run as a script.

``python combo8_worker.py JOURNAL NEW``: on the new task system if NEW is ``1``, else
the old one, registers durable ``f`` (fails, no retry), ``o``
(completes), ``r`` (running at the kill: its body blocks here) and ``p`` (pending),
runs ``f`` and ``o`` to their ends, starts ``r``, registers ``marker`` and prints
``ready``: the test kills this process with SIGKILL. The test's own process opens the
journal again and imports the task functions from this module, where ``r``'s body
waits for `GATE` instead of blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading

from helpers import WAIT, ready_until_sigkill

from actors import ActorSystem

BLOCK = False
"""True in the worker process: ``slow`` blocks once started."""
STARTED = threading.Event()
GATE = threading.Event()
"""In the test's process: set to let the recovered ``slow`` return."""
RUNS: list[str] = []


def boom() -> None:
    raise ValueError("boom")


def ok(x: int) -> int:
    return x


def slow() -> str:
    STARTED.set()
    if BLOCK:
        threading.Event().wait()  # until the SIGKILL
    RUNS.append("slow")
    assert GATE.wait(WAIT)
    return "done"


async def first(journal: str, new: bool) -> None:
    config = {"JOURNAL_PATH": journal, "CLEANUP_INTERVAL": 0, "USE_NEW_TASK_SYSTEM": new}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        await tm.register_task("f", boom, task_id="f")
        await tm.register_task("o", ok, (1,), task_id="o")
        await tm.register_task("r", slow, task_id="r")
        await tm.register_task("p", ok, (2,), task_id="p")
        with contextlib.suppress(ValueError):
            await tm.execute_task("f", wait=True)
        await tm.execute_task("o", wait=True)
        await tm.execute_task("r")
        await asyncio.to_thread(STARTED.wait, 30)
        await ready_until_sigkill(tm, ok)


if __name__ == "__main__":
    import combo8_worker  # the functions as the journal names them

    combo8_worker.BLOCK = True
    asyncio.run(combo8_worker.first(sys.argv[1], sys.argv[2] == "1"))
