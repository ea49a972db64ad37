"""S8 scaling: S1's per-task cost at three sizes; flat means no hidden O(N²).

The S1 workload and its pykka baseline at each size, alternating; the flatness
figure is max / min of the per-task cost over the sizes, per repeat.

A diagnostic row repeats the flatness with CPython's cyclic garbage collector paused
during each measurement (collected before each one, as everywhere): a full collection
walks every live tracked object, so with N tasks alive the collector's share grows
with N for any Python code. That row separates actorflow's own scaling from the
collector's.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from ._core import US_PER_TASK, Figure, Goal, Result, Settings, alternate, column
from ._workloads import actorflow_fanout, pykka_fanout

NAME = "s8_scaling"
TITLE = "S1 per-task cost against N"


def sizes(settings: Settings) -> tuple[int, ...]:
    return (1_000, 3_000, 10_000) if settings.quick else (1_000, 10_000, 100_000)


def steps(settings: Settings) -> int:
    return settings.repeats * 4 * len(sizes(settings))


def _bind_actorflow(n: int) -> Callable[[], float]:
    return lambda: actorflow_fanout(n)["us"]


def _bind_pykka(n: int) -> Callable[[], float]:
    return lambda: pykka_fanout(n)


def _gc_paused(measure: Callable[[], float]) -> Callable[[], float]:
    def paused() -> float:
        gc.disable()
        try:
            return measure()
        finally:
            gc.enable()

    return paused


def run(settings: Settings) -> list[Result]:
    ns = sizes(settings)
    sides: dict[str, Callable[[], float]] = {}
    for n in ns:
        sides[f"actorflow {n}"] = _bind_actorflow(n)
        sides[f"pykka {n}"] = _bind_pykka(n)
    for n in ns:
        sides[f"actorflow-nogc {n}"] = _gc_paused(_bind_actorflow(n))
        sides[f"pykka-nogc {n}"] = _gc_paused(_bind_pykka(n))
    samples = alternate(settings, NAME, sides)
    rows = []
    for n in ns:
        rows.append(
            Result(
                NAME,
                f"N={n:,} S1 per task vs pykka fan-out",
                Figure("facade fan-out", US_PER_TASK, column(samples[f"actorflow {n}"])),
                Figure("pykka proxy fan-out", "µs/call", column(samples[f"pykka {n}"])),
            )
        )

    def flatness(side: str) -> tuple[float, ...]:
        per_size = [column(samples[f"{side} {n}"]) for n in ns]
        return tuple(max(costs) / min(costs) for costs in zip(*per_size, strict=True))

    rows.append(
        Result(
            NAME,
            f"flatness over N={', '.join(f'{n:,}' for n in ns)} (max/min per-task cost)",
            Figure("actorflow max/min", "x", flatness("actorflow")),
            Figure("pykka max/min", "x", flatness("pykka")),
            Goal("≤ 1.3 (max/min)", "actorflow", 1.3),
        )
    )
    rows.append(
        Result(
            NAME,
            "same flatness with the cyclic GC paused while measuring",
            Figure("actorflow max/min, GC paused", "x", flatness("actorflow-nogc")),
            Figure("pykka max/min, GC paused", "x", flatness("pykka-nogc")),
            Goal("≤ 1.3 (max/min)", "actorflow", 1.3),
            note="diagnostic: what is left without the collector's share",
        )
    )
    return rows
