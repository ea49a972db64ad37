"""Leaks: 500 `ActorSystem` start/stop cycles leave nothing behind.

Each cycle starts a system, registers and runs one task (a coroutine or, every other
cycle, a plain function on the pool, so the pool's threads come and go too), and shuts
the system down. Afterwards the threads and pykka's registry are back to their baseline
and the traced memory has grown by less than 5 MB. One cycle costs a few milliseconds,
about four times that with tracemalloc on; the whole test takes a few seconds.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc

import psutil
import pykka
import pytest

from actors import ActorSystem, TaskStatus

CYCLES = 500
WARM_UP = 20
MAX_GROWTH = 5 * 2**20
JOIN_BOUND = 5.0


async def coroutine_task(i: int) -> int:
    return i * 2


def function_task(i: int) -> int:
    return i * 2


async def cycle(i: int) -> int:
    """One start/run/stop cycle; returns how many threads were alive while it ran."""
    async with ActorSystem() as system:
        tm = system.task_manager
        body = function_task if i % 2 else coroutine_task
        task_id = await tm.register_task(f"cycle-{i}", body, (i,))
        assert await tm.execute_task(task_id, wait=True) == i * 2
        assert await tm.get_task_status(task_id) is TaskStatus.COMPLETED
        return threading.active_count()


def settled_threads(baseline: set[int]) -> list[threading.Thread]:
    """Threads beyond ``baseline`` still alive after joining each (bounded)."""
    deadline = time.monotonic() + JOIN_BOUND
    for thread in threading.enumerate():
        if thread.ident not in baseline and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threading.enumerate() if t.ident not in baseline and t.is_alive()]


@pytest.mark.slow
async def test_500_start_stop_cycles_leave_no_thread_actor_or_memory_behind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(WARM_UP):  # imports, caches and the loop's bridge reach their size
        await cycle(i)
    # The shared clock's thread ends on its own just after a stop cancels its timers
    # (the stop does not join it): one still ending now is not part of the baseline, and
    # `settled_threads` joins it (and any clock thread the cycles start) at the end.
    baseline_threads = {
        t.ident
        for t in threading.enumerate()
        if t.ident is not None and t.name != "actorflow-clock"
    }
    baseline_actors = len(pykka.ActorRegistry.get_all())
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    tracemalloc.start()
    try:
        gc.collect()
        traced_before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        max_threads = 0
        for i in range(CYCLES):
            max_threads = max(max_threads, await cycle(i))
        elapsed = time.perf_counter() - started
        leaked_threads = settled_threads(baseline_threads)
        actors_after = len(pykka.ActorRegistry.get_all())
        gc.collect()
        traced_after, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    gc.collect()
    rss_after = process.memory_info().rss
    growth = traced_after - traced_before
    with capsys.disabled():
        print(
            f"\nleaks: {CYCLES} cycles in {elapsed:.2f}s ({elapsed / CYCLES * 1000:.1f} ms each, "
            f"traced); threads {len(baseline_threads)} -> {threading.active_count()} "
            f"(at most {max_threads} during a cycle); pykka actors {baseline_actors} -> "
            f"{actors_after}; traced memory growth {growth / 1024:.1f} KiB "
            f"(peak {(traced_peak - traced_before) / 1024:.1f} KiB above the start); "
            f"RSS growth {(rss_after - rss_before) / 2**20:.2f} MiB"
        )
    assert [t.name for t in leaked_threads] == []
    assert threading.active_count() == len(baseline_threads)
    assert max_threads > len(baseline_threads) + 5  # the cycles did start their actors
    assert actors_after == baseline_actors == 0
    assert growth < MAX_GROWTH, f"{growth} bytes kept after {CYCLES} cycles"
