"""``pneumo-batch train``: placeholder until the training pipeline lands."""

from __future__ import annotations

import typer


def train() -> None:
    """Train, evaluate and quantize a model."""
    raise typer.Exit(1)
