"""The process of the kill -9 test (tests/test_durable_kill.py); run as a script.

``python durable_worker.py JOURNAL OUT TASKS first``: registers TASKS durable tasks
(ids ``t0``...), executes them and waits; each run of a task appends its number to OUT
and prints a line, so the test can kill this process at a chosen moment.
``... second``: the same start-up code (registration is idempotent), then waits for
every task and prints ``{task_id: [status, recoveries]}`` as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from actors import ActorSystem

OUT_FD = -1


def side_effect(index: int) -> int:
    os.write(OUT_FD, f"{index}\n".encode())
    sys.stdout.write(f"ran {index}\n")
    sys.stdout.flush()
    return index


async def main(journal: str, tasks: int, phase: str) -> None:
    config = {"JOURNAL_PATH": journal, "CLEANUP_INTERVAL": 0, "MAX_CONCURRENT_TASKS": 4}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        ids = [f"t{i}" for i in range(tasks)]
        for start in range(0, tasks, 50):  # registrations of a chunk share commits
            chunk = ids[start : start + 50]
            await asyncio.gather(
                *(tm.register_task("side", side_effect, (int(t[1:]),), task_id=t) for t in chunk)
            )
            sys.stdout.write(f"registered {start + len(chunk)}\n")
            sys.stdout.flush()
        await asyncio.gather(*(tm.execute_task(task_id) for task_id in ids))
        for task_id in ids:
            await tm.wait_for_task(task_id, timeout=60)
        if phase == "second":
            infos = {i.task_id: [i.status.value, i.recoveries] for i in await tm.get_all_tasks()}
            sys.stdout.write(json.dumps(infos) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    OUT_FD = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    asyncio.run(main(sys.argv[1], int(sys.argv[3]), sys.argv[4]))
