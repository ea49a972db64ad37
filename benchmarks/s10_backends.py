"""S10 executor backends: CPU-bound work on ``process``, GIL-releasing work on ``thread``.

Both parts fan out 4 tasks per core (``os.cpu_count()``) and run every pool with one
worker per core (``MAX_THREAD_WORKERS = os.cpu_count()`` for actorflow).

(a) Pure-Python CPU work: `spin`, calibrated at the start of the scenario to about
50 ms per task in this process (quick: 20 ms). actorflow registers and executes the
tasks with ``executor="process"``; the baseline is a bare spawn-context
`ProcessPoolExecutor(os.cpu_count())`, ``submit`` + ``result``. Each is compared with
running the same tasks serially in this process, measured in the same repeat: the
figures are speedups over serial, and the ratio is actorflow's speedup / the bare
pool's (goal >= 0.9).

(b) GIL-releasing work: SHA-256 of 8 MiB buffers (quick: 2 MiB), one buffer per task,
through ``executor="thread"`` against a bare `ThreadPoolExecutor(os.cpu_count())`;
the figures are wall time per fan-out, the ratio actorflow / bare (goal <= 1.1). A
diagnostic row runs the same calls through ``thread_pool.submit`` (the same executor,
no task record and no attempt), which separates the task path's share.

Each measurement times several fan-outs one after the other (full: 3 of (a), 20 of
(b); quick: 1 and 5), each gathered before the next starts, and reports ms per fan-out.

Every measurement starts its own pool (a fresh `ActorSystem`, or a new executor) and
warms it up before the clock starts: warm-up rounds of short tasks until every worker
(each process, or each thread) has answered one, so no worker is spawned or imports
anything on the clock. Each pool is shut down before the measurement returns, and no
worker process may outlive it (spawn's resource tracker, which lives until the
interpreter exits by design, is started before the scenario takes its baseline of
child processes). Every result is checked against the serial run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.resource_tracker
import os
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psutil

from actors import ActorSystem

from ._core import BenchmarkError, Figure, Goal, Result, Settings, alternate, column
from ._workloads import calibrate_spin, digest, spin, worker_id

NAME = "s10_backends"
TITLE = "process / thread executors vs bare pools"
SIDES = 7
TASKS_PER_CORE = 4
WARM_TASK_SECONDS = 0.01
WARM_ROUNDS = 50
"""Warm-up rounds at most before giving up on a worker that never answers."""
CHILD_GRACE_SECONDS = 10.0
MS_PER_FAN_OUT = "ms/fan-out"


@dataclass(frozen=True, slots=True)
class Sizes:
    task_seconds: float
    """(a): the calibrated length of one CPU-bound task."""
    cpu_rounds: int
    """(a): fan-outs per measurement."""
    buffer_mib: int
    """(b): the buffer each task hashes."""
    hash_rounds: int
    """(b): fan-outs per measurement."""


def sizes(settings: Settings) -> Sizes:
    if settings.quick:
        return Sizes(task_seconds=0.02, cpu_rounds=1, buffer_mib=2, hash_rounds=5)
    return Sizes(task_seconds=0.05, cpu_rounds=3, buffer_mib=8, hash_rounds=20)


def cores() -> int:
    return os.cpu_count() or 1


# -- hygiene --------------------------------------------------------------------------------


def _children() -> set[int]:
    multiprocessing.active_children()  # reaps the finished ones
    return {child.pid for child in psutil.Process().children(recursive=True)}


def _check_children(before: set[int], where: str) -> None:
    """No worker process may outlive its pool: wait a little, then kill and fail."""
    deadline = time.monotonic() + CHILD_GRACE_SECONDS
    left = _children() - before
    while left and time.monotonic() < deadline:
        psutil.wait_procs([psutil.Process(pid) for pid in left if psutil.pid_exists(pid)], 0.1)
        left = _children() - before
    if left:
        for pid in left:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        raise BenchmarkError(f"{where} left {len(left)} child processes running: {sorted(left)}")


# -- warm-up --------------------------------------------------------------------------------


def _warmed(where: str, workers: int, rounds: Iterable[list[tuple[int, int]]]) -> None:
    seen: set[tuple[int, int]] = set()
    for answered in rounds:
        seen.update(answered)
        if len(seen) >= workers:
            return
    raise BenchmarkError(f"{where}: only {len(seen)} of {workers} workers answered the warm-up")


def _warm_executor(executor: Executor, workers: int, n: int, where: str) -> None:
    def rounds() -> Iterable[list[tuple[int, int]]]:
        for _ in range(WARM_ROUNDS):
            futures = [executor.submit(worker_id, WARM_TASK_SECONDS) for _ in range(n)]
            yield [future.result() for future in futures]

    _warmed(where, workers, rounds())


async def _warm_actorflow(tm: Any, backend: str, workers: int, n: int) -> None:
    seen: set[tuple[int, int]] = set()
    for _ in range(WARM_ROUNDS):
        ids = await asyncio.gather(
            *(
                tm.register_task("warm-up", worker_id, (WARM_TASK_SECONDS,), executor=backend)
                for _ in range(n)
            )
        )
        answered = await asyncio.gather(*(tm.execute_task(i, wait=True) for i in ids))
        seen.update(tuple(a) for a in answered)
        if len(seen) >= workers:
            return
    raise BenchmarkError(
        f"actorflow {backend!r}: only {len(seen)} of {workers} workers answered the warm-up"
    )


def _check(results: list[list[Any]], expected: list[Any], where: str) -> None:
    wrong = sum(1 for answers in results for a, e in zip(answers, expected, strict=True) if a != e)
    if wrong or any(len(answers) != len(expected) for answers in results):
        raise BenchmarkError(f"{where}: {wrong} results were wrong")


# -- the sides ------------------------------------------------------------------------------


def serial(
    fn: Callable[..., Any], calls: list[tuple[Any, ...]], rounds: int, expected: list[Any]
) -> float:
    """The same calls one after the other in this process: ms per fan-out."""
    results: list[list[Any]] = []
    started = time.perf_counter()
    for _ in range(rounds):
        results.append([fn(*args) for args in calls])
    elapsed = time.perf_counter() - started
    _check(results, expected, "serial")
    return elapsed / rounds * 1e3


def actorflow_fan_out(
    backend: str,
    fn: Callable[..., Any],
    calls: list[tuple[Any, ...]],
    rounds: int,
    expected: list[Any],
) -> float:
    """Register and execute the calls as tasks on ``backend``, gathered: ms per fan-out."""
    workers = cores()

    async def run() -> float:
        async with ActorSystem({"MAX_THREAD_WORKERS": workers}) as system:
            tm = system.task_manager
            await _warm_actorflow(tm, backend, workers, len(calls))
            results: list[list[Any]] = []
            started = time.perf_counter()
            for _ in range(rounds):
                ids = await asyncio.gather(
                    *(tm.register_task(fn.__name__, fn, args, executor=backend) for args in calls)
                )
                results.append(await asyncio.gather(*(tm.execute_task(i, wait=True) for i in ids)))
            elapsed = time.perf_counter() - started
        _check(results, expected, f"actorflow {backend!r}")
        return elapsed / rounds * 1e3

    return asyncio.run(run())


def actorflow_submit_fan_out(
    backend: str,
    fn: Callable[..., Any],
    calls: list[tuple[Any, ...]],
    rounds: int,
    expected: list[Any],
) -> float:
    """The calls through ``thread_pool.submit(..., executor=backend)``, gathered: no task
    record, no attempt (the diagnostic of what the task path adds): ms per fan-out."""
    workers = cores()

    async def run() -> float:
        async with ActorSystem({"MAX_THREAD_WORKERS": workers}) as system:
            tm = system.task_manager
            await _warm_actorflow(tm, backend, workers, len(calls))  # the same executor
            pool = tm.thread_pool
            results: list[list[Any]] = []
            started = time.perf_counter()
            for _ in range(rounds):
                results.append(
                    await asyncio.gather(
                        *(pool.submit(fn, *args, executor=backend) for args in calls)
                    )
                )
            elapsed = time.perf_counter() - started
        _check(results, expected, f"thread_pool.submit {backend!r}")
        return elapsed / rounds * 1e3

    return asyncio.run(run())


def bare_fan_out(
    make: Callable[[int], Executor],
    fn: Callable[..., Any],
    calls: list[tuple[Any, ...]],
    rounds: int,
    expected: list[Any],
    where: str,
) -> float:
    """``submit`` the calls to a bare executor, collect every result: ms per fan-out."""
    workers = cores()
    executor = make(workers)
    try:
        _warm_executor(executor, workers, len(calls), where)
        results: list[list[Any]] = []
        started = time.perf_counter()
        for _ in range(rounds):
            futures = [executor.submit(fn, *args) for args in calls]
            results.append([future.result() for future in futures])
        elapsed = time.perf_counter() - started
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    _check(results, expected, where)
    return elapsed / rounds * 1e3


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="bench-s10")


def _no_children_left(before: set[int], where: str, measure: Callable[[], float]) -> Callable:
    def checked() -> float:
        try:
            return measure()
        finally:
            _check_children(before, where)

    return checked


# -- the scenario -----------------------------------------------------------------------------


def _per_repeat(numerator: tuple[float, ...], denominator: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(a / b for a, b in zip(numerator, denominator, strict=True))


def run(settings: Settings) -> list[Result]:
    size = sizes(settings)
    workers = cores()
    n = TASKS_PER_CORE * workers
    # Spawn's resource tracker lives until the interpreter exits: not ours to stop.
    multiprocessing.resource_tracker.ensure_running()
    before = _children()

    iterations = calibrate_spin(size.task_seconds)
    cpu_calls = [(iterations, i) for i in range(n)]
    cpu_expected = [spin(*args) for args in cpu_calls]
    buffer_bytes = size.buffer_mib * 2**20
    buffers = [bytes([i % 256]) * buffer_bytes for i in range(n)]
    hash_calls = [(buffer,) for buffer in buffers]
    hash_expected = [digest(buffer) for buffer in buffers]

    def cpu(where: str, measure: Callable[[], float]) -> Callable[[], float]:
        return _no_children_left(before, f"{NAME} {where}", measure)

    samples = alternate(
        settings,
        NAME,
        {
            "cpu actorflow": cpu(
                "process executor",
                lambda: actorflow_fan_out(
                    "process", spin, cpu_calls, size.cpu_rounds, cpu_expected
                ),
            ),
            "cpu bare": cpu(
                "bare ProcessPoolExecutor",
                lambda: bare_fan_out(
                    spawn_pool,
                    spin,
                    cpu_calls,
                    size.cpu_rounds,
                    cpu_expected,
                    "bare ProcessPoolExecutor",
                ),
            ),
            "cpu serial": lambda: serial(spin, cpu_calls, size.cpu_rounds, cpu_expected),
            "hash actorflow": lambda: actorflow_fan_out(
                "thread", digest, hash_calls, size.hash_rounds, hash_expected
            ),
            "hash bare": lambda: bare_fan_out(
                thread_pool,
                digest,
                hash_calls,
                size.hash_rounds,
                hash_expected,
                "bare ThreadPoolExecutor",
            ),
            "hash submit": lambda: actorflow_submit_fan_out(
                "thread", digest, hash_calls, size.hash_rounds, hash_expected
            ),
            "hash serial": lambda: serial(digest, hash_calls, size.hash_rounds, hash_expected),
        },
    )
    _check_children(before, NAME)

    cpu_af, cpu_bare, cpu_serial = (
        column(samples[side]) for side in ("cpu actorflow", "cpu bare", "cpu serial")
    )
    hash_af, hash_bare, hash_submit, hash_serial = (
        column(samples[side])
        for side in ("hash actorflow", "hash bare", "hash submit", "hash serial")
    )
    shape = f"{n} tasks ({TASKS_PER_CORE} per core, {workers} cores)"
    serial_task_ms = statistics.median(cpu_serial) / n
    serial_hash_ms = statistics.median(hash_serial) / n
    return [
        Result(
            NAME,
            f"(a) CPU-bound fan-out, {shape} of ~{size.task_seconds * 1e3:.0f} ms pure Python: "
            "speedup over serial, process executor vs bare pool",
            Figure(
                'register + execute, executor="process", speedup over serial',
                "x",
                _per_repeat(cpu_serial, cpu_af),
            ),
            Figure(
                f"ProcessPoolExecutor({workers}) spawn, speedup over serial",
                "x",
                _per_repeat(cpu_serial, cpu_bare),
            ),
            Goal("≥ 0.9x bare", "ratio", 0.9, at_least=True),
        ),
        Result(
            NAME,
            f"(a) same, wall time per fan-out of {n}",
            Figure('executor="process"', MS_PER_FAN_OUT, cpu_af),
            Figure("bare ProcessPoolExecutor", MS_PER_FAN_OUT, cpu_bare),
            note=(
                f"diagnostic: serial in-process {serial_task_ms:.1f} ms/task "
                f"({iterations:,} loop iterations)"
            ),
        ),
        Result(
            NAME,
            f"(b) GIL-releasing fan-out, {shape} of sha256 over {size.buffer_mib} MiB: "
            "thread executor vs bare pool",
            Figure('register + execute, executor="thread"', MS_PER_FAN_OUT, hash_af),
            Figure(f"ThreadPoolExecutor({workers})", MS_PER_FAN_OUT, hash_bare),
            Goal("≤ 1.1x bare", "ratio", 1.1),
        ),
        Result(
            NAME,
            "(b) same through thread_pool.submit",
            Figure('thread_pool.submit(executor="thread")', MS_PER_FAN_OUT, hash_submit),
            Figure(f"ThreadPoolExecutor({workers})", MS_PER_FAN_OUT, hash_bare),
            note="diagnostic: no task record, no attempt; the gap to the row above: the task path",
        ),
        Result(
            NAME,
            "(b) same, speedup over serial",
            Figure('executor="thread", speedup', "x", _per_repeat(hash_serial, hash_af)),
            Figure("bare ThreadPoolExecutor, speedup", "x", _per_repeat(hash_serial, hash_bare)),
            note=f"diagnostic: serial in-process {serial_hash_ms:.2f} ms per buffer",
        ),
    ]
