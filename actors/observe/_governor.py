"""Resource-aware concurrency: the decision, pure, and the default probe.

Additive increase, multiplicative decrease (AIMD, as TCP does it): while CPU or memory
is above its high threshold the limit is halved (never below 1); while both are below
it, the limit grows by one step back towards the configured maximum. Crossing a
critical threshold is reported as a critical resource event.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = [
    "GovernorPolicy",
    "Pressure",
    "ResourceSample",
    "decide",
    "psutil_probe",
]


@dataclass(frozen=True, slots=True)
class ResourceSample:
    cpu_percent: float
    memory_percent: float


@dataclass(frozen=True, slots=True)
class GovernorPolicy:
    max_limit: int
    cpu_high: float = 85.0
    memory_high: float = 85.0
    cpu_critical: float = 95.0
    memory_critical: float = 95.0
    decrease_factor: float = 0.5
    increase_step: int = 1


class Pressure(enum.StrEnum):
    """How loaded the machine is, by the policy's thresholds (values: the lower-case names)."""

    OK = enum.auto()
    WARNING = enum.auto()
    CRITICAL = enum.auto()


def pressure(sample: ResourceSample, policy: GovernorPolicy) -> Pressure:
    if sample.cpu_percent >= policy.cpu_critical or sample.memory_percent >= policy.memory_critical:
        return Pressure.CRITICAL
    if sample.cpu_percent >= policy.cpu_high or sample.memory_percent >= policy.memory_high:
        return Pressure.WARNING
    return Pressure.OK


def decide(limit: int, sample: ResourceSample, policy: GovernorPolicy) -> tuple[int, Pressure]:
    """The next concurrency limit and the pressure that decided it."""
    level = pressure(sample, policy)
    if level is Pressure.OK:
        return min(policy.max_limit, limit + policy.increase_step), level
    return max(1, math.floor(limit * policy.decrease_factor)), level


def psutil_probe() -> ResourceSample:
    """CPU % since the previous call (non-blocking) and memory % in use, from psutil."""
    import psutil

    return ResourceSample(psutil.cpu_percent(interval=None), psutil.virtual_memory().percent)
