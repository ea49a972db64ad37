"""S9 overhead: retries and logging configured but never triggered.

The S1 workload three ways, alternating: plain; with ``max_retries=3, retry_delay=1``
on every task (no task fails, so no retry happens); and with those retries plus
``actors.configure_logging(True)`` and a loguru sink that formats every line and
writes it to the null device. Ratios against plain S1.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from loguru import logger

import actors

from ._core import US_PER_TASK, Figure, Result, Settings, alternate, column
from ._workloads import actorflow_fanout

NAME = "s9_overhead"
TITLE = "retries + logging configured, not triggered"
SIDES = 3
RETRIES = {"max_retries": 3, "retry_delay": 1.0}


def null_logging() -> Callable[[], None]:
    """Turn actorflow's logging on into a null sink; returns the undo."""
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed by the undo
    handler = logger.add(sink, level="DEBUG")
    actors.configure_logging(True)

    def undo() -> None:
        actors.configure_logging(False)
        logger.remove(handler)
        sink.close()

    return undo


def run(settings: Settings) -> list[Result]:
    n = settings.size(20_000, 2_000)
    samples = alternate(
        settings,
        NAME,
        {
            "both": lambda: actorflow_fanout(n, register=RETRIES, setup=null_logging),
            "off": lambda: actorflow_fanout(n),
            "retries": lambda: actorflow_fanout(n, register=RETRIES),
        },
    )
    off = Figure("S1, neither", US_PER_TASK, column(samples["off"], "us"))
    return [
        Result(
            NAME,
            f"N={n:,} S1 with max_retries=3, retry_delay=1 and logging to a null sink",
            Figure("S1, retries + logging", US_PER_TASK, column(samples["both"], "us")),
            off,
            note="no goal: reported",
        ),
        Result(
            NAME,
            f"N={n:,} S1 with max_retries=3, retry_delay=1 only",
            Figure("S1, retries only", US_PER_TASK, column(samples["retries"], "us")),
            off,
            note="diagnostic: the retry share of the row above",
        ),
    ]
