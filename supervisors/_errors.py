"""Every error the supervisors package raises. One base class, specific subclasses."""

from __future__ import annotations

__all__ = [
    "ActorKilled",
    "ChildSpecError",
    "RestartIntensityExceeded",
    "SupervisorError",
]


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


class ActorKilled(SupervisorError):
    """The reason an actor stopped when it received the `Kill` message."""


class RestartIntensityExceeded(SupervisorError):
    """More restarts happened inside the sliding window than the policy allows.

    The supervisor stops its children in reverse start order and escalates: a
    supervised supervisor crashes with this error (its parent decides), a root
    supervisor reports it to its ``on_escalation`` callback. Attributes name the
    child whose failure tipped it over, the count, the window and the last reason.
    """

    def __init__(
        self,
        supervisor: str,
        child_id: str,
        count: int,
        max_restarts: int,
        within_seconds: float,
        reason: BaseException | None,
    ) -> None:
        self.supervisor = supervisor
        self.child_id = child_id
        self.count = count
        self.max_restarts = max_restarts
        self.within_seconds = within_seconds
        self.reason = reason
        super().__init__(
            f"restart intensity exceeded: {count} restart{'' if count == 1 else 's'} in "
            f"{float(within_seconds)}s "
            f"(max {max_restarts}) for child {child_id!r} of supervisor {supervisor!r}; "
            f"last reason: {reason!r}"
        )
