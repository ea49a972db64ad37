"""``python -m actors``: the command line and its demo."""

from actors.cli._cli import run

__all__ = ["run"]
