"""Getting answers from actor threads back onto the caller's event loop.

Decision 1 of DESIGN.md: an event loop never blocks on a pykka future. An actor answers
through a `Reply`, which resolves an asyncio future by posting a callback to the owner
loop with ``loop.call_soon_threadsafe``. A `LoopBridge` batches those posts: a burst of
replies costs one wake-up of the loop, not one each.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from supervisors import Clock

__all__ = ["LoopBridge", "Reply", "ReplyTo", "bridge_for", "clock_sleep"]


class ReplyTo(Protocol):
    """Where an actor sends the answer to a call. Safe to call from any thread, once."""

    def set_result(self, value: Any) -> None: ...

    def set_exception(self, error: BaseException) -> None: ...


class LoopBridge:
    """Posts callbacks onto one event loop from any thread, one wake-up per burst."""

    __slots__ = ("__weakref__", "_pending", "_scheduled", "closed", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._scheduled = False
        self.closed = False

    def post(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop soon; False if the loop is closed."""
        self._pending.append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                self.closed = True
                self._pending.clear()
                return False
        return True

    def _drain(self) -> None:
        # Clear the flag first: a post that lands after this line schedules a new drain,
        # and one that landed before it is in the deque we are about to empty.
        self._scheduled = False
        pending = self._pending
        while pending:
            fn, args = pending.popleft()
            fn(*args)


_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopBridge] = (
    weakref.WeakKeyDictionary()
)


def bridge_for(loop: asyncio.AbstractEventLoop) -> LoopBridge:
    """The bridge of ``loop`` (created on first use)."""
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges[loop] = LoopBridge(loop)
    return bridge


def _resolve(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


class Reply:
    """Resolves an asyncio future on its loop, from any thread."""

    __slots__ = ("bridge", "future")

    def __init__(self, bridge: LoopBridge, future: asyncio.Future[Any]) -> None:
        self.bridge = bridge
        self.future = future

    def set_result(self, value: Any) -> None:
        self.bridge.post(_resolve, self.future, value, None)

    def set_exception(self, error: BaseException) -> None:
        self.bridge.post(_resolve, self.future, None, error)


async def clock_sleep(clock: Clock, seconds: float) -> None:
    """``asyncio.sleep`` on an injected clock (a fake clock in tests)."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    bridge = bridge_for(loop)
    timer = clock.call_later(seconds, lambda: bridge.post(_resolve, done, None, None))
    try:
        await done
    finally:
        timer.cancel()
