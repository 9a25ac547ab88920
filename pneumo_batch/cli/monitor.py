"""``pneumo-batch monitor``: not implemented yet."""

from __future__ import annotations

import typer


def monitor() -> None:
    """Not implemented yet."""
    raise typer.Exit(1)
