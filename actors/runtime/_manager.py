"""The new task manager: the engine's scheduler policy; plain functions on the pool.

A plain function's attempt is handed to the thread-pool actor, which reports when the
function starts on a worker (`FunctionStarted`): the task is ``queued`` until then (see
`actors.engine`).
"""

from __future__ import annotations

from actors.core import ActorSystemError
from actors.engine import StartFailed, TaskRecord
from actors.runtime._attempt import Execution
from actors.runtime._manager_base import BaseManager
from actors.runtime.messages import RunFunction

__all__ = ["TaskManagerActor"]


class TaskManagerActor(BaseManager):
    CHILD_ID = "task_manager"

    def on_start(self) -> None:
        self.pool = self.ctx.handle("thread_pool")
        super().on_start()

    def _start_function(self, execution: Execution, record: TaskRecord) -> None:
        assert record.args is not None
        assert record.kwargs is not None
        try:
            self.pool.tell(
                RunFunction(
                    execution, record.func, record.args, record.kwargs, self.report, record.executor
                )
            )
        except Exception as exc:
            raise StartFailed(
                ActorSystemError(f"task {record.task_id!r}: {exc}"), retry=True
            ) from exc
