"""`UnifiedTaskManager`: the async client every caller uses, and the lazy module-level one.

Each method checks its arguments (a rejected call changes nothing and sends nothing),
sends one message to the facade carrying a reply channel, and awaits an asyncio future
that the answering actor resolves on this loop (`actors.core._bridge`). Calls are
bounded by ``CALL_TIMEOUT``; waiting for a task is bounded by the caller's ``timeout``.
`register_task` and `submit` leave their checks to the loop's outbox (`Outbox.defer`):
the caller's step only queues the call, so a `gather` of 20,000 of them costs its loop
iteration 20,000 small steps, and the checks run in bounded chunks after it; a refused
call raises its error from the ``await`` as before. An ``execute_task(wait=True)`` made
at once is queued as the call itself too, its `Execute` made when it is sent.

On a running loop (outside a task of this system) `register_task`, `execute_task`,
`submit` (without a journal: with one it takes two round trips) and
`ThreadPoolClient.submit` do that first step when they are called and return a `Call`
(an asyncio future that is also a coroutine: no asyncio task per call in a ``gather``);
elsewhere they return a coroutine that does it when awaited.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures.thread  # noqa: F401  (registers its exit hook before ours)
import contextlib
import functools
import operator
import threading
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Mapping
from types import MappingProxyType
from typing import (
    Any,
    Literal,
    Required,
    TypeAlias,
    TypedDict,
    TypeVar,
    TypeVarTuple,
    Unpack,
    cast,
    overload,
)

from tenacity.wait import wait_base

from actors.api._map import MapCall, MapSlot
from actors.core import (
    NO_REPLY,
    ActorsError,
    ActorSystemError,
    Call,
    Config,
    ConfigError,
    InvalidTaskError,
    LoopBridge,
    Reply,
    ReplyTo,
    SystemOverloadedError,
    TaskInfo,
    TaskPriority,
    TaskScope,
    TaskStatus,
    WaitTimeoutError,
    WithdrawableReply,
    bridge_for,
    finite_float,
    load_config,
    renew_after_fork,
    safe_repr,
)
from actors.core import TASK_CONTEXT as _current
from actors.engine import (
    ON_A_LOOP,
    CircuitBreaker,
    PageCursor,
    PageQuery,
    TaskDetail,
    TaskPage,
    TaskRow,
    TaskSpec,
    async_kind,
    check_picklable,
    find_results,
    merge_rows,
    split_page,
    validate_executor,
    validate_plain,
    validate_registration,
    validate_task_id,
    validate_timeout,
)
from actors.observe import (
    EventStream,
    MetricsSnapshot,
    Subscriber,
    TaskGraph,
    capture,
    check_depth,
    render_prometheus,
)
from actors.runtime import (
    TASK_SYSTEMS,
    JournaledDefinition,
    SystemRuntime,
    durable_row,
    messages,
    new_task_id,
    outbox,
    require_backend,
)
from supervisors import BufferFullError, ChildHandle, SupervisorError

__all__ = [
    "MapOptions",
    "TaskOptions",
    "ThreadPoolClient",
    "UnifiedTaskManager",
    "configure",
    "unified_task_manager",
]

_UNBOUNDED = -1.0
Ts = TypeVarTuple("Ts")
R = TypeVar("R")
T = TypeVar("T")
AsyncFunc: TypeAlias = Callable[[*Ts], Awaitable[R]]
"""A coroutine function (or any callable returning an awaitable) taking ``*Ts``; its
task's result is the awaited ``R``."""
PlainFunc: TypeAlias = Callable[[*Ts], R]
"""A plain function taking ``*Ts``; its task's result is its return value ``R``. (One
alias for both kinds, ``Callable[..., Awaitable[R] | R]``, leaves mypy inferring
``Never`` for a coroutine function: ``submit`` and ``map`` overload on the two.)"""


class MapOptions(TypedDict, total=False):
    """The options of `UnifiedTaskManager.map`: those of `TaskOptions` but ``task_id``
    (each task of a map gets its own id)."""

    name: str
    kwargs: Mapping[str, Any] | None
    task_type: str
    description: str
    metadata: Mapping[str, Any] | None
    priority: TaskPriority | int
    dependencies: Iterable[str]
    max_retries: int
    retry_delay: float
    retry_wait: wait_base | None
    timeout: float | None
    circuit_breaker: str | CircuitBreaker | None
    executor: str | None
    on_dependency_failure: Literal["cancel", "run"]
    durable: bool | None


class TaskOptions(MapOptions, total=False):
    """The options of `UnifiedTaskManager.submit`: ``name`` (default: the function's
    ``__qualname__``), ``kwargs`` (the function's keyword arguments) and every keyword
    option of ``register_task``, with the same meaning."""

    task_id: str | None


class _MapRaising(MapOptions, total=False):
    """`UnifiedTaskManager.map`'s keywords for a call that raises a failed task's error
    (``return_exceptions`` absent or False): its results are the functions' results."""

    return_exceptions: Literal[False]


class _MapCollecting(MapOptions, total=False):
    """`UnifiedTaskManager.map`'s keywords for a call that may return errors in their
    tasks' places (``return_exceptions`` True, or a bool not known until run time)."""

    return_exceptions: Required[bool]


_OPTIONS = frozenset(TaskOptions.__annotations__)
_MAP_CHUNK = 1000
"""Items `UnifiedTaskManager.map` checks or sends per loop iteration, at most."""


def _translated(error: SupervisorError, what: str) -> ActorsError:
    """The `actors` error a caller sees for a supervision error: every error of the API
    is an `ActorsError`."""
    if isinstance(error, BufferFullError):
        return SystemOverloadedError(
            f"the actor system is overloaded: child {error.child_id!r} is restarting and "
            f"already holds {error.capacity} buffered calls (MAILBOX_BUFFER_CAPACITY); "
            "the call was not accepted: retry after a short backoff, or raise "
            "MAILBOX_BUFFER_CAPACITY"
        )
    return ActorSystemError(f"{what}: {error}")


def _unknown_options(
    call: str, options: Mapping[str, Any], known: Collection[str]
) -> InvalidTaskError:
    unknown = options.keys() - _OPTIONS
    return InvalidTaskError(
        f"{call}() got unknown option(s) {', '.join(sorted(map(repr, unknown)))}; "
        f"its options are {', '.join(sorted(known))}; pass the function's own "
        "keyword arguments as kwargs={...}"
    )


class _Route(TypedDict, total=False):
    """Where `UnifiedTaskManager._send` sends a request and how long its answer may take."""

    timeout: float | None
    to: ChildHandle | None


