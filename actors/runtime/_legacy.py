"""The old task manager: the engine's simple policy, the seed's design.

No concurrency limit and no queue: an executed task starts as soon as its dependencies
completed. A coroutine runs as an asyncio task on the loop that registered it; a plain
function runs on that loop's default executor (``loop.run_in_executor(None, ...)``).
Retries, timeouts and breakers are the engine's, as on the new system.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actors.core import ActorSystemError
from actors.engine import StartFailed, TaskRecord
from actors.runtime._attempt import Execution
from actors.runtime._execution import complete, run_function
from actors.runtime._manager_base import BaseManager, _loop_closed
from actors.runtime.messages import Args, Kwargs, Report

__all__ = ["LegacyTaskManagerActor"]


class LegacyTaskManagerActor(BaseManager):
    CHILD_ID = "legacy_task_manager"

    def _start_function(self, execution: Execution, record: TaskRecord) -> None:
        bridge = record.bridge
        if bridge is None or not bridge.post_if_open(
            _in_default_executor, execution, record.func, record.args, record.kwargs, self.report
        ):
            raise StartFailed(_loop_closed(record.task_id), retry=False)


def _in_default_executor(
    execution: Execution, func: Callable[..., Any], args: Args, kwargs: Kwargs, report: Report
) -> None:
    """Runs on the owner loop: the attempt goes to the loop's default executor."""
    if execution.cancel_requested:
        return
    try:
        asyncio.get_running_loop().run_in_executor(
            None, run_function, execution, func, args, kwargs, report
        )
    except RuntimeError as exc:  # the default executor is shut down
        error = ActorSystemError(f"task {execution.task_id!r} cannot start: {exc}")
        complete(execution, report, None, error)
