"""``pneumo-batch monitor``: drift and class-balance report of predictions against the training profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pneumo_batch import storage
from pneumo_batch.cli.common import GROUP_HELP, ExitCode, check_report_folder, domain_errors, warn_wider_outputs
from pneumo_batch.errors import InputError
from pneumo_batch.model import MODEL_ENV, REFERENCE_PROFILE_FILE
from pneumo_batch.monitoring import (
    INDEX_HTML,
    SUMMARY_FILE,
    WORKSPACE_ENV,
    build_monitoring_report,
    discover_predictions,
    read_sample,
    realized_path,
    refresh_realized,
    resolve_reference,
    write_verdict_page,
)


def monitor(
    predictions: Annotated[
        list[Path] | None,
        typer.Argument(help="Predictions Parquet files written by `score`, or folders of them."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", show_default=False,
                     help="Folder for report.html, report.json, class_balance.csv and summary.json (with PREDICTIONS)."),
    ] = None,
    output_root: Annotated[
        Path | None,
        typer.Option(metavar="DIR", show_default=False,
                     help="A nightly output root: recompute its realized performance from the label store "
                     "(OUTPUT_ROOT/realized/realized_performance.json); with PREDICTIONS its alerts join the verdict."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help=f"Model directory: its {REFERENCE_PROFILE_FILE} is the reference, its metadata gives "
                     f"the operating points and validated figures (default: ${MODEL_ENV}, else models/DEFAULT)."),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="Compare with this predictions file (or profile) instead of the model's training profile."),
    ] = None,
    fail_on_drift: Annotated[
        bool,
        typer.Option("--fail-on-drift", help=f"Exit with code {int(ExitCode.ALERT)} when any alert fires."),
    ] = False,
    workspace: Annotated[
        Path | None,
        typer.Option(envvar=WORKSPACE_ENV, metavar="DIR", show_default=False,
                     help=f"Evidently workspace that collects every run as a snapshot (default: ${WORKSPACE_ENV}; "
                     "neither: no workspace). A nightly output root's is OUTPUT_ROOT/workspace."),
    ] = None,
    group: Annotated[str | None, typer.Option(metavar="GROUP", help=GROUP_HELP, show_default=False)] = None,
    no_workspace: Annotated[bool, typer.Option("--no-workspace", help=f"Do not add the run to a workspace, even with ${WORKSPACE_ENV} set.")] = False,
) -> None:
    """Compare predictions with the training profile: image drift, class balance, out-of-scope input, errors.

    Example: pneumo-batch monitor out/predictions.parquet --out out/monitoring --fail-on-drift

    Example: pneumo-batch monitor --output-root /data/pneumo-batch   (realized performance from the late labels)

    Writes an Evidently HTML report and its JSON, the class-balance figures
    and summary.json (the verdict). Exit code 0, or 4 when --fail-on-drift is
    given and summary.json says alert: image drift, a class-balance shift,
    too many out-of-scope images, or (with labels) a performance drop; with
    --output-root also a fall in realized sensitivity or a subgroup alert.
    """
    with domain_errors():
        if not predictions and output_root is None:
            raise InputError("give PREDICTIONS with --out, or --output-root (or both)")
        if bool(predictions) != (out is not None):
            raise InputError("PREDICTIONS and --out go together")
        if not predictions:
            realized = refresh_realized(output_root, force=True)  # type: ignore[arg-type]
    if not predictions:
        _show_realized(realized, realized_path(output_root))  # type: ignore[arg-type]
        if fail_on_drift and _realized_alert(realized):
            raise typer.Exit(ExitCode.ALERT)
        return
    assert out is not None
    with domain_errors():
        check_report_folder(out)
        predictions = discover_predictions(predictions)  # a missing input fails before any other work
        realized = refresh_realized(output_root, force=True) if output_root is not None else None
        reference, metadata = resolve_reference(model, reference)
        warn_wider_outputs(out, None if no_workspace else workspace)
        with storage.readable_by(group):
            summary = build_monitoring_report(
                predictions,
                reference,
                out,
                model_metadata=metadata,
                workspace=None if no_workspace else workspace,
                realized=realized,
            )
            rules = summary.rules  # the page's thumbnails come from the report's own sample
            write_verdict_page(out, summary.as_dict(), read_sample(predictions, rules.sample_rows, rules.seed))
    counts = f"{summary.n_in_scope} in scope, {summary.n_out_of_scope} out of scope, {summary.n_errors} errors"
    if summary.alert:
        typer.echo(f"ALERT ({counts}): " + "; ".join(summary.alerts))
    else:
        verdict = "too few rows for a verdict" if summary.batch_size_rule["applied"] == "too_few_rows" else "no alert"
        typer.echo(f"OK ({counts}): {verdict}")
    typer.echo(summary.verdict)
    typer.echo(f"Wrote {out / SUMMARY_FILE} and {out / INDEX_HTML} (the verdict page)")
    if fail_on_drift and summary.alert:
        raise typer.Exit(ExitCode.ALERT)


def _realized_alert(realized: dict) -> bool:
    return bool((realized.get("sensitivity_test") or {}).get("alert") or (realized.get("subgroups") or {}).get("alerts"))


def _show_realized(realized: dict, path: Path) -> None:
    """A few lines: each window's coverage and screening figures, the sensitivity test, subgroup alerts."""
    point = (realized.get("rules") or {}).get("sensitivity_point", "screening")
    typer.echo(f"{realized.get('n_films_read', 0)} films read, {realized.get('n_unmatched', 0)} match no scored film, "
               f"{realized.get('n_relabelled', 0)} relabelled; {len(realized.get('nights') or [])} nights with labels")
    for window in realized.get("windows") or []:
        figures = (window.get("operating_points") or {}).get(point) or {}
        typer.echo(f"{window['chunk']:>4} ({window['start']} to {window['end']}): {window['n_labelled']} of "
                   f"{window['n_in_scope']} films labelled; {point} sensitivity {_interval(figures.get('sensitivity'))}, "
                   f"specificity {_interval(figures.get('specificity'))}")
    test = realized.get("sensitivity_test")
    if test:
        state = "ALERT: sensitivity fell" if test["alert"] else "no fall in sensitivity"
        typer.echo(f"Sensitivity test (CUSUM on {test['n_positives']} labelled pneumonias, {test['n_missed']} missed): "
                   f"{test['statistic']:.2f} of {test['threshold']}: {state}")
    for group in (realized.get("subgroups") or {}).get("alerts") or []:
        typer.echo(f"ALERT: subgroup {group} misses pneumonia more often than the other films")
    typer.echo(f"Wrote {path}")


def _interval(value: dict | None) -> str:
    if not value or value.get("estimate") is None:
        return "n/a"
    return f"{value['estimate']:.3f} ({value['low']:.3f}-{value['high']:.3f})"
