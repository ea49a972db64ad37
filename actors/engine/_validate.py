"""Checking the arguments of a task registration before anything changes.

Every check raises `InvalidTaskError` whose message names the argument, shows the bad
value and says what is expected. The result is a frozen `TaskSpec` holding the
normalised values (tuples, a fresh dict, a read-only metadata view, a `TaskPriority`).
"""

from __future__ import annotations

import functools
import inspect
import pickle
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from tenacity.wait import wait_base

from actors.core import BACKENDS, InvalidTaskError, TaskPriority, finite_float, safe_repr
from actors.engine._breaker import CircuitBreaker
from actors.engine._results import SCANNED, find_results

__all__ = [
    "NO_METADATA",
    "ON_A_LOOP",
    "TaskSpec",
    "async_kind",
    "check_picklable",
    "validate_executor",
    "validate_plain",
    "validate_registration",
    "validate_task_id",
    "validate_timeout",
]

NO_METADATA: Mapping[str, Any] = types.MappingProxyType({})
ON_DEPENDENCY_FAILURE = ("cancel", "run")
"""The values ``on_dependency_failure`` accepts."""
_PRIORITY_VALUES = ", ".join(str(int(member)) for member in TaskPriority)


class TaskSpec(NamedTuple):
    """One validated registration: what `validate_registration` returns."""

    task_id: str | None
    """The id the caller asked for, or None to have one generated."""
    name: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    """A fresh dict: the caller's mapping is not shared."""
    task_type: str
    description: str
    metadata: Mapping[str, Any]
    """A read-only view (`types.MappingProxyType`) of a copy of the caller's mapping."""
    priority: TaskPriority
    dependencies: tuple[str, ...]
    """Task ids, duplicates removed, in the order given."""
    max_retries: int
    retry_delay: float
    retry_wait: wait_base | None
    """A tenacity wait strategy replacing the fixed ``retry_delay``, or None."""
    timeout: float | None
    is_coroutine: bool
    circuit_breaker: Any = None
    """None, a breaker name (str), or the `CircuitBreaker` the task's attempts go through."""
    """True when calling ``func`` returns a coroutine (async def, also behind a partial)."""
    executor: str | None = None
    """One of `BACKENDS`, or None for the configured ``THREAD_POOL_BACKEND``."""
    trace: Any = None
    """The OpenTelemetry context current at ``register_task`` (None without OpenTelemetry):
    the parent of each attempt's span."""
    results: tuple[str, ...] = ()
    """The task ids of the `result_of` placeholders in ``args`` and ``kwargs`` (each is
    also in ``dependencies``); empty: nothing to substitute when the task starts."""
    on_dependency_failure: str = "cancel"
    """``"cancel"``: a failed or cancelled dependency cancels the task; ``"run"``: the task
    runs once every dependency ended, with the exception in place of its result."""


_new_spec = tuple.__new__
"""Makes a `TaskSpec` from its fields in order, without the keyword handling of its
``__new__`` (a registration's hot path)."""