class UnifiedTaskManager:
    """The async API (docs/architecture.md). Bound to an `ActorSystem`, or lazy (module level)."""

    def __init__(self, system: SystemRuntime | None = None) -> None:
        if system is not None and not isinstance(system, SystemRuntime):
            raise InvalidTaskError(
                f"system must be an ActorSystem or None (the module-level system, made on "
                f"first use), got {safe_repr(system)}; "
                "an ActorSystem's client is system.task_manager"
            )
        self._system = system
        self._lazy = system is None
        self.thread_pool = ThreadPoolClient(self)

    # -- plumbing -----------------------------------------------------------------------

    def _get_system(self) -> SystemRuntime:
        system = self._system
        if system is None:
            system = _lazy_system(self)
        return system

    def _reply(self) -> Reply:
        """A reply channel for one call, resolved on the running loop."""
        system = self._system or self._get_system()
        system._check()
        loop = asyncio.get_running_loop()
        bridge = bridge_for(loop)
        if bridge is not system._last_bridge:
            system._remember(bridge)
        return Reply(bridge, loop.create_future())

    def _eager(self) -> LoopBridge | None:
        """The bridge of a call made at once (`Call`): on a running loop, outside the
        tasks of this system, with a running system. None: the call is a coroutine, as
        before (it does its work when it is awaited)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        system = self._system
        if (
            system is None  # the lazy client's first call starts its system when awaited
            or system._facade is None
            or system._failure is not None
            or system._closed
            or _current.get() is not None
        ):
            return None
        bridge = system._last_bridge  # the common case: this loop's, as last time
        if bridge is None or bridge.loop is not loop:
            bridge = bridge_for(loop)
            system._remember(bridge)
        return bridge

    def _ask(
        self, kind: Callable[[*Ts, ReplyTo], tuple[Any, ...]], *args: *Ts
    ) -> Coroutine[Any, Any, Any]:
        """One request: ``kind(*args, reply)`` to the facade; await it for the answer."""
        reply = self._reply()
        return self._call(reply, kind(*args, reply))

    def _ask_about(
        self, kind: Callable[[str, ReplyTo], tuple[Any, ...]], task_id: str
    ) -> Coroutine[Any, Any, Any]:
        """`_ask` for a request about one task: ``task_id`` is checked first."""
        validate_task_id(task_id)
        return self._ask(kind, task_id)

    async def _call(self, reply: Reply, message: tuple[Any, ...], **route: Unpack[_Route]) -> Any:
        """`_send` ``message`` and await the answer."""
        self._send(reply, message, **route)
        del message  # the facade's (or the outbox's) now: not kept while this call waits
        future = reply.future
        try:
            return await future
        except SupervisorError as exc:  # a child refused the call on its way
            raise _translated(exc, _NOT_TAKEN if route.get("to") is None else _NO_WORK) from exc
        finally:
            reply.bridge.untrack(future)

    def _send(
        self,
        reply: Reply | Call[Any],
        message: tuple[Any, ...],
        timeout: float | None = None,
        to: ChildHandle | None = None,
        op: str | None = None,
        build: Callable[..., Any] | None = None,
    ) -> None:
        """Send ``message`` (a request carrying ``reply``) to the facade (or ``to``) and
        track its answer, bounded by CALL_TIMEOUT unless ``timeout`` says otherwise
        (``_UNBOUNDED``: only a failure of the system ends the wait); the caller awaits
        ``reply.future`` and untracks it (`_call`). With ``build``, ``message`` is its
        arguments: the outbox builds the request (`Outbox.defer`)."""
        system = self._system or self._get_system()
        facade = system._check()
        bridge = reply.bridge
        if to is None:
            if build is None:
                outbox(bridge).send(facade, message)
            else:
                outbox(bridge).defer(facade, build, message)
        else:
            try:
                to.tell(message)
            except SupervisorError as exc:
                raise _translated(exc, _NO_WORK) from exc
        if timeout is None:
            timeout = system.config.CALL_TIMEOUT
        bound = None if timeout == _UNBOUNDED else timeout
        bridge.track(reply.future, bound, op or type(message).__name__, system)

    # -- registration and execution -------------------------------------------------------

    def register_task(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_type: str = "default",
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        priority: TaskPriority | int = TaskPriority.NORMAL,
        dependencies: Iterable[str] = (),
        max_retries: int = 0,
        retry_delay: float = 0.0,
        retry_wait: wait_base | None = None,
        timeout: float | None = None,
        task_id: str | None = None,
        circuit_breaker: str | CircuitBreaker | None = None,
        executor: str | None = None,
        on_dependency_failure: Literal["cancel", "run"] = "cancel",
        durable: bool | None = None,
    ) -> Coroutine[Any, Any, str]:
        """Register a task; returns its id. Nothing runs until `execute_task`.

        ``result_of(task_id)`` in ``args`` or ``kwargs`` (also inside lists, tuples and
        dicts) makes ``task_id`` a dependency and is replaced by its result when this
        task starts. ``on_dependency_failure``: ``"cancel"`` (a dependency that fails or
        is cancelled cancels this task with a `DependencyFailedError`) or ``"run"`` (it
        runs once every dependency ended, with the exception of one that did not
        complete in place of its ``result_of``).

        ``circuit_breaker`` names the breaker shared by every task that talks to the same
        service (created with the configured defaults on first use), or is a
        `CircuitBreaker` (registered under its name); either is shared once the task
        manager accepts the registration, so a refused one makes no breaker. While it
        is open (or half-open with its trial calls taken) the task waits for it,
        ``queued``, holding no slot and spending no attempt, and is released, most
        urgent first, when it lets calls through; its ``timeout`` (per attempt) does not
        run meanwhile.

        ``executor`` runs a plain function on ``"thread"``, ``"process"`` or ``"dask"``
        (None: the configured ``THREAD_POOL_BACKEND``); coroutine functions always run
        on their event loop. For ``process`` and ``dask``, ``func`` and its arguments
        must pickle (checked here), the task id is bound in the worker for logging and
        `current_task_id`, and an attempt that times out or is cancelled while it runs
        is abandoned (a worker process cannot see the cancellation token) and its late
        result discarded. The old task system runs plain functions on its loop's default
        executor and ignores ``executor``.

        ``durable`` (with ``JOURNAL_PATH``; None means True): the task is journaled and
        survives a restart, and this call returns once its record is committed; a task
        that cannot be journaled is refused with `JournalEncodeError`. ``False`` keeps
        it in memory only. See the README, "Durable tasks".

        Called on a running event loop (outside a task of this system), the
        call is sent when it is made and returns a future of the id (a `Call`: await
        it, gather it, or ``asyncio.create_task`` it); a call never awaited still runs.
        """
        # Checked and built by the outbox (`_build_register`), in bounded chunks: a burst
        # of registrations costs its loop iteration a small step each.
        bridge = self._eager()
        if (  # every option is its default (the very object): `validate_plain` checks it
            kwargs is None
            and task_type is _DEFAULT_TYPE
            and description is _DEFAULT_DESCRIPTION
            and metadata is None
            and priority is _DEFAULT_PRIORITY
            and dependencies is _DEFAULT_DEPENDENCIES
            and max_retries is _DEFAULT_RETRIES
            and retry_delay is _DEFAULT_DELAY
            and retry_wait is None
            and timeout is None
            and task_id is None
            and circuit_breaker is None
            and executor is None
            and on_dependency_failure is _DEFAULT_ON_FAILURE
            and durable is None
        ):
            if bridge is None:  # (the reply: `_register_later` puts its own in)
                return self._register_later((self, None, name, func, args, capture()))
            # The call holds what its request is built from (`_build_register_call`):
            # no tuple of them per call while a burst waits in the outbox. Set here, as
            # `submit` sets its call's: a helper setting the fields both hold costs a
            # Python call per task (+35 ns, timeit; an ``__init__``, +160 ns).
            plain: _RegisterCall[str] = _RegisterCall(loop=bridge.loop)
            plain.bridge = bridge
            plain.client = self
            plain.name = name
            plain.func = func
            plain.args = args
            plain.trace = capture()  # the caller's trace context (None without OpenTelemetry)
            call: _Call[str] = plain
            build: Callable[..., Any] = _build_register_call
            request: Any = plain
        else:
            reply = None
            if bridge is not None:
                call = _Call(loop=bridge.loop)
                call.bridge = bridge
                reply = call  # (its own reply)
            request = (
                self,
                reply,  # (None: `_register_later` puts its own in)
                name,
                func,
                args,
                kwargs,
                task_type,
                description,
                metadata,
                priority,
                dependencies,
                max_retries,
                retry_delay,
                retry_wait,
                timeout,
                task_id,
                circuit_breaker,
                executor,
                on_dependency_failure,
                durable,
                capture(),  # the caller's trace context (None without OpenTelemetry)
            )
            if bridge is None or reply is None:
                return self._register_later(request)
            build = _BUILD_REGISTER
        # `_send`, inlined (`_eager` checked the system: no `cast` call per task).
        system: SystemRuntime = self._system  # type: ignore[assignment]
        facade: ChildHandle = system._facade  # type: ignore[assignment]
        (bridge.outbox or outbox(bridge)).defer(facade, build, request)
        bridge.track(call, system.config.CALL_TIMEOUT, "Register", system)
        return call

    async def _register_later(self, request: tuple[Any, ...]) -> str:
        """`register_task` as a coroutine: its work done when it is awaited (``request``
        is `register_task`'s, without its reply)."""
        reply = self._reply()
        request = (self, reply, *request[2:])
        # Awaited here, not in a `_call` coroutine of its own, and ``request`` is the
        # outbox's alone: a burst of calls keeps fewer objects alive while it waits.
        self._send(reply, request, op="Register", build=_BUILD_REGISTER)
        del request
        future = reply.future
        try:
            result: str = await future
        except SupervisorError as exc:  # a child refused the call on its way
            raise _translated(exc, _NOT_TAKEN) from exc
        finally:
            reply.bridge.untrack(future)
        return result

    @staticmethod
    def _build_register(request: tuple[Any, ...]) -> messages.Register | None:
        """The `Register` request of a `register_task` call, or None (its caller gets
        the error) if an argument is refused. ``request``: the client, the call's reply,
        `register_task`'s arguments in its order (the ones `validate_registration`
        checks, then ``durable``), then the caller's trace context; for a call whose
        options are all their defaults, only ``name``, ``func`` and ``args`` of them."""
        client: UnifiedTaskManager = request[0]
        reply: Reply | Call[Any] = request[1]
        try:
            if len(request) == _PLAIN_REQUEST:
                spec = validate_plain(request[2], request[3], request[4])
                spec, journal = client._complete(spec, None, request[5])
            else:
                spec = validate_registration(*request[2:-2])
                spec, journal = client._complete(spec, request[-2], request[-1])
        except Exception as exc:
            _refuse(reply, exc)
            return None
        # The id is given here (as `submit` does): the facade forwards the request as it is.
        task_id = spec.task_id or new_task_id()
        return _new(messages.Register, (spec, task_id, reply.bridge, reply, journal, None))

    async def _register(self, spec: TaskSpec, journal: tuple[Any, ...] | None) -> str:
        reply = self._reply()
        result: str = await self._call(
            reply, messages.Register(spec, spec.task_id, reply.bridge, reply, journal)
        )
        return result

    def _complete(
        self, spec: TaskSpec, durable: bool | None, trace: Any
    ) -> tuple[TaskSpec, tuple[Any, ...] | None]:
        """A validated registration, with what the system decides: the executor (its
        arguments checked for pickling), its journal row (None: not durable), and
        ``trace``, the caller's trace context (`capture`).

        Its circuit breaker stays as given (a name, or a `CircuitBreaker` no other
        breaker of the registry has the name of): the manager shares it once it has
        accepted the registration (`SystemRuntime._share_breaker`), so a refused one
        leaves no breaker behind."""
        system = self._system or self._get_system()
        if not spec.is_coroutine:
            backend = spec.executor or system.config.THREAD_POOL_BACKEND
            if backend != "thread":
                require_backend(backend)
                check_picklable(backend, spec.func, spec.args, spec.kwargs)
                spec = spec._replace(executor=backend)
        circuit_breaker = spec.circuit_breaker
        if circuit_breaker is not None and not isinstance(circuit_breaker, str):
            system.circuit_breakers.check(circuit_breaker)
        config = system.config
        # Without a journal and with ``durable`` unset (the common case) there is
        # nothing to check.
        journal = (
            None
            if durable is None and config.JOURNAL_PATH is None
            else durable_row(config, spec, durable, circuit_breaker)
        )
        if trace is not None:
            spec = spec._replace(trace=trace)
        return spec, journal

    @overload
    def submit(
        self, func: AsyncFunc[*Ts, R], /, *args: *Ts, **options: Unpack[TaskOptions]
    ) -> Coroutine[Any, Any, R]: ...

    @overload
    def submit(
        self, func: PlainFunc[*Ts, R], /, *args: *Ts, **options: Unpack[TaskOptions]
    ) -> Coroutine[Any, Any, R]: ...

    def submit(
        self, func: Callable[[*Ts], Any], /, *args: *Ts, **options: Any
    ) -> Coroutine[Any, Any, Any]:
        """Register ``func(*args)`` as a task, execute it and return its result (or
        raise its error): the common case in one call and one message round trip.

        ``options`` are ``name`` (default: ``func.__qualname__``), ``kwargs`` (the
        function's keyword arguments: every other keyword is an option) and the keyword
        options of `register_task` (`TaskOptions`). A type checker sees ``func``'s
        return type (the awaited type for a coroutine function). The task is an ordinary
        task: it shows in listings, metrics and events under its id. Cancelling the call
        (``asyncio.wait_for`` timing out, say) cancels the task, as cancelling an
        ``await`` of an asyncio task cancels that task. A durable task (``JOURNAL_PATH``
        set and ``durable`` not False) takes two round trips: its registration is
        committed to the journal before it is executed.

        Called on a running event loop (outside a task of this system, no journal), the
        call is sent when it is made, like a Ray or Dask future, and returns a future of
        the result (a `Call`: await it, gather it, or ``asyncio.create_task`` it); a call
        never awaited still runs its task. Cancelling that future cancels the task.
        """
        bridge = self._eager() if _OPTIONS.issuperset(options) else None  # (no set made)
        system: SystemRuntime = self._system  # type: ignore[assignment]
        if bridge is None or system.config.JOURNAL_PATH:
            return self._submit_later(func, args, options)  # (a journal: two round trips)
        given = options.get("task_id")
        task_id = given if isinstance(given, str) and given else new_task_id()
        call: _SubmitCall[Any] = _SubmitCall(loop=bridge.loop)
        call.bridge = bridge
        call.task_id = task_id
        # What the outbox builds the request from, held by the call until then (no
        # tuple of them per call: `_build_submit_call`).
        call.client = self
        call.func = func
        call.args = args
        call.options = options
        call.trace = capture()
        # `_start_wait`, inlined (`_eager` checked the system; the caller is no task).
        facade: ChildHandle = system._facade  # type: ignore[assignment]
        (bridge.outbox or outbox(bridge)).defer(facade, _build_submit_call, call)
        bridge.track(call, None, "SubmitTask", system)
        return call

    async def _submit_later(
        self, func: Callable[..., Any], args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """`submit` as a coroutine: its work done when it is awaited."""
        if not _OPTIONS.issuperset(options):  # (no set made per call)
            raise _unknown_options("submit", options, _OPTIONS)
        system = self._system or self._get_system()
        if system.config.JOURNAL_PATH is not None:
            return await self._submit_checked(func, args, options)
        # Checked and built by the outbox (`_build_submit`), in bounded chunks.
        reply = self._reply()
        given = options.get("task_id")
        task_id = given if isinstance(given, str) and given else new_task_id()
        caller = self._start_wait(
            reply,
            # The outbox's, till built.
            (self, reply, func, args, options, task_id, capture(), _current.get()),
            "SubmitTask",
            _build_submit_request,
        )
        try:
            return await reply.future
        finally:  # (raises the error of a request that could not be sent)
            self._end_wait(task_id, reply, caller, True)

    def _submit_spec(
        self,
        func: Any,
        args: tuple[Any, ...],
        options: dict[str, Any],
        trace: Any,
    ) -> tuple[TaskSpec, tuple[Any, ...] | None]:
        """``func(*args)`` with submit's (or map's) ``options``, validated and completed."""
        if not options or (len(options) == 1 and "name" in options):  # the common case
            name = options.get("name")
            spec = validate_plain(_name_of(func) if name is None else name, func, args)
            return self._complete(spec, None, trace)
        fields: dict[str, Any] = dict(options)
        name = fields.pop("name", None)
        if name is None:
            name = _name_of(func)
        kwargs = fields.pop("kwargs", None)
        durable = fields.pop("durable", None)
        return self._complete(
            validate_registration(name, func, args, kwargs, **fields), durable, trace
        )

    def _build_submit(
        self,
        reply: Reply | Call[Any],
        func: Any,
        args: tuple[Any, ...],
        options: dict[str, Any],
        task_id: str,
        trace: Any,
        caller: TaskScope | None = None,
    ) -> messages.SubmitTask | None:
        """The `SubmitTask` request of a `submit` call, or None (its caller gets the
        error) if an argument is refused (``caller``: the task whose code calls)."""
        try:
            spec, _journal = self._submit_spec(func, args, options, trace)
        except Exception as exc:
            _refuse(reply, exc)
            return None
        return _new(messages.SubmitTask, (spec, task_id, reply.bridge, reply, caller))

    async def _submit_checked(
        self, func: Any, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """`submit` with a journal: checked here; a durable task is registered once
        committed, then executed (two round trips)."""
        spec, journal = self._submit_spec(func, args, options, capture())
        if journal is not None:
            task_id = await self._register(spec, journal)
            reply = self._reply()
            return await self._wait(
                task_id,
                None,
                reply,
                messages.Execute(task_id, True, reply, _current.get()),
                "Execute",
                abandon_cancels=True,
            )
        task_id = spec.task_id or new_task_id()
        reply = self._reply()
        return await self._wait(
            task_id,
            None,
            reply,
            messages.SubmitTask(spec, task_id, reply.bridge, reply, _current.get()),
            "SubmitTask",
            abandon_cancels=True,
        )

    @overload
    async def map(
        self, func: AsyncFunc[T, R], iterable: Iterable[T], /, **options: Unpack[_MapRaising]
    ) -> list[R]: ...

    @overload
    async def map(
        self, func: PlainFunc[T, R], iterable: Iterable[T], /, **options: Unpack[_MapRaising]
    ) -> list[R]: ...

    @overload
    async def map(
        self, func: AsyncFunc[T, R], iterable: Iterable[T], /, **options: Unpack[_MapCollecting]
    ) -> list[R | BaseException]: ...

    @overload
    async def map(
        self, func: PlainFunc[T, R], iterable: Iterable[T], /, **options: Unpack[_MapCollecting]
    ) -> list[R | BaseException]: ...

    async def map(
        self,
        func: Callable[[T], Any],
        iterable: Iterable[T],
        /,
        *,
        return_exceptions: bool = False,
        **options: Any,
    ) -> list[Any]:
        """`submit` ``func(item)`` for every item of ``iterable``; their results, in order.

        One call for a list: the tasks travel to the facade in one message and the
        caller waits on one future, where a `gather` of `submit` calls costs a
        coroutine, an asyncio task and a future per item. Every task is an ordinary
        task (own id, listed, counted), with the ``options`` of `submit` (`MapOptions`:
        all but ``task_id``). Every item is checked before any task is sent: a call
        refused for its arguments sends nothing (and makes no breaker). Whether a
        ``result_of`` (or ``dependencies``) id is registered is the task manager's check,
        per task: an unknown one fails that item with `TaskNotFoundError` (raised by the
        call, or in its place with ``return_exceptions=True``) while the others run.

        The call returns once every task has ended. If some failed, it raises the error
        of the first (in item order) failed one, as `submit` would have raised it;
        ``return_exceptions=True`` returns each such error in its task's place instead.
        Cancelling the call cancels the tasks that have not ended. Durable tasks
        (``JOURNAL_PATH`` set, ``durable`` not False) take `submit`'s two round trips
        each.
        """
        if not isinstance(return_exceptions, bool):
            raise InvalidTaskError(
                f"return_exceptions must be a bool, got {safe_repr(return_exceptions)}"
            )
        if not options.keys() <= _OPTIONS:
            raise _unknown_options("map", options, _OPTIONS - {"task_id"})
        if "task_id" in options:
            raise InvalidTaskError(
                f"map() gives each task its own id; got task_id={safe_repr(options['task_id'])}: "
                "drop it, or submit() that task on its own"
            )
        if isinstance(iterable, str | bytes) or not isinstance(iterable, Iterable):
            raise InvalidTaskError(
                f"map() takes an iterable of arguments (a list, a range, a generator), "
                f"got {safe_repr(iterable)}; for one call use submit()"
            )
        trace = capture()
        base, journal = self._submit_spec(func, (), options, trace)
        items = list(iterable)
        if journal is not None:  # durable: submit's two round trips per task
            for item in items:
                self._submit_spec(func, (item,), options, trace)
            calls = [asyncio.ensure_future(self.submit(func, item, **options)) for item in items]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            # Failed are the calls that raised: a task may return an exception as its value.
            return _outcome(
                outcomes,
                {
                    index: outcomes[index]
                    for index, call in enumerate(calls)
                    if call.cancelled() or call.exception() is not None
                },
                return_exceptions,
            )
        # Checked in bounded chunks (the loop runs its other callbacks in between), all
        # before anything is sent.
        specs: list[TaskSpec] = []
        backend = base.executor or "thread"
        picklable = backend != "thread" and not base.is_coroutine
        plain = not base.results
        for index, item in enumerate(items):
            if index and not index % _MAP_CHUNK:
                await asyncio.sleep(0)
            if plain and not find_results((item,), _NO_KWARGS):
                spec = base._replace(args=(item,))
            else:  # a result_of among the arguments: a dependency of its own
                spec = self._submit_spec(func, (item,), options, trace)[0]
            if picklable:
                check_picklable(backend, func, spec.args, spec.kwargs)
            specs.append(spec)
        if not specs:
            return []
        return await self._map(specs, return_exceptions)

    async def _map(self, specs: list[TaskSpec], return_exceptions: bool) -> list[Any]:
        reply = self._reply()
        system = self._system or self._get_system()
        facade = system._check()
        bridge, future = reply.bridge, reply.future
        call = MapCall(bridge, future, len(specs))
        ids = [new_task_id() for _spec in specs]
        caller = _current.get()
        blocked = False
        box = outbox(bridge)
        bridge.track(future, None, "Map", system)
        try:
            if caller is not None:
                box.send(facade, messages.Block(caller.task_id, caller, True, NO_REPLY))
                blocked = True
            send = box.send
            for index, spec in enumerate(specs):
                if index and not index % _MAP_CHUNK:
                    await asyncio.sleep(0)  # one Batch per chunk, one chunk per iteration
                    if future.done():  # the system failed meanwhile: send no more
                        break
                slot = MapSlot(call, index)
                send(facade, messages.SubmitTask(spec, ids[index], bridge, slot, caller))
            await future
        finally:
            bridge.untrack(future)
            if future.cancelled() or not future.done():  # ended without every outcome
                future.cancel()
                with contextlib.suppress(Exception):
                    for index in call.unsettled():
                        box.send(facade, messages.Cancel(ids[index], NO_REPLY))
            if blocked:
                assert caller is not None
                with contextlib.suppress(Exception):
                    box.send(facade, messages.Block(caller.task_id, caller, False, NO_REPLY))
        return _outcome(call.outcomes, call.errors, return_exceptions)

    def execute_task(self, task_id: str, wait: bool = False) -> Coroutine[Any, Any, Any]:
        """Start a pending task (and its pending dependencies).

        Returns True when accepted, False if the task was already executing or finished.
        With ``wait=True``: the task's result, or its exception raised.

        Called on a running event loop (outside a task of this system), the
        call is sent when it is made and returns a future of that answer (a `Call`);
        cancelling it withdraws this caller's wait (the task goes on).
        """
        bridge = self._eager() if isinstance(wait, bool) else None
        if bridge is None or not isinstance(task_id, str) or not task_id:
            return self._execute_later(task_id, wait)  # (it raises for a bad id or wait)
        system: SystemRuntime = self._system  # type: ignore[assignment]
        facade: ChildHandle = system._facade  # type: ignore[assignment]
        box = bridge.outbox or outbox(bridge)
        if wait:
            waiting: _WaitCall[Any] = _WaitCall(loop=bridge.loop)
            waiting.bridge = bridge
            waiting.task_id = task_id
            # Queued as the call itself, its `Execute` made when the outbox sends it, at
            # most BUILD_CHUNK per loop iteration: a gather of 20,000 of them then does
            # not keep 20,000 messages alive at once (every one a GC-tracked object the
            # young collections promote, and that sets the full collections off).
            box.defer(facade, _build_execute_wait, waiting)
            bridge.track(waiting, None, "Execute", system)
            return waiting
        call: _Call[bool] = _Call(loop=bridge.loop)
        call.bridge = bridge
        box.send(facade, _new(messages.Execute, (task_id, False, call, None)))
        bridge.track(call, system.config.CALL_TIMEOUT, "Execute", system)
        return call

    async def _execute_later(self, task_id: str, wait: bool) -> Any:
        """`execute_task` as a coroutine: its work done when it is awaited."""
        validate_task_id(task_id)
        if not isinstance(wait, bool):
            raise InvalidTaskError(f"wait must be a bool, got {safe_repr(wait)}")
        if wait:
            reply = self._reply()
            request = messages.Execute(task_id, True, reply, _current.get())
            caller = self._start_wait(reply, request, "Execute", None)
            del request  # the facade's now: not kept while this call waits
            try:
                return await reply.future
            finally:  # (raises the error of a request that could not be sent)
                self._end_wait(task_id, reply, caller, False)
        return await self._ask(messages.Execute, task_id, False)

    async def wait_for_task(self, task_id: str, timeout: float | None = None) -> Any:
        """The task's result once it ends, or its exception raised (unchanged).

        Raises `WaitTimeoutError` (a `TimeoutError`) if it has not ended within
        ``timeout`` seconds: the task goes on, and this caller is no longer its waiter.
        Without a timeout, a task that was registered but never executed raises
        `TaskNotExecutedError` at once (nothing would end the wait); with one, the call
        waits for someone else to execute it.
        Called from inside a task, the calling task gives its concurrency slot up while
        it waits (see the README: tasks that wait for tasks); a wait for its own task,
        or for a task that depends on it, or that would close a cycle of tasks whose
        code waits for each other, raises `InvalidTaskError` at once (that task ends
        only after the caller's, so the wait would never end).
        """
        validate_task_id(task_id)
        bound = validate_timeout(timeout)
        reply = self._reply()
        return await self._wait(
            task_id,
            bound,
            reply,
            messages.Wait(task_id, reply, bound is not None, _current.get()),
            "Wait",
        )

    async def _wait(
        self,
        task_id: str,
        bound: float | None,
        reply: Reply,
        request: Any,
        op: str,
        abandon_cancels: bool = False,
    ) -> Any:
        """Send ``request`` (carrying ``reply``) for ``task_id``'s outcome and wait for it: at most
        ``bound`` seconds, and only while someone awaits this call.

        A wait that ends without the outcome (timed out, or cancelled) withdraws its
        reply from the task's waiters (``abandon_cancels``: cancels the task, whose
        only waiter it is). A caller that is itself a task of this system
        tells its manager it is blocked, so that its slot runs other tasks meanwhile
        (the task it waits for, say), and unblocked when the wait ends.
        """
        caller = self._start_wait(reply, request, op, None)
        del request  # not kept while this call waits
        future = reply.future
        try:
            if bound is None:
                return await future
            await asyncio.wait((future,), timeout=bound)
            if not future.done():
                msg = f"task {task_id!r} did not finish within {bound}s; it keeps running"
                raise WaitTimeoutError(msg)
            return future.result()
        finally:  # (raises the error of a request that could not be sent)
            self._end_wait(task_id, reply, caller, abandon_cancels)

    # `_wait` in two halves around its ``await``, for the calls that await their answer
    # in their own coroutine (`submit`, `execute_task`): no coroutine of its own per call.

    def _start_wait(
        self, reply: Reply, request: Any, op: str, build: Callable[..., Any] | None
    ) -> TaskScope | None:
        """Send `_wait`'s request; returns the caller (a task of this system, which
        the request blocked: `_end_wait` unblocks it), or None."""
        system = self._system or self._get_system()
        facade = system._check()
        box = outbox(reply.bridge)
        caller = _current.get()
        if caller is not None:
            box.send(facade, messages.Block(caller.task_id, caller, True, NO_REPLY))
        if build is None:
            box.send(facade, request)
        else:
            box.defer(facade, build, request)
        reply.bridge.track(reply.future, None, op, system)
        return caller

    def _end_wait(
        self, task_id: str, reply: Reply, caller: TaskScope | None, abandon_cancels: bool
    ) -> None:
        """The wait of `_start_wait` ended (with the outcome, or not: see `_wait`).

        Called from the waiting call's ``finally``. If the outcome is a `SupervisorError`
        (the request could not be sent), it raises the `ActorSystemError` the caller
        sees instead, once the wait is cleaned up: the one place that translates it for
        `submit`, `execute_task(wait=True)` and `_wait`."""
        bridge, future = reply.bridge, reply.future
        system = bridge.untrack(future)  # the system `_start_wait` sent to
        try:
            error = future.exception()  # one call when the outcome came (the hot path)
        except (asyncio.CancelledError, asyncio.InvalidStateError):  # ended without it
            future.cancel()
            abandoned, error = True, None
        else:
            if caller is None and not isinstance(error, SupervisorError):
                return
            abandoned = False
        box = outbox(bridge)
        with contextlib.suppress(Exception):  # a stopped system: nobody to tell
            facade = cast("SystemRuntime", system)._check()
            if abandoned:
                box.send(
                    facade,
                    messages.Cancel(task_id, NO_REPLY)
                    if abandon_cancels
                    else messages.Unwait(task_id, reply, NO_REPLY),
                )
            if caller is not None:
                box.send(facade, messages.Block(caller.task_id, caller, False, NO_REPLY))
        if isinstance(error, SupervisorError):
            raise _translated(error, _NOT_TAKEN) from error

    async def cancel_task(self, task_id: str) -> bool:
        """Cancel a task that has not finished; False if it already had."""
        result: bool = await self._ask_about(messages.Cancel, task_id)
        return result

    # -- queries --------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskInfo:
        result: TaskInfo = await self._ask_about(messages.GetTask, task_id)
        return result

    async def get_task_status(self, task_id: str) -> TaskStatus:
        result: TaskStatus = await self._ask_about(messages.GetStatus, task_id)
        return result

    async def get_task_result(self, task_id: str) -> Any:
        """The result of a completed task; None while it has not completed."""
        return await self._ask_about(messages.GetResult, task_id)

    async def get_task_error(self, task_id: str) -> BaseException | None:
        """The exception a failed or cancelled task ended with, else None."""
        result: BaseException | None = await self._ask_about(messages.GetError, task_id)
        return result

    async def get_all_tasks(self) -> list[TaskInfo]:
        result: list[TaskInfo] = await self._ask(messages.GetAll)
        return result

    async def get_tasks_by_status(self, status: TaskStatus | str) -> list[TaskInfo]:
        try:
            if not isinstance(status, str):  # TaskStatus is a str enum
                raise ValueError(status)  # before the lookup: its hash or == may raise
            checked = TaskStatus(status)
        except ValueError:
            known = ", ".join(s.value for s in TaskStatus)
            raise InvalidTaskError(
                f"status must be one of {known}; got {safe_repr(status)}"
            ) from None
        result: list[TaskInfo] = await self._ask(messages.GetByStatus, checked)
        return result

    async def get_tasks_by_type(self, task_type: str) -> list[TaskInfo]:
        if not isinstance(task_type, str) or not task_type:
            raise InvalidTaskError(f"task_type must be a non-empty str, got {safe_repr(task_type)}")
        result: list[TaskInfo] = await self._ask(messages.GetByType, task_type)
        return result

    async def get_task_page(
        self,
        offset: int = 0,
        limit: int = 50,
        *,
        status: TaskStatus | str | None = None,
        task_type: str | None = None,
        search: str | None = None,
        after: PageCursor | str | None = None,
    ) -> TaskPage:
        """One page of the tasks, newest first, filtered by status, type and a part of
        the name or id (case-insensitive): the total that match and ``limit`` rows from
        ``offset`` (counted from ``after``, a previous page's ``next`` or its ``str()``,
        if given: a walk by ``after=page.next`` neither repeats nor skips a task while
        others come and go). Costs two scans of the records, not a `TaskInfo` per task."""
        query = PageQuery(offset, limit, status, task_type, search, after)
        keys: list[tuple[int, list[float]]] = await self._ask(messages.PageKeys, query)
        cuts = split_page(query, [part[1] for part in keys])
        slices = dict(zip(TASK_SYSTEMS, cuts, strict=True))
        rows: list[list[TaskRow]] = await self._ask(messages.PageRows, query, slices)
        return merge_rows(query, sum(part[0] for part in keys), rows)

    async def get_task_detail(self, task_id: str) -> TaskDetail:
        """A task's snapshot with its dependents, failed attempts (errors and
        tracebacks) and, while it is live or failed, its function and arguments."""
        result: TaskDetail = await self._ask_about(messages.GetDetail, task_id)
        return result

    async def retry_task(self, task_id: str) -> str:
        """Run a failed task again: register a new task with its definition (function,
        arguments, options, current dependencies; ``metadata["retry_of"]`` names the
        failed one) on the loop it was registered from, in its task system (whatever
        `use_new_task_system` says now), execute it, return its id.

        The failed task stays as it is (its history is kept); raises `InvalidTaskError`
        if the task did not fail. A durable task that failed before a restart is
        registered again from its journal row, on this call's loop: `JournalDecodeError`
        if its function no longer imports or its payload cannot be read (nothing
        changes).
        """
        definition, bridge, durable, backend = await self._ask_about(
            messages.GetDefinition, task_id
        )
        config = (self._system or self._get_system()).config
        if isinstance(definition, JournaledDefinition):
            spec = definition.spec(config.JOURNAL_SERIALIZER)  # decoded here, only now
        else:
            spec = definition
        metadata = MappingProxyType({**spec.metadata, "retry_of": task_id})
        spec = spec._replace(task_id=None, metadata=metadata)
        if bridge is None or bridge.loop.is_closed():
            bridge = bridge_for(asyncio.get_running_loop())
        # A durable task's retry is journaled like any registration (acknowledged once
        # committed); its breaker is the shared one of the failed task's.
        journal = durable_row(config, spec, True, spec.circuit_breaker) if durable else None
        reply = self._reply()
        # In the failed task's task system, beside its dependencies, whichever system
        # `use_new_task_system` picks now.
        register = messages.Register(spec, None, bridge, reply, journal, backend)
        new_id: str = await self._call(reply, register)
        await self._ask(messages.Execute, new_id, False)
        return new_id

    async def get_metrics(self) -> MetricsSnapshot:
        """A frozen snapshot of what the monitor counted, up to this call."""
        result: MetricsSnapshot = await self._ask(messages.GetMetrics)
        return result

    async def render_prometheus(self) -> str:
        """The metrics in the Prometheus text exposition format (needs prometheus_client)."""
        return render_prometheus(await self.get_metrics())

    def events(self, task_type: str | None = None) -> EventStream:
        """Every lifecycle transition (of ``task_type`` tasks only, if given), circuit
        breaker change and resource alarm from now on: ``async for event in ...``.

        Called on an event loop, it subscribes at once: an event of a call made after
        ``events()`` returned is in the stream even if it happened before the first
        iteration (which waits for the subscription to be confirmed). Called outside
        an event loop, it subscribes on the first iteration."""
        if task_type is not None and (not isinstance(task_type, str) or not task_type):
            raise InvalidTaskError(
                f"task_type must be a non-empty str or None, got {safe_repr(task_type)}"
            )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return EventStream(self, task_type)
        return EventStream(self, task_type, self._subscription(task_type))

    def _subscription(self, task_type: str | None) -> asyncio.Future[Subscriber]:
        """Send the subscription now; the future gets the `Subscriber` (CALL_TIMEOUT)."""
        reply = self._reply()
        system = self._system or self._get_system()
        future, bridge = reply.future, reply.bridge
        facade, box = system._check(), outbox(bridge)
        subscribe = messages.Subscribe(bridge, task_type, reply)
        if box.items:  # after this iteration's earlier calls, in order
            box.send(facade, subscribe)
        else:
            try:
                facade.tell(subscribe)
            except SupervisorError as exc:
                raise _translated(exc, "the actor system cannot take calls") from exc
        bridge.track(future, system.config.CALL_TIMEOUT, "Subscribe", system)
        future.add_done_callback(bridge.untrack)
        return future

    async def _subscribe(self, task_type: str | None) -> Subscriber:
        reply = self._reply()
        subscriber: Subscriber = await self._call(
            reply, messages.Subscribe(reply.bridge, task_type, reply)
        )
        return subscriber

    def _unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.close()
        system = self._system
        if system is not None and system._facade is not None:
            with contextlib.suppress(Exception):
                system._facade.tell(messages.Unsubscribe(subscriber, NO_REPLY))

    async def get_task_graph(
        self,
        task_type: str | None = None,
        around: str | None = None,
        depth: int | None = None,
    ) -> TaskGraph:
        """A snapshot of the tasks and their dependencies, coloured by status.

        ``task_type`` keeps only tasks of that type; ``around`` keeps one task and what
        it depends on and what depends on it (up to ``depth`` hops).
        """
        if task_type is not None and (not isinstance(task_type, str) or not task_type):
            raise InvalidTaskError(
                f"task_type must be a non-empty str or None, got {safe_repr(task_type)}"
            )
        if around is not None:
            validate_task_id(around, "around")
        elif depth is not None:
            raise InvalidTaskError(
                f"depth applies to around= only, got depth={safe_repr(depth)} without around; "
                "pass around=<task id>, or drop depth"
            )
        check_depth(depth)
        graph = TaskGraph.from_infos(await self.get_all_tasks())
        if task_type is not None:
            graph = graph.filter(task_type=task_type)
        if around is not None:
            graph = graph.neighbourhood(around, depth)
        return graph

    # -- graph, cleanup, switch -----------------------------------------------------------

    async def add_dependency(self, task_id: str, depends_on: str) -> None:
        """``task_id`` will start only after ``depends_on`` completed."""
        validate_task_id(task_id)
        validate_task_id(depends_on, "depends_on")
        await self._ask(messages.AddDependency, task_id, depends_on)

    async def cleanup_completed_tasks(self, max_age: float = 86400.0) -> int:
        """Remove tasks that ended more than ``max_age`` seconds ago; returns how many."""
        age = finite_float(max_age)
        if age is None or age < 0:
            raise InvalidTaskError(
                f"max_age must be a finite number of seconds >= 0, got {safe_repr(max_age)}"
            )
        result: int = await self._ask(messages.Cleanup, age)
        return result

    async def use_new_task_system(self, flag: bool) -> None:
        """Send new registrations to the new (True) or the old (False) task manager."""
        if not isinstance(flag, bool):
            raise InvalidTaskError(f"flag must be a bool, got {safe_repr(flag)}")
        await self._ask(messages.UseNewSystem, flag)

    async def shutdown(self) -> None:
        """Stop the actor system: unfinished tasks are cancelled, actors stopped."""
        system = self._system
        if system is None:
            return
        if self._lazy:
            self._system = None
        await system.shutdown()
        if self._lazy:
            with _lazy_lock, contextlib.suppress(ValueError):
                _lazy_systems.remove(system)  # stopped: nothing for the exit hook to do


class ThreadPoolClient:
    """``unified_task_manager.thread_pool``: run a plain function on the pool."""

    def __init__(self, client: UnifiedTaskManager) -> None:
        if not isinstance(client, UnifiedTaskManager):
            raise InvalidTaskError(
                f"ThreadPoolClient takes a UnifiedTaskManager, got {safe_repr(client)}; a client's "
                f"pool is already there: system.task_manager.thread_pool (or "
                f"unified_task_manager.thread_pool)"
            )
        self._client = client

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, executor: str | None = None, **kwargs: Any
    ) -> Coroutine[Any, Any, Any]:
        """Run ``fn(*args, **kwargs)`` on the pool's executor; returns its result.

        ``executor`` (keyword only, and reserved: it is never passed on to ``fn``) is one
        of ``"thread"``, ``"process"``, ``"dask"``, or None for the configured
        ``THREAD_POOL_BACKEND``. For ``process`` and ``dask``, ``fn`` and its arguments
        must pickle (checked here, `InvalidTaskError` naming what does not).

        Called on a running event loop (outside a task of this system) for
        the thread backend, the call is sent when it is made and returns a future of
        the result (a `Call`); a call never awaited still runs ``fn``.
        """
        client = self._client
        # (A coroutine function: the coroutine form refuses it, the pool's worker a call
        # made at once, as it gets the coroutine: no check on this path.)
        bridge = client._eager() if executor is None and callable(fn) else None
        system = client._system
        pool = (
            None
            if system is None or system.config.THREAD_POOL_BACKEND != "thread"
            else system._pool
        )
        if bridge is None or pool is None:
            return self._submit_later(fn, args, executor, kwargs)
        call: _PoolCall[Any] = _PoolCall(loop=bridge.loop)
        call.bridge = bridge
        try:
            client._send(
                call,
                messages.Submit(fn, args, kwargs, call, "thread"),
                timeout=_UNBOUNDED,
                to=pool,
            )
        except Exception as exc:  # the pool is gone (translated by `_send`)
            call.set_exception(exc)
        return call

    async def _submit_later(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        executor: str | None,
        kwargs: dict[str, Any],
    ) -> Any:
        """`submit` as a coroutine: its work done when it is awaited."""
        if not callable(fn):
            raise InvalidTaskError(f"fn must be callable, got {safe_repr(fn)}")
        kind = async_kind(fn)
        if kind is not None:
            raise InvalidTaskError(
                f"thread_pool.submit runs plain functions; {safe_repr(fn)} is {kind}, {ON_A_LOOP}"
            )
        checked = validate_executor(executor)
        system = self._client._system or self._client._get_system()
        system._check()
        backend = checked or system.config.THREAD_POOL_BACKEND
        if backend != "thread":
            require_backend(backend)
            check_picklable(backend, fn, args, kwargs)
        pool = system._pool
        assert pool is not None
        client = self._client
        reply = client._reply()
        if backend == "thread":  # (its worker drops it if the future is done: `Submit`)
            submit = messages.Submit(fn, args, kwargs, reply, backend)
            return await client._call(reply, submit, timeout=_UNBOUNDED, to=pool)
        # A worker process cannot see the caller: the pool links the call to the reply,
        # and a caller that stops waiting cancels it where it waits (its executor's queue).
        withdrawable = WithdrawableReply(reply.bridge, reply.future)
        submit = messages.Submit(fn, args, kwargs, withdrawable, backend)
        try:
            return await client._call(withdrawable, submit, timeout=_UNBOUNDED, to=pool)
        except asyncio.CancelledError:
            withdrawable.withdraw()
            raise


_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})


