"""The task engine: task records, the dependency graph, and every decision about a task.

Pure: no actors, no threads, no event loop; time comes from an injected clock. The
manager actors are thin shells over one `Engine` each, configured by a `Policy`. With it
live what its decisions need: circuit breakers, the task spec and its checks, and the
paged queries over task records.
"""

from actors.engine._breaker import BreakerRegistry, BreakerState, BreakerTransition, CircuitBreaker
from actors.engine._engine import Engine, Policy, Port, StartFailed, Transition
from actors.engine._outcomes import retry_delay
from actors.engine._query import (
    MAX_PAGE_SIZE,
    PageCursor,
    PageQuery,
    TaskDetail,
    TaskPage,
    TaskRow,
    merge_rows,
    page_keys,
    page_rows,
    split_page,
)
from actors.engine._record import MAX_FAILURES_KEPT, Attempt, TaskRecord, Timer
from actors.engine._results import ResultOf, find_results, result_of, substitute
from actors.engine._validate import (
    ON_A_LOOP,
    TaskSpec,
    async_kind,
    check_picklable,
    is_coroutine_callable,
    validate_executor,
    validate_plain,
    validate_registration,
    validate_task_id,
    validate_timeout,
)

__all__ = [
    "MAX_FAILURES_KEPT",
    "MAX_PAGE_SIZE",
    "ON_A_LOOP",
    "Attempt",
    "BreakerRegistry",
    "BreakerState",
    "BreakerTransition",
    "CircuitBreaker",
    "Engine",
    "PageCursor",
    "PageQuery",
    "Policy",
    "Port",
    "ResultOf",
    "StartFailed",
    "TaskDetail",
    "TaskPage",
    "TaskRecord",
    "TaskRow",
    "TaskSpec",
    "Timer",
    "Transition",
    "async_kind",
    "check_picklable",
    "find_results",
    "is_coroutine_callable",
    "merge_rows",
    "page_keys",
    "page_rows",
    "result_of",
    "retry_delay",
    "split_page",
    "substitute",
    "validate_executor",
    "validate_plain",
    "validate_registration",
    "validate_task_id",
    "validate_timeout",
]
