"""`ChildHandle`: the stable way to reach a supervised child, whatever its incarnation.

Messages sent while the child is down or waiting out its backoff are buffered and
delivered in order to the next incarnation. Messages still in a crashed incarnation's
inbox are handed back here and delivered first, as Akka keeps a restarted actor's
mailbox.

Only callers' requests are subject to back-pressure: asks, and told messages whose
type is one of the handle's ``request_types``. At most ``capacity`` of them wait in the
buffer; one more fails with `BufferFullError`. Every other told message is the
system's own (an outcome, a timer, an event, a `Kill`) and is never refused for room,
as Akka never bounds system messages: refusing it would lose work nobody can resend.
A terminated child and a child gone for good fail every message with a
`SupervisorError` naming the child: nothing is dropped silently.
"""

from __future__ import annotations

import copy
import enum
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import pykka
from loguru import logger
from pykka import ActorRef, Future, ThreadingFuture
from pykka.messages import ProxyCall

from supervisors._actor import ActorStop, Envelope, SupervisedActor
from supervisors._errors import BufferFullError, SupervisorError, safe_repr
from supervisors._messages import StopBy

__all__ = ["ChildHandle", "ChildStatus"]

DEFAULT_BUFFER_CAPACITY = 1000


class ChildStatus(enum.Enum):
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"


