"""Monitoring of a batch of predictions against a reference, with Evidently.

:func:`build_monitoring_report` reads one or more predictions files (what
``pneumo-batch score`` writes), compares their scored, in-scope rows with a
reference (the model's training profile, :mod:`pneumo_batch.monitoring.reference`,
or another predictions file) and writes into ``out_dir``:

- ``report.html``: the Evidently report (drift table and tests), for people;
- ``report.json``: the same metrics and test results, for machines;
- ``class_balance.csv``: the share flagged at each operating point (and the
  prevalence, with labels) against the reference, with intervals (informational);
- ``summary.json``: the verdict (:class:`MonitoringSummary`), written last.

Four alerts, each its own module's rule; ``alert`` is any of them. The
three that need no labels share one false-alarm budget
(:attr:`MonitoringRules.false_alarm_rate`, 2 %), each at a third of it
(:attr:`MonitoringRules.test_alpha`), so a night like the training data
raises any of them at most that often (Bonferroni):

- ``out_of_scope_alert`` (:mod:`~.scope`): more out-of-scope rows than the
  gate's validated false-flag rate explains (one-sided binomial test).
  Out-of-scope and error rows are counted and left out of everything else.
- ``class_balance_alert`` (:mod:`~.balance`): the error-corrected
  prevalence estimate's interval lies wholly outside the expected range.
- ``drift_detected`` (:mod:`~.drift`): a column moved by at least an effect
  size and significantly, against the reference resampled per class to the
  night's estimated prevalence (so fewer sick children is not drift, a new
  scanner still is). The rule is registered as an Evidently drift method, so
  the report's tests show exactly the verdict of ``summary.json`` (read back
  from them).
- ``performance_alert`` (:mod:`~.performance`, with labels only): a
  measured figure's interval lies wholly below the validated figure minus a
  margin. Without labels the performance is estimated (``estimated_performance``),
  marked not valid when the images drifted; it raises no alert.

Below :attr:`MonitoringRules.min_rows` scored in-scope rows, drift and class
balance raise no alert (the scope test is exact at any size). Evidently is
imported inside the functions that need it: scoring never imports it.
"""


from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pneumo_batch import predictions as cols
from pneumo_batch import storage
from pneumo_batch.errors import InputError
from pneumo_batch.monitoring.balance import (
    flat_share,
    prevalence_finding,
    share_comparisons,
    training_prevalence,
    validation_profile,
)
from pneumo_batch.monitoring.drift import column_drifts, drift_columns_of
from pneumo_batch.monitoring.evidently_report import (
    batch_time,
    drifted_by_column,
    evaluation_frames,
    run_evidently,
    snapshot_metadata,
)
from pneumo_batch.monitoring.loading import (
    check_predictions,
    discover_predictions,
    read_reference,
    read_run_descriptions,
)
from pneumo_batch.monitoring.performance import (
    estimate_performance,
    has_labels,
    performance_figures,
    realized_screening,
    validated_figures,
)
from pneumo_batch.monitoring.prevalence import PrevalenceEstimate
from pneumo_batch.monitoring.realized import compact
from pneumo_batch.monitoring.reference import reweighted_reference
from pneumo_batch.monitoring.sampling import Batch, read_batch, sample_frame
from pneumo_batch.monitoring.scope import false_flag_rate, out_of_scope_test, split_by_scope
from pneumo_batch.monitoring.site_calibration import VALIDATION_BASIS, judged_nights, site_profile
from pneumo_batch.monitoring.summary import (
    MonitoringRules,
    MonitoringSummary,
    batch_size_rule,
    models_of,
    top_error_reasons,
    top_reasons,
)
from pneumo_batch.monitoring.verdict import Findings, alert_lines, verdict_sentence
from pneumo_batch.monitoring.workspace import DEFAULT_PROJECT, add_to_workspace, night_figures

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

SUMMARY_FILE = "summary.json"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
CLASS_BALANCE_CSV = "class_balance.csv"


