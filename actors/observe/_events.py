"""The event stream: every lifecycle transition, breaker change and resource alarm.

``async for event in tm.events(task_type=None)`` subscribes to the monitor. Each
subscriber has a bounded buffer: when it is full the oldest event is dropped and the
drop is counted (in the metrics too), so a slow subscriber never slows the system. The
monitor appends a batch and wakes the subscriber's loop once per batch. Leaving the
``async for`` (or ``async with``) unsubscribes.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from actors.core import TaskStatus

if TYPE_CHECKING:
    from actors.core import LoopBridge

__all__ = ["Event", "EventKind", "EventStream", "Subscriber", "kind_of_transition"]


class EventKind(enum.StrEnum):
    REGISTERED = "registered"
    WAITING = "waiting"
    QUEUED = "queued"
    STARTED = "started"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REMOVED = "removed"
    """Cleaned up."""
    CIRCUIT_BREAKER = "circuit_breaker"
    """A breaker changed state; ``detail`` has ``breaker``, ``old``, ``new``."""
    RESOURCE_WARNING = "resource_warning"
    RESOURCE_CRITICAL = "resource_critical"
    RESOURCE_OK = "resource_ok"
    """Pressure is back under the thresholds; ``detail`` has the sample and the limit."""
    JOURNAL_ERROR = "journal_error"
    """A journal write failed (full disk, locked file...); the system goes on from memory
    and writes the records with the next batch. ``detail`` has ``error`` (the type name),
    ``message`` and ``records`` (kept pending)."""


_BY_STATUS = {
    TaskStatus.PENDING: EventKind.REGISTERED,
    TaskStatus.WAITING: EventKind.WAITING,
    TaskStatus.QUEUED: EventKind.QUEUED,
    TaskStatus.RUNNING: EventKind.STARTED,
    TaskStatus.RETRYING: EventKind.RETRYING,
    TaskStatus.COMPLETED: EventKind.COMPLETED,
    TaskStatus.FAILED: EventKind.FAILED,
    TaskStatus.CANCELLED: EventKind.CANCELLED,
}


def kind_of_transition(new: TaskStatus | None) -> EventKind:
    return EventKind.REMOVED if new is None else _BY_STATUS[new]


_NO_DETAIL: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. Task events carry the task's id, type and name, and the
    wall-clock time (``at`` is the system clock's monotonic time)."""

    kind: EventKind
    at: float
    task_id: str | None = None
    task_type: str | None = None
    detail: Mapping[str, Any] = field(default_factory=lambda: _NO_DETAIL)
    task_name: str | None = None
    wall: float | None = None


class Subscriber:
    """One subscription: a bounded buffer filled by the monitor, drained on a loop."""

    def __init__(self, bridge: LoopBridge, capacity: int, task_type: str | None) -> None:
        self.bridge = bridge
        self.capacity = capacity
        self.task_type = task_type
        self.dropped = 0
        self.closed = False
        self._buffer: deque[Event] = deque(maxlen=capacity)  # full: the oldest go
        self._lock = threading.Lock()
        self._posted = False
        self._waiter: asyncio.Future[None] | None = None

    def wants(self, task_type: str | None) -> bool:
        return self.task_type is None or task_type is None or task_type == self.task_type

    # -- monitor thread ---------------------------------------------------------------

    def offer(self, events: list[Event]) -> int:
        """Append ``events``, dropping the oldest past capacity; returns how many dropped.
        A closed subscriber takes none and drops none (the monitor may offer it the
        batch under way when its stream unsubscribed from another thread)."""
        with self._lock:
            if self.closed:
                return 0
            buffer = self._buffer
            dropped = max(0, len(buffer) + len(events) - self.capacity)
            buffer.extend(events)
            self.dropped += dropped
            wake = not self._posted
            self._posted = True
        if wake:
            self.bridge.post(self._wake)
        return dropped

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self.bridge.post(self._wake)

    # -- subscriber's loop ------------------------------------------------------------

    def _wake(self) -> None:
        self._posted = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def poll(self) -> Event | None:
        """The next event if one is buffered, else None (from any thread)."""
        with self._lock:
            return self._buffer.popleft() if self._buffer else None

    async def get(self) -> Event | None:
        """The next event, or None once the subscription is closed and drained."""
        while True:
            with self._lock:
                if self._buffer:
                    return self._buffer.popleft()
                if self.closed:
                    return None
            self._waiter = self.bridge.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class Subscriptions(Protocol):
    """What an `EventStream` needs of its client (`UnifiedTaskManager` has it)."""

    async def _subscribe(self, task_type: str | None) -> Subscriber: ...

    def _unsubscribe(self, subscriber: Subscriber) -> None: ...


