"""One message per burst: the requests a thread or loop sends to one actor, batched.

A burst of calls (a `gather` of 20,000 ``submit`` calls, the facade routing them on)
would otherwise cost a queue put and a wake-up of the receiving actor's thread per
call, and those threads then fight the sender for the GIL message by message. Batching
them into one `messages.Batch` per target, in order, makes it one of each.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.core import LoopBridge, bridge_for
from actors.runtime import messages
from supervisors import ChildHandle

__all__ = ["OnLoop", "Outbox", "outbox", "send_run"]


def send_run(target: ChildHandle, run: list[Any]) -> None:
    """Tell ``target`` the messages of ``run`` in order: one `messages.Batch` when it
    is up, each on its own while it is down (its restart buffer counts each request as
    before). A request that cannot be sent fails its reply with the error (a
    `SupervisorError`, mostly)."""
    if len(run) == 1 or getattr(target, "actor_ref", None) is None:
        for message in run:
            _tell(target, message, (message,))
    else:
        _tell(target, messages.Batch(tuple(run)), run)


def _tell(target: ChildHandle, message: Any, run: Any) -> None:
    try:
        target.tell(message)
    except Exception as exc:  # a SupervisorError, mostly: the target is gone
        for request in run:
            reply = getattr(request, "reply", None)
            if reply is not None:
                reply.set_exception(exc)


class Outbox:
    """The messages one event loop sends in one iteration, sent (`send_run` per
    target, in order) once the iteration's callbacks have run. Every message a loop
    sends through here keeps its order relative to the others."""

    __slots__ = ("items", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: list[tuple[ChildHandle, Any]] = []

    def send(self, target: ChildHandle, message: Any) -> None:
        """Queue ``message`` for ``target`` (on the loop's thread)."""
        items = self.items
        if not items:
            self.loop.call_soon(self.flush)
        items.append((target, message))

    def flush(self) -> None:
        items = self.items
        self.items = []
        count = len(items)
        start = 0
        while start < count:
            target = items[start][0]
            end = start + 1
            while end < count and items[end][0] is target:
                end += 1
            send_run(target, [message for _target, message in items[start:end]])
            start = end


def outbox(bridge: LoopBridge) -> Outbox:
    """The outbox of ``bridge``'s loop (call it on that loop)."""
    box: Outbox | None = bridge.outbox
    if box is None:
        box = bridge.outbox = Outbox(bridge.loop)
    return box


class OnLoop:
    """Tells ``target`` a message through the outbox of the running loop (an
    attempt's outcome, reported from the coroutine that ran it)."""

    __slots__ = ("target",)

    def __init__(self, target: ChildHandle) -> None:
        self.target = target

    def __call__(self, message: Any) -> None:
        outbox(bridge_for(asyncio.get_running_loop())).send(self.target, message)
