"""The executors behind the thread-pool actor: worker processes and Dask.

- ``process``: a `ProcessPoolExecutor` whose workers are spawned (never forked: the
  actor system's process is full of threads), created on first use.
- ``dask``: a `distributed.Client` connected to ``DASK_SCHEDULER_ADDRESS``, or to a
  `distributed.LocalCluster` of worker processes it starts itself, used through its
  ``concurrent.futures`` interface (``client.get_executor()``). The client is started
  by a thread of its own, so the pool actor's mailbox never waits for a cluster.

A call on either runs `actors.runtime._remote.run_remote` in a worker; its outcome comes back
through the future's done callback (a thread of the executor), which hands it to the
call's ``finish(value, error)``. The ``thread`` executor is the pool actor's own
`WorkerThreads` and runs in-process (`actors.runtime._execution.run_function`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.util
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import psutil
from loguru import logger

from actors.core import ActorSystemError, InvalidTaskError, TaskCancelledError, safe_repr
from actors.runtime._remote import Outcome, Packed, decode, run_packed, run_remote

__all__ = [
    "DASK_MISSING",
    "DaskBackend",
    "RemoteCall",
    "WorkerThreads",
    "close_process_pool",
    "dask_installed",
    "executor_error",
    "local_cluster",
    "new_process_pool",
    "require_backend",
]

DASK_MISSING = (
    "the 'dask' executor needs Dask's distributed scheduler, which is not installed; "
    "pip install 'actorflow[dask]'"
)

CLOSE_SECONDS = 5.0
"""The least time closing a Dask client and its LocalCluster gets; a system's stop that
closes worker processes (``process``, ``dask``) waits this long past its deadline plus
`STOP_SLACK` for them (`SystemRuntime._close_allowance`)."""

Finish = Callable[[Any, BaseException | None], None]
"""Receives a call's outcome: ``(value, None)`` or ``(None, error)``."""


def dask_installed() -> bool:
    return importlib.util.find_spec("distributed") is not None


def require_backend(backend: str) -> None:
    """`InvalidTaskError` if ``backend`` cannot run here (Dask not installed)."""
    if backend == "dask" and not dask_installed():
        raise InvalidTaskError(DASK_MISSING)


@dataclass(slots=True, eq=False)
class RemoteCall:
    """One call of a function in a worker process: what to run and where its outcome goes."""

    executor: str
    task_id: str | None
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    finish: Finish
    what: str
    on_broken: Callable[[], None] | None = field(default=None, init=False)
    future: Future[Outcome] | None = field(default=None, init=False)
    """The executor's future, once `submit` handed the call over."""
    withdrawn: bool = field(default=False, init=False)
    """Set by `cancel`: nobody waits for the outcome any more."""
    canceller: Callable[[Future[Outcome]], None] | None = field(default=None, init=False)
    """Cancels the executor's future elsewhere (`DaskBackend`); None: at once."""

    def cancel(self) -> None:
        """Nobody waits for the outcome any more (the attempt was cancelled or timed
        out, a ``submit`` caller stopped waiting; any thread): a call still queued in
        its executor never runs, one not handed over yet is not; a running one cannot
        be stopped (its result is dropped)."""
        self.withdrawn = True
        future = self.future  # (read after the flag: see `submit`)
        if future is not None:
            self._cancel(future)

    def _cancel(self, future: Future[Outcome]) -> None:
        canceller = self.canceller
        if canceller is None:
            future.cancel()
        else:
            canceller(future)

    def submit(self, executor: Executor) -> Future[Outcome]:
        """Hand the call to ``executor``; its outcome goes to ``finish`` when done."""
        future: Future[Outcome]
        if self.withdrawn:  # nothing to run
            future = Future()
            future.cancel()
        elif self.executor == "process":
            # Unpickled inside the call: one that fails there fails alone (`Packed`).
            packed = Packed((self.func, self.args, self.kwargs))
            future = executor.submit(run_packed, self.task_id, packed)
        else:
            future = executor.submit(run_remote, self.task_id, self.func, self.args, self.kwargs)
        self.future = future
        if self.withdrawn:  # `cancel` came meanwhile, before the future was stored
            self._cancel(future)
        future.add_done_callback(self.done)
        return future

    def done(self, future: Future[Outcome]) -> None:
        """The future's done callback (in a thread of the executor)."""
        if future.cancelled():
            if self.withdrawn:  # (nobody hears it: the caller or the attempt moved on)
                self.fail(TaskCancelledError(f"{self.what} was withdrawn: nobody waits for it"))
                return
            if self.executor == "dask":
                # Not withdrawn: Dask's client cancels its futures when it loses its
                # scheduler (and ends none submitted while it closes: `lost`).
                self.fail(
                    ActorSystemError(
                        f"{self.what} was lost: the Dask client cancelled it (it lost its "
                        "scheduler); the next call connects anew"
                    )
                )
                return
            self.fail(TaskCancelledError(f"{self.what} was cancelled before a worker ran it"))
            return
        error = future.exception()
        if error is None:
            value, error = decode(future.result(), self.what, self.executor)
            self._finish(value, error)
            return
        if isinstance(error, BrokenProcessPool):
            error = ActorSystemError(
                f"worker process died while running {self.what} ({error}); "
                "the process pool is replaced"
            )
            on_broken = self.on_broken
            if on_broken is not None:
                on_broken()
        else:
            error = executor_error(self.what, self.executor, error)
        self.fail(error)

    def fail(self, error: BaseException) -> None:
        self._finish(None, error)

    def _finish(self, value: Any, error: BaseException | None) -> None:
        try:
            self.finish(value, error)
        except Exception as exc:
            logger.bind(task_id=self.task_id).debug("outcome not delivered: {!r}", exc)


