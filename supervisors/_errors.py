"""Every error the supervisors package raises. One base class, specific subclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ActorKilled",
    "BufferFullError",
    "ChildSpecError",
    "ConsecutiveFailuresExceeded",
    "RestartIntensityExceeded",
    "SupervisorError",
]


def safe_repr(value: object) -> str:
    """``repr(value)``, or a stand-in naming the type when that repr raises: an error
    message about a bad value must not fail on the value itself."""
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__qualname__} object; repr() raised {type(exc).__name__}>"


class SafeRepr:
    """A log argument shown as `safe_repr` of ``value``, built only if the line is
    emitted: ``log.warning("crashed: {}", SafeRepr(reason))``."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return format(safe_repr(self.value), spec)

    def __str__(self) -> str:
        return safe_repr(self.value)

    __repr__ = __str__


class SupervisorError(Exception):
    """Base class of the package's errors.

    Raised as itself when a call through a `ChildHandle` cannot be delivered: the
    handle's buffer is full while the child restarts, the child was terminated or
    deleted, or its supervisor gave up on it. The message names the child.
    """


class ChildSpecError(SupervisorError, ValueError):
    """A `ChildSpec`, `RestartPolicy` or supervisor argument is invalid.

    Raised when the object is built or the supervisor is started, never later.
    The message names the field and the bad value.
    """


class BufferFullError(SupervisorError):
    """A caller's request met a full buffer while the child restarts: it was refused.

    Only requests count against the buffer's capacity: asks, and told messages of the
    supervisor's ``request_types``. The system's own messages are never refused for
    room. Attributes name the child and the capacity; retry after a short backoff.
    """

    def __init__(self, child_id: str, capacity: int) -> None:
        self.child_id = child_id
        self.capacity = capacity
        super().__init__(
            f"child {child_id!r} is restarting and its buffer is full "
            f"({capacity} messages); the message was not delivered"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields (`copy`, `pickle`): its ``args`` is its message.
        return type(self), (self.child_id, self.capacity), self.__dict__


class ActorKilled(SupervisorError):
    """The reason an actor stopped when it received the `Kill` message."""


@dataclass(eq=False, repr=False)  # an exception: compared by identity, shown by its message
class RestartIntensityExceeded(SupervisorError):
    """More restarts happened inside the sliding window than the policy allows.

    The supervisor stops its children in reverse start order and escalates: a
    supervised supervisor crashes with this error (its parent decides), a root
    supervisor reports it to its ``on_escalation`` callback. Attributes name the
    child whose failure tipped it over, the count, the window and the last reason.
    """

    supervisor: str
    child_id: str
    count: int
    max_restarts: int
    within_seconds: float
    reason: BaseException | None

    def __post_init__(self) -> None:
        super().__init__(self._describe())

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields (`copy`, `pickle`): its ``args`` is its message, which
        # the constructor does not take.
        values = (self.supervisor, self.child_id, self.count, self.max_restarts)
        return type(self), (*values, self.within_seconds, self.reason), self.__dict__

    def _describe(self) -> str:
        count = self.count
        return (
            f"restart intensity exceeded: {count} restart{'' if count == 1 else 's'} in "
            f"{float(self.within_seconds)}s (max {self.max_restarts}) for child "
            f"{self.child_id!r} of supervisor {self.supervisor!r}; "
            f"last reason: {safe_repr(self.reason)}"
        )


class ConsecutiveFailuresExceeded(RestartIntensityExceeded):
    """A child failed more times in a row than ``RestartPolicy.max_consecutive_failures``.

    A failure is consecutive when the incarnation before it ran less than
    ``reset_after`` seconds (Akka's backoff supervisor counts retries the same way): a
    child that crashes in every incarnation escalates even when its growing backoff
    keeps it under the sliding-window intensity. It takes the base class's arguments:
    ``count`` (also ``failures``) is the run of failures, ``max_restarts`` (also
    ``max_failures``) the limit, and ``within_seconds`` (also ``reset_after``) the time
    an incarnation must run to end the run.
    """

    @property
    def failures(self) -> int:
        return self.count

    @property
    def max_failures(self) -> int:
        return self.max_restarts

    @property
    def reset_after(self) -> float:
        return self.within_seconds

    def _describe(self) -> str:
        return (
            f"consecutive failures exceeded: child {self.child_id!r} of supervisor "
            f"{self.supervisor!r} failed {self.count} times in a row, each incarnation "
            f"within {float(self.within_seconds)}s of its start (max {self.max_restarts}); "
            f"last reason: {safe_repr(self.reason)}"
        )
