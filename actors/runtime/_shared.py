"""What every child of the actor system shares: its ids, and the `SystemContext`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from supervisors import SupervisedActor

if TYPE_CHECKING:
    from actors.core import Config
    from actors.engine import BreakerRegistry
    from actors.observe import ResourceSample
    from supervisors import ChildHandle, Clock, SupervisorState

__all__ = ["CHILD_IDS", "SystemChild", "SystemContext"]

CHILD_IDS = ("task_monitor", "thread_pool", "legacy_task_manager", "task_manager", "facade")


@dataclass(frozen=True, slots=True)
class SystemContext:
    """What every child of the system shares: configuration, clock, the stable handles,
    the circuit breakers and the resource probe."""

    config: Config
    clock: Clock
    supervisor_state: SupervisorState
    breakers: BreakerRegistry
    probe: Callable[[], ResourceSample]

    def handle(self, child_id: str) -> ChildHandle:
        return self.supervisor_state.handles[child_id]


StateT = TypeVar("StateT")


class SystemChild(SupervisedActor, Generic[StateT]):
    """A child of the actor system: a fixed id, the shared context, and the state that
    the supervisor creates once and hands to every incarnation."""

    CHILD_ID: ClassVar[str]
    use_daemon_thread = True

    def __init__(self, ctx: SystemContext, state: StateT) -> None:
        super().__init__()
        self.ctx = ctx
        self.state = state
