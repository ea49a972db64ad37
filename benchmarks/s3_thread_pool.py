"""S3 thread pool: plain functions through ``unified_task_manager.thread_pool.submit``.

actorflow: N ``thread_pool.submit(fn, i)`` calls, gathered, every result checked; the
pool actor hands each function to its `ThreadPoolExecutor` and the answer comes back
to the loop through the bridge. Baseline: a `ThreadPoolExecutor` with the same number
of workers (``MAX_THREAD_WORKERS``), N ``submit`` calls, then `wait` for all.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor, wait

from actors import ActorSystem, load_config

from ._core import (
    US_PER_TASK,
    Figure,
    Goal,
    Result,
    Settings,
    alternate,
    column,
    per_task_us,
)
from ._workloads import expect, plain

NAME = "s3_thread_pool"
TITLE = "plain functions through the thread pool"
SIDES = 2


def actorflow_submit(n: int) -> float:
    async def run() -> float:
        async with ActorSystem() as system:
            pool = system.task_manager.thread_pool
            started = time.perf_counter()
            results = await asyncio.gather(*(pool.submit(plain, i) for i in range(n)))
            elapsed = time.perf_counter() - started
        expect(results, n, "thread_pool.submit")
        return per_task_us(elapsed, n)

    return asyncio.run(run())


def executor_submit(n: int, workers: int) -> float:
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-baseline")
    try:
        started = time.perf_counter()
        futures = [executor.submit(plain, i) for i in range(n)]
        wait(futures)
        elapsed = time.perf_counter() - started
        results = [future.result() for future in futures]
    finally:
        executor.shutdown(wait=True)
    expect(results, n, "ThreadPoolExecutor")
    return per_task_us(elapsed, n)


def run(settings: Settings) -> list[Result]:
    n = settings.size(20_000, 5_000)
    workers = load_config().MAX_THREAD_WORKERS
    samples = alternate(
        settings,
        NAME,
        {
            "actorflow": lambda: actorflow_submit(n),
            "executor": lambda: executor_submit(n, workers),
        },
    )
    return [
        Result(
            NAME,
            f"N={n:,} thread_pool.submit vs ThreadPoolExecutor ({workers} workers)",
            Figure("thread_pool.submit, gathered", US_PER_TASK, column(samples["actorflow"])),
            Figure("executor.submit + wait", US_PER_TASK, column(samples["executor"])),
            Goal("≤ 2x executor", "ratio", 2.0),
        )
    ]
