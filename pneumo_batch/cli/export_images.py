"""``pneumo-batch export-images``: PneumoniaMNIST images as PNG files plus a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pneumo_batch.cli.common import domain_errors
from pneumo_batch.dataset import DATA_ENV, SPLITS, load_pneumoniamnist
from pneumo_batch.export import export_split


def export_images(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write images/ and manifest.parquet into.")],
    split: Annotated[str, typer.Option(help=f"Which split: {', '.join(SPLITS)}.")] = "test",
    data: Annotated[
        Path | None,
        typer.Option(help=f"PneumoniaMNIST .npz (default: ${DATA_ENV}, the cache, or a download)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Write only the first N images.")] = None,
) -> None:
    """Write a PneumoniaMNIST split as PNG files and a Parquet manifest with labels.

    Example: pneumo-batch export-images demo/ --split test --data pneumoniamnist.npz
    """
    if split not in SPLITS:
        raise typer.BadParameter(f"choose one of {', '.join(SPLITS)}", param_hint="--split")
    with domain_errors():
        dataset = load_pneumoniamnist(data)
        manifest = export_split(dataset, split, out_dir, limit=limit)
    typer.echo(f"Wrote {manifest}")