_NOT_TAKEN = "the actor system cannot take calls"
_NO_WORK = "the thread pool cannot take work"


class _Call(Call[T]):
    """A call of the client made at once (`UnifiedTaskManager._eager`): a
    `SupervisorError` that reaches it (its request could not be sent) becomes the
    `ActorsError` the coroutine form raises, with the supervision error as its cause."""

    __slots__ = ()

    _what = _NOT_TAKEN

    def set_exception(self, exception: BaseException | type[BaseException], /) -> None:
        if isinstance(exception, SupervisorError):
            error = _translated(exception, self._what)
            error.__cause__ = error.__context__ = exception
            exception = error
        super().set_exception(exception)


class _PoolCall(_Call[T]):
    """`ThreadPoolClient.submit` made at once."""

    __slots__ = ()

    _what = _NO_WORK


class _SubmitCall(_Call[T]):
    """`UnifiedTaskManager.submit` made at once: cancelling it cancels its task. Until
    the outbox builds its request (`_build_submit_call`) it holds what that is built
    from (the client, ``func``, ``args``, ``options``, the trace context)."""

    __slots__ = ("args", "client", "func", "options", "task_id", "trace")

    task_id: str
    client: UnifiedTaskManager
    func: Callable[..., Any]
    args: tuple[Any, ...]
    options: dict[str, Any]
    trace: Any

    def abandoned(self, owner: object) -> None:
        with contextlib.suppress(Exception):  # a stopped system: nobody to tell
            facade = cast("SystemRuntime", owner)._check()
            outbox(self.bridge).send(facade, messages.Cancel(self.task_id, NO_REPLY))


