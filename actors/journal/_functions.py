"""Task functions by reference: ``"module:qualname"``, checked to resolve back.

Functions are stored as ``"module:qualname"`` and found again by importing the module
and following the qualified name. `function_reference` checks this at encode time: it
resolves the reference back and requires the very same object. So a lambda, a function
defined inside another (``<locals>``), a method bound to an instance, a
`functools.partial`, a callable instance or a function shadowed by a later definition
is refused with `JournalEncodeError`, saying why and suggesting ``durable=False``.
A function of ``__main__`` is accepted: it is found again only if the same script runs
again as ``__main__`` (``python script.py``), which is how a service restarts; a
different entry point (``python -m pytest``) cannot find it and recovery reports it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

from actors.core import JournalDecodeError, JournalEncodeError

__all__ = ["NOT_DURABLE", "function_reference", "resolve_function", "type_name"]

NOT_DURABLE = "; pass durable=False to keep this task in memory only"
"""The end of every refusal: what to do instead."""


def type_name(kind: type) -> str:
    """``module.qualname`` of ``kind`` (``qualname`` alone for builtins)."""
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _refusal(func: object) -> str | None:
    """Why ``func`` cannot be found again by name, judged without importing anything."""
    if isinstance(func, functools.partial):
        return (
            f"its function is a functools.partial of {func.func!r}, which is not journaled; "
            "register the function itself with its arguments"
        )
    if inspect.ismethod(func) and not isinstance(func.__self__, type):
        return (
            f"its function {func.__qualname__!r} is a method bound to an instance of "
            f"{type_name(type(func.__self__))}, and the instance is not journaled"
        )
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if not isinstance(qualname, str):
        return (
            f"its function is a {type_name(type(func))} instance, not a function or class: "
            "it has no qualified name to find it by"
        )
    if "<lambda>" in qualname:
        return f"its function {qualname!r} is a lambda, which has no name to find it by"
    if "<locals>" in qualname:
        return (
            f"its function {qualname!r} is defined inside another function, so it cannot "
            "be imported after a restart"
        )
    if not isinstance(module, str):
        return f"its function {qualname!r} has no __module__ to import it from"
    return None


def _lookup(module: str, qualname: str) -> object:
    """The object at ``module:qualname``; raises ImportError or AttributeError."""
    found: object = sys.modules.get(module) or importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def function_reference(func: Callable[..., Any], *, task: str) -> str:
    """``"module:qualname"`` of ``func``, checked to resolve back to ``func`` itself.

    ``task`` (its name or id) is for the message. Raises `JournalEncodeError` saying
    why a function that cannot be found again after a restart is refused.
    """
    why = _refusal(func)
    if why is None:
        module: str = func.__module__
        qualname: str = func.__qualname__
        try:
            found = _lookup(module, qualname)
        except (ImportError, AttributeError) as exc:
            why = (
                f"its function {qualname!r} cannot be found as {module}:{qualname} "
                f"({type(exc).__name__}: {exc})"
            )
        else:
            # A classmethod is a new bound method at each lookup: equal, not identical.
            same = found == func if inspect.ismethod(func) else found is func
            if same:
                return f"{module}:{qualname}"
            why = (
                f"its function {qualname!r} is not what {module}:{qualname} names "
                "(redefined, or decorated without functools.wraps?)"
            )
    raise JournalEncodeError(f"task {task!r} cannot be durable: {why}{NOT_DURABLE}")


def resolve_function(reference: str, *, task: str) -> Callable[..., Any]:
    """The function ``reference`` (from `function_reference`) names, imported if needed.

    Raises `JournalDecodeError` naming the task if it cannot be found (any error of the
    module's import included) or is not callable.
    """
    module, sep, qualname = reference.partition(":")
    if not sep or not module or not qualname:
        raise JournalDecodeError(
            f"task {task!r}: {reference!r} is not a function reference (module:qualname)"
        )
    try:
        found = _lookup(module, qualname)
    except Exception as exc:  # the module's own import may raise anything
        raise JournalDecodeError(
            f"task {task!r}: its function {reference} cannot be found ({type(exc).__name__}: {exc})"
        ) from exc
    if not callable(found):
        raise JournalDecodeError(
            f"task {task!r}: {reference} is a {type_name(type(found))}, not a function"
        )
    return found
