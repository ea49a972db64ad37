"""The facade actor: routes each call to the old or the new manager and never waits.

It forwards the caller's reply channel with the message (docs/architecture.md), so
a slow call into one manager never delays calls to the other. It remembers which
manager owns each task id, so tasks registered before a switch of
``USE_NEW_TASK_SYSTEM`` are still found. Calls that need both managers (listings,
cleanup, shutdown) are gathered by a small joint reply, not by waiting here.

The managers are the authority on which ids they hold: they tell the facade the ids
they removed in batches (`messages.Forget`), so the table may still route a removed id
for a while (its manager answers "not found"). A registration of an id the table still
routes is therefore not refused here: it is bounced off the id's manager
(`messages.Recheck`), which sends it back (`messages.Bounced`) behind every id it
removed so far; the facade routes it again then, and only an id still routed is a
duplicate. The same for ids routed to two systems (a dependency across systems): the
message is bounced off each of the two managers in turn (either may have removed its
id), and refused as crossing systems only when both routes are live. A route is
only made for an id the table does not hold, after its manager's `Forget` of it, so a
late `Forget` never drops the route of an id registered again.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeAlias

from loguru import logger

from actors.core import (
    ActorSystemError,
    DuplicateTaskError,
    InvalidTaskError,
    TaskInfo,
    TaskNotFoundError,
    shrink,
)
from actors.runtime import messages
from actors.runtime._outbox import send_run
from actors.runtime._shared import SystemChild

if TYPE_CHECKING:
    from actors.core import ReplyTo
    from actors.engine import TaskSpec
    from actors.runtime._shared import SystemContext

__all__ = ["TASK_SYSTEMS", "FacadeActor", "FacadeState", "new_task_id"]

TASK_SYSTEMS = ("new", "old")
"""The task systems, in the order of their answers to a request sent to both."""

# Generated task ids: a random per-process prefix and a counter ("t3f9a0c21-1a"): unique
# in the process and across restarts, and ten times cheaper than uuid4 (no syscall).
_ID_PREFIX = f"t{secrets.token_hex(4)}-"
_ids = itertools.count(1)


def new_task_id() -> str:
    """A generated task id (``tm.submit`` makes its own, to cancel the task by it)."""
    return f"{_ID_PREFIX}{next(_ids):x}"


class FacadeState:
    def __init__(self, use_new: bool = True) -> None:
        self.owners: dict[str, str] = {}
        self.use_new = use_new


@dataclass(slots=True, eq=False)
class _Forwarded:
    """The reply of a registration the facade gave its id (``retry_task``'s, and a
    durable ``submit``'s without a ``task_id``; `register_task` gives every call its id,
    and its `Register` goes on as it is): on failure the routing entry is dropped again."""

    reply: ReplyTo
    facade: Any
    task_id: str

    def set_result(self, value: Any) -> None:
        self.reply.set_result(value)

    def set_exception(self, error: BaseException) -> None:
        try:
            self.facade.tell(messages.Forget((self.task_id,)))
        finally:
            self.reply.set_exception(error)


class _Gather:
    """Joins the answers of both managers, then answers the caller once."""

    __slots__ = ("_lock", "combine", "error", "remaining", "reply", "results")

    def __init__(self, reply: ReplyTo, combine: Callable[[list[Any]], Any]) -> None:
        self._lock = threading.Lock()
        self.reply = reply
        self.combine = combine
        self.results: list[Any] = [None, None]
        self.remaining = 2
        self.error: BaseException | None = None

    def _done(self, index: int, value: Any, error: BaseException | None) -> None:
        with self._lock:
            self.results[index] = value
            if error is not None and self.error is None:
                self.error = error
            self.remaining -= 1
            last = self.remaining == 0
        if not last:
            return
        if self.error is not None:
            self.reply.set_exception(self.error)
            return
        try:
            combined = self.combine(self.results)
        except Exception as exc:
            self.reply.set_exception(exc)
        else:
            self.reply.set_result(combined)


class _Part:
    __slots__ = ("gather", "index")

    def __init__(self, gather: _Gather, index: int) -> None:
        self.gather = gather
        self.index = index

    def set_result(self, value: Any) -> None:
        self.gather._done(self.index, value, None)

    def set_exception(self, error: BaseException) -> None:
        self.gather._done(self.index, None, error)


class _ThenTell:
    """A reply that, on success, sends ``message`` on to ``target`` (which answers it)."""

    __slots__ = ("message", "target")

    def __init__(self, target: Any, message: messages.GetMetrics) -> None:
        self.target = target
        self.message = message

    def set_result(self, value: Any) -> None:
        try:
            self.target.tell(self.message)
        except Exception as exc:
            self.message.reply.set_exception(exc)

    def set_exception(self, error: BaseException) -> None:
        self.message.reply.set_exception(error)


FanOut: TypeAlias = (
    messages.GetAll
    | messages.GetByStatus
    | messages.GetByType
    | messages.PageKeys
    | messages.PageRows
    | messages.Cleanup
    | messages.Shutdown
    | messages.Flush
)
"""Requests both managers answer; the facade joins the answers."""


def _nothing(parts: list[Any]) -> None:
    return None


def _merge_infos(parts: list[list[TaskInfo]]) -> list[TaskInfo]:
    merged = parts[0] + parts[1]
    merged.sort(key=lambda info: info.created_at)
    return merged


class FacadeActor(SystemChild[FacadeState]):
    CHILD_ID = "facade"

    def __init__(self, ctx: SystemContext, state: FacadeState) -> None:
        super().__init__(ctx, state)
        self.owners = state.owners
        self.me = ctx.handle(self.CHILD_ID)
        self.monitor = ctx.handle("task_monitor")
        self.managers = {
            "new": ctx.handle("task_manager"),
            "old": ctx.handle("legacy_task_manager"),
        }
        self._held: dict[str, list[Any]] | None = None
        self._visited: frozenset[str] = frozenset()
        """While a message a manager sent back (`messages.Bounced`) is handled, the
        managers it was bounced off: its routes to them are live now."""
        fan_out = self._fan_out
        self._table: dict[type, Callable[[Any], None]] = {
            **dict.fromkeys(messages.PER_TASK_TYPES, self._per_task),
            messages.Register: self._register,
            messages.SubmitTask: self._submit,
            messages.AddDependency: self._add_dependency,
            messages.GetAll: lambda m: fan_out(m, _merge_infos),
            messages.GetByStatus: lambda m: fan_out(m, _merge_infos),
            messages.GetByType: lambda m: fan_out(m, _merge_infos),
            messages.PageKeys: lambda m: fan_out(m, list),
            messages.PageRows: lambda m: fan_out(m, list),
            messages.Cleanup: lambda m: fan_out(m, _count_removed),
            messages.Shutdown: lambda m: fan_out(m, sum),
            messages.GetMetrics: self._metrics,
            messages.Subscribe: self._subscribe,
            messages.Unsubscribe: self.monitor.tell,
            messages.UseNewSystem: self._use_new,
            messages.GetBackend: self._backend,
            messages.Forget: self._forget,
            messages.Bounced: self._rebound,
            messages.Batch: self._batch,
            messages.AttemptDone: self._attempt_done,
            _Unsent: self._resend,
        }

    def on_receive(self, message: Any) -> Any:
        handler = self._table.get(type(message))
        if handler is None:
            logger.bind(actor=self.CHILD_ID).warning("unexpected message {!r}", message)
            return None
        try:
            handler(message)
        except _Bounce as bounce:
            try:
                self._to(bounce.backend, messages.Recheck(_bounced(message, bounce.backend)))
            except Exception as exc:
                self._failed(message, exc)
        except Exception as exc:
            self._failed(message, exc)
        except BaseException as exc:
            self._crashed(message, exc)
            raise
        return None

    def _failed(self, message: Any, exc: Exception) -> None:
        """Handling ``message`` raised ``exc``: a request's caller hears it. A message
        without a caller (a task's outcome its manager could not be told: a
        `SupervisorError` at shutdown, a full restart buffer) crashes this actor with
        ``exc`` as any message would (`_crashed` fails its task if its manager can hear
        it); before, reading its missing reply raised an AttributeError instead."""
        reply = getattr(message, "reply", None)
        if reply is None:
            self._crashed(message, exc)
            raise exc
        reply.set_exception(exc)

    def _crashed(self, message: Any, exc: BaseException) -> None:
        """Handling ``message`` crashes this actor: it is dropped, not re-run, and its
        caller hears why (tracked with no bound by its bridge, it waited for ever). A
        routed message without a caller (a task's outcome) fails its task instead: its
        manager hears a `messages.Crashed` naming this actor (else the task stayed
        RUNNING and its waiters, tracked with no bound, waited for ever)."""
        kind = type(message)
        if kind is _Unsent:  # `_resend` dropped what it had not sent (`_drop`)
            return
        reply = getattr(message, "reply", None)
        if reply is not None:
            reply.set_exception(
                ActorSystemError(
                    f"the {self.CHILD_ID} crashed handling its {kind.__name__}"
                    f" ({exc!r}); the message was dropped, not retried"
                )
            )
        elif kind in _ROUTED:
            backend = self.owners.get(message.task_id)
            if backend is not None:
                crashed = messages.Crashed(
                    message.task_id, kind.__name__, repr(exc), None, self.CHILD_ID
                )
                try:
                    self.managers[backend].tell(crashed)
                except Exception as error:  # the manager is gone: nobody waits on it
                    logger.bind(actor=self.CHILD_ID).error("{!r} not sent: {!r}", crashed, error)

    def _batch(self, message: messages.Batch) -> None:
        """Handle a caller loop's burst in order; what it sends on to each manager goes
        as one batch per manager (`send_run`), after the whole burst.

        Most of a burst joins its manager's run here, without the calls of the handlers
        that would send it there: a message about a task the table routes (a per-task
        request, an attempt's outcome: `_per_task`, `_attempt_done`), and a new task's
        registration or submission without dependencies (`_register`, `_submit`:
        `_route` has nothing to check). Any other message goes through `on_receive`."""
        receive = self.on_receive
        owners = self.owners
        state = self.state
        routed = _ROUTED
        register, submit = messages.Register, messages.SubmitTask
        held: dict[str, list[Any]] = {}
        self._held = held
        last: str | None = None  # the backend of the previous item's run, and that run
        run: list[Any] = []
        item: Any = None
        items = iter(message.items)  # (what is left of them if one crashes this actor)
        rest: tuple[Any, ...] = ()
        try:
            for item in items:
                kind = type(item)
                if kind in routed:
                    backend = owners.get(item.task_id)
                    if backend is None:
                        receive(item)
                        continue
                elif (
                    (kind is register or kind is submit)
                    and (task_id := item.task_id) is not None
                    and task_id not in owners
                    and not item.spec.dependencies
                ):
                    backend = owners[task_id] = "new" if state.use_new else "old"
                else:
                    receive(item)
                    continue
                if backend is last:
                    run.append(item)
                    continue
                got = held.get(backend)
                if got is None:
                    held[backend] = got = [item]
                else:
                    got.append(item)
                last, run = backend, got
        except BaseException as exc:
            # This facade crashes: the items after the one that raised go to its next
            # incarnation first (callers' requests, outcomes, subscriptions), not lost.
            # One that raised here, not in `on_receive` (which answered for it), and
            # had not joined its manager's run, is answered for now.
            if type(item) in routed and item.task_id in owners:
                joined = held.get(owners[item.task_id])
                if not joined or joined[-1] is not item:
                    self._crashed(item, exc)
            rest = tuple(items)
            raise
        finally:
            self._held = None
            self._send_held(held, rest)

    def _send_held(self, held: dict[str, list[Any]], rest: tuple[Any, ...]) -> None:
        """Send each manager its run of a batch (`send_run`), then hand ``rest`` (the
        items a crash left unhandled) to the next incarnation. If a send crashes this
        actor, the runs not sent (that one too: its send did not return) go to the next
        incarnation first (`_Unsent`, in order, ahead of ``rest``), which sends them on:
        else their callers (tracked with no bound) waited for ever, and their tasks'
        outcomes were lost."""
        runs = iter(held.items())
        sending: tuple[str, list[Any]] | None = None
        try:
            for sending in runs:
                unsent = send_run(self.managers[sending[0]], sending[1])
                sending = None
                if unsent:
                    self._unrouted(unsent)
        except BaseException:
            left = [sending, *runs] if sending is not None else list(runs)
            self.hand_over(*(_Unsent(backend, tuple(run)) for backend, run in left))
            raise
        finally:
            if rest:
                self.hand_over(messages.Batch(rest))

    def _resend(self, message: _Unsent) -> None:
        """A run of a batch the previous incarnation crashed sending (`_send_held`). A
        crash sending it again drops it, as any message that crashes this actor (handed
        on again, a run that keeps crashing its sender would go round until the restart
        limit escalates): what it had not told yet (`send_run` leaves that in the run)
        is answered (`_drop`); what it had told is the manager's (never told twice)."""
        run = list(message.run)
        try:
            unsent = send_run(self.managers[message.backend], run)
        except BaseException as exc:
            self._drop(run, exc)
            raise
        if unsent:
            self._unrouted(unsent)

    def _drop(self, run: list[Any], exc: BaseException) -> None:
        """Drop the messages of ``run`` a crash kept from their manager: each as if it
        had crashed this actor (its caller answered, its task failed), and the routes
        its registrations made go."""
        self._unrouted(run)
        for item in run:
            self._crashed(item, exc)

    def _to(self, backend: str, message: Any) -> None:
        """Send ``message`` to the ``backend`` manager (held while a batch runs)."""
        held = self._held
        if held is None:
            try:
                self.managers[backend].tell(message)
            except Exception:
                self._unrouted((message,))
                raise
        else:
            run = held.get(backend)
            if run is None:
                held[backend] = [message]
            else:
                run.append(message)

    def _unrouted(self, unsent: Sequence[Any]) -> None:
        """Registrations that could not be sent to their manager (its restart buffer is
        full, say: `SystemOverloadedError`) never reach it, so it never tells the facade
        to forget their ids: drop the routes they made here. Those of a `SubmitTask`, a
        registration of a new id (`_Forwarded`) and a memory-only `Register` (one whose
        id was routed before is refused as a duplicate, never sent on). A durable
        `Register` may have gone to the manager that holds its id already: that manager
        is asked (`messages.Unrouted`, buffered until it is back) and tells the facade to
        forget the ids it does not hold."""
        owners = self.owners
        durable: dict[str, list[str]] = {}
        for message in unsent:
            kind = type(message)
            if kind is messages.SubmitTask or (
                kind is messages.Register
                and (message.journal is None or type(message.reply) is _Forwarded)
            ):
                owners.pop(message.task_id, None)
            elif kind is messages.Register and message.task_id in owners:
                durable.setdefault(owners[message.task_id], []).append(message.task_id)
        for backend, task_ids in durable.items():
            try:
                self.managers[backend].tell(messages.Unrouted(tuple(task_ids)))
            except Exception as exc:  # the manager is gone: nobody routes them anyway
                logger.bind(actor=self.CHILD_ID).debug("Unrouted not sent: {!r}", exc)

    def _forget(self, message: messages.Forget) -> None:
        owners = self.owners
        for task_id in message.task_ids:
            owners.pop(task_id, None)
        if len(message.task_ids) >= len(owners):
            shrink(owners)
        for bounced in message.recheck:  # the table knows every id it removed now
            self.on_receive(bounced)

    def _rebound(self, message: messages.Bounced) -> None:
        """Route a message a manager sent back again (its routes to the managers it
        visited are live now)."""
        inner = message.message
        self._visited = message.visited
        try:
            self._table[type(inner)](inner)
        finally:
            self._visited = frozenset()

    def _bounce(self, backend: str) -> None:
        """A route to ``backend`` stands in the way of the message being handled: send
        the message by that manager first (see the module's docstring), unless it
        comes back from there already (then the route is live)."""
        if backend not in self._visited:
            raise _Bounce(backend)

    def _across(self, refusal: str, *owners: str) -> NoReturn:
        """Ids routed to both systems (a dependency in another system than its task):
        bounced off each manager in ``owners`` (its id may be gone from it), else
        refused with ``refusal``."""
        for owner in owners:
            self._bounce(owner)
        raise InvalidTaskError(refusal)

    def _owner(self, task_id: str) -> str:
        backend = self.owners.get(task_id)
        if backend is None:
            raise TaskNotFoundError.for_id(task_id)
        return backend

    def _per_task(self, message: messages.PerTask) -> None:
        self._to(self._owner(message.task_id), message)

    def _attempt_done(self, message: messages.AttemptDone) -> None:
        """A coroutine attempt's outcome, reported from its loop (`BaseManager`'s
        ``report_on_loop``): it travels with that loop's calls, so a sequential caller's
        next call and the outcome reach the manager as one message (one wake-up of it,
        and one flush of its transitions, per call instead of two). A task no longer
        routed here goes to both managers: the one without it ignores it."""
        backend = self.owners.get(message.task_id)
        if backend is not None:
            self._to(backend, message)
            return
        for other in TASK_SYSTEMS:
            self._to(other, message)

    def _add_dependency(self, message: messages.AddDependency) -> None:
        task_id, depends_on = message.task_id, message.depends_on
        backend = self._owner(task_id)
        other = self._owner(depends_on)
        if other != backend:
            self._across(
                f"task {task_id!r} belongs to the {backend} task system and "
                f"{depends_on!r} to the {other} one; dependencies must stay in one system",
                other,
                backend,
            )
        self._to(backend, message)

    def _metrics(self, message: messages.GetMetrics) -> None:
        # Managers flush their pending transitions first, so the snapshot counts
        # everything that happened before the call.
        self._fan_out(messages.Flush(_ThenTell(self.monitor, message)), _nothing)

    def _subscribe(self, message: messages.Subscribe) -> None:
        """The monitor adds the subscriber at once, muted for both managers; each
        manager gets a `messages.Mark` in order with the calls routed to it (after
        those before this one, before those after), flushes what it holds (the
        managers keep their transitions while nobody subscribes) and unmutes it with
        `messages.Marked`. So the subscriber hears every transition a manager sends
        after taking the calls made after ``events()``, and none it sent before,
        however late either manager takes its mark."""
        token = object()
        self.monitor.tell(message._replace(token=token, muted=TASK_SYSTEMS))
        for backend in TASK_SYSTEMS:
            try:
                self._to(backend, messages.Mark(token))
            except Exception:  # the manager is gone: it sends nothing to mute either
                self.monitor.tell(messages.Marked(token, backend))

    def _use_new(self, message: messages.UseNewSystem) -> None:
        self.state.use_new = message.flag
        message.reply.set_result(None)

    def _backend(self, message: messages.GetBackend) -> None:
        message.reply.set_result("new" if self.state.use_new else "old")

    def _register(self, message: messages.Register) -> None:
        owners = self.owners
        if message.task_id in owners:  # (None, an id to give, is not)
            backend = owners[message.task_id]
            self._bounce(backend)
            if message.journal is None:
                raise _duplicate(message.task_id)
            # durable, registered before: its manager answers (idempotent registration)
            self._to(backend, message)
            return
        if message.task_id is not None:
            # (`register_task` gives every call its id.) Forwarded as it is, durable or
            # not: the manager drops the routing entry again if it refuses the
            # registration (as for `SubmitTask`).
            self._to(self._route(message.spec, message.task_id)[1], message)
            return
        task_id, backend = self._route(message.spec, message.task_id, message.backend)
        forwarded = _Forwarded(message.reply, self.me, task_id)
        self._to(
            backend,
            messages.Register(message.spec, task_id, message.bridge, forwarded, message.journal),
        )

    def _submit(self, message: messages.SubmitTask) -> None:
        """Route as a registration; the manager drops the routing entry again if it
        refuses the registration (the reply carries the task's outcome, not that)."""
        backend = self.owners.get(message.task_id)
        if backend is not None:
            self._bounce(backend)
            raise _duplicate(message.task_id)
        _task_id, backend = self._route(message.spec, message.task_id)
        self._to(backend, message)

    def _route(
        self, spec: TaskSpec, task_id: str | None, backend: str | None = None
    ) -> tuple[str, str]:
        """Give a new task (an id the table does not hold) its id and its task system
        (``(task_id, backend)``): ``backend`` if given, else the current one."""
        owners = self.owners
        if task_id is None:
            task_id = new_task_id()
        if backend is None:
            backend = "new" if self.state.use_new else "old"
        for dep in spec.dependencies:
            owner = owners.get(dep)
            if owner is None:
                msg = (
                    f"dependency {dep!r} of task {spec.name!r} is not registered; register it first"
                )
                raise TaskNotFoundError(msg)
            if owner != backend:
                self._across(
                    f"dependency {dep!r} belongs to the {owner} task system, but new tasks "
                    f"go to the {backend} one; dependencies must stay in one system",
                    owner,  # (the task is new: not routed anywhere yet)
                )
        owners[task_id] = backend
        return task_id, backend

    def _fan_out(self, message: FanOut, combine: Callable[[list[Any]], Any]) -> None:
        gather = _Gather(message.reply, combine)
        for index, backend in enumerate(TASK_SYSTEMS):
            self._to(backend, message._replace(reply=_Part(gather, index)))


_ROUTED = frozenset((*messages.PER_TASK_TYPES, messages.AttemptDone))
"""The messages `FacadeActor._batch` sends on to the manager that owns their task
itself, when the table has it (`_per_task`, `_attempt_done`)."""


class _Unsent(NamedTuple):
    """Facade (from its previous incarnation, `SupervisedActor.hand_over`): the run of
    messages for the ``backend`` manager a crash kept it from sending
    (`FacadeActor._send_held`); send it on."""

    backend: str
    run: tuple[Any, ...]


class _Bounce(Exception):
    """Raised (`FacadeActor._bounce`) where a route the ``backend`` manager may have
    removed already stands in the way; `FacadeActor.on_receive` sends the message there
    (`messages.Recheck`)."""

    def __init__(self, backend: str) -> None:
        super().__init__(backend)
        self.backend = backend


def _bounced(message: Any, backend: str) -> messages.Bounced:
    """``message`` (or the message it carries, if sent back before) to bounce off the
    ``backend`` manager, which it visits next."""
    if isinstance(message, messages.Bounced):
        return messages.Bounced(message.message, message.visited | {backend})
    return messages.Bounced(message, frozenset((backend,)))


def _count_removed(parts: list[list[str]]) -> int:
    """The managers told the facade of the ids (`messages.Forget`) before answering."""
    return len(parts[0]) + len(parts[1])


def _duplicate(task_id: str | None) -> DuplicateTaskError:
    msg = f"task id {task_id!r} is already registered; pick another or omit task_id"
    return DuplicateTaskError(msg)
