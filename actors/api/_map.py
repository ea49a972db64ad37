"""`MapCall`: the outcomes of the tasks of one ``tm.map`` call, gathered into one future.

Each task of the call answers its own `MapSlot` (the reply channel of its `SubmitTask`);
the slot settles its place in the call on the caller's loop, and the last one to settle
resolves the call's single asyncio future. No asyncio task, coroutine or future per item.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.core import LoopBridge

__all__ = ["MapCall", "MapSlot"]


class MapCall:
    """The outcomes of ``count`` tasks, in item order; ``future`` resolves (to None)
    once every one has settled. Loop thread only (slots post to it)."""

    __slots__ = ("bridge", "errors", "future", "outcomes", "remaining", "settled")

    def __init__(self, bridge: LoopBridge, future: asyncio.Future[None], count: int) -> None:
        self.bridge = bridge
        self.future = future
        self.outcomes: list[Any] = [None] * count
        self.settled = bytearray(count)
        self.errors: dict[int, BaseException] = {}
        self.remaining = count

    def settle(self, index: int, value: Any, error: BaseException | None) -> None:
        settled = self.settled
        if settled[index]:
            return
        settled[index] = 1
        if error is None:
            self.outcomes[index] = value
        else:
            self.outcomes[index] = error
            self.errors[index] = error
        self.remaining -= 1
        if not self.remaining and not self.future.done():
            self.future.set_result(None)

    def unsettled(self) -> list[int]:
        """The indexes of the tasks that have not answered yet."""
        return [index for index, done in enumerate(self.settled) if not done]


class MapSlot:
    """The reply channel of one task of a `MapCall` (any thread; `resolve` on the
    call's loop thread)."""

    __slots__ = ("bridge", "call", "index")

    def __init__(self, call: MapCall, index: int) -> None:
        self.call = call
        self.index = index
        self.bridge = call.bridge

    def set_result(self, value: Any) -> None:
        self.bridge.post(self.call.settle, self.index, value, None)

    def set_exception(self, error: BaseException) -> None:
        self.bridge.post(self.call.settle, self.index, None, error)

    def resolve(self, value: Any) -> None:
        self.call.settle(self.index, value, None)
