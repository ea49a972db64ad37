"""Child specifications and restart policies: plain, frozen data, validated when built."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pykka
from tenacity import wait_exponential_jitter
from tenacity.wait import wait_base

from supervisors._errors import ChildSpecError, safe_repr

__all__ = ["ChildSpec", "Restart", "RestartPolicy", "Strategy"]


class Restart(enum.Enum):
    """When a child that exited is restarted (OTP restart types)."""

    PERMANENT = "permanent"
    """Always restarted, whatever the exit reason."""
    TRANSIENT = "transient"
    """Restarted only after an abnormal exit (a crash or `Kill`), not after a normal stop."""
    TEMPORARY = "temporary"
    """Never restarted; removed from the supervisor when it exits."""


class Strategy(enum.Enum):
    """Which children are restarted when one of them fails (OTP strategies)."""

    ONE_FOR_ONE = "one_for_one"
    """Only the failed child."""
    ONE_FOR_ALL = "one_for_all"
    """All children: the others are stopped in reverse order, then all restart in order."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and every child started after it."""


def _default_wait() -> wait_base:
    return wait_exponential_jitter(multiplier=0.01, max=5.0, jitter=0.005)


def is_seconds(value: object) -> bool:
    """Whether ``value`` is a finite number of seconds > 0 (not a bool: ``True`` is no
    duration; NaN compares false with everything, so it is checked by name; an int too
    large for a float is no duration either: a wait on it overflows)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:  # (`isfinite` converts an int to a float)
        return False


def _check_seconds(owner: object, names: tuple[str, ...], where: str) -> None:
    """Each attribute in ``names`` is a finite number of seconds > 0 (not a bool)."""
    for name in names:
        value = getattr(owner, name)
        if not is_seconds(value):
            raise ChildSpecError(
                f"{where}{name} must be a finite number > 0, got {safe_repr(value)}"
            )


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How fast and how often a supervisor restarts its children.

    ``wait`` is any tenacity wait strategy (combine them with ``+``); it is asked for the
    delay before the n-th consecutive restart of a child. ``max_restarts`` restarts
    within ``within_seconds`` (a sliding window, as in OTP) is the most the supervisor
    tolerates; one more escalates. After a child has run ``reset_after`` seconds without
    failing, its backoff starts again from the first step (Akka's ``resetBackoffAfter``).

    ``max_consecutive_failures`` bounds a crash loop the window cannot see: a failure is
    consecutive when the incarnation before it ran less than ``reset_after`` seconds,
    and one more than this many consecutive failures of one child escalates with
    `ConsecutiveFailuresExceeded` (Akka's ``maxNrOfRetries``). Without it, a backoff
    that grows past ``within_seconds / max_restarts`` keeps a child that fails in every
    incarnation under the window for ever. None (the default) takes ``max_restarts``:
    one number bounds both the restarts in a window and the failures in a row.
    """

    wait: wait_base = field(default_factory=_default_wait)
    max_restarts: int = 3
    within_seconds: float = 5.0
    reset_after: float = 10.0
    max_consecutive_failures: int | None = None

    def __post_init__(self) -> None:
        if not callable(self.wait):
            raise ChildSpecError(
                f"RestartPolicy.wait must be a tenacity wait strategy, got {safe_repr(self.wait)}"
            )
        for name in ("max_restarts", "max_consecutive_failures"):
            value = getattr(self, name)
            if value is None and name == "max_consecutive_failures":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                also = " or None" if name == "max_consecutive_failures" else ""
                raise ChildSpecError(
                    f"RestartPolicy.{name} must be an int >= 0{also}, got {safe_repr(value)}"
                )
        _check_seconds(self, ("within_seconds", "reset_after"), "RestartPolicy.")

    @property
    def failures_limit(self) -> int:
        """The most consecutive failures of a child tolerated (one more escalates)."""
        limit = self.max_consecutive_failures
        return self.max_restarts if limit is None else limit


ActorFactory = Callable[..., pykka.Actor]


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start one child, and what to do when it exits.

    ``factory`` is a pykka actor class or a callable returning an *unstarted* actor
    instance; it is called as ``factory(*args, **kwargs)``, plus ``state=<object>`` when
    ``state_factory`` is set. ``state_factory`` is called once, when the child is first
    added, and the object it returns is handed to every incarnation: whatever must
    survive a crash lives there. A child that does not stop within ``shutdown_timeout``
    seconds is reported and abandoned (a nested supervisor stops its own children within
    it too: `StopBy`); one whose ``on_start`` does not finish within
    ``start_timeout`` seconds counts as a failed start.
    """

    id: str
    factory: ActorFactory
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0
    start_timeout: float = 10.0
    state_factory: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ChildSpecError(
                f"ChildSpec.id must be a non-empty string, got {safe_repr(self.id)}"
            )
        if not callable(self.factory):
            raise ChildSpecError(
                f"ChildSpec {self.id!r}: factory must be a pykka actor class or a callable "
                f"returning an unstarted actor, got {safe_repr(self.factory)}"
            )
        if not isinstance(self.args, tuple):
            raise ChildSpecError(
                f"ChildSpec {self.id!r}: args must be a tuple, got {type(self.args).__name__}"
            )
        if not isinstance(self.kwargs, Mapping):
            raise ChildSpecError(
                f"ChildSpec {self.id!r}: kwargs must be a mapping, got {type(self.kwargs).__name__}"
            )
        if not isinstance(self.restart, Restart):
            raise ChildSpecError(
                f"ChildSpec {self.id!r}: restart must be a Restart member "
                f"(PERMANENT, TRANSIENT, TEMPORARY), got {safe_repr(self.restart)}"
            )
        _check_seconds(self, ("shutdown_timeout", "start_timeout"), f"ChildSpec {self.id!r}: ")
        if self.state_factory is not None and not callable(self.state_factory):
            raise ChildSpecError(
                f"ChildSpec {self.id!r}: state_factory must be callable or None, "
                f"got {safe_repr(self.state_factory)}"
            )


def check_child_specs(specs: object) -> list[ChildSpec]:
    """Validate a sequence of specs as a whole (OTP's ``check_childspecs``)."""
    if isinstance(specs, ChildSpec | str | bytes) or not hasattr(specs, "__iter__"):
        raise ChildSpecError(f"children must be a sequence of ChildSpec, got {safe_repr(specs)}")
    checked: list[ChildSpec] = []
    seen: set[str] = set()
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise ChildSpecError(f"children must contain ChildSpec objects, got {safe_repr(spec)}")
        if spec.id in seen:
            raise ChildSpecError(f"duplicate child id {spec.id!r}: child ids must be unique")
        seen.add(spec.id)
        checked.append(spec)
    return checked
