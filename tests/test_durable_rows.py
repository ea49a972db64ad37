"""What a durable registration carries per task (issue 13: the journal's cost per task)."""

from __future__ import annotations

import gc
from types import MappingProxyType

from helpers import add

from actors.core import TaskPriority, load_config
from actors.engine import TaskSpec
from actors.engine._validate import validate_registration
from actors.journal import TaskRow, function_reference
from actors.runtime import durable_row
from actors.runtime._durable import journaled_spec


def test_a_definition_row_is_a_plain_tuple_the_collector_stops_tracking() -> None:
    """The row travels in a plain tuple of scalars: once the collector has seen it, it
    no longer tracks it (a burst of registrations waiting in the mailboxes costs every
    collection nothing), and its values are a `TaskRow`'s, in order."""
    config = load_config({"JOURNAL_PATH": "unused.db"})
    spec = validate_registration("add", add, (1, 2), dependencies=("a", "b"), max_retries=2)
    row = durable_row(config, spec, None, "breaker")
    assert type(row) is tuple
    gc.collect()  # untracks the tuple of dependencies,
    gc.collect()  # then the row
    assert gc.is_tracked(row) is False
    assert TaskRow(*row) == TaskRow(
        "", "add", "default", function_reference(add, task="add"), "[1,2]", "{}", 1,
        ("a", "b"), 2, 0.0, None, None, "breaker", "", "{}", "cancel", None, "pending",
        0.0, 0.0, False, 0, 0, None, None, None, None, None, None,
    )  # fmt: skip


def test_the_spec_of_a_journaled_row_has_each_value_in_its_field() -> None:
    """`journaled_spec` (recovery's registrations and a retry's) makes its `TaskSpec`
    from the fields in order, without keywords: each value lands in its own field."""
    row = TaskRow(
        "t1", "name", "type", "mod:func", "[1]", '{"k":2}', 3, ("journaled",), 4, 0.5,
        6.0, "process", "row-breaker", "description", "{}", "run", "new", "queued",
        1.0, 2.0,
    )  # fmt: skip
    spec = journaled_spec(
        row, add, True, (1,), {"k": 2}, {"m": 1}, ("dep",), ("result",), "breaker"
    )
    assert type(spec) is TaskSpec
    assert spec._asdict() == {
        "task_id": "t1",
        "name": "name",
        "func": add,
        "args": (1,),
        "kwargs": {"k": 2},
        "task_type": "type",
        "description": "description",
        "metadata": {"m": 1},
        "priority": TaskPriority.CRITICAL,
        "dependencies": ("dep",),
        "max_retries": 4,
        "retry_delay": 0.5,
        "retry_wait": None,
        "timeout": 6.0,
        "is_coroutine": True,
        "circuit_breaker": "breaker",
        "executor": "process",
        "trace": None,
        "results": ("result",),
        "on_dependency_failure": "run",
    }
    assert spec.priority is TaskPriority.CRITICAL
    assert type(spec.metadata) is MappingProxyType
