"""S7 responsiveness: does the caller's event loop keep ticking while S1 runs?

A 1 ms heartbeat (``asyncio.sleep(0.001)`` in a loop) runs on the caller's loop during
the S1 workload; the figure is the longest gap between two ticks, in ms (an idle loop
shows about 1.1 ms). Baseline: the same heartbeat during a raw `asyncio.gather` of the
same coroutines, which shows what the caller's own gather of N coroutines costs the
loop before actorflow does anything.

A second row paces the caller: 100 coroutines, each registering and executing one
task at a time (baseline: 100 coroutines awaiting the no-op one at a time and yielding
once per task). It isolates what actorflow itself does to the loop (replies arriving
in bursts, coroutines starting in bursts) from the caller's own burst of N steps.
"""

from __future__ import annotations

from ._core import Figure, Goal, Result, Settings, alternate, column
from ._workloads import actorflow_fanout, asyncio_fanout

NAME = "s7_responsiveness"
TITLE = "1 ms heartbeat on the caller's loop during S1"
SIDES = 4


def run(settings: Settings) -> list[Result]:
    n = settings.size(20_000, 5_000)
    samples = alternate(
        settings,
        NAME,
        {
            "actorflow": lambda: actorflow_fanout(n, heartbeat=True),
            "asyncio": lambda: asyncio_fanout(n, heartbeat=True),
            "actorflow_paced": lambda: actorflow_fanout(n, heartbeat=True, paced=True),
            "asyncio_paced": lambda: asyncio_fanout(n, heartbeat=True, paced=True),
        },
    )
    return [
        Result(
            NAME,
            f"N={n:,} S1 as is (one gather per phase)",
            Figure("longest heartbeat gap", "ms", column(samples["actorflow"], "stall_ms")),
            Figure("same, raw asyncio.gather", "ms", column(samples["asyncio"], "stall_ms")),
            Goal("≤ 1.5x raw gather", "ratio", 1.5),
        ),
        Result(
            NAME,
            f"N={n:,} S1 paced: 100 caller coroutines, one task at a time each",
            Figure("longest heartbeat gap", "ms", column(samples["actorflow_paced"], "stall_ms")),
            Figure("same, raw asyncio", "ms", column(samples["asyncio_paced"], "stall_ms")),
            Goal("≤ 5 ms", "actorflow", 5.0),
            note="diagnostic: the caller no longer puts N steps in one loop iteration",
        ),
    ]
