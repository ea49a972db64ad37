"""Cumulative-bucket histograms of durations, for Prometheus (which can add them up).

Quantile summaries cannot be aggregated across instances; histogram buckets can. The
monitor counts every run time and wait time into one `Histogram` per task type as the
transitions arrive (a bisect and two additions), and a snapshot carries frozen
`HistogramCounts`. Pure: no threads, no clock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate

__all__ = ["Histogram", "HistogramCounts"]


@dataclass(frozen=True, slots=True)
class HistogramCounts:
    """One histogram at the time of a snapshot.

    ``bounds`` are the buckets' upper bounds in seconds (``+Inf`` not included);
    ``cumulative[i]`` counts the observations ``<= bounds[i]``, so it never decreases and
    ``count`` (every observation) is the ``+Inf`` bucket.
    """

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    sum: float


class Histogram:
    """Counts observations per bucket (``value <= bound``, Prometheus' ``le``).

    Not thread-safe: it lives inside one actor's state.
    """

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self._sum = 0.0

    def observe_many(self, values: Iterable[float]) -> None:
        """Count every value in ``values``, in order."""
        counts = self._counts
        bounds = self._bounds
        total = self._sum
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
        self._sum = total

    def counts(self) -> HistogramCounts:
        cumulative = tuple(accumulate(self._counts))
        return HistogramCounts(self._bounds, cumulative[:-1], cumulative[-1], self._sum)
