"""`SystemRuntime`: the root supervisor and its five children (`ActorSystem` adds the client).

Children, in start order: ``task_monitor``, ``thread_pool``, ``legacy_task_manager``,
``task_manager``, ``facade`` (stopped in reverse). Each keeps what must survive a crash
in the state object its `ChildSpec` creates once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from loguru import logger
from pykka import ActorDeadError, ThreadingFuture
from pykka.messages import ProxyCall
from tenacity import wait_exponential_jitter

from actors.core import (
    ActorSystemError,
    Config,
    ConfigError,
    LoopBridge,
    Reply,
    bridge_for,
    load_config,
    safe_repr,
)
from actors.engine import BreakerRegistry, BreakerTransition, CircuitBreaker, Engine, Policy
from actors.observe import ResourceSample, psutil_probe
from actors.runtime._backends import CLOSE_SECONDS, DASK_MISSING, dask_installed
from actors.runtime._facade import FacadeActor, FacadeState
from actors.runtime._legacy import LegacyTaskManagerActor
from actors.runtime._manager import TaskManagerActor
from actors.runtime._monitor import MonitorState, TaskMonitorActor
from actors.runtime._pool import PoolState, ThreadPoolActor
from actors.runtime._shared import CHILD_IDS, StopDeadline, SystemContext
from actors.runtime.messages import REQUEST_TYPES, BreakerChanged, ChildRestarted, Shutdown
from supervisors import (
    SYSTEM_CLOCK,
    ChildHandle,
    ChildSpec,
    Clock,
    ConsecutiveFailuresExceeded,
    RestartIntensityExceeded,
    RestartPolicy,
    StopBy,
    Strategy,
    Supervisor,
    SupervisorError,
    SupervisorEvent,
    SupervisorEventKind,
    SupervisorState,
    ask_into,
)

if TYPE_CHECKING:
    from pykka import ActorRef

    from actors.core import LoopThread
    from actors.runtime._recovery import Journal
    from supervisors import ChildCounts, ChildInfo

__all__ = ["STOP_SLACK", "SupervisorClient", "SystemRuntime"]

STOP_SLACK = 1.0
"""Seconds past ``SHUTDOWN_TIMEOUT`` a stop may take: what a stage does once the deadline
has passed (the root supervisor tells the children left to stop, abandoned, and
answers; the journal makes its last write; the recovered tasks' loop and the blocking
API's loop thread stop). Closing worker processes (``process``, ``dask`` executors) may
take `CLOSE_SECONDS` more."""


class _Server(Protocol):
    """A server that stops with the system (the dashboard's)."""

    def stop(self, timeout: float = ...) -> None: ...


class SupervisorClient:
    """``system.supervisor``: the root supervisor, for operators and fault injection."""

    def __init__(
        self,
        ref: ActorRef[Any],
        state: SupervisorState,
        timeout: float,
        check_failed: Callable[[], None] = lambda: None,
    ):
        self._ref = ref
        self._state = state
        self._timeout = timeout
        self._check_failed = check_failed  # raises the system's failure, if it failed

    @property
    def actor_ref(self) -> ActorRef[Any]:
        return self._ref

    def child(self, child_id: str) -> ChildHandle:
        """The stable `ChildHandle` of a child; ``child(...).tell(Kill())`` crashes it."""
        # A child id that is no str is refused before the lookup (its hash may raise).
        handle = self._state.handles.get(child_id) if isinstance(child_id, str) else None
        if handle is None:
            msg = (
                f"the actor system has no child {safe_repr(child_id)}; "
                f"children: {', '.join(CHILD_IDS)}"
            )
            raise ActorSystemError(msg)
        return handle

    async def which_children(self) -> list[ChildInfo]:
        result: list[ChildInfo] = await self._ask("which_children")
        return result

    async def count_children(self) -> ChildCounts:
        result: ChildCounts = await self._ask("count_children")
        return result

    async def _ask(self, method: str) -> Any:
        self._check_failed()  # (a forked child: the root is alive only in the parent)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        reply_to = _LoopFuture(Reply(bridge_for(loop), answer))
        if not self._ref.is_alive():
            raise self._stopped()
        ask_into(self._ref, ProxyCall(attr_path=(method,), args=(), kwargs={}), reply_to)
        if not self._ref.is_alive():  # stopped meanwhile: its inbox may be drained already
            answer.cancel()  # (an answer, if one still comes, is dropped)
            raise self._stopped()
        try:
            return await asyncio.wait_for(answer, self._timeout)
        except ActorDeadError:  # it stopped with the call in its inbox: pykka's error
            raise self._stopped() from None
        except TimeoutError:
            msg = f"the root supervisor did not answer {method}() within {self._timeout}s"
            raise ActorSystemError(msg) from None

    def _stopped(self) -> ActorSystemError:
        """Why the root supervisor cannot answer: the system's failure when it failed
        (the root stops when it escalates), else that it is stopped."""
        try:
            self._check_failed()
        except ActorSystemError as failure:
            return failure
        return ActorSystemError("the root supervisor is stopped")


class _LoopFuture(ThreadingFuture[Any]):
    """A pykka future that also resolves an asyncio future on its loop."""

    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self._reply = reply

    def set(self, value: Any | None = None) -> None:
        super().set(value)
        self._reply.set_result(value)

    def set_exception(self, exc_info: Any = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        super().set_exception(exc_info)
        self._reply.set_exception(exc_info[1])


class SystemRuntime:
    """The supervision tree of an actor system, without its client (`ActorSystem`).

    ``config`` is a mapping of the upper-case keys (or a `Config`); environment
    variables ``ACTORFLOW_*`` and a TOML file named by ``ACTORFLOW_CONFIG`` apply below
    it. ``clock`` replaces the wall clock (tests pass a fake one).
    """

    def __init__(
        self,
        config: object = None,
        *,
        clock: Clock | None = None,
        probe: object = None,
    ) -> None:
        if isinstance(config, Config):
            self.config = config
        elif config is None or isinstance(config, Mapping):
            self.config = load_config(config)
        else:
            msg = (
                f"config must be a mapping of upper-case keys or a Config, got {safe_repr(config)}"
            )
            raise ConfigError(msg)
        given: object = clock
        if given is not None and not (
            callable(getattr(given, "monotonic", None))
            and callable(getattr(given, "call_later", None))
        ):
            msg = (
                f"clock must be a supervisors.Clock (with monotonic() and call_later() "
                f"methods, such as supervisors.testing.FakeClock) or None (the system "
                f"clock), got {safe_repr(clock)}"
            )
            raise ConfigError(msg)
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        if probe is not None and not callable(probe):
            msg = f"probe must be a callable returning a ResourceSample, got {safe_repr(probe)}"
            raise ConfigError(msg)
        self._probe: Callable[[], ResourceSample] = psutil_probe if probe is None else probe
        self.circuit_breakers = BreakerRegistry(clock=self.clock, listener=self._breaker_changed)
        """Breakers that tasks name in ``register_task(circuit_breaker=...)``."""
        self._root: ActorRef[Any] | None = None
        self._state: SupervisorState | None = None
        self._supervisor: SupervisorClient | None = None
        self._facade: ChildHandle | None = None
        self._pool: ChildHandle | None = None
        self._failure: ActorSystemError | None = None
        self._closed = False
        # Loops this system has answered calls on (their bridges track the calls).
        self._bridges: weakref.WeakSet[LoopBridge] = weakref.WeakSet()
        self._last_bridge: LoopBridge | None = None
        # Calls a plain thread waits for on a future (`actors.metrics_snapshot`): no
        # bridge tracks them, so a failure or a stop fails them here.
        self._thread_calls: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._dashboards: list[_Server] = []
        self._loop_thread: LoopThread | None = None
        """The loop thread of ``with ActorSystem()`` and ``system.blocking`` (`ActorSystem`
        starts it; every stop ends it, `_end_loop_thread`)."""
        self._loop_thread_keeper: threading.Thread | None = None
        """The thread that runs the shutdown on the loop thread and then ends it itself
        (``with``, `ActorSystem._stop_blocking`): another stop leaves it the loop thread."""
        self._stop_over = threading.Event()
        """Set once a stop has stopped everything but the loop thread (`_stop_until`)."""
        self._journal: Journal | None = None
        self._stop_deadline = StopDeadline()
        """When the stop must be over (shared with the children through their context)."""
        self._pid = 0
        """The process that started the system (`_left_by_fork`)."""
        self._forked: ActorSystemError | None = None
        """Why a forked child cannot use the system (`_left_by_fork`)."""

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._root is not None and not self._closed and self._failure is None

    @property
    def supervisor(self) -> SupervisorClient:
        if self._supervisor is None:
            raise ActorSystemError("the actor system is not started; use `async with` or start()")
        return self._supervisor

    def start(self) -> Self:
        """Start the supervision tree (idempotent). Blocks for a few milliseconds."""
        with self._lock:
            if self._forked is not None:
                raise _copy(self._forked)
            if self._closed:
                raise ActorSystemError("the actor system was shut down; create a new one")
            if self._root is not None:
                return self
            cfg = self.config
            if cfg.THREAD_POOL_BACKEND == "dask" and not dask_installed():
                raise ActorSystemError(f"THREAD_POOL_BACKEND is 'dask', but {DASK_MISSING}")
            state = SupervisorState()
            clock = self.clock
            ctx = SystemContext(
                cfg, clock, state, self.circuit_breakers, self._probe, self._stop_deadline
            )
            journal = self._journal = None if cfg.JOURNAL_PATH is None else _journal(ctx, self)

            def engine(policy: Policy) -> Engine:
                if journal is None:
                    return Engine(policy, clock, breakers=self._share_breaker)
                return journal.engine(policy)

            specs = [
                ChildSpec("task_monitor", TaskMonitorActor, (ctx,), state_factory=MonitorState),
                ChildSpec("thread_pool", ThreadPoolActor, (ctx,), state_factory=PoolState),
                ChildSpec(
                    "legacy_task_manager",
                    LegacyTaskManagerActor,
                    (ctx,),
                    state_factory=lambda: engine(Policy.simple(cfg.MAX_FINISHED_TASKS)),
                ),
                ChildSpec(
                    "task_manager",
                    TaskManagerActor,
                    (ctx,),
                    state_factory=lambda: engine(
                        Policy.scheduler(cfg.MAX_CONCURRENT_TASKS, cfg.MAX_FINISHED_TASKS)
                    ),
                ),
                ChildSpec(
                    "facade",
                    FacadeActor,
                    (ctx,),
                    state_factory=lambda: _facade_state(cfg.USE_NEW_TASK_SYSTEM, journal),
                ),
            ]
            if journal is not None:  # started after the monitor, stopped after the managers
                specs.insert(1, journal.spec())
            policy = RestartPolicy(
                wait=wait_exponential_jitter(
                    multiplier=cfg.RESTART_BACKOFF_INITIAL,
                    max=cfg.RESTART_BACKOFF_MAX,
                    jitter=cfg.RESTART_BACKOFF_INITIAL / 2,
                ),
                max_restarts=cfg.RESTART_MAX_RESTARTS,
                within_seconds=cfg.RESTART_WITHIN_SECONDS,
                reset_after=cfg.RESTART_RESET_AFTER,
                # max_consecutive_failures defaults to max_restarts: the same bound holds
                # a crash loop the window cannot see (each incarnation fails before
                # RESTART_RESET_AFTER while the backoff outgrows the window).
            )
            try:
                root = _RootSupervisor.start(
                    specs,
                    strategy=Strategy.ONE_FOR_ONE,
                    policy=policy,
                    clock=self.clock,
                    name="actorflow",
                    on_escalation=self._escalated,
                    listener=self._supervisor_event,
                    buffer_capacity=cfg.MAILBOX_BUFFER_CAPACITY,
                    # Callers' calls are bounded while a child restarts; the system's own
                    # messages (outcomes, timers, events) never are: none may be lost.
                    request_types=REQUEST_TYPES,
                    watchdog_interval=None,
                    state=state,
                )
            except BaseException:
                if journal is not None:  # let the file (and its lock) go: a retry opens it
                    self._journal = None
                    journal.close(STOP_SLACK)
                raise
            self._state = state
            self._facade = state.handles["facade"]
            self._pool = state.handles["thread_pool"]
            self._supervisor = SupervisorClient(root, state, cfg.CALL_TIMEOUT, self._check_failed)
            self._root = root
            self._pid = os.getpid()
            _started.add(self)  # for `_left_by_fork`
            logger.bind(system="actorflow").info("actor system started")
            return self

    async def __aenter__(self) -> Self:
        if self.config.JOURNAL_PATH is None or self._root is not None:
            return self.start()  # a few milliseconds
        # Opening the journal creates or locks its file and reads and restores every
        # task in it (a second or more for 100,000 rows): in a thread, so that the loop
        # runs its other callbacks meanwhile (asyncio's debug mode reported the start
        # as a callback that blocked the loop).
        return await _started_off_loop(asyncio.get_running_loop(), self)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Cancel unfinished tasks, stop every actor (reverse order), close the pool, end
        the blocking API's loop thread (unless this runs on it: ``with`` ends it then).

        Returns within ``SHUTDOWN_TIMEOUT`` + `STOP_SLACK` seconds (`CLOSE_SECONDS` more
        to close worker processes): every stage waits until one deadline, set here
        (`_stop_until`). On a system already stopped, it ends a loop thread that stop
        could not end (it ran there); while another stop is under way, it returns once
        that stop is over (by the same bound)."""
        loop = asyncio.get_running_loop()
        if self._root is None or self._closed:
            self._closed = True
            own = self._loop_thread
            if own is not None and own.loop is not loop and own.thread.is_alive():
                await _off_loop(loop, lambda: self._end_loop_thread(loop))
            elif self._stop_deadline.at is not None and not self._stop_over.is_set():
                await _off_loop(loop, self._wait_for_stop)
            return
        deadline = self._begin_stop()

        def stop() -> None:
            self._stop_until(deadline)
            self._end_loop_thread(loop)

        if self._failure is None:
            try:
                # The call's own bound is swept once a second; wait_for makes it exact.
                reply = Reply(bridge_for(loop), loop.create_future())
                self._check().tell(Shutdown(reply))
                await asyncio.wait_for(reply.future, max(0.0, deadline - time.monotonic()))
            except asyncio.CancelledError:
                # The caller was cancelled (a timeout around it, Ctrl-C in asyncio.run, or
                # the caller is a task of this system, which this very stop cancels): the
                # stop goes on without it, in a thread of its own, by the same deadline.
                threading.Thread(target=stop, name="actorflow-shutdown").start()
                raise
            except Exception as exc:
                logger.bind(system="actorflow").warning("cancelling tasks at shutdown: {!r}", exc)
        await _off_loop(loop, stop)

    def stop_sync(self) -> None:
        """Stop without an event loop (at interpreter exit, say), within
        ``SHUTDOWN_TIMEOUT`` + `STOP_SLACK` seconds (`CLOSE_SECONDS` more to close worker
        processes), the blocking API's loop thread last (not when called on it)."""
        self._stop_until(self._begin_stop())
        self._end_loop_thread()

    def _begin_stop(self) -> float:
        """The stop's one deadline: ``SHUTDOWN_TIMEOUT`` from when the first stop began
        (set here then), the same for every stage and every later stop."""
        with self._lock:
            if self._stop_deadline.at is None:
                self._stop_deadline.at = time.monotonic() + self.config.SHUTDOWN_TIMEOUT
                self._stop_deadline.by = threading.current_thread()
            return self._stop_deadline.at

    def _stop_until(self, deadline: float) -> None:
        """Stop the dashboards, the supervision tree (children in reverse order) and the
        journal, every stage within ``deadline`` (a `time.monotonic` value): a child
        still stopping then is abandoned (it goes on stopping in its daemon thread).
        Past it, `STOP_SLACK` more seconds for the root's answer and the journal's last
        write (made after every manager has stopped, or abandoned); from now if it has
        passed already (a loop thread too stuck to run the shutdown, say)."""
        with self._lock:
            self._closed = True
            root = self._root
            if self._stop_deadline.at is None:
                self._stop_deadline.at = deadline
            deadline = self._stop_deadline.at
        late = max(deadline, time.monotonic()) + STOP_SLACK
        try:
            self._stop_tree(root, deadline, late)
        finally:
            self._stop_over.set()

    def _stop_tree(self, root: ActorRef[Any] | None, deadline: float, late: float) -> None:
        """`_stop_until`'s stages, from the dashboards to the journal."""
        self._stop_dashboards(deadline)
        if root is not None and root.is_alive():
            try:
                stopped = root.ask(StopBy(deadline), block=False)
                stopped.get(timeout=max(0.0, late - time.monotonic()))
            except Exception as exc:
                logger.bind(system="actorflow").warning("stopping the supervisor: {!r}", exc)
        pool = self._pool_state()
        if pool is not None and pool.closing_workers.is_set():
            # Worker processes are killed and joined, a Dask cluster closed, even past
            # the deadline: none is left behind (`CLOSE_SECONDS` at most).
            pool.stopped.wait(max(0.0, late - time.monotonic()) + CLOSE_SECONDS)
        if self._journal is not None:
            self._journal.close(max(0.0, late - time.monotonic()))
        self._close_streams()
        self._fail_pending(ActorSystemError("the actor system was shut down"))

    def _wait_for_stop(self) -> None:
        """Wait (by the stop's end) until the stop under way has stopped the tree."""
        self._stop_over.wait(max(0.0, self._stop_end() - time.monotonic()))

    def _close_streams(self) -> None:
        """End the event streams the monitor's state still holds. The monitor closes
        them as it stops, but one that crashed and was not started again (it failed the
        system, or the system stopped while it waited for its restart) never stops: its
        subscribers would wait for ever. (Closing is idempotent.)"""
        state = self._state
        monitor = None if state is None else state.states.get("task_monitor")
        if isinstance(monitor, MonitorState):
            for subscriber in list(monitor.subscribers):
                subscriber.close()

    def _pool_state(self) -> PoolState | None:
        state = self._state
        pool = None if state is None else state.states.get("thread_pool")
        return pool if isinstance(pool, PoolState) else None

    def _close_allowance(self) -> float:
        """`CLOSE_SECONDS` once the stop closes worker processes (``process``, ``dask``
        executors: the pool says so as it begins), else 0: how long past the deadline
        plus `STOP_SLACK` the stop may go on."""
        pool = self._pool_state()
        return CLOSE_SECONDS if pool is not None and pool.closing_workers.is_set() else 0.0

    def _stop_end(self) -> float:
        """When the whole stop must be over (a `time.monotonic` value): the deadline plus
        `STOP_SLACK`, plus `CLOSE_SECONDS` once it closes worker processes."""
        return self._begin_stop() + STOP_SLACK + self._close_allowance()

    def _end_loop_thread(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """The last stage of every stop: end the blocking API's loop thread, if this
        system started one, once the rest has stopped (a stop under way elsewhere: by its
        end), `_stop_loop_thread`. Nothing is done for a shutdown running on it (``loop``
        is its loop; called on it, `LoopThread.stop` does nothing), nor while ``with``
        runs the shutdown there: that caller ends it then."""
        with self._lock:
            runner = self._loop_thread  # none starts once the system is closed
            keeper = self._loop_thread_keeper
        if runner is None or runner.loop is loop:
            return
        if keeper is not None and keeper is not threading.current_thread():
            return
        self._wait_for_stop()
        self._stop_loop_thread(runner)

    def _stop_loop_thread(self, runner: LoopThread) -> None:
        """Stop ``runner`` (the blocking API's loop thread) once the rest has stopped:
        by the stop's deadline plus `STOP_SLACK` (`CLOSE_SECONDS` more once the stop
        closes worker processes), as the recovered tasks' loop; what is still running on
        it then is abandoned, with a warning naming it."""
        runner.stop(max(0.0, self._stop_end() - time.monotonic()))

    def _left_by_fork(self) -> None:
        """In a child forked after this system started (`_after_fork_in_child`): its
        threads (actors, loop thread, workers, dashboards) are the parent's, none runs
        here. Every call fails at once with the reason (as a failed system's do: no cost
        per call), and a stop stops nothing (it would wait for threads that do not
        exist here). Its locks are new: a thread of the parent may have held one. The
        journal is the parent's (`actors.journal` lets its file go in the child)."""
        self._lock = threading.Lock()
        if self._root is None or self._stop_over.is_set():
            return  # stopped before the fork: calls say it is shut down, as in the parent
        self._forked = ActorSystemError(
            f"the actor system was started in process {self._pid}; this process "
            f"({os.getpid()}) is a fork of it and has none of its threads: start a new "
            "ActorSystem in the child, after the fork (unified_task_manager: `await "
            "unified_task_manager.shutdown()` in the child first; it stops nothing of "
            "the parent's)"
        )
        self._failure = self._forked
        self._closed = True
        self._root = None
        self._state = None
        self._journal = None
        self._loop_thread = None
        self._loop_thread_keeper = None
        self._dashboards = []
        self._bridges = weakref.WeakSet()
        self._last_bridge = None
        self._thread_calls = set()
        self._stop_over = threading.Event()
        self._stop_over.set()

    # -- dashboards -----------------------------------------------------------------------

    def _forget_dashboard(self, server: _Server) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._dashboards.remove(server)

    def _stop_dashboards(self, deadline: float) -> None:
        with self._lock:
            servers = list(self._dashboards)
        for server in servers:
            try:
                server.stop(max(0.0, min(5.0, deadline - time.monotonic())))
            except Exception as exc:
                logger.bind(system="actorflow").warning("stopping the dashboard: {!r}", exc)

    # -- failure ------------------------------------------------------------------------

    def _escalated(self, error: RestartIntensityExceeded) -> None:
        if isinstance(error, ConsecutiveFailuresExceeded):
            what = (
                f"failed {error.failures} times in a row, each incarnation within "
                f"{error.reset_after}s of its start (max {error.max_failures} in a row)"
            )
        else:
            what = (
                f"exhausted its restarts ({error.count} in {error.within_seconds}s, "
                f"max {error.max_restarts})"
            )
        failure = ActorSystemError(
            f"the actor system failed: child {error.child_id!r} {what}; "
            f"last reason: {safe_repr(error.reason)}"
        )
        failure.__cause__ = error
        self._failure = failure
        logger.bind(system="actorflow").error("{}", failure)
        self._fail_pending(_copy(failure))
        self._close_streams()

    def _remember(self, bridge: LoopBridge) -> None:
        self._bridges.add(bridge)
        self._last_bridge = bridge

    def _fail_pending(self, error: ActorSystemError) -> None:
        """Fail every call still waiting for this system, on whichever loop it waits,
        and those plain threads wait for (`thread_call`)."""
        for bridge in list(self._bridges):
            bridge.post_if_open(bridge.fail_owned, self, error)
        with self._lock:
            waiting = list(self._thread_calls)
        for future in waiting:
            with contextlib.suppress(InvalidStateError):
                future.set_exception(_copy(error))

    @contextlib.contextmanager
    def thread_call(self, future: Future[Any]) -> Iterator[ChildHandle]:
        """The facade's handle for a call whose answer a plain thread waits for on
        ``future`` within the block: if the system fails or stops meanwhile, ``future``
        fails with the reason at once (no bridge tracks it), instead of its waiter
        waiting out its bound. Raises, as `_check`, if calls cannot be made."""
        facade = self._check()
        with self._lock:
            self._thread_calls.add(future)
        try:
            failure = self._failure  # failed as it was added: `_fail_pending` may have missed it
            if failure is not None:
                raise _copy(failure)
            yield facade
        finally:
            with self._lock:
                self._thread_calls.discard(future)

    def _breaker_changed(self, transition: BreakerTransition) -> None:
        state = self._state
        if state is not None:
            message = BreakerChanged(transition)
            for child in ("task_monitor", "task_manager", "legacy_task_manager"):
                with contextlib.suppress(SupervisorError):
                    state.handles[child].tell(message)

    def breaker(self, name: str) -> CircuitBreaker:
        """The breaker tasks share under ``name`` (created with the configured defaults)."""
        cfg = self.config
        return self.circuit_breakers.get_or_create(
            name,
            failure_threshold=cfg.BREAKER_FAILURE_THRESHOLD,
            recovery_timeout=cfg.BREAKER_RECOVERY_TIMEOUT,
            half_open_max_calls=cfg.BREAKER_HALF_OPEN_MAX_CALLS,
        )

    def _share_breaker(self, given: str | CircuitBreaker) -> CircuitBreaker:
        """The breaker of a registration a manager accepted (``circuit_breaker``): the
        shared one of that name (made with the configured defaults on first use), or the
        given `CircuitBreaker` added to the registry (`BreakerConfigError` if another
        breaker has its name, before the registration changed anything). A refused
        registration never gets here, so it leaves no breaker behind."""
        if isinstance(given, str):
            shared = self.circuit_breakers.get(given)  # (no keyword arguments built: half the cost)
            return self.breaker(given) if shared is None else shared
        return self.circuit_breakers.add(given)

    def _supervisor_event(self, event: SupervisorEvent) -> None:
        state = self._state
        if event.kind is SupervisorEventKind.RESTARTED and event.child_id and state is not None:
            with contextlib.suppress(SupervisorError):
                state.handles["task_monitor"].tell(ChildRestarted(event.child_id))

    def _check_failed(self) -> None:
        """Raise the system's failure, if it has failed."""
        failure = self._failure
        if failure is not None:
            raise _copy(failure)

    def _check(self) -> ChildHandle:
        """The facade's handle, or the reason calls cannot be made."""
        self._check_failed()
        if self._closed:
            raise ActorSystemError("the actor system is shut down; create a new ActorSystem")
        facade = self._facade
        if facade is None:
            self.start()
            facade = self._facade
            assert facade is not None
        return facade


_started: weakref.WeakSet[SystemRuntime] = weakref.WeakSet()
"""The systems started in this process (`SystemRuntime.start`), for `_after_fork_in_child`."""


def _after_fork_in_child() -> None:
    """Every system started before a fork is left to the parent (`_left_by_fork`)."""
    for system in list(_started):
        system._left_by_fork()
    _started.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _RootSupervisor(Supervisor):
    # Daemon threads: a script that never calls shutdown() still exits; the atexit hook
    # of the lazy client stops the tree in order first.
    use_daemon_thread = True


def _copy(failure: ActorSystemError) -> ActorSystemError:
    """The system's failure as a fresh error (its message and cause) for callers to
    raise: raising the one stored error added each caller's frames (and their locals)
    to its traceback, for as long as the system lived."""
    error = ActorSystemError(*failure.args)
    error.__cause__ = failure.__cause__
    return error


def _resolve_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _off_loop(loop: asyncio.AbstractEventLoop, work: Callable[[], None]) -> None:
    """Run ``work`` (it blocks: joins, waits) in a thread of its own; ``loop`` (the
    running one) goes on meanwhile."""
    done: asyncio.Future[None] = loop.create_future()
    bridge = bridge_for(loop)

    def run() -> None:
        try:
            work()
        finally:
            bridge.post(_resolve_none, done)

    stopper = threading.Thread(target=run, name="actorflow-shutdown")
    stopper.start()
    await done
    stopper.join(1.0)  # it has posted its last act; this returns at once


S = TypeVar("S", bound="SystemRuntime")


async def _started_off_loop(loop: asyncio.AbstractEventLoop, system: S) -> S:
    """``system.start()`` in a thread of its own; its error raised here. A caller
    cancelled meanwhile gets its cancellation, and the system, owned by nobody then, is
    stopped once its start ends."""
    started: asyncio.Future[None] = loop.create_future()
    bridge = bridge_for(loop)

    def run() -> None:
        try:
            system.start()
        except BaseException as exc:
            bridge.post(_settle, started, exc)
        else:
            bridge.post(_settle, started, None)

    starter = threading.Thread(target=run, name="actorflow-start")
    starter.start()
    try:
        await asyncio.shield(started)
    except asyncio.CancelledError:

        def stop_once_started() -> None:
            starter.join()
            system.stop_sync()

        threading.Thread(target=stop_once_started, name="actorflow-start-abandoned").start()
        raise
    except BaseException:
        starter.join(1.0)  # it has posted its last act: this returns at once
        raise
    starter.join(1.0)
    return system


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _journal(ctx: SystemContext, system: SystemRuntime) -> Journal:
    """Open ``JOURNAL_PATH`` and read its tasks (only with the key: no import without)."""
    from actors.runtime._recovery import Journal

    return Journal(ctx, system._share_breaker)


def _facade_state(use_new: bool, journal: Journal | None) -> FacadeState:
    state = FacadeState(use_new)
    return state if journal is None else journal.facade_state(state)