def _non_empty_str(value: object, argument: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidTaskError(f"{argument} must be a non-empty str, got {safe_repr(value)}")
    return value


def validate_task_id(value: object, argument: str = "task_id") -> str:
    """``value`` if it is a non-empty str, else `InvalidTaskError` naming ``argument``."""
    return _non_empty_str(value, argument)


def validate_timeout(value: object) -> float | None:
    """None, or ``value`` (a ``timeout`` argument) as a float if it is a finite number
    > 0 (seconds)."""
    if value is None:
        return None
    number = finite_float(value)
    if number is None or number <= 0:
        raise InvalidTaskError(
            f"timeout must be a finite number of seconds > 0 or None, got {safe_repr(value)}"
        )
    return number


_BACKEND_VALUES = ", ".join(repr(backend) for backend in BACKENDS)


def validate_executor(value: object) -> str | None:
    """None, or ``value`` if it is one of `BACKENDS`."""
    if value is None or (isinstance(value, str) and value in BACKENDS):
        return value
    raise InvalidTaskError(
        f"executor must be one of {_BACKEND_VALUES} or None (the configured "
        f"THREAD_POOL_BACKEND), got {safe_repr(value)}"
    )


def check_picklable(
    executor: str, func: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    """`InvalidTaskError` naming the first of ``func``, ``args`` and ``kwargs`` that
    `pickle` cannot serialise: the ``process`` and ``dask`` executors send them to
    another process. A generator function is refused too: the generator it returns
    cannot come back (it failed only after running, as an unpicklable result)."""
    flags = _function_flags(func)
    if (
        bool(flags & _CO_GENERATOR)
        if flags is not None
        else inspect.isgeneratorfunction(_what_a_call_runs(func))
    ):
        raise InvalidTaskError(
            f"func {safe_repr(func)} is a generator function: the generator it returns "
            f"cannot be pickled back from the {safe_repr(executor)} executor; have a plain "
            "function return list(...) of it"
        )
    if _pickle_error((func, args, kwargs)) is None:
        return
    where = f"cannot be pickled for the {safe_repr(executor)} executor"
    error = _pickle_error(func)
    if error is not None:
        raise InvalidTaskError(
            f"func {safe_repr(func)} {where}: {error}; define it at module level "
            "(no lambda, closure "
            "or local function), or use executor='thread'"
        ) from error
    items = [(f"args[{i}]", arg) for i, arg in enumerate(args)]
    items += [(f"kwargs[{safe_repr(key)}]", value) for key, value in kwargs.items()]
    for name, value in items:
        error = _pickle_error(value)
        if error is not None:
            raise InvalidTaskError(
                f"{name} {safe_repr(value)} {where}: {error}; "
                "pass plain data (or use executor='thread')"
            ) from error
    raise InvalidTaskError(f"the arguments of {safe_repr(func)} {where}; use executor='thread'")


def _pickle_error(value: object) -> Exception | None:
    try:
        pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return exc
    return None


def _what_a_call_runs(func: object) -> object:
    """The function a call of ``func`` runs: through `functools.partial`, and the type's
    ``__call__`` (not the object's) for a callable object."""
    while isinstance(func, functools.partial):
        func = func.func
    if isinstance(func, type) or inspect.isroutine(func) or not callable(func):
        return func
    return type(func).__call__


_CO_COROUTINE = inspect.CO_COROUTINE
_CO_ASYNC_GENERATOR = inspect.CO_ASYNC_GENERATOR
_CO_GENERATOR = inspect.CO_GENERATOR
_FUNCTION = types.FunctionType


def _function_flags(func: object) -> int | None:
    """The code flags of a plain Python function (None for any other callable)."""
    if type(func) is _FUNCTION:
        return func.__code__.co_flags
    return None


_MARKS = hasattr(inspect, "markcoroutinefunction")
"""Python 3.12+: a plain function can be marked as a coroutine function
(`inspect.markcoroutinefunction`), which only `inspect.iscoroutinefunction` sees."""


def is_coroutine_callable(func: object) -> bool:
    """True when calling ``func`` gives a coroutine: an async function or method, one
    wrapped in `functools.partial`, or an object whose ``__call__`` is async."""
    flags = _function_flags(func)
    if flags is not None:
        if flags & _CO_COROUTINE:
            return True  # an ``async def`` function: the common case, read from its code
        if not _MARKS:
            return False  # a plain function, which no mark can make async: its code says
    # (`inspect.iscoroutinefunction` and `_what_a_call_runs` both see through partials)
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(_what_a_call_runs(func))


ON_A_LOOP = "which runs on an event loop: await it there, or use task_manager.submit"
"""The end of ``thread_pool.submit``'s refusal of a coroutine function."""


def async_kind(func: object) -> str | None:
    """ "a coroutine function" or "an async generator function" when calling ``func``
    gives one's object (also behind a `functools.partial`, a bound method, an object's
    async ``__call__``), else None: a plain function, as the thread pool runs."""
    flags = _function_flags(func)
    if flags is not None and not _MARKS:  # the common case: its code says
        if flags & _CO_COROUTINE:
            return "a coroutine function"
        return "an async generator function" if flags & _CO_ASYNC_GENERATOR else None
    if is_coroutine_callable(func):
        return "a coroutine function"
    if inspect.isasyncgenfunction(func) or inspect.isasyncgenfunction(_what_a_call_runs(func)):
        return "an async generator function"
    return None


def _priority(value: object) -> TaskPriority:
    if isinstance(value, TaskPriority):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return TaskPriority(value)
        except ValueError:
            pass
    raise InvalidTaskError(
        f"priority must be a TaskPriority or one of its values {_PRIORITY_VALUES}, "
        f"got {safe_repr(value)}"
    )


def _dependencies(value: object) -> tuple[str, ...]:
    if value == () and type(value) is tuple:
        return ()
    if isinstance(value, str):
        raise InvalidTaskError(
            f"dependencies must be an iterable of task ids, not a str, got {safe_repr(value)}; "
            f"for one dependency pass a tuple: dependencies=({safe_repr(value)},)"
        )
    if not isinstance(value, Iterable):
        raise InvalidTaskError(
            f"dependencies must be an iterable of task ids, got {safe_repr(value)}"
        )
    ids: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str) or not item:
            raise InvalidTaskError(
                f"each dependency must be a non-empty str task id, got {safe_repr(item)}"
            )
        ids[item] = None
    return tuple(ids)


def validate_registration(
    name: object,
    func: object,
    args: object = (),
    kwargs: object = None,
    task_type: object = "default",
    description: object = "",
    metadata: object = None,
    priority: object = TaskPriority.NORMAL,
    dependencies: object = (),
    max_retries: object = 0,
    retry_delay: object = 0.0,
    retry_wait: object = None,
    timeout: object = None,
    task_id: object = None,
    circuit_breaker: object = None,
    executor: object = None,
    on_dependency_failure: object = "cancel",
) -> TaskSpec:
    """Check every argument of ``register_task`` and return them as a `TaskSpec`
    (its parameters are `register_task`'s, in its order, up to ``durable``).

    The arguments are checked in signature order; the first bad one raises
    `InvalidTaskError`. Whether the dependencies exist and whether ``task_id`` is free
    are for the task manager to check: this function knows no other task. Whether
    ``func`` and its arguments pickle (``process``/``dask``) is `check_picklable`'s
    job, once the configured executor is known.
    """
    checked_name = _non_empty_str(name, "name")
    if not callable(func):
        raise InvalidTaskError(
            f"func must be callable, got {safe_repr(func)}; pass the function itself, "
            f"not the result of calling it"
        )
    flags = _function_flags(func)
    if flags is not None:  # the common case: its code says (what inspect reads)
        async_generator = bool(flags & _CO_ASYNC_GENERATOR)
    else:
        async_generator = inspect.isasyncgenfunction(func) or inspect.isasyncgenfunction(
            _what_a_call_runs(func)
        )
    if async_generator:
        raise InvalidTaskError(
            f"func {safe_repr(func)} is an async generator function: calling it gives an async "
            "generator, not a result; register an async def that iterates it (async for) "
            "and returns what you need"
        )
    if type(args) is not tuple and not isinstance(args, tuple | list):
        raise InvalidTaskError(
            f"args must be a tuple or a list, got {safe_repr(args)}; "
            f"for one positional argument pass args=(value,)"
        )
    checked_kwargs: dict[str, Any] = {}
    if kwargs is not None:
        if type(kwargs) is not dict and not isinstance(kwargs, Mapping):
            raise InvalidTaskError(f"kwargs must be a mapping or None, got {safe_repr(kwargs)}")
        for key, value in kwargs.items():
            if not isinstance(key, str):
                raise InvalidTaskError(
                    f"kwargs keys must be str (parameter names), got {safe_repr(key)} "
                    f"in {safe_repr(kwargs)}"
                )
            checked_kwargs[key] = value
    checked_args = tuple(args)
    if (  # the common case: options that need no check beyond their type, no placeholder
        type(task_type) is str
        and task_type
        and type(description) is str
        and metadata is None
        and type(priority) is TaskPriority
        and type(dependencies) is tuple
        and not dependencies
        and type(max_retries) is int
        and max_retries >= 0
        and type(retry_delay) is float
        and retry_delay == 0.0
        and retry_wait is None
        and timeout is None
        and task_id is None
        and circuit_breaker is None
        and executor is None
        and type(on_dependency_failure) is str
        and on_dependency_failure == "cancel"
        and not find_results(checked_args, checked_kwargs)
    ):
        checked_type, checked_metadata, checked_priority = task_type, NO_METADATA, priority
        results: tuple[str, ...] = ()
        checked_dependencies = results
        checked_delay, checked_timeout, checked_id, checked_executor = retry_delay, None, None, None
        # An ``async def`` function says so in its flags, read above (no second read).
        is_coroutine = (
            True if flags is not None and flags & _CO_COROUTINE else is_coroutine_callable(func)
        )
    else:
        checked_type = _non_empty_str(task_type, "task_type")
        if not isinstance(description, str):
            raise InvalidTaskError(f"description must be a str, got {safe_repr(description)}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidTaskError(f"metadata must be a mapping or None, got {safe_repr(metadata)}")
        checked_metadata = NO_METADATA if not metadata else types.MappingProxyType(dict(metadata))
        checked_priority = _priority(priority)
        checked_dependencies = _dependencies(dependencies)
        results = find_results(checked_args, checked_kwargs)
        if results:  # each result_of is a dependency too
            checked_dependencies = tuple(dict.fromkeys((*checked_dependencies, *results)))
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise InvalidTaskError(f"max_retries must be an int >= 0, got {safe_repr(max_retries)}")
        delay = finite_float(retry_delay)
        if delay is None or delay < 0:
            raise InvalidTaskError(
                f"retry_delay must be a finite number of seconds >= 0, got {safe_repr(retry_delay)}"
            )
        checked_delay = delay
        if retry_wait is not None and not isinstance(retry_wait, wait_base):
            raise InvalidTaskError(
                f"retry_wait must be a tenacity wait strategy (such as "
                f"tenacity.wait_exponential()) or None, got {safe_repr(retry_wait)}"
            )
        checked_timeout = validate_timeout(timeout)
        checked_id = None if task_id is None else validate_task_id(task_id)
        if checked_id is not None and checked_id in results:
            raise InvalidTaskError(
                f"task {safe_repr(checked_id)} cannot take its own result; "
                f"remove result_of({safe_repr(checked_id)}) from its arguments"
            )
        if checked_id is not None and checked_id in checked_dependencies:
            raise InvalidTaskError(
                f"task {safe_repr(checked_id)} cannot depend on itself; "
                f"remove {safe_repr(checked_id)} from dependencies"
            )
        if circuit_breaker is not None and not (
            (isinstance(circuit_breaker, str) and circuit_breaker)
            or isinstance(circuit_breaker, CircuitBreaker)
        ):
            raise InvalidTaskError(
                f"circuit_breaker must be a breaker name (a non-empty str), a CircuitBreaker or "
                f"None, got {safe_repr(circuit_breaker)}"
            )
        checked_executor = validate_executor(executor)
        if (
            not isinstance(on_dependency_failure, str)
            or on_dependency_failure not in ON_DEPENDENCY_FAILURE
        ):
            raise InvalidTaskError(
                f"on_dependency_failure must be 'cancel' (a failed dependency cancels the task) "
                f"or 'run' (the task runs with the exception), "
                f"got {safe_repr(on_dependency_failure)}"
            )
        is_coroutine = is_coroutine_callable(func)
        if is_coroutine and checked_executor is not None and checked_executor != "thread":
            raise InvalidTaskError(
                f"executor={safe_repr(checked_executor)} runs plain functions only; "
                f"{safe_repr(func)} is a "
                "coroutine function, which runs on its event loop: drop executor=, or pass a "
                "plain function"
            )
    return _new_spec(
        TaskSpec,
        (
            checked_id,
            checked_name,
            func,
            checked_args,
            checked_kwargs,
            checked_type,
            description,
            checked_metadata,
            checked_priority,
            checked_dependencies,
            max_retries,
            checked_delay,
            retry_wait,
            checked_timeout,
            is_coroutine,
            circuit_breaker,
            checked_executor,
            None,  # trace: `register_task` adds the caller's
            results,
            on_dependency_failure,
        ),
    )


_NORMAL = TaskPriority.NORMAL


def validate_plain(name: object, func: object, args: object) -> TaskSpec:
    """``validate_registration(name, func, args)``: a registration whose options are all
    their defaults (``register_task`` and ``submit`` called without any), as a burst
    makes them. Its common case (a non-empty str name, a Python function that is no
    async generator function, a tuple of arguments none of which is or may hold a
    `result_of`) needs no other check and makes its `TaskSpec` at once; anything else
    is `validate_registration`'s to check (the same checks in the same order, the same
    errors)."""
    if type(name) is str and name and type(func) is _FUNCTION and type(args) is tuple:
        flags = func.__code__.co_flags
        if not flags & _CO_ASYNC_GENERATOR:
            scanned = SCANNED
            for arg in args:
                if type(arg) in scanned:
                    break
            else:
                return _new_spec(
                    TaskSpec,
                    (
                        None,
                        name,
                        func,
                        args,
                        {},
                        "default",
                        "",
                        NO_METADATA,
                        _NORMAL,
                        (),
                        0,
                        0.0,
                        None,
                        None,
                        True if flags & _CO_COROUTINE else is_coroutine_callable(func),
                        None,
                        None,
                        None,
                        (),
                        "cancel",
                    ),
                )
    return validate_registration(name, func, args)
