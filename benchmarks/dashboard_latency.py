"""Dashboard latency with many tasks: a page of the task table and a task's detail.

    python -m benchmarks.dashboard_latency            # 100,000 tasks
    python -m benchmarks.dashboard_latency --tasks 20000 --repeats 50

Registers ``--tasks`` tasks (a tenth of them completed, three types), then times HTTP
requests to the dashboard's API through httpx's ASGI transport in this process (the
app, the client call, the facade and both managers; no socket). Prints the median,
p95 and max per request kind in milliseconds. The goal of issue 15: a page and a
detail each answer within 100 ms at 100,000 tasks. Needs the ``dashboard`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

import httpx

from actors import ActorSystem
from actors.dashboard import create_app

GOAL_MS = 100.0


def noop(x: int) -> int:
    return x


async def measure(tasks: int, repeats: int) -> list[tuple[str, list[float]]]:
    async with ActorSystem({"MAX_CONCURRENT_TASKS": 1000}) as system:
        tm = system.task_manager
        ids: list[str] = []
        chunk = 5000
        for start in range(0, tasks, chunk):
            batch = range(start, min(tasks, start + chunk))
            ids += await asyncio.gather(
                *(
                    tm.register_task(f"job-{i}", noop, (i,), task_type=f"type-{i % 3}")
                    for i in batch
                )
            )
        done = ids[:: max(1, tasks // (tasks // 10 or 1))][: tasks // 10]
        await asyncio.gather(*(tm.execute_task(t, wait=True) for t in done))
        middle = ids[len(ids) // 2]
        requests = [
            ("page 1 (50 rows)", "/api/tasks?limit=50"),
            ("page at offset 50,000", f"/api/tasks?limit=50&offset={tasks // 2}"),
            ("filter status=completed", "/api/tasks?limit=50&status=completed"),
            ("filter type + search", "/api/tasks?limit=50&type=type-1&q=job-99"),
            ("task detail", f"/api/tasks/{middle}"),
        ]
        results: list[tuple[str, list[float]]] = []
        transport = httpx.ASGITransport(app=create_app(system))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for label, path in requests:
                assert (await client.get(path)).status_code == 200  # warm up, and check
                times = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    answer = await client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 200, answer.text
                results.append((label, times))
        return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_latency")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.tasks, args.repeats))
    print(f"dashboard API latency with {args.tasks:,} tasks, {args.repeats} requests each (ms)")
    print(f"{'request':<28}{'median':>9}{'p95':>9}{'max':>9}  goal <= {GOAL_MS:g} ms")
    for label, times in results:
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        median = statistics.median(times)
        verdict = "met" if median <= GOAL_MS else "NOT met"
        print(f"{label:<28}{median:>9.1f}{p95:>9.1f}{max(times):>9.1f}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
