"""OpenTelemetry spans for task attempts (the optional ``otel`` extra).

``register_task`` captures the OpenTelemetry context current in the caller (`capture`)
and the task carries it; each attempt then runs inside a span whose parent is the span
that was current at registration, named ``task <name>``, with the attributes
``actorflow.task.id``, ``actorflow.task.name``, ``actorflow.task.type`` and
``actorflow.task.attempt``. An attempt that returns ends its span with status OK; one
that raises records the exception as a span event and ends with status ERROR. An
attempt that times out or is cancelled ends its span then, with status ERROR and the
task's `TaskTimeoutError` or `TaskCancelledError` (`stop_span`), even while a plain
function goes on running in its thread or process; its own ending is then not recorded.
A coroutine attempt left pending on a closed loop ends its span when a cleanup tick
fails it, with that error.

Where the span is open:

- coroutine functions: around the ``await`` of the function on its event loop, so spans
  the function starts are its children;
- plain functions on the ``thread`` executor: around the call in the pool thread (the
  span is current there, same as above);
- plain functions on the ``process`` and ``dask`` executors: the span is recorded in the
  caller's process, from the submission of the attempt to its outcome coming back. The
  context does not travel to the worker: spans the function starts there have no parent.
- the old task system (``USE_NEW_TASK_SYSTEM=False``) runs its attempts through the
  same runners (`actors.runtime.run_function`...): its tasks are traced alike.

A durable task recovered from the journal after a restart (`new_trace`): the journal
keeps no trace context (the span current at its registration was in a process that is
gone), so each attempt it runs again is the root span of a new trace, with the same
name and attributes. Recovered tasks of the old task system are not traced either.

Without ``opentelemetry-api`` installed this module tries the import once; `capture`
returns None, tasks carry None, and the runners skip tracing on that None check. The same
holds while the application has set no tracer provider (``trace.set_tracer_provider``):
tasks registered before it sets one are not traced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace

    AVAILABLE = True
except ImportError:  # the extra is not installed: nothing is traced
    AVAILABLE = False

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "AVAILABLE",
    "capture",
    "end_span",
    "new_trace",
    "start_span",
    "stop_span",
    "traced_await",
    "traced_call",
]

TRACER_NAME = "actorflow"


class Execution(Protocol):
    """What a span needs of an attempt (`actors.runtime.Execution` has it)."""

    task_id: str
    name: str
    task_type: str
    attempt: int
    trace: Any
    span: list[Span]
    """The attempt's open span, until it ends (set by `start_span`; unset before)."""


_tracer: tuple[Any, Any] | None = None
"""(tracer provider, our tracer from it): a tracer is made once per provider."""


_env_checked = False
"""Whether `capture` has called ``get_tracer_provider`` once (which loads a provider
named by ``OTEL_PYTHON_TRACER_PROVIDER``)."""


def _provider_set() -> bool:
    """Whether a global tracer provider is set, without ``get_tracer_provider``'s
    per-call ``os.environ`` lookup (a KeyError raised and caught on every task while no
    provider is set: a quarter of the caller's time in a fan-out). The provider can be
    set only once (``set_tracer_provider``, or the environment variable on the first
    ``get_tracer_provider``), so after one public call the module global says it all;
    where that global is missing (a future opentelemetry-api), the public call is used."""
    global _env_checked
    if not _env_checked:
        otel_trace.get_tracer_provider()
        _env_checked = True
    provider = getattr(otel_trace, "_TRACER_PROVIDER", _MISSING)
    if provider is _MISSING:
        provider = otel_trace.get_tracer_provider()
        return not isinstance(provider, otel_trace.ProxyTracerProvider)
    return provider is not None


_MISSING = object()


def capture() -> Any:
    """The OpenTelemetry context current here; None without OpenTelemetry, or while
    the application has set no tracer provider (nothing would record the spans)."""
    if not AVAILABLE:
        return None
    if _env_checked:  # `_provider_set`'s common answer, without its call (a call per
        try:  # `capture`, two per task of a fan-out, ~70 ns): no provider was set
            if otel_trace._TRACER_PROVIDER is None:
                return None
        except AttributeError:  # (a future opentelemetry-api: `_provider_set` knows)
            pass
    if not _provider_set():
        return None
    provider = otel_trace.get_tracer_provider()
    if isinstance(provider, (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)):
        return None
    return otel_context.get_current()


def new_trace() -> Any:
    """The context of a task recovered from the journal: empty (its attempts' spans are
    roots), or None, as `capture` returns, when nothing would record them."""
    if capture() is None:
        return None
    return otel_context.Context()


def _get_tracer() -> otel_trace.Tracer:
    global _tracer
    provider = otel_trace.get_tracer_provider()
    cached = _tracer
    if cached is None or cached[0] is not provider:
        cached = _tracer = (provider, provider.get_tracer(TRACER_NAME))
    tracer: otel_trace.Tracer = cached[1]
    return tracer


def start_span(execution: Execution) -> Span:
    """Start the span of one attempt (not made current), child of the captured context.
    Whoever ends it first (`end_span` or `stop_span`) decides its status."""
    span = _get_tracer().start_span(
        f"task {execution.name}",
        context=execution.trace,
        attributes={
            "actorflow.task.id": execution.task_id,
            "actorflow.task.name": execution.name,
            "actorflow.task.type": execution.task_type,
            "actorflow.task.attempt": execution.attempt,
        },
        record_exception=False,
        set_status_on_exception=False,
    )
    execution.span = [span]
    return span


def end_span(execution: Execution, error: BaseException | None) -> None:
    """End an attempt's span, unless it ended already: status OK, or ERROR with the
    exception recorded. Safe from any thread (the span is popped: one caller gets it)."""
    try:
        span = execution.span.pop()
    except IndexError:  # ended already (a timeout or cancel did: `stop_span`)
        return
    status = otel_trace.StatusCode
    if error is None:
        span.set_status(status.OK)
    else:
        span.record_exception(error)
        span.set_status(status.ERROR, f"{type(error).__name__}: {error}")
    span.end()


def stop_span(execution: Execution, error: BaseException) -> None:
    """The attempt timed out or was cancelled (``error`` says which): end its span now,
    if it has one open, with ``error``; the attempt's own ending is then not recorded
    (a coroutine's ``CancelledError``, a function that returns later in its thread)."""
    if getattr(execution, "span", None) is not None:
        end_span(execution, error)


@contextmanager
def _current_span(execution: Execution) -> Iterator[None]:
    span = start_span(execution)
    try:
        with otel_trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield
    except BaseException as exc:
        end_span(execution, exc)
        raise
    end_span(execution, None)


def traced_call(
    execution: Execution,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """``func(*args, **kwargs)`` inside the attempt's span (a pool thread)."""
    with _current_span(execution):
        return func(*args, **kwargs)


async def traced_await(
    execution: Execution,
    func: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """``await func(*args, **kwargs)`` inside the attempt's span (the owner loop)."""
    with _current_span(execution):
        return await func(*args, **kwargs)
