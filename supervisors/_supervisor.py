"""`Supervisor`: an OTP supervisor as a pykka actor, with tenacity backoff.

All decisions come from `supervisors._decisions`; this class only receives messages,
applies the decisions and starts, stops and schedules. A backoff never sleeps in the
mailbox: the restart is a `RestartDue` message the clock delivers later, so the
supervisor keeps answering (and handling other children's crashes) meanwhile.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pykka
from loguru import logger
from pykka import ActorRef

from supervisors._actor import SupervisedActor, Supervision, launch
from supervisors._clock import SYSTEM_CLOCK, Clock, TimerHandle
from supervisors._decisions import (
    add_restart,
    affected_children,
    backoff_delay,
    next_failure_count,
    should_restart,
)
from supervisors._errors import (
    ChildSpecError,
    ConsecutiveFailuresExceeded,
    RestartIntensityExceeded,
    SafeRepr,
    SupervisorError,
    safe_repr,
)
from supervisors._handle import (
    DEFAULT_BUFFER_CAPACITY,
    ChildHandle,
    ChildStatus,
    check_request_types,
)
from supervisors._messages import ChildExited, RestartDue, StopBy, WatchdogTick
from supervisors._spec import (
    ChildSpec,
    Restart,
    RestartPolicy,
    Strategy,
    check_child_specs,
    is_seconds,
)

__all__ = [
    "ChildCounts",
    "ChildInfo",
    "Supervisor",
    "SupervisorEvent",
    "SupervisorEventKind",
    "SupervisorState",
]


NESTED_STOP_SLACK = 0.5
"""Seconds past its stop's bound a supervisor waits for a nested supervisor: told to stop
by that bound (`StopBy`), the nested one abandons what is left of its own children then
and answers at once; the slack is for that answer, not for its children."""

# Restart generations are unique in the process, so a RestartDue left in a crashed
# supervisor's inbox never matches a restart its next incarnation schedules.
_generations = itertools.count(1)


class SupervisorEventKind(enum.Enum):
    STARTED = "started"
    CRASHED = "crashed"
    EXITED = "exited"
    START_FAILED = "start_failed"
    RESTART_SCHEDULED = "restart_scheduled"
    RESTARTED = "restarted"
    STOPPED = "stopped"
    ABANDONED = "abandoned"
    INTENSITY_EXCEEDED = "intensity_exceeded"
    ESCALATED = "escalated"


@dataclass(frozen=True, slots=True)
class SupervisorEvent:
    """One thing a supervisor did or saw, for listeners (monitors, tests)."""

    kind: SupervisorEventKind
    supervisor: str
    child_id: str | None
    at: float
    reason: BaseException | None = None
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """A row of `Supervisor.which_children`."""

    id: str
    status: str
    restarts: int
    actor_urn: str | None
    restart: Restart
    is_supervisor: bool


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """`Supervisor.count_children`, after OTP's ``count_children``."""

    specs: int
    active: int
    restarting: int
    stopped: int
    supervisors: int
    workers: int


class SupervisorState:
    """What outlives a supervisor's incarnations: specs, handles and child states.

    Give a supervisor child ``state_factory=SupervisorState`` (as `Supervisor.spec`
    does) so callers' handles to its children stay valid across its restarts.
    """

    def __init__(self) -> None:
        self.specs: dict[str, ChildSpec] = {}
        self.handles: dict[str, ChildHandle] = {}
        self.states: dict[str, Any] = {}
        self.initialized = False

    def close(self, error: SupervisorError) -> None:
        """The supervisor is gone for good: fail every handle below it."""
        for handle in self.handles.values():
            handle._close(error)
        for state in self.states.values():
            if isinstance(state, SupervisorState):
                state.close(error)


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    handle: ChildHandle
    state: Any
    ref: ActorRef[Any] | None = None
    status: ChildStatus = ChildStatus.RESTARTING
    restarts: int = 0
    failures: int = 0
    started_at: float = 0.0
    pending: int | None = None  # generation of the scheduled restart
    timer: TimerHandle | None = None
    suspect: str | None = None  # urn the watchdog found not alive once


