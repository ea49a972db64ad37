"""The processes of tests/test_journal_faults.py; run as a script.

``python jfault_worker.py JOURNAL hold``: starts a system journaling to JOURNAL,
registers the durable task ``marker`` (``helpers.add``, which the test's process
resolves too) and prints ``ready``; the test then kills it
with SIGKILL (`helpers.sigkill_when_ready`).

``python jfault_worker.py JOURNAL wal-deleted``: registers ``before``, deletes the
journal's ``-wal`` and ``-shm`` files, registers ``after``, then as ``hold``.

``python jfault_worker.py JOURNAL full``: registers ``before``, then limits the size of
the files this process writes (RLIMIT_FSIZE, SIGXFSZ ignored: a write past it fails
with EFBIG, as on a full disk) to what the journal holds, registers and executes
durable tasks whose rows no longer fit (the first is answered, its write fails, the
next are refused), executes the first, and a task in memory only; prints what each call
answered, the first ``journal_error`` event and the metric as one JSON line, then stops
the system and prints ``stopped``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys

from helpers import add, ready_until_sigkill

from actors import ActorSystem, EventKind
from actors.core import JournalError


def echo(value: int) -> int:
    return value


async def hold(journal: str) -> None:
    async with ActorSystem({"JOURNAL_PATH": journal, "CLEANUP_INTERVAL": 0}) as system:
        await ready_until_sigkill(system.task_manager, add)


async def wal_deleted(journal: str) -> None:
    async with ActorSystem({"JOURNAL_PATH": journal, "CLEANUP_INTERVAL": 0}) as system:
        tm = system.task_manager
        await tm.register_task("add", add, (1, 2), task_id="before")
        for suffix in ("-wal", "-shm"):
            os.remove(f"{journal}{suffix}")
        await tm.register_task("add", add, (3, 4), task_id="after")
        await ready_until_sigkill(tm, add)


async def full(journal: str) -> None:
    system = ActorSystem({"JOURNAL_PATH": journal, "CLEANUP_INTERVAL": 0})
    async with system:
        tm = system.task_manager
        await tm.register_task("echo", echo, (0,), task_id="before")
        size = max(os.path.getsize(journal), os.path.getsize(f"{journal}-wal"))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
        out: dict[str, object] = {}
        async with tm.events() as stream:
            pad = {"pad": "x" * 20_000}  # a row that cannot fit
            answers: list[object] = []
            for i in range(3):
                try:
                    answers.append(
                        await tm.register_task("echo", echo, (i,), task_id=f"t{i}", metadata=pad)
                    )
                except JournalError as error:
                    answers.append([type(error).__name__, str(error)])
            out["registered"] = answers
            out["executed"] = await tm.execute_task("t0", wait=True)
            memory = await tm.register_task("add", add, (2, 3), durable=False)
            out["memory"] = await tm.execute_task(memory, wait=True)
            events = aiter(stream)
            event = await asyncio.wait_for(anext(events), 10)
            while event.kind is not EventKind.JOURNAL_ERROR:
                event = await asyncio.wait_for(anext(events), 10)
        out["event"] = [event.detail["error"], event.detail["message"]]
        out["statuses"] = {t.task_id: t.status.value for t in await tm.get_all_tasks()}
        metrics = await tm.get_metrics()
        out["errors"] = metrics.journal_errors
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    sys.stdout.write("stopped\n")
    sys.stdout.flush()


if __name__ == "__main__":
    path, mode = sys.argv[1], sys.argv[2]
    asyncio.run({"hold": hold, "full": full, "wal-deleted": wal_deleted}[mode](path))
