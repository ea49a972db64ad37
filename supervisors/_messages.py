"""Messages understood by supervised actors and supervisors. Immutable, documented fields."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChildExited", "Kill", "RestartDue", "WatchdogTick"]


@dataclass(frozen=True, slots=True)
class Kill:
    """Fault injection, like Akka's ``Kill``: the receiving supervised actor crashes.

    Send it with ``tell``; the actor stops with `ActorKilled` as its reason and its
    supervisor handles the exit like any other crash.
    """

    reason: str = "killed by a Kill message"


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
