"""``pneumo-batch labels show``: label coverage per night."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pneumo_batch.cli.common import domain_errors
from pneumo_batch.labels import night_coverage


def labels_show(
    output_root: Annotated[Path, typer.Option(metavar="DIR", help="The nightly output root.")],
) -> None:
    """Show, per night, how many in-scope films have a read, and how many were relabelled.

    Example: pneumo-batch labels show --output-root /data/pneumo-batch
    """
    with domain_errors():
        table, coverage = night_coverage(output_root)
    typer.echo(f"{'night':<10}  {'in scope':>8}  {'labelled':>8}  {'coverage':>8}  {'pneumonia':>9}  {'normal':>6}  {'relabelled':>10}")
    for row in table.itertuples(index=False):
        typer.echo(f"{row.night.isoformat():<10}  {row.in_scope:>8}  {row.labelled:>8}  {100 * row.coverage:>7.1f}%  "
                   f"{row.pneumonia:>9}  {row.normal:>6}  {row.relabelled:>10}")
    typer.echo(
        f"Store: {coverage.n_films_read} films read, {coverage.n_matched} match a scored film, "
        f"{coverage.n_unmatched} match none, {coverage.n_relabelled} ever relabelled"
    )