def build_monitoring_report(
    current: pd.DataFrame | str | Path | Sequence[str | Path],
    reference: pd.DataFrame | str | Path,
    out_dir: str | Path,
    *,
    model_metadata: Mapping[str, Any] | None = None,
    validated: Mapping[str, Any] | None = None,
    workspace: str | Path | None = None,
    project: str = DEFAULT_PROJECT,
    night: date | None = None,
    rules: MonitoringRules = MonitoringRules(),
    realized: Mapping[str, Any] | None = None,
) -> MonitoringSummary:
    """Compare a batch of predictions with a reference; write the report files; return the verdict.

    ``current`` is a DataFrame, a predictions file, or a list of files and
    folders of them. ``reference`` is the model's training profile or another
    predictions file (or a DataFrame of either). ``model_metadata`` (a
    model's ``metadata.json`` as a dict; default: the one the predictions
    files carry) supplies the operating points when the predictions lack
    ``threshold_<point>`` columns, the validated figures, the validation
    confusion the prevalence estimate corrects with, and the scope gate's
    false-flag rate. ``validated`` overrides those figures:
    ``{"auc": 0.95, "operating_points": {"screening": {"sensitivity": 0.97,
    "specificity": 0.6}, ...}}``. With ``workspace`` the run is also added
    as a snapshot to that Evidently workspace, in project ``project``; with
    ``night`` (nightly runs) it is dated that night and replaces the night's
    earlier snapshot. ``realized`` is an output root's realized-performance
    history (:func:`~.realized.refresh_realized`): its sensitivity and
    subgroup alerts join the verdict, its figures ``realized_performance``
    and ``subgroups``, and with enough labelled films of other nights it
    calibrates the label-free estimates (:mod:`~.site_calibration`,
    ``estimate_basis``).
    """
    out_dir = Path(out_dir)
    inputs, read, runs = _read_batch(current, rules)
    batch, sample = read.light, read.sample
    if model_metadata is None:
        # the predictions file carries the metadata of the model that scored it
        model_metadata = next((r["model"]["metadata"] for r in runs if isinstance((r.get("model") or {}).get("metadata"), dict)), None)
    reference_frame = read_reference(reference)
    reference_source = "<DataFrame>" if isinstance(reference, pd.DataFrame) else str(reference)
    warnings: list[str] = []
    rng = np.random.default_rng(rules.seed)

    rows = split_by_scope(batch)
    ok, errors = rows.in_scope, rows.errors
    ok_sample = split_by_scope(sample).in_scope if read.record.sampled else ok
    ref_ok = reference_frame[reference_frame[cols.STATUS] == cols.STATUS_OK].reset_index(drop=True)
    if len(ref_ok) == 0:
        raise InputError(f"the reference {reference_source} has no scored rows")

    thresholds = _operating_points(batch, model_metadata, warnings)
    validated = validated if validated is not None else validated_figures(model_metadata)
    enough = len(ok) >= rules.min_rows

    rate, rate_source = false_flag_rate(runs, model_metadata, rules.default_false_flag_rate)
    n_out = len(rows.out_of_scope)
    scope = out_of_scope_test(n_out, len(ok) + n_out, false_flag_rate=rate, alpha=rules.test_alpha, source=rate_source)

    validation = validation_profile(model_metadata, thresholds, rules, rng, warnings) if len(ok) else None
    basis = VALIDATION_BASIS if validation is not None else None
    if validation is not None and realized is not None:
        validation, basis = site_profile(
            realized, validation, point=rules.prevalence_point, exclude=judged_nights(inputs, night),
            models={str(m) for m in batch.get(cols.MODEL_SHA256, pd.Series(dtype=str)).dropna().unique()},
            min_per_class=rules.site_min_per_class, rng=rng, warnings=warnings,
        )
    training = training_prevalence(ref_ok, model_metadata, validation)
    estimate = prevalence = None
    if validation is not None and training is not None:
        estimate, prevalence = prevalence_finding(validation, ok, training, rules, rng)
    drift_reference = _drift_reference(ref_ok, estimate, rng, warnings)

    drift_columns = drift_columns_of(ok_sample, ref_ok, warnings)
    current_frame, drift_reference_eval = evaluation_frames(ok_sample, drift_reference, thresholds, drift_columns)
    # class balance counts every in-scope row: the decision and label columns are light
    balance_frame, reference_eval = evaluation_frames(ok, ref_ok, thresholds, ([], []))
    balance_columns = [(name, cols.prediction_column(name)) for name in thresholds]
    if has_labels(ok) and has_labels(ref_ok):
        balance_columns.append(("prevalence", cols.LABEL))
    drift_alpha = rules.test_alpha / max(len(drift_columns[0]) + len(drift_columns[1]), 1)
    balance_alpha = rules.test_alpha / max(len(balance_columns), 1)

    storage.make_folder(out_dir)
    files: dict[str, str] = {}
    snapshot = None
    statuses: dict[str, bool] = {}
    if len(ok_sample) > 0:
        snapshot = run_evidently(
            current_frame,
            drift_reference_eval,
            drift_columns,
            [],
            drift_alpha,
            balance_alpha,
            rules,
            timestamp=batch_time(batch),
            metadata=snapshot_metadata(batch, ok, errors),
        )
        statuses = drifted_by_column(snapshot)
        files = _save_report(snapshot, out_dir)
    else:
        warnings.append("no scored in-scope rows: no drift or class-balance figures")

    drift = column_drifts(current_frame, drift_reference_eval, drift_columns, statuses, drift_alpha, rules)
    balance = share_comparisons(balance_frame, reference_eval, balance_columns, thresholds, balance_alpha, rules)
    performance = performance_figures(ok_sample, thresholds, validated, rules) if has_labels(ok_sample) else []
    drift_detected = enough and any(d.drifted for d in drift)
    estimated = None
    if estimate is not None and validation is not None:
        estimated = estimate_performance(
            validation, estimate, image_drift=drift_detected, operating_point=rules.prevalence_point,
            realized=realized_screening(ok, validation.threshold),
        )
        if basis != VALIDATION_BASIS:
            estimated = dataclasses.replace(estimated, reason=estimated.reason.replace("validation", "the site's labelled"))
    findings = Findings(
        n_in_scope=len(ok),
        n_flagged=_flagged(ok, thresholds.get(rules.prevalence_point)),
        n_errors=len(errors),
        enough_rows=enough,
        drift=drift,
        drift_detected=drift_detected,
        prevalence=prevalence,
        class_balance_alert=enough and prevalence is not None and prevalence.alert,
        scope=scope,
        performance=performance,
        performance_alert=enough and any(p.below_validated for p in performance),
        sensitivity=(realized or {}).get("sensitivity_test"),
        subgroup_alerts=((realized or {}).get("subgroups") or {}).get("alerts") or [],
    )
    alerts = alert_lines(findings)

    storage.write_text(out_dir / CLASS_BALANCE_CSV, pd.DataFrame([flat_share(c) for c in balance]).to_csv(index=False))
    files["class_balance"] = CLASS_BALANCE_CSV

    summary = MonitoringSummary(
        verdict=verdict_sentence(findings),
        drift_detected=drift_detected,
        class_balance_alert=findings.class_balance_alert,
        out_of_scope_alert=scope.alert,
        performance_alert=findings.performance_alert,
        alert=bool(alerts),
        alerts=alerts,
        n_rows=len(batch),
        n_scored=len(ok) + n_out,
        n_in_scope=len(ok),
        n_flagged=findings.n_flagged,
        n_out_of_scope=n_out,
        out_of_scope_share=scope.share,
        top_out_of_scope_reasons=top_reasons(rows.out_of_scope, cols.SCOPE_REASON, "share_of_out_of_scope"),
        out_of_scope_test=scope,
        n_errors=len(errors),
        error_share=len(errors) / len(batch) if len(batch) else 0.0,
        top_errors=top_error_reasons(errors),
        prevalence_estimate=prevalence,
        estimated_performance=estimated,
        drifted_features=[d for d in drift if d.drifted],
        drift=drift,
        class_balance=balance,
        performance=performance,
        batch_size_rule=batch_size_rule(len(ok), rules),
        rules=rules,
        inputs=inputs,
        reference={"source": reference_source, "n_rows": len(reference_frame), "n_scored": len(ref_ok),
                   "models": models_of(ref_ok), "n_compared": len(drift_reference),
                   "resampled_to_prevalence": None if estimate is None or drift_reference is ref_ok else estimate.value},
        models=models_of(batch),
        run_ids=sorted({str(r) for r in batch.get(cols.RUN_ID, pd.Series(dtype=str)).dropna().unique()}),
        files={**files, "summary": SUMMARY_FILE},
        workspace=None,
        warnings=warnings,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sensitivity_alert=findings.sensitivity_alert,
        subgroup_alert=bool(findings.subgroup_alerts),
        realized_performance=compact(realized) if realized is not None else None,
        subgroups=(realized or {}).get("subgroups"),
        estimate_basis=basis,
        sample=dataclasses.asdict(read.record),
    )
    if workspace is not None and snapshot is not None:
        added = add_to_workspace(snapshot, Path(workspace), project, figures=night_figures(summary), night=night)
        summary = dataclasses.replace(summary, workspace=added)
    storage.write_json(out_dir / SUMMARY_FILE, summary.as_dict(), allow_nan=False)
    return summary


