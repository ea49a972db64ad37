"""Getting answers from actor threads back onto the caller's event loop.

An event loop never blocks on a pykka future. An actor answers
through a `Reply`, which resolves an asyncio future by posting a callback to the owner
loop with ``loop.call_soon_threadsafe``. A `LoopBridge` batches those posts: a burst of
replies costs one wake-up of the loop, not one each.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar

from actors.core._errors import CallTimeout, TaskFailedError
from actors.core._util import renew_after_fork
from supervisors import safe_repr

__all__ = [
    "NO_REPLY",
    "Call",
    "Cancellable",
    "LoopBridge",
    "Reply",
    "ReplyTo",
    "WithdrawableReply",
    "bridge_for",
]

T = TypeVar("T")


class ReplyTo(Protocol):
    """Where an actor sends the answer to a call. Safe to call from any thread, once."""

    def set_result(self, value: Any, /) -> None: ...

    def set_exception(self, error: BaseException, /) -> None: ...


class _NoReply:
    """The `ReplyTo` of a request whose answer nobody needs."""

    __slots__ = ()

    def set_result(self, value: Any) -> None:
        pass

    def set_exception(self, error: BaseException) -> None:
        pass


NO_REPLY: ReplyTo = _NoReply()
"""The reply of a request whose answer nobody needs (a `Block`, an abandoned wait's
`Cancel`, a monitor's `Flush`)."""


class LoopBridge:
    """Posts callbacks onto one event loop from any thread, one wake-up per burst.

    It also bounds the calls awaited on its loop: `track` records a call's deadline and
    owner, a sweep once a second fails the calls past their deadline, and
    `fail_owned` fails every call of an owner (a system that failed or stopped). That
    costs a dict insert per call instead of an event-loop timer per call, and a sweep
    costs what expired, not what is in flight: the calls of one bound are kept in the
    order they were tracked, which is the order of their deadlines.
    """

    __slots__ = (
        "__weakref__",
        "_bounded",
        "_entry",
        "_pending",
        "_scheduled",
        "_sweeping",
        "calls",
        "closed",
        "loop",
        "outbox",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: deque[Any] = deque()
        """Three entries per post, flat: ``fn, first, second`` for ``fn(first, second)``
        (`post2`: no tuple per answer while it waits for its drain; a burst of 20,000
        answers waits many loop iterations), or ``_apply, fn, args`` (`post`)."""
        self._scheduled = False
        self._sweeping = False
        self.closed = False
        self.calls: dict[asyncio.Future[Any], tuple[float | None, str, object]] = {}
        """Every call awaited on this loop: its bound in seconds (None: unbounded), op,
        owner. Calls alike share one entry (a burst adds no tracked
        tuple per call)."""
        self._bounded: dict[float, dict[asyncio.Future[Any], float]] = {}
        """The bounded calls by their bound, each in deadline order (``loop.time()``
        only grows, and every call of one bound adds the same to it)."""
        self._entry: tuple[float | None, str, object] = _NO_ENTRY
        """The last entry of `calls`, shared by the next call of the same bound, op and
        owner while any is in `calls`."""
        self.outbox: Any = None
        """The messages this loop sends in its current iteration: its
        `actors.runtime._outbox.Outbox` (the client's requests, coroutine attempts'
        outcomes), made on first use."""

    # -- bounded calls (loop thread only) -----------------------------------------------

    def track(
        self,
        future: asyncio.Future[Any],
        timeout: float | None,
        op: str,
        owner: object,
    ) -> None:
        """Bound the call that ``future`` awaits by ``timeout`` seconds, the
        ``CALL_TIMEOUT`` setting (None: only `fail_owned` ends it); `untrack` it once it
        ended."""
        entry = self._entry
        if entry[0] != timeout or entry[1] != op or entry[2] is not owner:
            entry = self._entry = (timeout, op, owner)
        self.calls[future] = entry
        if timeout is None:
            return
        deadline = self.loop.time() + timeout
        bounded = self._bounded.get(timeout)
        if bounded is None:
            bounded = self._bounded[timeout] = {}
        bounded[future] = deadline
        if not self._sweeping:
            self._sweeping = True
            self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def untrack(self, future: asyncio.Future[Any]) -> object:
        """Forget the call of ``future`` (it ended, or its caller stopped waiting);
        returns its owner (None: it was not tracked)."""
        calls = self.calls
        entry = calls.pop(future, None)
        if entry is None:
            return None
        if not calls:  # hold no owner past its last call (a system that stopped)
            self._entry = _NO_ENTRY
        if entry[0] is not None:
            bounded = self._bounded.get(entry[0])
            if bounded is not None:
                bounded.pop(future, None)
        return entry[2]

    def _sweep(self) -> None:
        now = self.loop.time()
        expired: list[tuple[asyncio.Future[Any], float]] = []
        for timeout, bounded in list(self._bounded.items()):
            for future, deadline in bounded.items():
                if deadline > now:
                    break
                expired.append((future, deadline))
            for future, _deadline in expired:
                del bounded[future]
            if not bounded:
                del self._bounded[timeout]
            for future, _deadline in expired:
                entry = self.calls.pop(future, None)
                if entry is not None and not future.done():
                    future.set_exception(
                        CallTimeout(
                            f"no answer to {entry[1]!r} within CALL_TIMEOUT={timeout}s; "
                            "the actor system is overloaded or stuck"
                        )
                    )
            expired.clear()
        if self._bounded and not self.loop.is_closed():
            self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        else:
            self._sweeping = False

    def fail_owned(self, owner: object, error: BaseException) -> None:
        """Fail every call of ``owner`` still waiting (runs on the loop)."""
        for future, (_deadline, _op, who) in list(self.calls.items()):
            if who is owner and not future.done():
                future.set_exception(error)

    def post(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop soon; False if the loop is closed."""
        self._pending.extend((_apply, fn, args))  # one step under the GIL: kept together
        return self._scheduled or self._schedule()

    def post_if_open(self, fn: Callable[..., object], *args: Any) -> bool:
        """`post`, checking first that the loop is not closed (False, nothing posted):
        for what must not be lost unanswered (an attempt's start, the system's stop
        failing its calls). `post` trusts a drain it has scheduled, and a close that
        discarded it leaves the bridge taking posts, each told True, until `bridge_for`
        drops it (`loop_closed`); an answer, the hot path, does not pay for the check."""
        if self.loop.is_closed():
            self.loop_closed()  # (frees what waited for that drain: nothing runs it)
            return False
        self._pending.extend((_apply, fn, args))  # (`post`'s body: no second call)
        return self._scheduled or self._schedule()

    def post2(self, fn: Callable[[Any, Any], object], first: Any, second: Any) -> bool:
        """`post` of ``fn(first, second)``, which waits for its drain as three entries
        of the bridge's deque, not a tuple (an answer to a call: `Call`, `Reply`)."""
        self._pending.extend((fn, first, second))
        return self._scheduled or self._schedule()

    def _schedule(self) -> bool:
        """Schedule a drain for what was just posted; False if the loop is closed."""
        self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is left to answer
            # No drain is coming: the next post tries again (and fails so, `False`),
            # instead of waiting in the deque for ever while its poster hears `True`.
            self.loop_closed()
            return False
        return True

    def loop_closed(self) -> None:
        """Its loop is closed (`bridge_for` drops the bridge from its registry): a drain
        scheduled just before the close never runs (the close discards it), so what
        waits for one is dropped, and every later post says the loop is closed."""
        self._scheduled = False  # first: a post after this line finds the loop closed
        self.closed = True
        self._pending.clear()

    def _drain(self) -> None:
        # Clear the flag first: a post that lands after this line schedules a new drain,
        # and one that landed before it is in the deque we are draining. At most
        # DRAIN_CHUNK callbacks run per loop iteration: a burst of 20,000 answers wakes
        # its waiters over many iterations, so the loop's other callbacks (timers, I/O)
        # run in between instead of after all of them.
        self._scheduled = False
        pending = self._pending
        popleft = pending.popleft
        for _ in range(min(len(pending) // 3, DRAIN_CHUNK)):
            popleft()(popleft(), popleft())  # (the function, then its arguments in order)
        if pending:
            # The rest next iteration (a post that saw the flag clear may have scheduled
            # a drain too: draining an empty deque is a no-op).
            self._scheduled = True
            self.loop.call_soon(self._drain)


def _apply(fn: Callable[..., object], args: tuple[Any, ...]) -> None:
    """A `LoopBridge.post` of ``fn(*args)``, drained."""
    fn(*args)


_NO_ENTRY: tuple[float | None, str, object] = (None, "", None)

DRAIN_CHUNK = 64
"""Callbacks a `LoopBridge` runs per loop iteration, at most.

Below a typical cohort of callers on purpose. Callers paced together (S7: 100 of them)
get their answers and attempt starts posted together; drained in one iteration, what
each leaves alive into the next (an attempt's asyncio task, coroutine and context, a
waiter's wake-up) swings the GC-tracked live set by a good part of the young
generation's threshold (``gc.get_threshold()[0]``; its count restarts from zero at each
collection), so young collections come every few iterations and, counted by them,
generation-1 and full collections that stall the caller's loop. Split over iterations,
the swing per iteration is a fraction of that; a burst (S1) drains at the same CPU per
task. The price: a generation-1 collection comes less often and walks more of the
completed tasks kept since the last one (the engine's `TaskRecord`s, GC-tracked, until
cleanup), so each takes longer. The measured runs (S7 paced at 64 and 256) are in
benchmarks/README.md, under the change that set 64."""

SWEEP_INTERVAL = 1.0
"""Seconds between two sweeps for calls past their deadline."""

_bridges: dict[asyncio.AbstractEventLoop, LoopBridge] = {}
"""The bridge of every loop that has one, until the loop is closed: `bridge_for` drops
the closed ones each time it makes a bridge. (A bridge holds its loop, so weak keys
would free neither.) A loop dropped unclosed stays: asyncio warns of it too."""
_bridges_lock = threading.Lock()
renew_after_fork(globals(), "_bridges_lock", threading.Lock)
_last: tuple[asyncio.AbstractEventLoop | None, LoopBridge | None] = (None, None)
"""The last loop asked for and its bridge: the one closed loop that may stay after
the prune, until another loop is asked for."""


def bridge_for(loop: asyncio.AbstractEventLoop) -> LoopBridge:
    """The bridge of ``loop`` (created on first use; the last one is cached)."""
    global _last
    last_loop, last_bridge = _last
    if last_loop is loop and last_bridge is not None:
        return last_bridge
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _new_bridge(loop)
    _last = (loop, bridge)
    return bridge


def _new_bridge(loop: asyncio.AbstractEventLoop) -> LoopBridge:
    """Make the bridge of ``loop`` (once per loop), dropping those of closed loops.

    Nothing is lost with them: a closed loop runs no callback, so no caller waits on it
    (`asyncio.run` cancels its tasks before it closes it); a post to a closed loop says
    so (`LoopBridge.post` returns False) once its bridge is dropped, even if the close
    discarded a drain it had scheduled (`LoopBridge.loop_closed`).
    """
    with _bridges_lock:  # loops of other threads make theirs meanwhile
        bridge = _bridges.get(loop)
        if bridge is None:
            for closed in [other for other in _bridges if other.is_closed()]:
                _bridges.pop(closed).loop_closed()
            bridge = _bridges[loop] = LoopBridge(loop)
        return bridge


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(_carried(error))


def _carried(error: BaseException | type[BaseException]) -> BaseException | type[BaseException]:
    """``error`` as an asyncio future takes it: a `StopIteration` (which asyncio refuses
    with a TypeError, raised in the loop's callback: the caller waited for ever) becomes
    a `TaskFailedError` naming it, the original as its ``__cause__``."""
    if not (
        isinstance(error, StopIteration)
        or (isinstance(error, type) and issubclass(error, StopIteration))
    ):
        return error
    wrapped = TaskFailedError(
        f"the call raised {safe_repr(error)}, which an asyncio future cannot carry (as a "
        "coroutine, Python turns it into a RuntimeError): raise another exception"
    )
    wrapped.__cause__ = error if isinstance(error, BaseException) else None
    return wrapped


class Reply:
    """Resolves an asyncio future on its loop, from any thread."""

    __slots__ = ("bridge", "future")

    def __init__(self, bridge: LoopBridge, future: asyncio.Future[Any]) -> None:
        self.bridge = bridge
        self.future = future

    def set_result(self, value: Any, /) -> None:
        self.bridge.post2(_resolve, self.future, value)

    def set_exception(self, error: BaseException, /) -> None:
        self.bridge.post2(_fail, self.future, error)

    def resolve(self, value: Any) -> None:
        """`set_result`, called on the bridge's own loop thread: at once, no post."""
        _resolve(self.future, value)

    def done(self) -> bool:
        """Whether the future is settled: answered, or its caller stopped waiting
        (cancelled). A read of its state, safe from any thread (as a `Call`'s ``done``)."""
        return self.future.done()


class Cancellable(Protocol):
    """Work handed to an executor that can be dropped while it waits for a worker."""

    def cancel(self) -> object: ...


class WithdrawableReply(Reply):
    """A `Reply` whose caller may stop waiting (cancelled, or its ``wait_for`` timed
    out) while the work it asked for still waits in an executor's queue.

    The worker side links the work's handle (`link`) once it has one; the caller calls
    `withdraw` when it stops waiting. Whichever comes second cancels the work (the
    caller cancels its future before it withdraws, and `link` stores the handle before
    it looks at the future), so queued work is dropped whatever the order.
    """

    __slots__ = ("work",)

    def __init__(self, bridge: LoopBridge, future: asyncio.Future[Any]) -> None:
        super().__init__(bridge, future)
        self.work: Cancellable | None = None

    def link(self, work: Cancellable) -> None:
        """The work answering this reply (any thread): cancelled now if the caller left."""
        self.work = work
        if self.future.done():
            work.cancel()

    def withdraw(self) -> None:
        """The caller stopped waiting (its loop's thread): cancel the linked work."""
        work = self.work
        if work is not None:
            work.cancel()


class Call(asyncio.Future[T], Coroutine[Any, Any, T]):
    """The answer to a call sent when it was made (like a Ray or Dask future): an
    asyncio future that is also a coroutine, so ``await``, `asyncio.gather`,
    `asyncio.wait_for`, `asyncio.shield` take it as it is (no asyncio task per call)
    and `asyncio.create_task` and `asyncio.run_coroutine_threadsafe` run it.

    Made as ``Call(loop=bridge.loop)`` with ``bridge`` set at once (no Python
    ``__init__``: a burst makes one per call). A call is its own reply (`ReplyTo`: no
    object of its own per call): `set_result` and `set_exception`, called from another
    thread, post the answer to its loop, and on its loop settle it at once; either
    untracks it from ``bridge``, and an answer to a call that is done already (a
    cancelled one, say) is dropped, as a `Reply`'s is. Cancelling it untracks it and
    calls `abandoned` with the call's owner (the system that `LoopBridge.track`
    recorded), where a subclass withdraws the request. A call belongs to the loop it
    was made on (as any asyncio future does).
    """

    __slots__ = ("_steps", "bridge")

    bridge: LoopBridge
    _steps: Generator[Any, None, T] | None
    """`__await__`'s iterator while a task drives this call as a coroutine (unset
    until its first step)."""

    @property
    def future(self) -> Call[T]:
        """The future this reply resolves: the call itself (as a `Reply`'s ``future``)."""
        return self

    def set_result(self, result: T, /) -> None:
        if _running_loop() is not self.bridge.loop:  # an actor's thread (or another loop's)
            # Settled there by `resolve` itself (no subclass changes how a result settles).
            self.bridge.post2(Call.resolve, self, result)
        elif not self.done():
            self.bridge.untrack(self)
            super().set_result(result)

    def set_exception(self, exception: BaseException | type[BaseException], /) -> None:
        if _running_loop() is not self.bridge.loop:
            self.bridge.post2(_settle_call, self, exception)
        elif not self.done():
            self.bridge.untrack(self)
            super().set_exception(_carried(exception))

    def resolve(self, value: T) -> None:
        """`set_result`, called on its own loop's thread: at once, no post."""
        if not self.done():
            self.bridge.untrack(self)
            asyncio.Future.set_result(self, value)

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg):
            return False
        self.abandoned(self.bridge.untrack(self))
        return True

    def abandoned(self, owner: object) -> None:
        """The caller stopped waiting before the answer came (runs on the loop);
        ``owner``: the call's owner, None if it was not tracked."""

    # -- the coroutine protocol: `__await__`'s iterator, made on the first step --------

    def _stepper(self) -> Generator[Any, None, T]:
        steps = getattr(self, "_steps", None)
        if steps is None:
            steps = self._steps = self.__await__()
        return steps

    def send(self, value: Any) -> Any:
        steps = self._stepper()
        try:
            return steps.send(value)
        except BaseException:
            self._steps = None  # ended: no cycle left through the iterator
            raise

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        steps = self._stepper()
        try:
            if val is None and tb is None:
                return steps.throw(typ)
            return steps.throw(typ, val, tb)
        except BaseException:
            self._steps = None
            raise

    def close(self) -> None:
        steps, self._steps = getattr(self, "_steps", None), None
        if steps is not None:
            steps.close()


def _settle_call(call: Call[Any], error: BaseException | type[BaseException]) -> None:
    """A `Call`'s error, posted to its loop (through its subclass's overrides: a
    `SupervisorError` becomes an `ActorsError` there)."""
    call.set_exception(error)


# The running loop or None, without raising (exported in asyncio's __all__).
_running_loop = asyncio._get_running_loop
