"""The task monitor actor: counts what the managers and the supervisor report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors._messages import Call, TaskEvents
from supervisors import SupervisedActor

if TYPE_CHECKING:
    from actors._system import SystemContext

__all__ = ["ChildRestarted", "MonitorState", "TaskMonitorActor"]


@dataclass(frozen=True, slots=True)
class ChildRestarted:
    child_id: str


class MonitorState:
    """Aggregates only: the monitor keeps nothing per task, so cleanup costs it nothing."""

    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter()
        self.by_type: dict[str, Counter[str]] = {}
        self.transitions = 0
        self.restarts: Counter[str] = Counter()


class TaskMonitorActor(SupervisedActor):
    CHILD_ID = "task_monitor"
    use_daemon_thread = True

    def __init__(self, ctx: SystemContext, state: MonitorState) -> None:
        super().__init__()
        self.ctx = ctx
        self.state = state

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is TaskEvents:
            self._apply(message)
        elif kind is ChildRestarted:
            self.state.restarts[message.child_id] += 1
        elif kind is Call and message.op == "metrics":
            message.reply.set_result(self.snapshot())
        return None

    def _apply(self, events: TaskEvents) -> None:
        state = self.state
        by_status = state.by_status
        by_type = state.by_type
        for _task_id, task_type, old, new, _at in events.items:
            counts = by_type.get(task_type)
            if counts is None:
                counts = by_type[task_type] = Counter()
            if old is not None:
                by_status[old] -= 1
                counts[old] -= 1
            if new is not None:
                by_status[new] += 1
                counts[new] += 1
        state.transitions += len(events.items)

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        return {
            "by_status": {k: v for k, v in state.by_status.items() if v},
            "by_type": {t: {k: v for k, v in c.items() if v} for t, c in state.by_type.items()},
            "transitions": state.transitions,
            "restarts": dict(state.restarts),
        }
