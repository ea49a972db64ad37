"""The demo's named expectations and its line printer (shared by its phases)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Expectations", "print_line"]


def print_line(console: Console, text: str, style: str | None = None) -> None:
    """Print one line in ``style``. The style goes on the text itself, not on the call:
    while progress bars are live, ``console.print(..., style=...)`` also paints the bars
    redrawn under the line in that style."""
    from rich.text import Text

    console.print(Text(text, style=style or ""))


@dataclass
class Expectations:
    """Named checks; the demo succeeds when every one holds."""

    results: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, name: str, ok: bool) -> bool:
        self.results.append((name, ok))
        return ok

    @property
    def failed(self) -> list[str]:
        return [name for name, ok in self.results if not ok]
