"""The ``actorflow`` command."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from actors.cli import run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
