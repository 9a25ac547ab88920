"""``pneumo-batch train``: train, evaluate and quantize a model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pneumo_batch.cli.common import domain_errors
from pneumo_batch.dataset import DATA_ENV, load_pneumoniamnist


def train(
    out: Annotated[Path, typer.Option(help="Model directory to write, e.g. models/pneumo-cnn-v2.")],
    data: Annotated[
        Path | None,
        typer.Option(help=f"PneumoniaMNIST .npz (default: ${DATA_ENV}, the cache, or a download)."),
    ] = None,
    preset: Annotated[str, typer.Option(help="Configuration: default (= pneumo-cnn-v2, the shipped recipe: the 3-block CNN at width 10, 2.9 M multiply-adds), pneumo-cnn-v1 (the previous one: width 24, 16 M), dsnet-distilled (depthwise-separable, 2.3 M, distilled from pneumo-cnn-v1), dsnet (the same, labels only), lesson (the course CNN) or tiny (tests).")] = "default",
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the preset's number of epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the preset's random seed.")] = None,
    target_sensitivity: Annotated[
        float | None,
        typer.Option(min=0.5, max=1.0, help="Validation sensitivity the screening threshold must reach (default 0.98)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name in the metadata (default: the folder name).")] = None,
    version: Annotated[str, typer.Option(help="Model version in the metadata.")] = "1.0.0",
    scope_films: Annotated[
        Path | None,
        typer.Option(help="Full-size pediatric films for the scope gate (default: xray_jpegs/ beside the .npz, if any)."),
    ] = None,
    scope_outliers: Annotated[
        Path | None,
        typer.Option(help="Known out-of-scope images for the gate's exposure head (default: outliers/ beside the .npz, if any)."),
    ] = None,
) -> None:
    """Train a CNN on PneumoniaMNIST, quantize it to TFLite and write a self-describing model directory.

    Example: pneumo-batch train --data pneumoniamnist.npz --out models/my-model
    """
    from pneumo_batch.scope.fit import default_sources
    from pneumo_batch.training import PRESETS, config_from_preset, train_and_package

    if preset not in PRESETS:
        raise typer.BadParameter(f"choose one of {', '.join(PRESETS)}", param_hint="--preset")
    with domain_errors():
        config = config_from_preset(preset, epochs=epochs, seed=seed, target_sensitivity=target_sensitivity)
        dataset = load_pneumoniamnist(data)
        default_films, default_outliers = default_sources(dataset.path)
        artifact = train_and_package(
            dataset, config, out, name=name or out.name, version=version, progress=lambda m: typer.echo(m, err=True),
            scope_films=scope_films or default_films, scope_outliers=scope_outliers or default_outliers,
        )
    test = artifact.metadata["metrics"]["test"]
    typer.echo(
        f"Wrote {out}: {artifact.default_variant} model, test AUC {test['auc']['estimate']:.4f}, "
        + ", ".join(
            f"{n} sens {p['sensitivity']['estimate']:.3f} spec {p['specificity']['estimate']:.3f}"
            for n, p in test["operating_points"].items()
        )
    )
