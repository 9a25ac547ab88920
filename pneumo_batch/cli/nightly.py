"""``pneumo-batch nightly``: not implemented yet."""

from __future__ import annotations

import typer


def nightly() -> None:
    """Not implemented yet."""
    raise typer.Exit(1)