class _RegisterCall(_Call[T]):
    """`UnifiedTaskManager.register_task` made at once with every option its default:
    until the outbox builds its request (`_build_register_call`) it holds what that is
    built from (the client, ``name``, ``func``, ``args``, the trace context)."""

    __slots__ = ("args", "client", "func", "name", "trace")

    client: UnifiedTaskManager
    name: Any
    func: Any
    args: Any
    trace: Any


class _WaitCall(_Call[T]):
    """`UnifiedTaskManager.execute_task(wait=True)` made at once: cancelling it
    withdraws it (its own reply) from the task's waiters."""

    __slots__ = ("task_id",)

    task_id: str

    def abandoned(self, owner: object) -> None:
        with contextlib.suppress(Exception):  # a stopped system: nobody to tell
            facade = cast("SystemRuntime", owner)._check()
            outbox(self.bridge).send(facade, messages.Unwait(self.task_id, self, NO_REPLY))


_BUILD_REGISTER = UnifiedTaskManager._build_register
_PLAIN_REQUEST = 6
"""The length of the request of a `register_task` call whose options are all their
defaults: the client, the reply, ``name``, ``func``, ``args``, the trace context."""
(
    _DEFAULT_TYPE,
    _DEFAULT_DESCRIPTION,
    _DEFAULT_PRIORITY,
    _DEFAULT_DEPENDENCIES,
    _DEFAULT_RETRIES,
    _DEFAULT_DELAY,
    _DEFAULT_ON_FAILURE,
) = operator.itemgetter(
    "task_type",
    "description",
    "priority",
    "dependencies",
    "max_retries",
    "retry_delay",
    "on_dependency_failure",
)(UnifiedTaskManager.register_task.__kwdefaults__ or {})
"""`register_task`'s own default objects: an option that is one of them was not given."""


