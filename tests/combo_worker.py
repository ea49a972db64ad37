"""The process of the durable combo test (tests/test_combos.py); run as a script.

``python combo_worker.py JOURNAL OUT first``: registers a durable chain
``a -> b -> c`` (``b`` and ``c`` take ``result_of`` their dependency; ``b`` retries with
a long delay and, like ``c``, is behind the breaker ``svc``) plus ``d``, a task of the
same breaker that completes; executes ``c`` and ``d``, waits until ``a`` and ``d``
completed and ``b`` failed its first attempt (its retry pending), commits a marker task
(its registration is answered once the journal committed it, after ``b``'s record) and
prints ``ready``: the test then kills this process with SIGKILL.
``... second``: the same start-up code (registration is idempotent), then waits for
every task and prints ``{task_id: [status, attempts, result]}`` as JSON.
Each run of a task body appends ``<name>`` to OUT.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from actors import ActorSystem, EventKind, result_of

OUT_FD = -1
PHASE = ""


def ran(name: str) -> None:
    os.write(OUT_FD, f"{name}\n".encode())


def make_a() -> int:
    ran("a")
    return 10


async def make_b(x: int) -> int:
    ran("b")
    if PHASE == "first":
        raise ConnectionError("service down")
    return x + 1


def make_c(x: int) -> str:
    ran("c")
    return f"c({x})"


async def make_d() -> str:
    ran("d")
    return "d"


def marker() -> None:
    ran("marker")


async def main(journal: str) -> None:
    config = {"JOURNAL_PATH": journal, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        events = tm.events()
        a = await tm.register_task("a", make_a, task_id="a")
        b = await tm.register_task(
            "b",
            make_b,
            (result_of(a),),
            task_id="b",
            max_retries=2,
            retry_delay=3600.0,
            circuit_breaker="svc",
        )
        c = await tm.register_task("c", make_c, (result_of(b),), task_id="c", circuit_breaker="svc")
        d = await tm.register_task("d", make_d, task_id="d", circuit_breaker="svc")
        await tm.execute_task(c)
        await tm.execute_task(d)
        if PHASE == "first":
            seen = set()
            async for event in events:
                if event.kind in (EventKind.COMPLETED, EventKind.RETRYING):
                    seen.add((event.task_id, event.kind))
                if seen >= {
                    ("a", EventKind.COMPLETED),
                    ("d", EventKind.COMPLETED),
                    ("b", EventKind.RETRYING),
                }:
                    break
            await tm.register_task("marker", marker, task_id="marker")
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            await asyncio.Event().wait()  # until killed
        await events.aclose()
        results = {t: await tm.wait_for_task(t, timeout=30) for t in "abcd"}
        infos = {
            i.task_id: [i.status.value, i.attempts, results.get(i.task_id)]
            for i in await tm.get_all_tasks()
        }
        sys.stdout.write(json.dumps(infos) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    OUT_FD = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    PHASE = sys.argv[3]
    asyncio.run(main(sys.argv[1]))
