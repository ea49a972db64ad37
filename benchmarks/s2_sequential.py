"""S2 sequential: one task at a time, register then ``execute_task(wait=True)``.

Nothing is pipelined, so every task pays the whole round trip: caller loop -> facade
-> manager -> caller loop (the coroutine runs) -> manager -> caller loop, twice (once
to register, once to execute and wait). Baseline: raw pykka, N sequential ``ask``
calls to one ThreadingActor, each waited for before the next. Also measured: the same
through ``tm.submit`` (one round trip per task), against the same baseline.
"""

from __future__ import annotations

import asyncio
import time

from actors import ActorSystem

from ._core import (
    US_PER_TASK,
    BenchmarkError,
    Figure,
    Goal,
    Result,
    Settings,
    alternate,
    column,
    per_task_us,
)
from ._workloads import NoopActor, noop

NAME = "s2_sequential"
TITLE = "sequential register + execute(wait=True)"
SIDES = 3


def actorflow_sequential(n: int, submit: bool = False) -> float:
    async def run() -> float:
        async with ActorSystem() as system:
            tm = system.task_manager
            wrong = 0
            started = time.perf_counter()
            for i in range(n):
                if submit:
                    result = await tm.submit(noop, i, name="noop")
                else:
                    task_id = await tm.register_task("noop", noop, (i,))
                    result = await tm.execute_task(task_id, wait=True)
                if result != i:
                    wrong += 1
            elapsed = time.perf_counter() - started
        if wrong:
            raise BenchmarkError(f"{NAME}: {wrong} of {n} results were wrong")
        return per_task_us(elapsed, n)

    return asyncio.run(run())


def pykka_sequential(n: int) -> float:
    ref = NoopActor.start()
    try:
        wrong = 0
        started = time.perf_counter()
        for i in range(n):
            if ref.ask(i) != i:
                wrong += 1
        elapsed = time.perf_counter() - started
    finally:
        ref.stop()
    if wrong:
        raise BenchmarkError(f"{NAME}: pykka answered {wrong} of {n} asks wrongly")
    return per_task_us(elapsed, n)


def run(settings: Settings) -> list[Result]:
    n = settings.size(2_000, 500)
    samples = alternate(
        settings,
        NAME,
        {
            "actorflow": lambda: actorflow_sequential(n),
            "submit": lambda: actorflow_sequential(n, submit=True),
            "pykka": lambda: pykka_sequential(n),
        },
    )
    pykka = Figure("pykka ask", "µs/ask", column(samples["pykka"]))
    return [
        Result(
            NAME,
            f"N={n:,} one at a time vs pykka sequential ask",
            Figure("register + execute(wait=True)", US_PER_TASK, column(samples["actorflow"])),
            pykka,
            Goal("≤ 4x pykka", "ratio", 4.0),
        ),
        Result(
            NAME,
            f"N={n:,} one submit at a time vs pykka sequential ask",
            Figure("submit", US_PER_TASK, column(samples["submit"])),
            pykka,
            Goal("≤ 2.5x pykka", "ratio", 2.5),
        ),
    ]
