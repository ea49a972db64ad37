"""S12 journal: what durable tasks cost (issue 14).

(a) S1's fan-out (N no-op ``async def`` tasks registered with one gather, executed and
awaited with another) with ``JOURNAL_PATH`` set, against the same run without it: every
registration and execution is acknowledged only once committed, and every attempt
starts only once the journal says it may be running. Goal: <= 1.5x.

(b) Recovery: a journal holding N unfinished tasks (``queued``; written before the
clock starts), then ``ActorSystem.start()``: read the file, decode every task, put it
back, execute it again, and answer a first call (``get_metrics``, which waits for
both managers). Goal: <= 3 s for 100,000 tasks. Also reported, no goal: until all N
have completed (their re-runs and the journal's writes of their ends included).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from actors import ActorSystem, TaskStatus
from actors.journal import Codec, JournalStore, TaskRow, function_reference

from ._core import US_PER_TASK, Figure, Goal, Result, Settings, alternate, column
from ._workloads import actorflow_fanout, noop

NAME = "s12_journal"
TITLE = "durable tasks: journal on vs off, recovery"
SIDES = 3


def _journal_dir() -> tuple[dict[str, str], Callable[[], Callable[[], None]]]:
    """A config whose JOURNAL_PATH is a fresh file for each run, and its setup."""
    config: dict[str, str] = {}

    def setup() -> Callable[[], None]:
        folder = tempfile.mkdtemp(prefix="actorflow-s12-")
        config["JOURNAL_PATH"] = str(Path(folder) / "tasks.db")
        return lambda: shutil.rmtree(folder, ignore_errors=True)

    return config, setup


def unfinished_journal(path: Path, n: int) -> None:
    """A journal of ``n`` tasks that had been executed and had not ended."""
    codec = Codec("json")
    function = function_reference(noop, task="noop")
    now = time.time()
    rows = []
    for i in range(n):
        task_id = f"task-{i:07d}"
        args, kwargs = codec.encode_args((i,), {}, task=task_id)
        row = (task_id, f"noop {i}", "default", function, args, kwargs, 1, (), 0, 0.0)
        state = ("new", "queued", now, now, True)
        rows.append(TaskRow(*row, None, None, None, "", "{}", "cancel", *state))
    with JournalStore(path) as store:
        store.write(rows)


def recovery(n: int) -> dict[str, float]:
    """Seconds from ``start()`` to a first answered call, and to all ``n`` completed."""
    folder = Path(tempfile.mkdtemp(prefix="actorflow-s12-"))
    try:
        path = folder / "tasks.db"
        unfinished_journal(path, n)

        # No bound on finished tasks: every one is counted completed at the end.
        config = {"JOURNAL_PATH": str(path), "CLEANUP_INTERVAL": 0, "MAX_FINISHED_TASKS": 0}

        async def run() -> dict[str, float]:
            started = time.perf_counter()
            async with ActorSystem(config) as system:
                tm = system.task_manager
                await tm.get_metrics()
                back = time.perf_counter() - started
                last = f"task-{n - 1:07d}"
                await tm.wait_for_task(last, timeout=600)
                while True:
                    metrics = await tm.get_metrics()
                    if metrics.tasks_by_status.get(TaskStatus.COMPLETED, 0) >= n:
                        break
                    await asyncio.sleep(0.01)
                done = time.perf_counter() - started
            return {"back": back, "done": done}

        return asyncio.run(run())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(settings: Settings) -> list[Result]:
    n = settings.size(20_000, 5_000)
    recovered = settings.size(100_000, 10_000)
    config, setup = _journal_dir()
    samples = alternate(
        settings,
        NAME,
        {
            "journal": lambda: actorflow_fanout(n, config=config, setup=setup),
            "memory": lambda: actorflow_fanout(n),
            "recovery": lambda: recovery(recovered),
        },
    )
    return [
        Result(
            NAME,
            f"N={n:,} S1 fan-out, JOURNAL_PATH set vs not",
            Figure("journal on", US_PER_TASK, column(samples["journal"], "us")),
            Figure("journal off", US_PER_TASK, column(samples["memory"], "us")),
            Goal("≤ 1.5x without", "ratio", 1.5),
        ),
        Result(
            NAME,
            f"N={recovered:,} unfinished tasks: start() to a first answered call",
            Figure("recovery", "s", column(samples["recovery"], "back")),
            goal=Goal("≤ 3 s", "actorflow", 3.0),
        ),
        Result(
            NAME,
            f"N={recovered:,} same, until all have run again and completed",
            Figure("recovery and re-run", "s", column(samples["recovery"], "done")),
            note="no goal: includes running N tasks",
        ),
    ]