def executor_error(what: str, executor: str, error: BaseException) -> ActorSystemError:
    """The error of a call that its executor failed, not its function (which
    `run_remote` reports itself: it never raises): Dask's `KilledWorker` names only
    Dask's key for the call, so this names the call (``what``: "task 'x'",
    "thread_pool.submit('f')"); the original is the ``__cause__``."""
    kind = type(error).__name__
    try:
        text = f"{kind}: {error}"
    except Exception:  # a __str__ that raises
        text = safe_repr(error)
    hint = ""
    if kind == "KilledWorker":  # distributed.scheduler.KilledWorker (Dask is optional)
        hint = (
            "; every Dask worker that ran it died, and the scheduler gave up "
            "(distributed.scheduler.allowed-failures): find what kills the worker (its "
            "memory limit, a crash in native code, os._exit) in the worker logs"
        )
    wrapped = ActorSystemError(
        f"{what} failed in the {executor!r} executor, not in its function ({text}){hint}"
    )
    wrapped.__cause__ = error
    return wrapped


# -- thread -------------------------------------------------------------------------------

_Work = tuple[Callable[..., object], tuple[Any, ...], Callable[[], object] | None]


class WorkerThreads:
    """The ``thread`` executor: up to ``max_workers`` daemon threads run calls in order.

    Why not `concurrent.futures.ThreadPoolExecutor`: its workers are non-daemon threads
    that ``concurrent.futures`` records in a module-level registry and joins, with no
    bound, from its interpreter-exit hook. A worker still inside a function that never
    returns (an attempt that timed out is abandoned, not killed) then keeps the process
    from exiting for ever, and the hook runs before actorflow's own, so the cancellation
    tokens are not even set yet. Nothing public turns that off. These workers are daemon
    threads in no registry: stopping the pool (`shutdown`) tells each running call to stop
    (its ``on_abandon``, which sets the attempt's cancellation token) and the pool actor
    waits for them until the system's stop deadline (``SHUTDOWN_TIMEOUT`` from the
    stop's start); at exit nobody waits for them further.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False
        self._abandon: dict[int, Callable[[], object]] = {}
        """thread id -> how to stop the call it runs (for calls that said)."""
        self.threads: list[threading.Thread] = []

    def qsize(self) -> int:
        """Calls waiting for a worker."""
        return self._queue.qsize()

    def submit(
        self,
        fn: Callable[..., object],
        *args: Any,
        on_abandon: Callable[[], object] | None = None,
    ) -> None:
        """Run ``fn(*args)`` on a worker (exceptions are ``fn``'s to handle).

        ``on_abandon`` is called if the pool shuts down while the call runs or waits."""
        if self._closed:
            raise RuntimeError("the thread workers are shut down")
        self._queue.put((fn, args, on_abandon))
        if self._idle.acquire(blocking=False):
            return  # a worker is idle and takes it
        with self._lock:
            if not self._closed and len(self.threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self.threads)}", daemon=True
                )
                thread.start()
                self.threads.append(thread)

    def _work(self) -> None:
        get, abandon = self._queue.get, self._abandon
        ident = threading.get_ident()
        while True:
            work = get()
            if work is None:
                return
            fn, args, on_abandon = work
            if on_abandon is not None:
                abandon[ident] = on_abandon
            try:
                fn(*args)
            except BaseException as exc:  # fn reports its own outcome; never lose a worker
                logger.opt(exception=exc).error("a call on the thread workers raised")
            finally:
                if on_abandon is not None:
                    abandon.pop(ident, None)
            del work, fn, args, on_abandon
            self._idle.release()

    def shutdown(self) -> list[_Work]:
        """Take no more calls, drop queued ones, and ask running ones to stop.

        Returns at once, with the calls dropped (never run: their callers are to be
        told); each worker ends after its current call (`threads`)."""
        with self._lock:
            self._closed = True
            threads = len(self.threads)
        dropped: list[_Work] = []
        while True:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            if work is None:
                continue
            dropped.append(work)
            if work[2] is not None:
                _quietly(work[2])
        for on_abandon in list(self._abandon.values()):
            _quietly(on_abandon)
        for _ in range(threads):
            self._queue.put(None)
        return dropped


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception as exc:
        logger.debug("stopping a call on the thread workers: {!r}", exc)


# -- process ------------------------------------------------------------------------------


def new_process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes are spawned on demand, up to ``workers``."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def close_process_pool(pool: ProcessPoolExecutor, timeout: float) -> None:
    """Shut ``pool`` down: queued calls are cancelled, running ones get ``timeout``
    seconds to end; then its workers are killed. Returns when every worker is gone."""
    processes = list((pool._processes or {}).values())
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + timeout
    if manager is not None:
        manager.join(timeout)
    if any(process.is_alive() for process in processes):
        # Still busy with an abandoned attempt (timed out or cancelled): nobody waits
        # for its result any more.
        for process in processes:
            if process.is_alive():
                process.kill()
    for process in processes:
        process.join(max(1.0, deadline - time.monotonic()))
    if manager is not None:
        manager.join(max(1.0, deadline - time.monotonic()))


# -- dask ---------------------------------------------------------------------------------


class DaskBackend:
    """A Dask client, started by a thread of its own; calls made meanwhile wait here.

    If the client cannot start (no scheduler at the address), the calls waiting fail
    with `ActorSystemError` and ``failed`` is set; if the client lost its scheduler for
    good (it closes itself after ``connect_timeout`` of trying to reconnect), ``lost``
    is set. Either way the pool starts a new backend for the next call (and closes this
    one when it stops).
    """

    def __init__(self, address: str | None, workers: int, connect_timeout: float) -> None:
        self.address = address
        self._workers = workers
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._waiting: list[RemoteCall] = []
        self._executor: Executor | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._closed = False
        self._running: set[Future[Outcome]] = set()
        self._cancels = WorkerThreads(1, "actorflow-dask-cancel")
        """Cancels calls (`RemoteCall.cancel`): cancelling a Dask future waits for the
        client's event loop (~0.1-2 ms), which the thread asking (the task manager, a
        caller's event loop) must not."""
        self.failed = False
        self._starter = threading.Thread(target=self._start, name="actorflow-dask-start")
        self._starter.start()

    @property
    def started(self) -> bool:
        return self._executor is not None

    @property
    def client(self) -> Any:
        """The `distributed.Client`, once started (else None)."""
        return self._client

    def submit(self, call: RemoteCall) -> None:
        with self._lock:
            executor = self._executor
            if executor is None:
                if self._closed:
                    call.fail(ActorSystemError(f"{call.what}: the 'dask' executor is closed"))
                else:
                    self._waiting.append(call)
                return
        self._submit(call, executor)

    @property
    def lost(self) -> bool:
        """The client closed itself (or is closing): it lost its scheduler for good."""
        client = self._client
        return client is not None and client.status in ("closing", "closed")

    def _submit(self, call: RemoteCall, executor: Executor) -> None:
        call.canceller = self._cancel
        future = call.submit(executor)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._done)
        if self.lost:
            # Submitted while the client closes: Dask never ends such a future.
            future.cancel()

    def _done(self, future: Future[Outcome]) -> None:
        with self._lock:
            self._running.discard(future)

    def _cancel(self, future: Future[Outcome]) -> None:
        """Cancel ``future`` on the cancelling thread (any thread)."""
        with contextlib.suppress(RuntimeError):  # closed: the client's close ended it
            self._cancels.submit(_cancel_quietly, future)

    def _start(self) -> None:
        client = cluster = error = None
        try:
            client, cluster = self._connect()
        except Exception as exc:
            where = f"the Dask scheduler at {self.address!r}" if self.address else "a LocalCluster"
            error = ActorSystemError(f"the 'dask' executor cannot start {where}: {exc!r}")
            logger.bind(executor="dask").warning("{}", error)
        with self._lock:
            closed = self._closed
            if not closed and client is not None:
                self._client, self._cluster = client, cluster
                self._executor = client.get_executor(pure=False)
            self.failed = error is not None
            waiting, self._waiting = self._waiting, []
        if closed and client is not None:  # shut down while we were starting
            _close_dask(client, cluster, self._connect_timeout)
            client = None
        for call in waiting:
            executor = self._executor
            if executor is None:
                call.fail(error or ActorSystemError(f"{call.what}: the actor system shut down"))
                continue
            try:
                self._submit(call, executor)
            except Exception as exc:
                call.fail(ActorSystemError(f"{call.what}: the 'dask' executor failed: {exc!r}"))

    def _connect(self) -> tuple[Any, Any]:
        distributed: Any = importlib.import_module("distributed")  # untyped

        class Client(distributed.Client):  # type: ignore[misc]
            def start(self, **kwargs: Any) -> None:
                # A client that cannot connect marks itself closed but leaves its
                # event-loop thread ("IO loop") running for good (distributed 2026.8):
                # stop it.
                try:
                    super().start(**kwargs)
                except BaseException:
                    runner = getattr(self, "_loop_runner", None)
                    if runner is not None:
                        with contextlib.suppress(Exception):
                            runner.stop()
                    raise

        if self.address is not None:
            client = Client(self.address, set_as_default=False, timeout=self._connect_timeout)
            return client, None
        cluster = local_cluster(self._workers)
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        return client, cluster

    def close(self, timeout: float) -> None:
        """Close the client and any cluster it started.

        Calls still running get until ``timeout`` to end (nobody waits for their result
        any more); then the worker processes of our own LocalCluster are killed, as a
        busy worker would not let the cluster close. Closing itself then gets at least
        `CLOSE_SECONDS` (a cluster closed half-way keeps its event-loop thread).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, []
        for call in waiting:
            call.fail(ActorSystemError(f"{call.what}: the actor system shut down"))
        self._starter.join(timeout)
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = self._executor = None
            running = list(self._running)
        try:
            if client is None:
                return
            if running:
                remaining = max(0.0, deadline - time.monotonic())
                _, busy = concurrent.futures.wait(running, remaining)
                if busy and cluster is not None:
                    _kill_workers(cluster)
            _close_dask(client, cluster, max(CLOSE_SECONDS, deadline - time.monotonic()))
        finally:
            # A cancel still queued is dropped: the client's close ended its future.
            self._cancels.shutdown()
            for thread in self._cancels.threads:
                thread.join(max(1.0, deadline - time.monotonic()))


def _cancel_quietly(future: Future[Outcome]) -> None:
    try:
        future.cancel()
    except Exception as exc:  # (concurrent.futures logs a failing done callback itself)
        logger.bind(executor="dask").debug("cancelling a Dask call: {!r}", exc)


def local_cluster(workers: int) -> Any:
    """A new `distributed.LocalCluster` of ``workers`` worker processes on this machine,
    one thread each, listening on 127.0.0.1 only, its logs silenced below ERROR."""
    distributed: Any = importlib.import_module("distributed")  # untyped
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        # The scheduler always serves HTTP; ":0" picks a free port (8787 may be
        # taken), and the dashboard stays off.
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
        silence_logs=logging.ERROR,
    )


def _kill_workers(cluster: Any) -> None:
    """Kill the worker processes of a LocalCluster; their nannies do not restart them."""
    for nanny in list(cluster.workers.values()):
        nanny.auto_restart = False
        process = getattr(nanny, "process", None)
        pid = getattr(process, "pid", None)
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def _close_dask(client: Any, cluster: Any, timeout: float) -> None:
    try:
        client.close(timeout=timeout)
    except Exception as exc:
        logger.bind(executor="dask").warning("closing the Dask client: {!r}", exc)
    # A client that closed itself (it lost its scheduler) returns from close() at once,
    # leaving its event-loop thread ("IO loop") running for good: stop it.
    runner = getattr(client, "_loop_runner", None)
    if runner is not None:
        with contextlib.suppress(Exception):
            runner.stop()
    if cluster is not None:
        try:
            cluster.close(timeout=timeout)
        except Exception as exc:
            logger.bind(executor="dask").warning("closing the LocalCluster: {!r}", exc)


def default_dask_workers(max_workers: int) -> int:
    """Worker processes of a LocalCluster: one per core, at most ``max_workers``."""
    return max(1, min(max_workers, os.cpu_count() or 1))
