"""Load: 200,000 no-op tasks through one system with periodic cleanup.

Tasks go in batches of 1,000 (register, then execute and wait), while the managers'
periodic cleanup (every 50 ms, any finished task) removes what finished. Memory stays
bounded: the process's RSS (after a garbage collection, every 10 batches) never grows
more than 40 MiB above where it was after a warm-up batch. Without the cleanup the
finished tasks would be kept: about 600 bytes each, over 100 MiB for 200,000, so the
bound fails after some 70,000 tasks. Every batch gets its results in order, nothing
fails or is retried, and the periodic cleanup keeps up (the final explicit one finds
fewer than 10 batches left). Speed is the benchmarks' business: the throughput of the
first and the last quarter is printed, not asserted.
"""

from __future__ import annotations

import asyncio
import gc
import time

import psutil
import pytest

from actors import ActorSystem

TASKS = 200_000
BATCH = 1_000
SAMPLE_EVERY = 10
"""Batches between two memory samples (a full collection costs a few milliseconds)."""
MAX_RSS_GROWTH = 40 * 2**20
MAX_RETAINED = 10 * BATCH
"""Finished tasks the periodic cleanup may be behind by, at a sample."""


async def noop(i: int) -> int:
    return i


@pytest.mark.slow
async def test_200000_tasks_with_periodic_cleanup_keep_memory_bounded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = {
        "MAX_CONCURRENT_TASKS": BATCH,
        "CLEANUP_INTERVAL": 0.05,
        "CLEANUP_MAX_AGE": 0.0,
    }
    process = psutil.Process()
    batches = TASKS // BATCH
    async with ActorSystem(config) as system:
        tm = system.task_manager

        async def run_batch(first: int) -> float:
            started = time.perf_counter()
            ids = await asyncio.gather(
                *(tm.register_task("noop", noop, (i,)) for i in range(first, first + BATCH))
            )
            results = await asyncio.gather(*(tm.execute_task(t, wait=True) for t in ids))
            elapsed = time.perf_counter() - started
            assert results == list(range(first, first + BATCH))
            return elapsed

        await run_batch(-BATCH)  # warm-up: tables and queues reach their working size
        gc.collect()
        rss_base = process.memory_info().rss
        rss_peak = 0
        retained_peak = 0
        durations: list[float] = []
        for b in range(batches):
            durations.append(await run_batch(b * BATCH))
            if b % SAMPLE_EVERY == SAMPLE_EVERY - 1:
                gc.collect()
                rss_peak = max(rss_peak, process.memory_info().rss - rss_base)
                retained_peak = max(retained_peak, len(await tm.get_all_tasks()))
        left = await tm.cleanup_completed_tasks(0.0)
        assert await tm.get_all_tasks() == []
        metrics = await tm.get_metrics()

    quarter = batches // 4
    first_rate = quarter * BATCH / sum(durations[:quarter])
    last_rate = quarter * BATCH / sum(durations[-quarter:])
    total = sum(durations)
    with capsys.disabled():
        print(
            f"\nload: {TASKS} tasks in {total:.1f}s ({TASKS / total:.0f} tasks/s); "
            f"first quarter {first_rate:.0f} tasks/s, last quarter {last_rate:.0f} tasks/s "
            f"(ratio {last_rate / first_rate:.2f}); peak RSS growth "
            f"{rss_peak / 2**20:.1f} MiB; at most {retained_peak} finished tasks retained "
            f"at a sample; periodic cleanup removed {TASKS + BATCH - left}, "
            f"the final explicit cleanup {left}"
        )
    assert rss_peak < MAX_RSS_GROWTH
    assert retained_peak < MAX_RETAINED
    assert left < MAX_RETAINED
    assert (metrics.failures, metrics.retries, metrics.timeouts) == (0, 0, 0)
    assert sum(metrics.tasks_by_status.values()) == 0
