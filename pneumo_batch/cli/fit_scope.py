"""``pneumo-batch fit-scope``: fit the pixel scope gate for an existing model directory (weights unchanged)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pneumo_batch.cli.common import ExitCode, domain_errors
from pneumo_batch.dataset import DATA_ENV, load_pneumoniamnist
from pneumo_batch.model import load_model


def fit_scope(
    model_dir: Annotated[Path, typer.Argument(help="Model directory to add the gate to, e.g. models/pneumo-cnn-v1.")],
    data: Annotated[
        Path | None,
        typer.Option(help=f"PneumoniaMNIST .npz: train fits, val thresholds (default: ${DATA_ENV}, the cache, or a download)."),
    ] = None,
    films: Annotated[
        Path | None,
        typer.Option(help="Folder of full-size pediatric chest films (default: xray_jpegs/ beside the .npz)."),
    ] = None,
    outliers: Annotated[
        Path | None,
        typer.Option(help="Folder of known out-of-scope images for the exposure head (default: outliers/ beside the .npz, if any)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the films' cross-fitting folds; same seed, same files.")] = 0,
) -> None:
    """Fit the scope gate for MODEL_DIR without retraining the network, and record it in its metadata.

    Example: pneumo-batch fit-scope models/pneumo-cnn-v1 --data pneumoniamnist.npz --seed 0
    """
    from pneumo_batch.scope.fit import default_sources, fit_scope_gate

    with domain_errors():
        artifact = load_model(model_dir)
        dataset = load_pneumoniamnist(data)
        default_films, default_outliers = default_sources(dataset.path)
        film_dir = films or default_films
        if film_dir is None:
            typer.echo("Error: no full-size films: pass --films DIR", err=True)
            raise typer.Exit(ExitCode.USAGE)
        fitted = fit_scope_gate(artifact, dataset, film_dir, outliers or default_outliers, seed=seed)
    entry = fitted.scope_gate_entry or {}
    typer.echo(
        f"Wrote the scope gate of {model_dir}: false-flag rate {entry['false_flag_rate']:.1%} "
        f"({entry['false_flag_rate_basis']}); "
        + ("with" if "head" in entry else "without") + " an outlier-exposure head"
    )