def _build_register_call(call: _RegisterCall[Any]) -> messages.Register | None:
    """`Outbox.defer`'s build of a `register_task` made at once with every option its
    default: its `Register`, from what the call held (dropped now: not kept while the
    call waits for its id), or None (the call gets the error) if an argument is refused."""
    client, name, func, args, trace = call.client, call.name, call.func, call.args, call.trace
    del call.client, call.name, call.func, call.args, call.trace
    try:
        spec, journal = client._complete(validate_plain(name, func, args), None, trace)
    except Exception as exc:
        _refuse(call, exc)
        return None
    return _new(messages.Register, (spec, new_task_id(), call.bridge, call, journal, None))


def _build_execute_wait(call: _WaitCall[Any]) -> messages.Execute:
    """`Outbox.defer`'s build of an ``execute_task(wait=True)`` made at once: its
    `Execute`, made from the call (which holds the task id) when it is sent."""
    return _new(messages.Execute, (call.task_id, True, call, None))


def _build_submit_call(call: _SubmitCall[Any]) -> messages.SubmitTask | None:
    """`Outbox.defer`'s build of a `submit` made at once: its request, from what the
    call held (dropped now: not kept while the task runs)."""
    client, func, args, options, trace = call.client, call.func, call.args, call.options, call.trace
    del call.client, call.func, call.args, call.options, call.trace
    return client._build_submit(call, func, args, options, call.task_id, trace)


