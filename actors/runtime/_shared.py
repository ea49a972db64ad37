"""What every child of the actor system shares: its ids, and the `SystemContext`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from supervisors import SupervisedActor

if TYPE_CHECKING:
    from actors.core import Config
    from actors.engine import BreakerRegistry
    from actors.observe import ResourceSample
    from supervisors import ChildHandle, Clock, SupervisorState

__all__ = ["CHILD_IDS", "StopDeadline", "SystemChild", "SystemContext"]

CHILD_IDS = ("task_monitor", "thread_pool", "legacy_task_manager", "task_manager", "facade")


class StopDeadline:
    """When the system's stop must be over: a `time.monotonic` value, set once when the
    stop begins (`SystemRuntime._begin_stop`: `shutdown`, `stop_sync`, the end of
    ``with ActorSystem()``); None until then. Every stage of the stop waits until it at
    most (the waits are real, whatever the clock). ``by``: the thread that began it,
    blocked in it when that stop is a plain call (`stop_sync`, ``system.blocking``);
    the pool does not wait for it when it is one of its workers (a pool function that
    stops its system would wait for itself until the deadline)."""

    __slots__ = ("at", "by")

    def __init__(self) -> None:
        self.at: float | None = None
        self.by: threading.Thread | None = None


@dataclass(frozen=True, slots=True)
class SystemContext:
    """What every child of the system shares: configuration, clock, the stable handles,
    the circuit breakers, the resource probe and the stop's deadline."""

    config: Config
    clock: Clock
    supervisor_state: SupervisorState
    breakers: BreakerRegistry
    probe: Callable[[], ResourceSample]
    stop: StopDeadline = field(default_factory=StopDeadline)

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
