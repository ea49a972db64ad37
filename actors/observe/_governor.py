"""Resource-aware concurrency: the decision, pure, and the default probe.

Additive increase, multiplicative decrease (AIMD, as TCP does it): while CPU or memory
is above its high threshold the limit is halved (never below 1); while both are below
it, the limit grows by one back towards the configured maximum. Crossing a critical
threshold is reported as a critical resource event. The thresholds and the maximum are
the configuration's (`GovernorPolicy.from_config`): they have no defaults of their own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from actors.core import Config, ConfigError, finite_float, safe_repr

__all__ = [
    "GovernorPolicy",
    "Pressure",
    "ResourceSample",
    "decide",
    "psutil_probe",
]


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """What a resource probe returns: CPU and memory use, in percent (finite numbers)."""

    cpu_percent: float
    memory_percent: float

    def __post_init__(self) -> None:
        for name in ("cpu_percent", "memory_percent"):
            value: object = getattr(self, name)
            if finite_float(value) is None:  # (an int too large for a float too)
                msg = f"ResourceSample.{name} must be a finite number, got {safe_repr(value)}"
                raise ConfigError(msg)


@dataclass(frozen=True, slots=True)
class GovernorPolicy:
    """The limit's ceiling and the percentages that decide the pressure."""

    max_limit: int
    cpu_high: float
    memory_high: float
    cpu_critical: float
    memory_critical: float

    @classmethod
    def from_config(cls, config: Config) -> GovernorPolicy:
        """``MAX_CONCURRENT_TASKS`` and the ``*_PERCENT`` thresholds of ``config``."""
        return cls(
            config.MAX_CONCURRENT_TASKS,
            config.CPU_HIGH_PERCENT,
            config.MEMORY_HIGH_PERCENT,
            config.CPU_CRITICAL_PERCENT,
            config.MEMORY_CRITICAL_PERCENT,
        )


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
        return min(policy.max_limit, limit + 1), level
    return max(1, limit // 2), level


def psutil_probe() -> ResourceSample:
    """CPU % since the previous call (non-blocking) and memory % in use, from psutil."""
    import psutil

    return ResourceSample(psutil.cpu_percent(interval=None), psutil.virtual_memory().percent)
