"""``pneumo-batch validate``, ``adapt`` and ``compare``: a model at a new hospital, on its labelled films."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pneumo_batch.cli.common import domain_errors
from pneumo_batch.dataset import DATA_ENV

LABELLED_HELP = "Labelled films: a folder with NORMAL/ and PNEUMONIA/, or a .parquet/.csv manifest with path (or image) and label."
VALIDATE_HELP = LABELLED_HELP[:-1] + ", or a nightly output root with a label store (labels add)."
WORKERS_HELP = "Decoding processes (default: all cores)."


def validate(
    labelled: Annotated[Path, typer.Argument(metavar="LABELLED", help=VALIDATE_HELP, show_default=False)],
    out: Annotated[Path, typer.Option(metavar="FOLDER", help="Where validation.json goes.", show_default=False)],
    model: Annotated[Path | None, typer.Option(metavar="DIR", help="Model directory (default: the live model).", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option(min=1, help=WORKERS_HELP, show_default=False)] = None,
) -> None:
    """Validate a model on a site's labelled films: AUC, operating points, calibration, subgroups, scope.

    Example: pneumo-batch validate /data/site-films --out /data/site-validation
    """
    from pneumo_batch import storage
    from pneumo_batch.model import load_model
    from pneumo_batch.site.labelled import is_output_root, read_labelled, score_labelled, scored_from_output_root
    from pneumo_batch.site.validation import validate as validate_model

    with domain_errors():
        artifact = load_model(model)
        if is_output_root(labelled):
            scored = scored_from_output_root(labelled, artifact)
        else:
            scored = score_labelled(read_labelled(labelled), artifact, workers=workers)
        report = validate_model(scored, artifact)
        storage.make_folder(out)
        written = storage.write_json(out / "validation.json", report, allow_nan=False)
    auc = report["auc"]
    unreadable = f", {report['not_decodable']} not decodable" if report["not_decodable"] else ""
    typer.echo(f"{report['in_scope']['films']} films in scope ({report['out_of_scope']['films']} out{unreadable}), "
               f"AUC {auc['estimate']:.3f} ({auc['low']:.3f}-{auc['high']:.3f}) -> {written}")
    typer.echo(report["verdict"])


def adapt(
    labelled: Annotated[Path, typer.Option("--labelled", metavar="SITE", help=LABELLED_HELP, show_default=False)],
    out: Annotated[Path, typer.Option(metavar="DIR", help="The new model directory (e.g. models/site-v1).", show_default=False)],
    model: Annotated[Path | None, typer.Option(metavar="DIR", help="The parent model (default: the live model).", show_default=False)] = None,
    threshold_only: Annotated[bool, typer.Option("--threshold-only", help="Re-choose the operating point only; keep the network.")] = False,
    data: Annotated[Path | None, typer.Option(metavar="NPZ", help=f"PneumoniaMNIST .npz mixed into fine-tuning (default: ${DATA_ENV}).", show_default=False)] = None,
    holdout_share: Annotated[float, typer.Option(min=0.0, max=0.8, help="Share of the films set aside, by study, for compare (0: you keep your own).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the hold-out split, the cross-fitting folds and the fine-tuning.")] = 0,
    max_epochs: Annotated[int, typer.Option(min=1, max=100, help="Most fine-tuning epochs tried; the count is chosen on cross-fitted films.")] = 30,
    folds: Annotated[int, typer.Option(min=2, max=10, help="Cross-fitting folds (by study) that choose the epochs and the screening point.")] = 3,
    workers: Annotated[int | None, typer.Option(min=1, help=WORKERS_HELP, show_default=False)] = None,
) -> None:
    """Adapt a model to a site's labelled films (fine-tune, or --threshold-only); the hold-out goes to OUT-holdout.parquet.

    Example: pneumo-batch adapt --labelled /data/site-films --out models/site-v1 --data pneumoniamnist.npz
    """
    from pneumo_batch.model import load_model
    from pneumo_batch.site.adaptation import adapt_threshold_only
    from pneumo_batch.site.labelled import read_labelled

    with domain_errors():
        parent = load_model(model)
        films = read_labelled(labelled)
        if threshold_only:
            adapted = adapt_threshold_only(parent, films, out, holdout_share=holdout_share, seed=seed, workers=workers)
        else:
            adapted = _fine_tune(parent, films, out, data, holdout_share, seed, max_epochs, folds, workers)
    chosen = adapted.lineage["figures"]["chosen"]
    if not threshold_only:
        figures = adapted.lineage["figures"]
        typer.echo(f"fine-tuned {figures['epochs_chosen']} epochs (best cross-fitted AUC "
                   f"{max(figures['out_of_fold_auc_by_epoch']):.4f}) in {figures['seconds']:.0f} s")
    typer.echo(f"{adapted.model.name} {adapted.model.version}: screening threshold {chosen['threshold']:.4f} "
               f"({chosen['rule']}) -> {adapted.model.directory}")
    if chosen["positives_needed"] is not None and not chosen["changed"]:
        typer.echo(f"About {chosen['positives_needed']} labelled pneumonias would let the site prove a change.")
    if adapted.holdout_manifest is not None:
        typer.echo(f"hold-out films: {adapted.holdout_manifest} (compare on these)")


def _fine_tune(parent: Any, films: Any, out: Path, data: Path | None, holdout_share: float, seed: int,
               max_epochs: int, folds: int, workers: int | None) -> Any:
    from pneumo_batch.dataset import load_pneumoniamnist
    from pneumo_batch.errors import require
    from pneumo_batch.site.adaptation import adapt_fine_tune
    from pneumo_batch.training.finetune import FineTuneConfig, require_float_weights

    require_float_weights(parent)
    require("tensorflow", "train")
    dataset = load_pneumoniamnist(data)
    config = FineTuneConfig(max_epochs=max_epochs, folds=folds, seed=seed)
    return adapt_fine_tune(parent, films, out, dataset, holdout_share=holdout_share, seed=seed, config=config,
                           workers=workers, progress=lambda message: typer.echo(message, err=True))


def compare(
    champion: Annotated[Path, typer.Argument(metavar="CHAMPION", help="The live model's directory.", show_default=False)],
    challenger: Annotated[Path, typer.Argument(metavar="CHALLENGER", help="The candidate's directory.", show_default=False)],
    labelled: Annotated[Path, typer.Argument(metavar="LABELLED", help=LABELLED_HELP, show_default=False)],
    workers: Annotated[int | None, typer.Option(min=1, help=WORKERS_HELP, show_default=False)] = None,
) -> None:
    """Compare two models on the same labelled hold-out films; the verdict is kept for promote.

    Example: pneumo-batch compare models/pneumo-cnn-v2 models/site-v1 models/site-v1-holdout.parquet
    """
    from pneumo_batch.model import load_model
    from pneumo_batch.registry import record_comparison
    from pneumo_batch.site.comparison import compare as compare_models
    from pneumo_batch.site.labelled import read_labelled, score_labelled

    with domain_errors():
        old, new = load_model(champion), load_model(challenger)
        films = read_labelled(labelled)
        found = compare_models(old, score_labelled(films, old, workers=workers), new,
                               score_labelled(films, new, workers=workers))
        written = record_comparison(new.directory, old.directory.name, found)
    auc = found["auc_difference"]
    sens = found["sensitivity_difference"]
    typer.echo(f"AUC {auc['estimate']:+.3f} (p {auc['p_value']:.3g}), sensitivity {sens['estimate']:+.3f} "
               f"({sens['low']:+.3f} to {sens['high']:+.3f}), on {found['films']} films -> {written}")
    typer.echo(f"verdict: {found['verdict']} ({found['reason']})")
