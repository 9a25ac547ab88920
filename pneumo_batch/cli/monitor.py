"""``pneumo-batch monitor``: drift and class-balance report of predictions against the training profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pneumo_batch import storage
from pneumo_batch.cli.common import GROUP_HELP, ExitCode, check_report_folder, domain_errors, warn_wider_outputs
from pneumo_batch.model import MODEL_ENV, REFERENCE_PROFILE_FILE
from pneumo_batch.monitoring import (
    INDEX_HTML,
    SUMMARY_FILE,
    WORKSPACE_ENV,
    build_monitoring_report,
    discover_predictions,
    read_predictions,
    resolve_reference,
    write_verdict_page,
)


def monitor(
    predictions: Annotated[
        list[Path],
        typer.Argument(help="Predictions Parquet files written by `score`, or folders of them."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html, report.json, class_balance.csv and summary.json.")],
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

    Writes an Evidently HTML report and its JSON, the class-balance figures
    and summary.json (the verdict). Exit code 0, or 4 when --fail-on-drift is
    given and summary.json says alert: image drift, a class-balance shift,
    too many out-of-scope images, or (with labels) a performance drop.
    """
    with domain_errors():
        check_report_folder(out)
        predictions = discover_predictions(predictions)  # a missing input fails before any other work
        reference, metadata = resolve_reference(model, reference)
        warn_wider_outputs(out, None if no_workspace else workspace)
        with storage.readable_by(group):
            summary = build_monitoring_report(
                predictions,
                reference,
                out,
                model_metadata=metadata,
                workspace=None if no_workspace else workspace,
            )
            write_verdict_page(out, summary.as_dict(), read_predictions([str(p) for p in predictions]))
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
