"""One message per burst: the requests a thread or loop sends to one actor, batched.

A burst of calls (a `gather` of 20,000 ``submit`` calls, the facade routing them on)
would otherwise cost a queue put and a wake-up of the receiving actor's thread per
call, and those threads then fight the sender for the GIL message by message. Batching
them into one `messages.Batch` per target, in order, makes it one of each.

A request can also be queued unbuilt (`Outbox.defer`): the caller's step only queues it,
and the outbox builds it (checks the arguments, makes the message) when it flushes, at
most `BUILD_CHUNK` builds per loop iteration. A `gather` of 20,000 calls then costs its
loop iteration 20,000 small steps, not 20,000 argument checks: the checks run in bounded
chunks, with the loop's other callbacks (timers, I/O, answers) in between.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from actors.core import LoopBridge, bridge_for
from actors.runtime import messages
from supervisors import ChildHandle

__all__ = ["BUILD_CHUNK", "SEND_CHUNK", "OnLoop", "Outbox", "outbox", "send_run"]

BUILD_CHUNK = 256
"""Deferred requests an outbox builds per loop iteration, at most."""

SEND_CHUNK = 4096
"""Requests an outbox sends per loop iteration, at most."""


def send_run(target: ChildHandle, run: list[Any]) -> Sequence[Any]:
    """Tell ``target`` the messages of ``run`` in order: one `messages.Batch` when it
    is up, each on its own while it is down (its restart buffer counts each request as
    before). A request that cannot be sent fails its reply with the error (a
    `SupervisorError`, mostly). Returns the messages not sent (empty: all were).

    If a tell raises a BaseException (a crash of the sender), ``run`` is left holding
    the messages not told yet, that one first (`ChildHandle.tell` raises before it
    delivers): a sender that hands them on re-sends none twice."""
    if len(run) == 1 or getattr(target, "actor_ref", None) is None:
        unsent: tuple[Any, ...] = ()
        try:
            for message in run:
                if not _tell(target, message, (message,)):
                    unsent += (message,)
        except BaseException:  # (raised in the loop's body: ``message`` is bound)
            del run[: next(i for i, sent in enumerate(run) if sent is message)]
            raise
        return unsent
    return () if _tell(target, messages.Batch(tuple(run)), run) else run


def _tell(target: ChildHandle, message: Any, run: Any) -> bool:
    try:
        target.tell(message)
    except Exception as exc:  # a SupervisorError, mostly: the target is gone
        for request in run:
            reply = getattr(request, "reply", None)
            if reply is not None:
                reply.set_exception(exc)
        return False
    return True


class Outbox:
    """The messages one event loop sends in one iteration, sent (`send_run` per
    target, in order) once the iteration's callbacks have run. Every message a loop
    sends through here keeps its order relative to the others, deferred or not."""

    __slots__ = ("items", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: deque[Any] = deque()
        """Three entries per message, flat (no tuple per message while it waits here):
        its target, the message (or what it is built from) and its build function (or
        None)."""

    def send(self, target: ChildHandle, message: Any) -> None:
        """Queue ``message`` for ``target`` (on the loop's thread)."""
        items = self.items
        if not items:
            self.loop.call_soon(self.flush)
        items.extend((target, message, None))

    def defer(self, target: ChildHandle, build: Callable[[Any], Any], request: Any) -> None:
        """Queue the message ``build(request)`` for ``target``, built when it is sent.
        ``build`` returns None for a request it refused (it has told its caller).
        ``request`` is what it is built from, in one object: a tuple of its arguments,
        or the caller's own call object holding them (no tuple per call while it waits
        here); ``build`` is best a plain function, not a bound method made per call."""
        items = self.items
        if not items:
            self.loop.call_soon(self.flush)
        items.extend((target, request, build))

    def then(self, action: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Run ``action(*args)`` once every message queued before it has been sent
        (told to its target): to answer a caller on another loop only after what it
        must observe is on its way."""
        items = self.items
        if not items:
            self.loop.call_soon(self.flush)
        items.extend((None, args, action))

    def flush(self) -> None:
        """Send what is queued, in order: at most `SEND_CHUNK` messages and
        `BUILD_CHUNK` builds this iteration, the rest in the next."""
        items = self.items
        popleft = items.popleft
        run: list[Any] = []
        target: ChildHandle | None = None
        builds = 0
        try:
            for _ in range(min(len(items) // 3, SEND_CHUNK)):
                to, message, build = popleft(), popleft(), popleft()
                if build is not None:
                    if to is None:  # an action (`then`): after what was queued before it
                        if run:
                            assert target is not None
                            send_run(target, run)
                            run = []
                        build(*message)
                        continue
                    message = build(message)
                    builds += 1
                if message is not None:
                    if to is not target:
                        if run:
                            assert target is not None
                            send_run(target, run)
                            run = []
                        target = to
                    run.append(message)
                if builds >= BUILD_CHUNK:
                    break
            if run:
                assert target is not None
                send_run(target, run)
        finally:
            if items:  # the rest next iteration
                self.loop.call_soon(self.flush)


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

    def then(self, action: Callable[..., None], args: tuple[Any, ...]) -> None:
        """`Outbox.then` on the running loop's outbox: after the messages told so far."""
        outbox(bridge_for(asyncio.get_running_loop())).then(action, args)
