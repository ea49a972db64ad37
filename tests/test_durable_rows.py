"""What a durable registration carries per task (issue 13: the journal's cost per task)."""

from __future__ import annotations

import gc

from helpers import add

from actors.core import load_config
from actors.engine._validate import validate_registration
from actors.journal import TaskRow, function_reference
from actors.runtime import durable_row


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