def _build_submit_request(request: tuple[Any, ...]) -> messages.SubmitTask | None:
    """`Outbox.defer`'s build of a `submit` awaited as a coroutine: ``request`` is the
    client, then `UnifiedTaskManager._build_submit`'s arguments."""
    client: UnifiedTaskManager = request[0]
    return client._build_submit(*request[1:])


_new = tuple.__new__
"""Makes a request (a `NamedTuple`) from its fields in order, without the Python
``__new__`` of its class: a third of the cost, on the caller loop's per-call path."""


def _refuse(reply: Reply | Call[Any], error: Exception) -> None:
    """Fail the call of ``reply`` with ``error`` (its request was not built)."""
    future = reply.future
    if not future.done():
        future.set_exception(error)


def _outcome(
    outcomes: list[Any], errors: Mapping[int, BaseException], return_exceptions: bool
) -> list[Any]:
    """A map's results in item order; raises the first failed task's error (item order)
    unless ``return_exceptions``. A request that could not be sent shows as the
    `ActorsError` that `submit` raises for it."""
    if errors:
        for index, error in errors.items():
            if isinstance(error, SupervisorError):
                outcomes[index] = _translated(error, "the actor system cannot take calls")
        if not return_exceptions:
            raise outcomes[min(errors)]
    return outcomes


