"""One call of a task's function inside a worker process, and its outcome on the way back.

The ``process`` and ``dask`` executors run `run_remote` in a worker process. Context
variables do not cross processes, so the task id travels as an argument and is bound
there: the function runs under ``logger.contextualize(task_id=...)`` and
``actors.current_task_id()`` answers the id. The attempt's cancellation token cannot
cross processes: inside a worker it is a fresh token that is never set (an attempt
that times out or is cancelled is abandoned, and its late result discarded).

The outcome comes back as bytes this module pickles itself (`decode` unpickles them in
the caller's process): a result or an exception that cannot be pickled, or unpickled,
becomes a clear error of that one call, not an error inside the executor's machinery
(a `ProcessPoolExecutor` that cannot unpickle a result breaks the whole pool).

The same holds on the way in: a ``process`` call travels as a `Packed` call, whose
function and arguments are pickled as one bytes object (by the executor's feeder thread,
where they were pickled anyway) and unpickled by `run_packed` inside the worker's call.
An argument that pickles here but fails to unpickle in the worker (its ``__reduce__``
or ``__setstate__`` raises there, its module is not importable there) fails that one
call with a clear error; unpickled by the executor's own machinery, it kills the worker
process, which breaks the pool and fails every call on it with "worker process died".
"""

from __future__ import annotations

import pickle
import reprlib
import traceback
from collections.abc import Callable
from typing import Any

from loguru import logger

from actors.core import TASK_CONTEXT, TaskScope

__all__ = ["Outcome", "Packed", "decode", "run_packed", "run_remote"]

RETURNED = 0
RAISED = 1
UNPICKLABLE_RESULT = 2
UNPICKLABLE_ERROR = 3
UNPICKLABLE_CALL = 4

Outcome = tuple[int, bytes, str]
"""``(kind, pickled result or exception, text)``; the text is the worker's traceback
of a raised exception, or says what could not be pickled."""

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 120


def run_remote(
    task_id: str | None,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Outcome:
    """Runs in the worker: call ``func(*args, **kwargs)``; never raises.

    ``task_id`` is None for ``thread_pool.submit`` (no task: nothing is bound).
    """
    if task_id is None:
        return _call(func, args, kwargs)
    reset = TASK_CONTEXT.set(TaskScope(task_id))
    try:
        with logger.contextualize(task_id=task_id):
            return _call(func, args, kwargs)
    finally:
        TASK_CONTEXT.reset(reset)


class Packed:
    """A call's ``(func, args, kwargs)``, pickled as one bytes object.

    Built with the call in the caller's process; pickled (``__reduce__``) it becomes its
    bytes, which `run_packed` unpickles in the worker, where a failure is the call's.
    """

    __slots__ = ("call", "data")

    def __init__(
        self, call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None
    ) -> None:
        self.call = call
        self.data = b""

    def __reduce__(self) -> tuple[Callable[[bytes], Packed], tuple[bytes]]:
        return _received, (pickle.dumps(self.call, pickle.HIGHEST_PROTOCOL),)


def _received(data: bytes) -> Packed:
    packed = Packed(None)
    packed.data = data
    return packed


def run_packed(task_id: str | None, packed: Packed) -> Outcome:
    """Runs in the worker: unpickle ``packed``'s call, then `run_remote` it."""
    try:
        func, args, kwargs = pickle.loads(packed.data)
    except Exception as error:
        return UNPICKLABLE_CALL, b"", f"{type(error).__name__}: {error}"
    return run_remote(task_id, func, args, kwargs)


def _call(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
    try:
        value = func(*args, **kwargs)
    except BaseException as exc:
        text = "".join(traceback.format_exception(exc))
        try:
            data = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
            pickle.loads(data)  # an exception whose __init__ pickle cannot call fails here
        except Exception as error:
            detail = f"{_short.repr(exc)} ({type(error).__name__}: {error})\n{text}"
            return UNPICKLABLE_ERROR, b"", detail
        return RAISED, data, text
    try:
        return RETURNED, pickle.dumps(value, pickle.HIGHEST_PROTOCOL), ""
    except Exception as error:
        return UNPICKLABLE_RESULT, b"", f"{_short.repr(value)} ({type(error).__name__}: {error})"


def decode(outcome: Outcome, what: str, executor: str) -> tuple[Any, BaseException | None]:
    """In the caller's process: ``(value, None)``, or ``(None, the error)``.

    ``what`` names the call in messages ("task 'x'"). A raised exception comes back
    with the worker's traceback as a note.
    """
    kind, data, text = outcome
    if kind == RETURNED:
        try:
            return pickle.loads(data), None
        except Exception as error:
            return None, pickle.UnpicklingError(
                f"the result of {what} cannot be unpickled in this process after the "
                f"{executor!r} executor ran it ({type(error).__name__}: {error})"
            )
    if kind == RAISED:
        try:
            exc: BaseException = pickle.loads(data)
        except Exception as error:
            return None, pickle.UnpicklingError(
                f"{what} raised an exception that cannot be unpickled in this process after "
                f"the {executor!r} executor ran it ({type(error).__name__}: {error})\n{text}"
            )
        exc.add_note(f"raised in a worker process of the {executor!r} executor:\n{text}")
        return None, exc
    if kind == UNPICKLABLE_RESULT:
        return None, pickle.PicklingError(
            f"the result of {what} cannot be pickled back from the {executor!r} executor: "
            f"{text}; return plain data, or run it with executor='thread'"
        )
    if kind == UNPICKLABLE_CALL:
        return None, pickle.UnpicklingError(
            f"the function or arguments of {what} cannot be unpickled in a worker process "
            f"of the {executor!r} executor ({text}); nothing ran"
        )
    return None, pickle.PicklingError(
        f"{what} raised an exception that cannot be pickled back from the {executor!r} "
        f"executor: {text}"
    )
