"""The thread-pool actor: plain functions run on its executor, never in an actor.

The executor lives in the child's state object, so a crash of the actor loses no
running function: each reports its outcome straight to the manager's stable handle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from actors._execution import run_function
from actors._messages import Call, RunFunction
from supervisors import SupervisedActor

if TYPE_CHECKING:
    from actors._bridge import ReplyTo
    from actors._system import SystemContext

__all__ = ["PoolState", "Submit", "ThreadPoolActor"]


class Submit(NamedTuple):
    """``thread_pool.submit``: run ``fn`` and answer ``reply`` with its result."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    reply: ReplyTo


class PoolState:
    def __init__(self) -> None:
        self.executor: ThreadPoolExecutor | None = None
        self.submitted = 0


def _run_direct(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], reply: ReplyTo
) -> None:
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        reply.set_exception(exc)
    else:
        reply.set_result(value)


class ThreadPoolActor(SupervisedActor):
    CHILD_ID = "thread_pool"
    use_daemon_thread = True

    def __init__(self, ctx: SystemContext, state: PoolState) -> None:
        super().__init__()
        self.ctx = ctx
        self.state = state

    def on_start(self) -> None:
        if self.state.executor is None:
            self.state.executor = ThreadPoolExecutor(
                max_workers=self.ctx.config.MAX_THREAD_WORKERS,
                thread_name_prefix="actorflow-pool",
            )

    def on_receive(self, message: Any) -> Any:
        executor = self.state.executor
        assert executor is not None
        kind = type(message)
        if kind is RunFunction:
            self.state.submitted += 1
            executor.submit(
                run_function,
                message.execution,
                message.func,
                message.args,
                message.kwargs,
                message.report,
            )
        elif kind is Submit:
            self.state.submitted += 1
            executor.submit(_run_direct, message.fn, message.args, message.kwargs, message.reply)
        elif kind is Call and message.op == "stats":
            message.reply.set_result(
                {
                    "workers": self.ctx.config.MAX_THREAD_WORKERS,
                    "queued": executor._work_queue.qsize(),
                    "submitted": self.state.submitted,
                }
            )
        return None

    def on_stop(self) -> None:
        executor = self.state.executor
        if executor is None:
            return
        self.state.executor = None
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + self.ctx.config.SHUTDOWN_TIMEOUT
        for thread in list(executor._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
