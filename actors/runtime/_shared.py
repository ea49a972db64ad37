"""What every child of the actor system shares: its ids, and the `SystemContext`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.core import Config
    from actors.engine import BreakerRegistry
    from actors.observe import ResourceSample
    from supervisors import ChildHandle, Clock, SupervisorState

__all__ = ["CHILD_IDS", "SystemContext"]

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
