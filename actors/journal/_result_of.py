"""INTEGRATION HOOK (issue 12 x issue 14): ``result_of`` placeholders in the journal.

Issue 12 adds ``actors.result_of(task_id)``, a placeholder argument the engine replaces
with that task's result. It was built on another branch at the same time as the
journal, so its class was not on this one: the integrator calls `wire_result_of` once,
where the class is defined (e.g. at the end of its module, ``wire_result_of(ResultOf)``),
with ``encode``/``decode`` if the placeholder holds more than its ``task_id``. From then
on a durable task's arguments may hold placeholders, and recovery gives them back (the
test suite wires a stand-in: ``tests/test_durable.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.journal._codec import register_placeholder

__all__ = ["RESULT_OF_TAG", "wire_result_of"]

RESULT_OF_TAG = "actors.result_of"
"""The tag written to the file for a placeholder: stable across versions and modules."""


def wire_result_of(
    cls: type,
    encode: Callable[[Any], Any] | None = None,
    decode: Callable[[Any], Any] | None = None,
) -> None:
    """Let durable tasks take ``cls`` placeholders as arguments (see the module docstring).

    Defaults: an instance is journaled as its ``task_id`` and rebuilt as ``cls(task_id)``.
    """
    register_placeholder(
        cls,
        encode if encode is not None else _task_id,
        decode if decode is not None else cls,
        tag=RESULT_OF_TAG,
    )


def _task_id(placeholder: Any) -> Any:
    return placeholder.task_id
