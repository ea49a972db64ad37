"""What every scenario shares: result rows, goals, the A B A B alternation, hygiene.

A scenario measures actorflow and its baseline in the same process, one after the
other within each repeat (A B, A B, ...), so slow drift of a shared machine hits both
sides alike. Every figure keeps each repeat's raw value; the table shows the median
with min-max. A ratio is actorflow / baseline, computed per repeat (the pair measured
back to back) and summarised by its median.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import pykka

__all__ = [
    "BenchmarkError",
    "Figure",
    "Goal",
    "Result",
    "Settings",
    "alternate",
    "check_no_actors",
    "column",
    "fmt",
    "per_task_us",
    "scenario_steps",
]

US_PER_TASK = "µs/task"


class BenchmarkError(Exception):
    """A measurement could not be made, or left actors or threads behind."""


@dataclass(frozen=True, slots=True)
class Settings:
    """How a run is sized, and how a scenario reports progress."""

    quick: bool
    repeats: int
    advance: Callable[[], None] = field(default=lambda: None)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured quantity: what it is, its unit, and every repeat's value."""

    label: str
    """What was measured, e.g. ``"facade fan-out"``."""
    unit: str
    """Explicit unit: ``"µs/task"``, ``"bytes/task"``, ``"ms"``, ``"%"``, ``"x"``, ..."""
    samples: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.samples:
            raise BenchmarkError(f"figure {self.label!r} has no samples")

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def text(self) -> str:
        spread = "" if len(self.samples) == 1 else f" ({fmt(self.low)}-{fmt(self.high)})"
        return f"{fmt(self.median)} {self.unit}{spread}"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "samples": list(self.samples),
        }


@dataclass(frozen=True, slots=True)
class Goal:
    """A target: the ratio (or actorflow's own figure) must be <= ``limit`` (or ==
    with ``exact``, or >= with ``at_least``: a speedup)."""

    text: str
    on: Literal["ratio", "actorflow"]
    limit: float
    exact: bool = False
    at_least: bool = False

    def met(self, value: float) -> bool:
        if self.exact:
            return value == self.limit
        return value >= self.limit if self.at_least else value <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "on": self.on,
            "limit": self.limit,
            "exact": self.exact,
            "at_least": self.at_least,
        }


Status = Literal["measured", "not installed", "error"]


@dataclass(frozen=True, slots=True)
class Result:
    """One row of the table: actorflow's figure against its baseline."""

    scenario: str
    measure: str
    actorflow: Figure | None
    baseline: Figure | None = None
    goal: Goal | None = None
    note: str = ""
    status: Status = "measured"

    @property
    def ratios(self) -> tuple[float, ...]:
        """actorflow / baseline for each repeat (the pair measured back to back)."""
        a, b = self.actorflow, self.baseline
        if a is None or b is None:
            return ()
        if len(a.samples) != len(b.samples):
            raise BenchmarkError(f"{self.scenario}: unpaired samples for {self.measure!r}")
        return tuple(
            x / y if y else float("inf") for x, y in zip(a.samples, b.samples, strict=True)
        )

    @property
    def ratio(self) -> float | None:
        ratios = self.ratios
        return statistics.median(ratios) if ratios else None

    @property
    def met(self) -> bool | None:
        goal = self.goal
        if goal is None or self.status != "measured":
            return None
        if goal.on == "ratio":
            ratio = self.ratio
            return None if ratio is None else goal.met(ratio)
        return None if self.actorflow is None else goal.met(self.actorflow.median)

    def ratio_text(self) -> str:
        ratios = self.ratios
        if not ratios:
            return "—"
        median = statistics.median(ratios)
        spread = "" if len(ratios) == 1 else f" ({fmt(min(ratios))}-{fmt(max(ratios))})"
        return f"{fmt(median)}x{spread}"

    def to_json(self) -> dict[str, Any]:
        ratios = self.ratios
        return {
            "scenario": self.scenario,
            "measure": self.measure,
            "status": self.status,
            "actorflow": None if self.actorflow is None else self.actorflow.to_json(),
            "baseline": None if self.baseline is None else self.baseline.to_json(),
            "ratio": (
                None
                if not ratios
                else {
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                    "samples": list(ratios),
                }
            ),
            "goal": None if self.goal is None else self.goal.to_json(),
            "met": self.met,
            "note": self.note,
        }


def fmt(value: float) -> str:
    """A figure with three significant digits, thousands grouped."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.1:
        return f"{value:.3f}"
    return f"{value:.3g}"


def scenario_steps(scenario: ModuleType, settings: Settings) -> int:
    """How many steps a scenario's progress bar counts: its own ``steps(settings)`` when
    it defines one, else one per side (its ``SIDES``) per repeat."""
    steps: Callable[[Settings], int] | None = getattr(scenario, "steps", None)
    if steps is not None:
        return steps(settings)
    sides: int = scenario.SIDES
    return settings.repeats * sides


def per_task_us(seconds: float, count: int) -> float:
    return seconds / count * 1e6


def check_no_actors(where: str) -> None:
    """Raise if a measurement left pykka actors alive (each must stop its own)."""
    alive = pykka.ActorRegistry.get_all()
    if alive:
        pykka.ActorRegistry.stop_all(timeout=10)
        raise BenchmarkError(f"{where} left {len(alive)} pykka actors alive: {alive}")


Sample = float | Mapping[str, float]


def alternate(
    settings: Settings, where: str, sides: Mapping[str, Callable[[], Sample]]
) -> dict[str, list[Sample]]:
    """Run each side once per repeat, in the given order (A B, A B, ...).

    Before each measurement the garbage of the previous one is collected; after it,
    no pykka actor may be left alive. Returns each side's per-repeat samples.
    """
    samples: dict[str, list[Sample]] = {name: [] for name in sides}
    for _ in range(settings.repeats):
        for name, measure in sides.items():
            gc.collect()
            samples[name].append(measure())
            check_no_actors(f"{where} ({name})")
            settings.advance()
    return samples


def column(samples: list[Sample], key: str | None = None) -> tuple[float, ...]:
    """The per-repeat values of one figure (``key`` picks it from mapping samples)."""
    values: list[float] = []
    for sample in samples:
        if isinstance(sample, Mapping):
            if key is None:
                raise BenchmarkError("a mapping sample needs a key")
            values.append(float(sample[key]))
        else:
            values.append(float(sample))
    return tuple(values)
