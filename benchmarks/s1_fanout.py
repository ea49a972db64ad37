"""S1 fan-out: N no-op ``async def`` tasks through the facade, pipelined.

actorflow: register N tasks (one `asyncio.gather`), then ``execute_task(wait=True)``
for all of them (another gather), every result checked; and the same N tasks through
``tm.submit`` (one gather, one message per task), a figure of its own; and the same N
tasks through one ``tm.map`` call (one message, one future), a third. Baseline: raw pykka, N proxy
calls to one ThreadingActor collected through their futures. Also measured, for
context: a raw `asyncio.gather` of the same coroutines (no actors at all).
"""

from __future__ import annotations

from ._core import US_PER_TASK, Figure, Goal, Result, Settings, alternate, column
from ._workloads import actorflow_fanout, asyncio_fanout, pykka_fanout

NAME = "s1_fanout"
TITLE = "fan-out of no-op async tasks"
SIDES = 5


def run(settings: Settings) -> list[Result]:
    n = settings.size(20_000, 5_000)
    samples = alternate(
        settings,
        NAME,
        {
            "actorflow": lambda: actorflow_fanout(n),
            "submit": lambda: actorflow_fanout(n, submit=True),
            "map": lambda: actorflow_fanout(n, map_=True),
            "pykka": lambda: pykka_fanout(n),
            "asyncio": lambda: asyncio_fanout(n),
        },
    )
    facade = Figure("facade fan-out", US_PER_TASK, column(samples["actorflow"], "us"))
    pykka = Figure("pykka proxy fan-out", "µs/call", column(samples["pykka"]))
    return [
        Result(
            NAME,
            f"N={n:,} register+execute+await vs pykka proxy fan-out",
            facade,
            pykka,
            Goal("≤ 2x pykka", "ratio", 2.0),
        ),
        Result(
            NAME,
            f"N={n:,} submit+await vs pykka proxy fan-out",
            Figure("submit fan-out", US_PER_TASK, column(samples["submit"], "us")),
            pykka,
            Goal("≤ 1.5x pykka", "ratio", 1.5),
        ),
        Result(
            NAME,
            f"N={n:,} one map() call vs pykka proxy fan-out",
            Figure("map fan-out", US_PER_TASK, column(samples["map"], "us")),
            pykka,
            note="no goal of its own: the batch form of submit",
        ),
        Result(
            NAME,
            f"N={n:,} same, vs raw asyncio.gather (context)",
            facade,
            Figure("asyncio.gather", US_PER_TASK, column(samples["asyncio"], "us")),
            note="no goal: the floor of running the coroutines at all",
        ),
    ]
