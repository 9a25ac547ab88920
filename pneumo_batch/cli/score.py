"""``pneumo-batch score``: not implemented yet."""

from __future__ import annotations

import typer


def score() -> None:
    """Not implemented yet."""
    raise typer.Exit(1)
