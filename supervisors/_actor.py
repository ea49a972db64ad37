"""`SupervisedActor`: a pykka `ThreadingActor` that tells its supervisor when it fails.

What counts as a crash: an exception escaping a ``tell`` handler, an exception in
``on_start`` (reported as a failed start), the `Kill` message, and any `BaseException`
raised by a handler. pykka's own loop answers a `BaseException` with
``ActorRegistry.stop_all()``, stopping every actor in the process; this class contains it
to the one actor. An exception from an ``ask`` handler goes back to the caller and the
actor carries on, as in pykka.

``start()`` is synchronous, like OTP's ``start_link``: it returns once ``on_start`` has
finished and raises what ``on_start`` raised.

This module is the one adapter to pykka's internals: the actor-loop hooks it overrides
(``_create_actor_inbox``, ``_start_actor_loop``, ``_actor_loop_*``, ``_handle_receive``),
``pykka._envelope.Envelope``, ``pykka.messages._ActorStop`` and the registry's list and
lock (``ActorRegistry._actor_refs``, ``_actor_refs_lock``: new in a forked child). Every
other module uses
what it re-exports; tests/test_pykka_adapter.py fails loudly on a pykka that changed them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import pykka
from loguru import logger
from pykka import ActorDeadError, ActorRef, ActorRegistry
from pykka._envelope import Envelope
from pykka.messages import _ActorStop as ActorStop

from supervisors._errors import ActorKilled, SafeRepr, SupervisorError
from supervisors._messages import ChildExited, Kill

if TYPE_CHECKING:
    from pykka._actor import ActorInbox


__all__ = ["ActorStop", "Envelope", "SupervisedActor", "ask_into", "launch"]

_PYKKA_MESSAGES = frozenset(
    {ActorStop, pykka.messages.ProxyCall, pykka.messages.ProxyGetAttr, pykka.messages.ProxySetAttr}
)


class _Absorbs(Protocol):
    """What a dying incarnation needs of its `ChildHandle`."""

    def _absorb(self, actor_urn: str, inbox: Any, first: tuple[Any, ...] = ()) -> None: ...


@dataclass(frozen=True, slots=True)
class Supervision:
    """What a supervisor hands to each incarnation of a child."""

    child_id: str
    handle: _Absorbs
    supervisor: ActorRef[Any]


class SupervisedActor(pykka.ThreadingActor):
    """Base class for actors that live under a `Supervisor`.

    Subclasses use pykka as usual (``on_receive``, proxy methods, ``on_start``,
    ``on_stop``, ``on_failure``). Under a supervisor, ``self.child_id`` names the child.
    """

    start_timeout: ClassVar[float] = 10.0
    """Seconds ``start()`` waits for ``on_start`` to finish."""

    on_idle: ClassVar[Callable[[Any], None] | None] = None
    """Hook: when set, called after a message whenever the inbox is empty (batching)."""

    _supervision: Supervision | None = None
    _exit_reason: BaseException | None = None
    _start_error: BaseException | None = None
    _handed_over: tuple[Any, ...] = ()
    _started: threading.Event

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> ActorRef[Self]:
        """Start the actor and wait for ``on_start``; raise what it raised."""
        return launch(cls(*args, **kwargs), None, cls.start_timeout)

    @property
    def child_id(self) -> str | None:
        return None if self._supervision is None else self._supervision.child_id

    def hand_over(self, *messages: Any) -> None:
        """Before a crash: ``messages``, which this actor took but will not handle (the
        rest of a batch it was working through), go to its next incarnation first, ahead
        of what is left in its inbox, as if never taken. Call it from the handler whose
        exception crashes the actor; calls add up in order (an inner batch's rest, then
        the outer one's). If that handler was asked (its caller gets the exception, the
        actor goes on) they go back to the end of the inbox. Without a supervisor
        nothing takes them: they are dropped."""
        self._handed_over += messages

    def _take_back(self) -> None:
        """An asked handler raised (its caller gets the exception; no crash): what it
        handed over goes back into this incarnation's inbox."""
        handed, self._handed_over = self._handed_over, ()
        for message in handed:
            self.actor_inbox.put(Envelope(message))

    # -- pykka loop overrides ---------------------------------------------------------

    @staticmethod
    def _create_actor_inbox() -> ActorInbox:
        # SimpleQueue is implemented in C and several times cheaper than queue.Queue.
        inbox: queue.SimpleQueue[Envelope[Any]] = queue.SimpleQueue()
        return inbox

    def _start_actor_loop(self) -> None:
        thread = threading.Thread(
            target=self._actor_loop, name=f"{type(self).__name__}-{self.actor_urn[-12:]}"
        )
        thread.daemon = self.use_daemon_thread
        thread.start()

    def _actor_loop_setup(self) -> None:
        try:
            self.on_start()
        except BaseException as exc:
            self._start_error = exc
            ActorRegistry.unregister(self.actor_ref)
            self.actor_stopped.set()
        finally:
            self._started.set()

    def _actor_loop_running(self) -> None:
        inbox = self.actor_inbox
        stopped = self.actor_stopped
        handle = self._handle_receive
        idle = type(self).on_idle
        while not stopped.is_set():
            envelope = inbox.get()
            reply_to = envelope.reply_to
            try:
                response = handle(envelope.message)
            except Exception as exc:
                if reply_to is not None:
                    if self._handed_over:  # no crash: they are handled here, later
                        self._take_back()
                    reply_to.set_exception()
                else:
                    self._crash(exc)
            except BaseException as exc:
                # Contained: this actor crashes, every other actor goes on.
                if reply_to is not None:
                    reply_to.set_exception()
                self._crash(exc)
            else:
                if reply_to is not None:
                    reply_to.set(response)
            # Drop the last message before blocking on the next one: an idle actor must
            # not keep its last (possibly large) message alive.
            envelope = reply_to = response = None  # type: ignore[assignment]
            if idle is not None and inbox.empty() and not stopped.is_set():
                try:
                    idle(self)
                except BaseException as exc:  # contained too: a crash of this actor
                    self._crash(exc)

    def _actor_loop_teardown(self) -> None:
        supervision = self._supervision
        if supervision is None or self._start_error is not None:
            _fail_leftovers(self)
            return
        supervision.handle._absorb(self.actor_urn, self.actor_inbox, self._handed_over)
        with contextlib.suppress(ActorDeadError):
            supervision.supervisor.tell(
                ChildExited(supervision.child_id, self.actor_urn, self._exit_reason)
            )

    def _handle_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is Kill:
            raise ActorKilled(message.reason)
        if kind in _PYKKA_MESSAGES:
            return super()._handle_receive(message)
        return self.on_receive(message)  # one set lookup instead of pykka's four isinstance

    def _crash(self, exc: BaseException) -> None:
        self._exit_reason = exc
        ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()
        logger.bind(actor=str(self), child=self.child_id).debug("actor crashed: {}", SafeRepr(exc))
        try:
            self.on_failure(type(exc), exc, exc.__traceback__)
        except BaseException as hook_error:
            logger.bind(actor=str(self)).opt(exception=hook_error).error(
                "on_failure of {} raised", self
            )

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Hook: the actor crashed. Its supervisor is told after this returns."""


def _fail_leftovers(actor: pykka.Actor) -> None:
    inbox = actor.actor_inbox
    while not inbox.empty():
        envelope: Envelope[Any] = inbox.get()
        if envelope.reply_to is None:
            continue
        if isinstance(envelope.message, ActorStop):
            envelope.reply_to.set(None)
        else:
            error = ActorDeadError(f"{actor.actor_ref} stopped before handling the message")
            envelope.reply_to.set_exception((ActorDeadError, error, None))


def _renew_registry() -> None:
    """In a forked child: pykka's registry is empty, its lock new. No actor's thread
    runs in the child (a fork copies only the thread that forks), so none is alive
    there: listed, ``ActorRegistry.stop_all()`` waited for ever for their stops. A
    thread of the parent that started or stopped an actor as the process forked held
    the lock, and that thread does not run in the child: the child's first actor (a
    system of its own) waited for ever."""
    ActorRegistry._actor_refs = []
    ActorRegistry._actor_refs_lock = threading.RLock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_renew_registry)


def launch(actor: object, supervision: Supervision | None, timeout: float) -> ActorRef[Any]:
    """Register and start an actor instance; for a `SupervisedActor`, wait for ``on_start``.

    Raises what ``on_start`` raised, or `SupervisorError` if it did not finish within
    ``timeout`` seconds (the actor is then told to stop as soon as it can).
    """
    if not isinstance(actor, pykka.Actor):
        msg = f"a child factory must return a pykka actor instance, got {actor!r}"
        raise SupervisorError(msg)
    if isinstance(actor, SupervisedActor):
        actor._supervision = supervision
        actor._started = threading.Event()
    ActorRegistry.register(actor.actor_ref)
    actor._start_actor_loop()
    if isinstance(actor, SupervisedActor):
        if not actor._started.wait(timeout):
            actor.actor_inbox.put(Envelope(ActorStop()))
            msg = f"{actor} did not finish on_start within {timeout}s"
            raise SupervisorError(msg)
        if actor._start_error is not None:
            raise actor._start_error
    return actor.actor_ref


def ask_into(ref: ActorRef[Any], message: Any, future: pykka.Future[Any]) -> None:
    """Send ``message`` to ``ref``'s actor; its reply, or its error, is set on ``future``
    (a `pykka.Future` of the caller's own kind, one that also wakes an event loop, say)."""
    ref.actor_inbox.put(Envelope(message, reply_to=future))
