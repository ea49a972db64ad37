"""Small helpers shared by the actors."""

from __future__ import annotations

from typing import Any

__all__ = ["shrink"]


def shrink(mapping: dict[Any, Any]) -> None:
    """Give back a dict's table after mass deletion (CPython dicts never shrink by
    themselves): rebuild it in place, so every holder of the dict sees the change."""
    items = list(mapping.items())
    mapping.clear()
    mapping.update(items)