def _read_batch(
    current: pd.DataFrame | str | Path | Sequence[str | Path], rules: MonitoringRules
) -> tuple[list[str], Batch, list[dict[str, Any]]]:
    """The inputs' names, their rows (every row's light columns and the sample), and the files' run descriptions."""
    if isinstance(current, pd.DataFrame):
        check_predictions(current, "predictions")
        return ["<DataFrame>"], sample_frame(current, rules.sample_rows, rules.seed), []
    paths = [current] if isinstance(current, (str, Path)) else list(current)
    found = discover_predictions(paths)
    inputs = [str(p) for p in found]
    return inputs, read_batch(found, rules.sample_rows, rules.seed), read_run_descriptions(inputs)


def _save_report(snapshot: Snapshot, out_dir: Path) -> dict[str, str]:
    with storage.atomic_path(out_dir / REPORT_HTML) as html:
        snapshot.save_html(str(html))
    with storage.atomic_path(out_dir / REPORT_JSON) as json_file:
        snapshot.save_json(str(json_file))
    return {"html": REPORT_HTML, "json": REPORT_JSON}


def _drift_reference(
    ref_ok: pd.DataFrame, estimate: PrevalenceEstimate | None, rng: np.random.Generator, warnings: list[str]
) -> pd.DataFrame:
    """The reference resampled per class to the night's estimated prevalence; as is without labels or estimate."""
    if estimate is None:
        warnings.append("drift compared with the reference as is: no prevalence estimate to resample it to")
        return ref_ok
    if not has_labels(ref_ok):
        warnings.append("drift compared with the reference as is: it has no labels to resample by class")
        return ref_ok
    return reweighted_reference(ref_ok, estimate.value, rng)