def _unsubscribe(
    unsubscribe: weakref.WeakMethod[Callable[[Subscriber], None]], subscriber: Subscriber
) -> None:
    """An `EventStream`'s finalizer: its client unsubscribes ``subscriber``, or, gone
    with the stream (collected together: its system is gone too), the subscriber closes."""
    method = unsubscribe()
    if method is None:
        subscriber.close()
    else:
        method(subscriber)


class EventStream:
    """``async for event in tm.events()``, or ``async with tm.events() as stream``."""

    def __init__(
        self,
        client: Subscriptions,
        task_type: str | None,
        pending: asyncio.Future[Subscriber] | None = None,
    ) -> None:
        self._client = client
        self._task_type = task_type
        self._subscriber: Subscriber | None = None
        self._closed = False
        self._pending = pending
        """The subscription sent when the stream was made (`UnifiedTaskManager.events`)."""
        if pending is not None:
            pending.add_done_callback(self._subscribed)

    def _subscribed(self, future: asyncio.Future[Subscriber]) -> None:
        """The monitor confirmed the subscription (idempotent)."""
        if self._subscriber is not None or future.cancelled() or future.exception() is not None:
            return
        subscriber = future.result()
        if self._closed:
            self._client._unsubscribe(subscriber)
            return
        self._subscriber = subscriber
        # Leaving `async for` with break drops the stream: unsubscribe then too. The
        # finalizer (kept by `weakref.finalize`'s registry, a root, until it runs) holds
        # the client weakly: through the client, its system and what the system keeps (a
        # task's arguments, a kept error's frames) may reach this stream, which then
        # could never be freed, nor its system, after a stop that left it open.
        self._finalizer = weakref.finalize(
            self, _unsubscribe, weakref.WeakMethod(self._client._unsubscribe), subscriber
        )

    @property
    def dropped(self) -> int:
        """Events this subscriber lost because its buffer was full."""
        return 0 if self._subscriber is None else self._subscriber.dropped

    async def subscribe(self) -> None:
        """Wait until the stream is subscribed (done by the first iteration if not
        called; a stream made on an event loop was subscribed when it was made)."""
        if self._subscriber is None and not self._closed:
            pending = self._pending
            if pending is None:
                pending = self._pending = asyncio.ensure_future(
                    self._client._subscribe(self._task_type)
                )
                pending.add_done_callback(self._subscribed)
            await asyncio.shield(pending)  # a cancelled iteration keeps the subscription
            self._subscribed(pending)

    async def aclose(self) -> None:
        """Unsubscribe; the iteration ends, at once: events still buffered are dropped
        with the subscription (not counted in `dropped`: nobody wants them). A stream
        the system closed (its stop) gives what it buffered first, then ends."""
        if self._closed:
            return
        self._closed = True
        if self._subscriber is not None:
            self._finalizer()

    async def __aenter__(self) -> EventStream:
        await self.subscribe()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        await self.subscribe()
        subscriber = self._subscriber
        if subscriber is None or self._closed:
            raise StopAsyncIteration
        try:
            event = await subscriber.get()
        except BaseException:
            await self.aclose()
            raise
        if event is None or self._closed:  # (closed by `aclose` while it waited)
            await self.aclose()
            raise StopAsyncIteration
        return event
