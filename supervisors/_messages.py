"""Messages understood by supervised actors and supervisors. Immutable, documented fields."""

from __future__ import annotations

from dataclasses import dataclass

from supervisors._errors import ChildSpecError, safe_repr

__all__ = ["ChildExited", "Kill", "RestartDue", "StopBy", "WatchdogTick"]


@dataclass(frozen=True, slots=True)
class Kill:
    """Fault injection, like Akka's ``Kill``: the receiving supervised actor crashes.

    Send it with ``tell``; the actor stops with `ActorKilled` as its reason and its
    supervisor handles the exit like any other crash.
    """

    reason: str = "killed by a Kill message"

    def __post_init__(self) -> None:
        reason: object = self.reason
        if not isinstance(reason, str):
            msg = f"Kill.reason must be a str, got {safe_repr(reason)}"
            raise ChildSpecError(msg)


@dataclass(frozen=True, slots=True)
class StopBy:
    """Stop the receiving supervisor, its whole stop over by ``deadline``.

    ``deadline`` is a `time.monotonic` value (the waits are real waits, whatever clock
    the supervisor reads for restarts). The children stop in reverse order as on a
    plain stop, each waited for at most its ``shutdown_timeout`` and never past
    ``deadline``: once it has passed, the rest are told to stop and abandoned at once
    (each reported ``ABANDONED``). Send it with ``ask``: the answer comes when the
    supervisor has stopped.

    A supervisor tells a nested supervisor ``StopBy`` ahead of the plain stop, with the
    same bound (its ``shutdown_timeout`` from then, or this deadline if sooner), so the
    whole tree stops by one deadline; it waits `NESTED_STOP_SLACK` seconds more for
    the nested one's answer.
    """

    deadline: float

    def __post_init__(self) -> None:
        deadline = self.deadline
        if (
            not isinstance(deadline, int | float)
            or isinstance(deadline, bool)
            or deadline != deadline
        ):
            msg = f"StopBy.deadline must be a time.monotonic() value, got {safe_repr(deadline)}"
            raise ChildSpecError(msg)


@dataclass(frozen=True, slots=True)
class ChildExited:
    """A child incarnation stopped. ``reason`` is None for a normal stop."""

    child_id: str
    actor_urn: str
    reason: BaseException | None


@dataclass(frozen=True, slots=True)
class RestartDue:
    """A backoff timer fired: (re)start ``child_ids`` if ``generation`` is still current."""

    child_ids: tuple[str, ...]
    generation: int


@dataclass(frozen=True, slots=True)
class WatchdogTick:
    """Time to look for child threads that died without reporting.

    ``owner`` is the urn of the supervisor incarnation that armed it: a tick left in a
    crashed supervisor's inbox is ignored by the next incarnation.
    """

    owner: str