def _flagged(in_scope: pd.DataFrame, threshold: float | None) -> int:
    if threshold is None:
        return 0
    scores = pd.to_numeric(in_scope[cols.SCORE], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return int((scores >= threshold).sum())


def _operating_points(
    batch: pd.DataFrame, model_metadata: Mapping[str, Any] | None, warnings: list[str]
) -> dict[str, float]:
    """Thresholds actually applied (the predictions' ``threshold_<point>``), else the metadata's."""
    from_metadata = {
        str(name): float(point["threshold"])
        for name, point in ((model_metadata or {}).get("operating_points") or {}).items()
    }
    thresholds: dict[str, float] = {}
    for column in batch.columns:
        if column.startswith(cols.THRESHOLD_PREFIX):
            values = batch[column].dropna().unique()
            if len(values) == 0:
                continue
            name = column[len(cols.THRESHOLD_PREFIX) :]
            if len(values) > 1:
                warnings.append(f"{column} takes {len(values)} values in this batch; using the first")
            thresholds[name] = float(values[0])
            if name in from_metadata and not math.isclose(thresholds[name], from_metadata[name], abs_tol=1e-6):
                warnings.append(
                    f"operating point {name}: predictions used threshold {thresholds[name]:.6g}, "
                    f"the model metadata says {from_metadata[name]:.6g}"
                )
    for name, threshold in from_metadata.items():
        thresholds.setdefault(name, threshold)
    if not thresholds:
        warnings.append("no operating points (no threshold_<point> columns, no model metadata)")
    return thresholds
