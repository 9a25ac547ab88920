"""``pneumo-batch labels add``: store radiologists' reads that came back after the nights were scored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pneumo_batch.cli.common import domain_errors
from pneumo_batch.labels import add_labels, night_coverage


def labels_add(
    labels: Annotated[Path, typer.Argument(help="CSV or Parquet: image_id or sop_instance_uid, label (0/1 or "
                                           "normal/pneumonia), optional read_at and source.")],
    output_root: Annotated[Path, typer.Option(metavar="DIR", help="The nightly output root; reads go to its labels/.")],
) -> None:
    """Add a file of reads to the label store (append-only; the same file twice changes nothing).

    Example: pneumo-batch labels add reads-2026-12.csv --output-root /data/pneumo-batch

    A corrected read of a film is kept as history; its latest read counts.
    Ids that match no scored film are counted, never printed.
    """
    with domain_errors():
        added = add_labels(labels, output_root)
        _, coverage = night_coverage(output_root)
    if added.already_present:
        typer.echo(f"Already in the store ({added.n_reads} reads, {added.path.name}): nothing changed")
        return
    typer.echo(
        f"Added {added.n_reads} reads to {added.path}: {added.n_new_films} films new, "
        f"{added.n_changed} relabelled (label changed), {added.n_confirmed} read again with the label that counts unchanged"
    )
    typer.echo(
        f"Store: {coverage.n_films_read} films read, {coverage.n_matched} match a scored film, "
        f"{coverage.n_unmatched} match none, {coverage.n_relabelled} ever relabelled"
    )
