"""The S1 workload and its baselines, shared by S1, S7, S8, S9 and the peers; and the
task bodies of S10 (executor backends).

Every measuring function here runs one measurement from start to end: a fresh
`ActorSystem` (or actor, or executor) per call, stopped before it returns, and a
figure in microseconds per task (``µs/task``) computed from the clock, never typed in.

This module is importable by name (``benchmarks._workloads`` in the repository,
``actorflow_benchmarks._workloads`` once installed): S10's functions are pickled by
reference and run in spawned worker processes, which import it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pykka

from actors import ActorSystem

from ._core import BenchmarkError, per_task_us

__all__ = [
    "Heartbeat",
    "NoopActor",
    "actorflow_fanout",
    "asyncio_fanout",
    "calibrate_spin",
    "digest",
    "noop",
    "plain",
    "pykka_fanout",
    "spin",
    "worker_id",
]


async def noop(i: int) -> int:
    """The task body of S1: a no-op coroutine function returning its argument."""
    return i


def plain(i: int) -> int:
    """A no-op plain function returning its argument (S3)."""
    return i


def spin(iterations: int, seed: int) -> int:
    """Pure-Python CPU work (S10): a loop that holds the GIL throughout and allocates
    nothing but small ints; the answer depends on ``seed``, so each task's is its own."""
    value = seed
    for k in range(iterations):
        value = (value * 31 + k) & 0xFFFFFFFF
    return value


def calibrate_spin(seconds: float) -> int:
    """Iterations of `spin` that take about ``seconds`` in this process.

    Times growing runs until one lasts at least 0.1 s, then takes the fastest of three
    runs at that size (the least disturbed by other load) to scale from.
    """
    iterations = 10_000
    while True:
        started = time.perf_counter()
        spin(iterations, 0)
        if time.perf_counter() - started >= 0.1:
            break
        iterations *= 2
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        spin(iterations, 0)
        best = min(best, time.perf_counter() - started)
    return max(1, round(iterations * seconds / best))


def digest(buffer: bytes) -> str:
    """GIL-releasing work (S10): SHA-256 of ``buffer`` (hashlib releases the GIL for
    buffers over 2 KiB)."""
    return hashlib.sha256(buffer).hexdigest()


