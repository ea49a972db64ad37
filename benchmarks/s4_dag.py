"""S4 DAG: layers of no-op tasks, each depending on two tasks of the layer before.

actorflow: register every task with its dependencies (layer by layer, each layer's
registrations gathered, since a dependency must exist first), execute only the last
layer (executing a task executes its pending dependencies), then await every task's
result. Baseline: the same graph in plain asyncio, one future per task that gathers
its two dependencies before running the same coroutine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

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
from ._workloads import expect, noop

NAME = "s4_dag"
TITLE = "dependency graph, layers x width"
SIDES = 2


def _parents(j: int, width: int) -> tuple[int, int]:
    return j, (j + 1) % width


def actorflow_dag(layers: int, width: int) -> float:
    count = layers * width

    async def run() -> float:
        async with ActorSystem() as system:
            tm = system.task_manager
            started = time.perf_counter()
            every: list[str] = []
            previous: list[str] = []
            for layer in range(layers):
                base = layer * width
                ids = await asyncio.gather(
                    *(
                        tm.register_task(
                            "node",
                            noop,
                            (base + j,),
                            dependencies=(
                                () if not previous else [previous[p] for p in _parents(j, width)]
                            ),
                        )
                        for j in range(width)
                    )
                )
                every.extend(ids)
                previous = ids
            accepted = await asyncio.gather(*(tm.execute_task(t) for t in previous))
            results = await asyncio.gather(*(tm.wait_for_task(t) for t in every))
            elapsed = time.perf_counter() - started
        if not all(accepted):
            raise BenchmarkError(f"{NAME}: the last layer was not accepted for execution")
        expect(results, count, "actorflow DAG")
        return per_task_us(elapsed, count)

    return asyncio.run(run())


def asyncio_dag(layers: int, width: int) -> float:
    count = layers * width

    async def node(deps: tuple[asyncio.Future[Any], ...], i: int) -> int:
        if deps:
            await asyncio.gather(*deps)
        return await noop(i)

    async def run() -> float:
        started = time.perf_counter()
        every: list[asyncio.Future[Any]] = []
        previous: list[asyncio.Future[Any]] = []
        for layer in range(layers):
            base = layer * width
            current = [
                asyncio.ensure_future(
                    node(
                        () if not previous else tuple(previous[p] for p in _parents(j, width)),
                        base + j,
                    )
                )
                for j in range(width)
            ]
            every.extend(current)
            previous = current
        results = await asyncio.gather(*every)
        elapsed = time.perf_counter() - started
        expect(list(results), count, "asyncio DAG")
        return per_task_us(elapsed, count)

    return asyncio.run(run())


def run(settings: Settings) -> list[Result]:
    layers, width = (30, 50) if settings.quick else (100, 100)
    samples = alternate(
        settings,
        NAME,
        {
            "actorflow": lambda: actorflow_dag(layers, width),
            "asyncio": lambda: asyncio_dag(layers, width),
        },
    )
    return [
        Result(
            NAME,
            f"{layers * width:,} tasks, {layers} layers of {width}, 2 deps each",
            Figure(
                "register with deps + execute last layer + await all",
                US_PER_TASK,
                column(samples["actorflow"]),
            ),
            Figure(
                "asyncio future per task gathering its deps",
                US_PER_TASK,
                column(samples["asyncio"]),
            ),
            Goal("≤ 5x asyncio", "ratio", 5.0),
        )
    ]