class Supervisor(SupervisedActor):
    """Starts children in spec order, restarts them by strategy, stops them in reverse.

    Start one with ``Supervisor.start(children, strategy=..., policy=...)``; call its
    verbs through the proxy (``ref.proxy().which_children().get()``). As a child of
    another supervisor, use `Supervisor.spec`.

    While a child restarts, its handle buffers what is sent to it. ``buffer_capacity``
    bounds the callers' requests among them: asks, and told messages whose type is in
    ``request_types``. Every other told message is taken as the system's own (a
    timer's, an outcome, an event) and is never refused for room.

    ``listener`` and ``on_escalation`` run in the supervisor's own thread: they must not
    block, nor wait on this supervisor (``ref.stop()`` from ``on_escalation`` waits on
    the thread that runs it; the supervisor stops itself once it returns).
    """

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        policy: RestartPolicy | None = None,
        clock: Clock | None = None,
        name: str = "supervisor",
        on_escalation: Callable[[RestartIntensityExceeded], object] | None = None,
        listener: Callable[[SupervisorEvent], object] | None = None,
        buffer_capacity: int = DEFAULT_BUFFER_CAPACITY,
        request_types: tuple[type, ...] = (),
        watchdog_interval: float | None = 1.0,
        state: SupervisorState | None = None,
    ) -> None:
        super().__init__()
        specs = check_child_specs(children)
        if not isinstance(strategy, Strategy):
            raise ChildSpecError(
                f"strategy must be a Strategy member (ONE_FOR_ONE, ONE_FOR_ALL, "
                f"REST_FOR_ONE), got {safe_repr(strategy)}"
            )
        if policy is not None and not isinstance(policy, RestartPolicy):
            raise ChildSpecError(f"policy must be a RestartPolicy, got {safe_repr(policy)}")
        if not isinstance(name, str) or not name:
            raise ChildSpecError(
                f"supervisor name must be a non-empty string, got {safe_repr(name)}"
            )
        if (
            not isinstance(buffer_capacity, int)
            or isinstance(buffer_capacity, bool)
            or buffer_capacity < 0
        ):
            raise ChildSpecError(
                f"buffer_capacity must be an int >= 0, got {safe_repr(buffer_capacity)}"
            )
        try:
            check_request_types(request_types)
        except SupervisorError as exc:
            raise ChildSpecError(str(exc)) from None
        if watchdog_interval is not None and not is_seconds(watchdog_interval):
            # NaN compares false with everything: taken, it made every tick due at once
            # and the supervisor spun a core re-arming its watchdog.
            raise ChildSpecError(
                f"watchdog_interval must be a finite number of seconds > 0, or None to turn "
                f"the watchdog off, got {safe_repr(watchdog_interval)}"
            )
        if clock is not None and not (
            callable(getattr(clock, "monotonic", None))
            and callable(getattr(clock, "call_later", None))
        ):
            raise ChildSpecError(
                f"clock must have monotonic() and call_later(delay, callback) (a Clock), "
                f"got {safe_repr(clock)}"
            )
        for what, callback in (("on_escalation", on_escalation), ("listener", listener)):
            if callback is not None and not callable(callback):
                raise ChildSpecError(f"{what} must be callable or None, got {safe_repr(callback)}")
        if state is not None and not isinstance(state, SupervisorState):
            raise ChildSpecError(f"state must be a SupervisorState, got {safe_repr(state)}")
        self.name = name
        self.strategy = strategy
        self.policy = policy or RestartPolicy()
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._on_escalation = on_escalation
        self._listener = listener
        self._capacity = buffer_capacity
        self._request_types = request_types
        self._watchdog_interval = watchdog_interval
        self._owns_state = state is None
        self._state = state or SupervisorState()
        if not self._state.initialized:
            for spec in specs:
                self._add_spec(spec)
            self._state.initialized = True
        self._children: dict[str, _Child] = {}
        self._restarts: list[float] = []
        self._watchdog: TimerHandle | None = None
        self._escalation: RestartIntensityExceeded | None = None
        self._stop_deadline: float | None = None  # set by `StopBy`
        self._log = logger.bind(supervisor=name)

    @classmethod
    def spec(
        cls,
        id: str,
        children: Iterable[ChildSpec] = (),
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown_timeout: float = 30.0,
        **kwargs: Any,
    ) -> ChildSpec:
        """A `ChildSpec` for a supervisor nested under another one."""
        kwargs.setdefault("name", id)
        return ChildSpec(
            id=id,
            factory=cls,
            args=(check_child_specs(children),),
            kwargs=kwargs,
            restart=restart,
            shutdown_timeout=shutdown_timeout,
            state_factory=SupervisorState,
        )

    # -- lifecycle --------------------------------------------------------------------

    def on_start(self) -> None:
        self._children = {
            cid: _Child(spec, self._state.handles[cid], self._state.states.get(cid))
            for cid, spec in self._state.specs.items()
        }
        for child in self._children.values():
            error = self._start(child)
            if error is not None:
                self._stop_children(reversed(list(self._children)))
                self._detach_all()
                msg = (
                    f"supervisor {self.name!r}: child {child.spec.id!r} failed to start: "
                    f"{safe_repr(error)}"
                )
                raise SupervisorError(msg) from error
        self._arm_watchdog()

    def on_stop(self) -> None:
        self._shutdown()
        if self._owns_state or self._supervision is None:
            # After an escalation, handles keep failing with the escalation's error.
            error = self._escalation or SupervisorError(f"supervisor {self.name!r} stopped")
            self._state.close(error)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        # Linked children die with their supervisor; handles buffer for its next life.
        self._shutdown()
        if self._owns_state:
            self._state.close(
                SupervisorError(f"supervisor {self.name!r} crashed: {safe_repr(exception_value)}")
            )

    def _shutdown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for child in self._children.values():
            self._cancel_timer(child)
        self._stop_children(reversed(list(self._children)))
        self._detach_all()

    def _detach_all(self) -> None:
        for child in self._children.values():
            child.handle._detach()

    # -- messages ---------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if type(message) is ChildExited:
            self._child_exited(message)
        elif type(message) is RestartDue:
            self._restart_due(message)
        elif type(message) is WatchdogTick:
            self._watchdog_tick(message)
        elif type(message) is StopBy:
            self._stop_deadline = message.deadline
            self._stop()  # on_stop stops the children within the deadline
        else:
            return super().on_receive(message)
        return None

    def _child_exited(self, msg: ChildExited) -> None:
        child = self._children.get(msg.child_id)
        if child is None or child.ref is None or child.ref.actor_urn != msg.actor_urn:
            return  # an incarnation we stopped ourselves, or already handled
        child.ref = None
        child.handle._detach()
        abnormal = msg.reason is not None
        kind = SupervisorEventKind.CRASHED if abnormal else SupervisorEventKind.EXITED
        self._event(kind, child.spec.id, reason=msg.reason)
        if not should_restart(child.spec.restart, abnormal):
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(
                    child,
                    SupervisorError(
                        f"child {child.spec.id!r} is temporary and exited "
                        f"({safe_repr(msg.reason)}); it is not restarted"
                    ),
                )
            else:
                child.status = ChildStatus.STOPPED
                child.handle._close(
                    SupervisorError(
                        f"child {child.spec.id!r} stopped normally and is not restarted "
                        f"(transient); call restart_child({child.spec.id!r}) to start it again"
                    )
                )
            return
        self._restart_after_failure(child, msg.reason)

    def _restart_after_failure(
        self, child: _Child, reason: BaseException | None, *, retry: bool = False
    ) -> None:
        now = self.clock.monotonic()
        policy = self.policy
        self._restarts, exceeded = add_restart(
            self._restarts, now, policy.within_seconds, policy.max_restarts
        )
        if exceeded:
            self._escalate(
                child,
                RestartIntensityExceeded(
                    self.name,
                    child.spec.id,
                    len(self._restarts),
                    policy.max_restarts,
                    policy.within_seconds,
                    reason,
                ),
            )
            return
        child.failures = next_failure_count(
            child.failures, now - child.started_at, policy.reset_after
        )
        if child.failures > policy.failures_limit:
            self._escalate(
                child,
                ConsecutiveFailuresExceeded(
                    self.name,
                    child.spec.id,
                    child.failures,
                    policy.failures_limit,
                    policy.reset_after,
                    reason,
                ),
            )
            return
        delay = backoff_delay(self.policy.wait, child.failures)
        live = [cid for cid, c in self._children.items() if c.status is not ChildStatus.STOPPED]
        ids = affected_children(self.strategy, live, child.spec.id)
        others = [cid for cid in ids if cid != child.spec.id]
        self._stop_children(reversed(others))
        generation = next(_generations)
        restart_ids: list[str] = []
        for cid in ids:
            c = self._children[cid]
            self._cancel_timer(c)
            if cid != child.spec.id and c.spec.restart is Restart.TEMPORARY:
                self._remove(c, SupervisorError(f"temporary child {cid!r} was stopped"))
                continue
            c.status = ChildStatus.RESTARTING
            c.pending = generation
            restart_ids.append(cid)
        self._event(
            SupervisorEventKind.RESTART_SCHEDULED, child.spec.id, reason=reason, delay=delay
        )
        message = RestartDue(tuple(restart_ids), generation)
        if delay <= 0 and retry:
            # A failed restart tries again through the mailbox (OTP's try_again_restart):
            # no recursion, and a stop request still gets through.
            self.actor_ref.tell(message)
            return
        if delay <= 0:
            self._restart_due(message)
            return
        me = self.actor_ref
        timer = self.clock.call_later(delay, lambda: _tell_quietly(me, message))
        for cid in restart_ids:  # the whole group shares the timer
            self._children[cid].timer = timer

    def _restart_due(self, msg: RestartDue) -> None:
        for cid in msg.child_ids:
            child = self._children.get(cid)
            if child is None or child.pending != msg.generation or child.ref is not None:
                continue
            child.pending = None
            child.timer = None
            error = self._start(child)
            if error is not None:
                child.started_at = self.clock.monotonic()
                self._restart_after_failure(child, error, retry=True)
                return
            child.restarts += 1
            self._event(SupervisorEventKind.RESTARTED, cid)

    def _watchdog_tick(self, tick: WatchdogTick) -> None:
        if tick.owner != self.actor_urn:
            return  # armed by an earlier incarnation of this supervisor
        self._watchdog = None
        for child in list(self._children.values()):
            ref = child.ref
            if ref is None or ref.is_alive():
                child.suspect = None
                continue
            if child.suspect != ref.actor_urn:
                child.suspect = ref.actor_urn
                continue
            child.suspect = None
            reason = SupervisorError(f"child {child.spec.id!r} was found dead by the watchdog")
            self._child_exited(ChildExited(child.spec.id, ref.actor_urn, reason))
        self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        if self._watchdog_interval is None or self.actor_stopped.is_set():
            return
        me = self.actor_ref
        tick = WatchdogTick(self.actor_urn)
        self._watchdog = self.clock.call_later(
            self._watchdog_interval, lambda: _tell_quietly(me, tick)
        )

    def _escalate(self, child: _Child, error: RestartIntensityExceeded) -> None:
        self._event(SupervisorEventKind.INTENSITY_EXCEEDED, child.spec.id, reason=error)
        self._log.error("{}", error)
        for c in self._children.values():
            self._cancel_timer(c)
        self._stop_children(reversed(list(self._children)))
        self._detach_all()
        self._event(SupervisorEventKind.ESCALATED, child.spec.id, reason=error)
        if self._supervision is not None:
            raise error  # crash: our own supervisor decides
        self._escalation = error
        self._state.close(error)
        if self._on_escalation is not None:
            try:
                self._on_escalation(error)
            except Exception as exc:
                self._log.opt(exception=exc).error("on_escalation callback raised")
        self._stop()

    # -- starting and stopping children ------------------------------------------------

    def _add_spec(self, spec: ChildSpec) -> None:
        self._state.specs[spec.id] = spec
        self._state.handles[spec.id] = ChildHandle(spec.id, self._capacity, self._request_types)
        if spec.state_factory is not None:
            self._state.states[spec.id] = spec.state_factory()

    def _start(self, child: _Child) -> BaseException | None:
        spec = child.spec
        kwargs = dict(spec.kwargs)
        if spec.state_factory is not None:
            kwargs["state"] = child.state
        try:
            actor = spec.factory(*spec.args, **kwargs)
            ref = launch(
                actor, Supervision(spec.id, child.handle, self.actor_ref), spec.start_timeout
            )
        except Exception as exc:
            self._event(SupervisorEventKind.START_FAILED, spec.id, reason=exc)
            return exc
        child.ref = ref
        child.status = ChildStatus.RUNNING
        child.started_at = self.clock.monotonic()
        child.suspect = None
        child.handle._attach(ref)
        self._event(SupervisorEventKind.STARTED, spec.id)
        return None

    def _stop_children(self, ids: Iterable[str]) -> None:
        for cid in ids:
            child = self._children.get(cid)
            if child is None or child.ref is None:
                continue
            ref = child.ref
            child.ref = None
            child.handle._detach()
            now = time.monotonic()
            timeout = child.spec.shutdown_timeout
            until = now + timeout
            deadline = self._stop_deadline
            if deadline is not None and deadline < until:  # one bound for the whole stop
                until = deadline
                timeout = max(0.0, deadline - now)
            wait = timeout
            if issubclass(ref.actor_class, Supervisor):
                # A nested supervisor stops its own children by the same bound, so the
                # whole tree is over by it (not each grandchild in its own time). The
                # plain stop after it is answered once it has stopped so (or stops one
                # that never takes `StopBy`).
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(StopBy(until))
                wait += NESTED_STOP_SLACK
            try:
                ref.stop(block=False).get(timeout=wait)
            except pykka.Timeout:
                if timeout < child.spec.shutdown_timeout:
                    why = f"by the supervisor's stop deadline ({timeout:.3f}s left)"
                else:
                    why = f"within {timeout}s"
                self._event(
                    SupervisorEventKind.ABANDONED,
                    cid,
                    reason=SupervisorError(f"child {cid!r} did not stop {why}; abandoned"),
                )
                continue
            self._event(SupervisorEventKind.STOPPED, cid)

    def _cancel_timer(self, child: _Child) -> None:
        """This child no longer waits for its restart timer; the timer is cancelled
        once no child of its group waits for it."""
        timer = child.timer
        child.timer = None
        child.pending = None
        if timer is not None and not any(c.timer is timer for c in self._children.values()):
            timer.cancel()

    def _remove(self, child: _Child, error: SupervisorError) -> None:
        cid = child.spec.id
        self._children.pop(cid, None)
        self._state.specs.pop(cid, None)
        self._state.handles.pop(cid, None)
        state = self._state.states.pop(cid, None)
        child.handle._close(error)
        if isinstance(state, SupervisorState):
            state.close(error)

    def _event(
        self,
        kind: SupervisorEventKind,
        child_id: str | None,
        *,
        reason: BaseException | None = None,
        delay: float | None = None,
    ) -> None:
        log = self._log.bind(child=child_id)
        if kind in (
            SupervisorEventKind.CRASHED,
            SupervisorEventKind.START_FAILED,
            SupervisorEventKind.ABANDONED,
        ):
            log.warning("child {!r} {}: {}", child_id, kind.value, SafeRepr(reason))
        elif kind is SupervisorEventKind.RESTART_SCHEDULED:
            log.info("child {!r} restart scheduled in {:.3f}s", child_id, delay)
        else:
            log.debug("child {!r} {}", child_id, kind.value)
        if self._listener is not None:
            event = SupervisorEvent(
                kind, self.name, child_id, self.clock.monotonic(), reason, delay
            )
            try:
                self._listener(event)
            except Exception as exc:
                log.opt(exception=exc).error("supervisor listener raised")

    # -- OTP verbs (call through the proxy) ----------------------------------------------

    def child(self, child_id: str) -> ChildHandle:
        """The stable `ChildHandle` of child ``child_id``."""
        return self._get(child_id).handle

    def which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(
                cid,
                c.status.value,
                c.restarts,
                None if c.ref is None else c.ref.actor_urn,
                c.spec.restart,
                isinstance(c.spec.factory, type) and issubclass(c.spec.factory, Supervisor),
            )
            for cid, c in self._children.items()
        ]

    def count_children(self) -> ChildCounts:
        rows = self.which_children()
        sups = sum(1 for r in rows if r.is_supervisor)
        return ChildCounts(
            specs=len(rows),
            active=sum(1 for r in rows if r.status == "running"),
            restarting=sum(1 for r in rows if r.status == "restarting"),
            stopped=sum(1 for r in rows if r.status == "stopped"),
            supervisors=sups,
            workers=len(rows) - sups,
        )

    def start_child(self, spec: ChildSpec) -> ChildHandle:
        """Add and start a child; raises if the id is taken or the start fails."""
        if not isinstance(spec, ChildSpec):
            raise ChildSpecError(f"start_child needs a ChildSpec, got {spec!r}")
        if spec.id in self._state.specs:
            raise ChildSpecError(
                f"duplicate child id {spec.id!r}: supervisor {self.name!r} already has it"
            )
        self._add_spec(spec)
        child = _Child(spec, self._state.handles[spec.id], self._state.states.get(spec.id))
        self._children[spec.id] = child
        error = self._start(child)
        if error is not None:
            self._remove(child, SupervisorError(f"child {spec.id!r} failed to start"))
            msg = f"child {spec.id!r} failed to start: {safe_repr(error)}"
            raise SupervisorError(msg) from error
        return child.handle

    def terminate_child(self, child_id: str) -> None:
        """Stop a child and keep its spec (a temporary child is removed)."""
        child = self._get(child_id)
        self._cancel_timer(child)
        self._stop_children([child_id])
        error = SupervisorError(
            f"child {child_id!r} was terminated; restart_child({child_id!r}) starts it again"
        )
        if child.spec.restart is Restart.TEMPORARY:
            self._remove(child, error)
            return
        child.status = ChildStatus.STOPPED
        child.handle._close(error)

    def restart_child(self, child_id: str) -> ChildHandle:
        """Start a terminated child again."""
        child = self._get(child_id)
        if child.status is not ChildStatus.STOPPED:
            msg = (
                f"child {child_id!r} is {child.status.value}; only a stopped child can be restarted"
            )
            raise SupervisorError(msg)
        error = self._start(child)
        if error is not None:
            msg = f"child {child_id!r} failed to start: {safe_repr(error)}"
            raise SupervisorError(msg) from error
        return child.handle

    def delete_child(self, child_id: str) -> None:
        """Forget a stopped child's spec; its handle fails every later call."""
        child = self._get(child_id)
        if child.status is not ChildStatus.STOPPED:
            msg = f"child {child_id!r} is {child.status.value}; terminate_child it before deleting"
            raise SupervisorError(msg)
        self._remove(child, SupervisorError(f"child {child_id!r} was deleted"))

    def _get(self, child_id: object) -> _Child:
        if not isinstance(child_id, str):
            # Looked up unchecked, an unhashable id raised a bare TypeError (and an
            # object whose __hash__ raised, its own error) instead of naming the child.
            msg = (
                f"supervisor {self.name!r}: a child id is a str, got "
                f"{safe_repr(child_id)} ({type(child_id).__name__})"
            )
            raise SupervisorError(msg)
        child = self._children.get(child_id)
        if child is None:
            known = ", ".join(repr(c) for c in self._children) or "none"
            msg = f"supervisor {self.name!r} has no child {child_id!r} (children: {known})"
            raise SupervisorError(msg)
        return child


def _tell_quietly(ref: ActorRef[Any], message: Any) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