def worker_id(seconds: float) -> tuple[int, int]:
    """Warm-up (S10): keep a worker busy for ``seconds``, then name it: (process id,
    thread id), distinct for each worker process or each worker thread."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return os.getpid(), threading.get_ident()


class NoopActor(pykka.ThreadingActor):
    """The pykka baseline: one actor whose method (and ``ask``) returns its argument."""

    def noop(self, i: int) -> int:
        return i

    def on_receive(self, message: Any) -> Any:
        return message


def expect(results: list[Any], count: int, where: str) -> None:
    """Every task must have answered with its own argument, in order."""
    if results != list(range(count)):
        wrong = sum(1 for i, r in enumerate(results) if r != i) + abs(len(results) - count)
        raise BenchmarkError(f"{where}: {wrong} of {count} results were wrong")


class Heartbeat:
    """A 1 ms ticker on the running loop; records the longest gap between ticks."""

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.longest = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None
        self._running = False

    async def _beat(self) -> None:
        last = time.perf_counter()
        while self._running:
            await asyncio.sleep(self.period)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now

    async def start(self) -> None:
        self._running = True
        self._task = asyncio.get_running_loop().create_task(self._beat())
        await asyncio.sleep(0)  # let it take its first step before the workload starts

    async def stop(self) -> float:
        """Stop ticking; the longest gap in milliseconds."""
        self._running = False
        if self._task is not None:
            await self._task
        return self.longest * 1e3


async def _gather_all(tm: Any, n: int, register: Mapping[str, Any]) -> list[Any]:
    ids = await asyncio.gather(
        *(tm.register_task("noop", noop, (i,), **register) for i in range(n))
    )
    return await asyncio.gather(*(tm.execute_task(task_id, wait=True) for task_id in ids))


async def _submit_all(tm: Any, n: int, register: Mapping[str, Any]) -> list[Any]:
    """S1 through ``tm.submit``: one call (one message) per task."""
    return await asyncio.gather(*(tm.submit(noop, i, name="noop", **register) for i in range(n)))


async def _paced(tm: Any, n: int, register: Mapping[str, Any], workers: int = 100) -> list[Any]:
    results: list[Any] = [None] * n
    numbers = iter(range(n))

    async def worker() -> None:
        for i in numbers:
            task_id = await tm.register_task("noop", noop, (i,), **register)
            results[i] = await tm.execute_task(task_id, wait=True)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return results


def actorflow_fanout(
    n: int,
    *,
    register: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    heartbeat: bool = False,
    paced: bool = False,
    setup: Callable[[], Callable[[], None]] | None = None,
    submit: bool = False,
    map_: bool = False,
) -> dict[str, float]:
    """S1 through the facade: register N no-op tasks, execute them, await every result.

    The calls are pipelined with one `asyncio.gather` per phase (``paced``: 100 caller
    coroutines, each registering and executing one task at a time). Returns
    ``{"us": µs/task}`` and, with ``heartbeat``, ``{"stall_ms": longest gap}``.
    ``setup`` runs just before the system starts and returns its own undo. ``submit``:
    through ``tm.submit`` (one gather of N calls) instead of register + execute;
    ``map_``: through one ``tm.map`` call for the N items.
    """
    options = dict(register or {})

    async def run() -> dict[str, float]:
        async with ActorSystem(dict(config or {})) as system:
            tm = system.task_manager
            beat = Heartbeat() if heartbeat else None
            if beat is not None:
                await beat.start()
            started = time.perf_counter()
            if map_:
                results = await tm.map(noop, range(n), name="noop", **options)
            elif submit:
                results = await _submit_all(tm, n, options)
            elif paced:
                results = await _paced(tm, n, options)
            else:
                results = await _gather_all(tm, n, options)
            elapsed = time.perf_counter() - started
            stall = await beat.stop() if beat is not None else None
        expect(results, n, "actorflow fan-out")
        out = {"us": per_task_us(elapsed, n)}
        if stall is not None:
            out["stall_ms"] = stall
        return out

    undo = setup() if setup is not None else None
    try:
        return asyncio.run(run())
    finally:
        if undo is not None:
            undo()


def asyncio_fanout(n: int, *, heartbeat: bool = False, paced: bool = False) -> dict[str, float]:
    """The same coroutines, awaited with a raw `asyncio.gather` (no actors at all)."""

    async def run() -> dict[str, float]:
        beat = Heartbeat() if heartbeat else None
        if beat is not None:
            await beat.start()
        started = time.perf_counter()
        if paced:
            results: list[Any] = [None] * n
            numbers = iter(range(n))

            async def worker() -> None:
                for i in numbers:
                    results[i] = await noop(i)
                    await asyncio.sleep(0)  # a round trip's worth of yielding

            await asyncio.gather(*(worker() for _ in range(100)))
        else:
            results = await asyncio.gather(*(noop(i) for i in range(n)))
        elapsed = time.perf_counter() - started
        stall = await beat.stop() if beat is not None else None
        expect(results, n, "asyncio.gather")
        out = {"us": per_task_us(elapsed, n)}
        if stall is not None:
            out["stall_ms"] = stall
        return out

    return asyncio.run(run())


def pykka_fanout(n: int) -> float:
    """Raw pykka: N proxy calls to one ThreadingActor, each collected through its future."""
    ref = NoopActor.start()
    try:
        proxy = ref.proxy()
        started = time.perf_counter()
        futures = [proxy.noop(i) for i in range(n)]
        results = [future.get() for future in futures]
        elapsed = time.perf_counter() - started
    finally:
        ref.stop()
    expect(results, n, "pykka fan-out")
    return per_task_us(elapsed, n)