class ChildHandle:
    """Reach the current incarnation of one supervised child.

    `tell`, `ask` and `proxy()` method calls work in every state: delivered at once
    while the child runs, buffered while it restarts, and failed with `SupervisorError`
    once it is stopped or gone. While it restarts, at most ``capacity`` requests (asks,
    and told messages of ``request_types``) wait; the system's own told messages always
    wait, whatever their number.
    """

    __slots__ = (
        "_buffer",
        "_capacity",
        "_error",
        "_inbox",
        "_lock",
        "_ref",
        "_request_types",
        "_requests",
        "_status",
        "child_id",
    )

    def __init__(
        self,
        child_id: str,
        capacity: int = DEFAULT_BUFFER_CAPACITY,
        request_types: tuple[type, ...] = (),
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            msg = f"ChildHandle capacity must be an int >= 0, got {safe_repr(capacity)}"
            raise SupervisorError(msg)
        if not isinstance(child_id, str) or not child_id:
            msg = f"ChildHandle child_id must be a non-empty str, got {safe_repr(child_id)}"
            raise SupervisorError(msg)
        check_request_types(request_types)
        self.child_id = child_id
        self._capacity = capacity
        self._request_types = request_types
        self._requests = 0  # requests in the buffer: what the capacity bounds
        self._lock = threading.Lock()
        self._ref: ActorRef[Any] | None = None
        # The live incarnation's inbox when it is a SupervisedActor: one that hands what
        # is left in its inbox back to this handle (under the lock) when it stops, so a
        # put needs no check of its stopped flag. None otherwise (checked path).
        self._inbox: Any = None
        self._status = ChildStatus.RESTARTING
        self._buffer: deque[Envelope[Any]] = deque()
        self._error: SupervisorError | None = None

    def __repr__(self) -> str:
        return f"<ChildHandle {self.child_id!r} {self._status.value}>"

    # -- public --------------------------------------------------------------------

    @property
    def status(self) -> ChildStatus:
        return self._status

    @property
    def actor_ref(self) -> ActorRef[Any] | None:
        """The current incarnation's ref, or None while it is down. Do not keep it."""
        return self._ref

    @property
    def actor_urn(self) -> str | None:
        ref = self._ref
        return None if ref is None else ref.actor_urn

    @property
    def buffered(self) -> int:
        """Messages waiting for the next incarnation."""
        return len(self._buffer)

    @property
    def buffered_requests(self) -> int:
        """Requests waiting for the next incarnation (at most the capacity)."""
        return self._requests

    def tell(self, message: Any) -> None:
        """Send ``message`` without waiting; raises `SupervisorError` if it cannot be.

        A message of one of ``request_types`` is a caller's request: while the child
        restarts it fails with `BufferFullError` once ``capacity`` requests wait. Any
        other message waits for the next incarnation, however many are buffered.
        """
        envelope: Envelope[Any] = Envelope(message)
        with self._lock:
            inbox = self._inbox
            if inbox is not None:
                inbox.put(envelope)
                return
            ref = self._ref
            if ref is not None and not ref.actor_stopped.is_set():
                ref.actor_inbox.put(envelope)
                return
            self._enqueue(envelope, isinstance(message, self._request_types))

    def ask(
        self,
        message: Any,
        *,
        block: bool = True,
        timeout: float | None = None,
        future: Future[Any] | None = None,
    ) -> Any:
        """Send ``message`` and get the reply (``block``) or a future of it.

        ``future`` lets a caller supply its own `pykka.Future` implementation (one with
        callbacks, say); the reply or the delivery error is set on it.
        """
        reply: Future[Any] = ThreadingFuture() if future is None else future
        envelope: Envelope[Any] = Envelope(message, reply_to=reply)
        with self._lock:
            ref = self._ref
            if self._inbox is not None:
                self._inbox.put(envelope)
            elif ref is not None and not ref.actor_stopped.is_set():
                ref.actor_inbox.put(envelope)
            else:
                try:
                    self._enqueue(envelope, True)
                except SupervisorError as exc:
                    reply.set_exception((type(exc), exc, None))
        if block:
            return reply.get(timeout=timeout)
        return reply

    def call(self, method: str, *args: Any, **kwargs: Any) -> Future[Any]:
        """Call ``method`` on the current incarnation; a future of its return value."""
        return self.ask(ProxyCall(attr_path=(method,), args=args, kwargs=kwargs), block=False)  # type: ignore[no-any-return]

    def proxy(self) -> _HandleProxy:
        """``handle.proxy().method(*args)`` returns a future, like a pykka proxy."""
        return _HandleProxy(self)

    # -- used by the supervisor and the dying incarnation ---------------------------

    def _enqueue(self, envelope: Envelope[Any], request: bool) -> None:
        # Called with the lock held. Only requests count against the capacity.
        error = self._error
        if error is not None:
            # A copy per call (the errors copy: rebuilt from their fields): raising the
            # one stored error added each caller's frames (and their locals) to its
            # traceback, for as long as the handle lived.
            fresh = copy.copy(error)
            fresh.__cause__ = error.__cause__
            raise fresh
        if request:
            if self._requests >= self._capacity:
                raise BufferFullError(self.child_id, self._capacity)
            self._requests += 1
        self._buffer.append(envelope)

    def _attach(self, ref: ActorRef[Any]) -> None:
        """A new incarnation is up: deliver what was buffered, in order, then go live."""
        with self._lock:
            inbox = ref.actor_inbox
            while self._buffer:
                inbox.put(self._buffer.popleft())
            self._requests = 0
            self._ref = ref
            self._inbox = inbox if issubclass(ref.actor_class, SupervisedActor) else None
            self._status = ChildStatus.RUNNING
            self._error = None

    def _detach(self) -> None:
        """The supervisor is about to stop or has lost the incarnation: buffer from now on."""
        with self._lock:
            self._ref = self._inbox = None
            if self._error is None:
                self._status = ChildStatus.RESTARTING

    def _absorb(self, actor_urn: str, inbox: Any, first: tuple[Any, ...] = ()) -> None:
        """Take back what was left in a stopped incarnation's inbox, ahead of the buffer;
        ``first`` (messages it took but handed over, `SupervisedActor.hand_over`) ahead of
        the inbox.

        The inbox is drained under the handle's lock: the actor's stopped flag is already
        set, so every later `tell` buffers, and every earlier one is in the inbox now.
        """
        pending: list[Envelope[Any]] = [Envelope(message) for message in first]
        with self._lock:
            while not inbox.empty():
                envelope = inbox.get()
                # A stop request (a nested supervisor's `StopBy`, too) is for the
                # incarnation that stopped: answered, never kept for the next one.
                if isinstance(envelope.message, ActorStop | StopBy):
                    if envelope.reply_to is not None:
                        envelope.reply_to.set(None)
                else:
                    pending.append(envelope)
            ref = self._ref
            if ref is not None and ref.actor_urn == actor_urn:
                self._ref = self._inbox = None
                ref = None
                if self._error is None:
                    self._status = ChildStatus.RESTARTING
            if self._error is not None:
                _fail_all(pending, self._error, self.child_id)
            elif ref is not None and not ref.actor_stopped.is_set():
                for envelope in pending:
                    ref.actor_inbox.put(envelope)
            else:
                self._buffer.extendleft(reversed(pending))

    def _close(self, error: SupervisorError) -> None:
        """Stopped or gone: fail everything buffered and every later call with ``error``."""
        with self._lock:
            self._ref = self._inbox = None
            self._status = ChildStatus.STOPPED
            self._error = error
            pending = list(self._buffer)
            self._buffer.clear()
            self._requests = 0
        _fail_all(pending, error, self.child_id)


def check_request_types(request_types: object) -> None:
    """Raise `SupervisorError` unless ``request_types`` is a tuple of classes."""
    if not isinstance(request_types, tuple) or not all(isinstance(t, type) for t in request_types):
        msg = f"request_types must be a tuple of message classes, got {safe_repr(request_types)}"
        raise SupervisorError(msg)


def _fail_all(envelopes: Iterable[Envelope[Any]], error: SupervisorError, child_id: str) -> None:
    dropped = 0
    for envelope in envelopes:
        if envelope.reply_to is not None:
            envelope.reply_to.set_exception((type(error), error, None))
        else:
            dropped += 1
    if dropped:
        logger.bind(child=child_id).warning(
            "{} told messages to child {!r} were not delivered: {}", dropped, child_id, error
        )


class _HandleProxy:
    __slots__ = ("_handle",)

    def __init__(self, handle: ChildHandle) -> None:
        self._handle = handle

    def __getattr__(self, name: str) -> Callable[..., pykka.Future[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        handle = self._handle

        def method(*args: Any, **kwargs: Any) -> pykka.Future[Any]:
            return handle.call(name, *args, **kwargs)

        return method