def _name_of(func: Callable[..., Any]) -> str:
    """A task name for ``func``: its ``__qualname__`` (through partials), else its
    type's."""
    inner: Any = func
    while isinstance(inner, functools.partial):
        inner = inner.func
    name = getattr(inner, "__qualname__", None)
    return name if isinstance(name, str) and name else type(inner).__qualname__


# -- the lazy module-level client -------------------------------------------------------

_lazy_lock = threading.Lock()
renew_after_fork(globals(), "_lazy_lock", threading.Lock)
_global_config: Config | None = None
_lazy_systems: list[SystemRuntime] = []


def configure(config: Mapping[str, Any] | Config) -> Config:
    """Set the configuration the lazy `unified_task_manager` starts with.

    Call it before first use (or after ``shutdown()``); raises `ConfigError` otherwise,
    or when a key is unknown or a value is of the wrong type.
    """
    global _global_config
    checked = config if isinstance(config, Config) else load_config(config)
    with _lazy_lock:
        if unified_task_manager._system is not None:
            raise ConfigError(
                "the actor system of unified_task_manager is running; call "
                "configure() before first use or after `await unified_task_manager.shutdown()`"
            )
        _global_config = checked
    return checked


def _lazy_system(client: UnifiedTaskManager) -> SystemRuntime:
    from actors.runtime import SystemRuntime

    with _lazy_lock:
        if client._system is None:
            system = SystemRuntime(_global_config)
            system.start()
            client._system = system
            _lazy_systems.append(system)
        return client._system


def _stop_at_exit() -> None:
    for system in _lazy_systems:
        system.stop_sync()
    _lazy_systems.clear()


# The lazy system stops before the interpreter joins any thread. `atexit` hooks run only
# after `threading._shutdown` has joined every non-daemon thread and run the hooks that
# `threading._register_atexit` holds (last registered first), among them
# `concurrent.futures`' own, which join their executors' workers without a bound: a
# worker blocked in a task function that waits for its cancellation token would never
# see it set. `threading._register_atexit` is CPython-internal (3.9+, undocumented, the
# hook `concurrent.futures` itself uses); where it is missing, `atexit` stands in.
# concurrent.futures.thread is imported first so that its hook runs after ours.
_register_early: Callable[[Callable[[], None]], object] = getattr(
    threading, "_register_atexit", atexit.register
)
_register_early(_stop_at_exit)


unified_task_manager = UnifiedTaskManager()
"""The module-level client: starts its actor system on first use."""
