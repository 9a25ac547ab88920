"""Drift and class-balance monitoring of predictions against a reference, with Evidently.

:func:`build_monitoring_report` reads one or more predictions files (what
``pneumo-batch score`` writes), compares their ``ok`` rows with a reference
(the model's training profile, :mod:`pneumo_batch.monitoring.reference`, or another
predictions file) and writes into ``out_dir``:

- ``report.html``: the Evidently report (drift tables and tests), for people;
- ``report.json``: the same metrics and test results, for machines;
- ``class_balance.csv``: the share flagged at each operating point (and the
  prevalence, with labels) against the reference, with intervals;
- ``summary.json``: the verdict (:class:`MonitoringSummary`), written last.

Verdict rules (one family of tests for drift, one for class balance):

- Drift, per column (the image features, the score, and the file facts when
  the reference has them): the column has drifted when its distribution
  moved by at least an effect-size threshold (numeric: Wasserstein distance
  divided by the reference's standard deviation, at least
  :attr:`MonitoringRules.numeric_effect`; categorical: total variation
  distance, at least :attr:`MonitoringRules.categorical_effect`) and the
  move is significant (two-sample Kolmogorov-Smirnov test; Fisher's exact or
  chi-square test), with the family's significance level split across the
  columns (Bonferroni). The effect threshold keeps a large batch from
  alerting on trivial moves; the test keeps a small batch from alerting on
  noise (20 images sit 0.2 to 0.6 reference standard deviations from the
  reference by chance alone, and the test knows it). ``drift_detected``
  when any column drifted.
- Class balance: the share flagged at each operating point, and with labels
  the prevalence, against the reference: the same rule with the categorical
  threshold (an absolute move of at least 5 points) and Fisher's exact test.
- Performance, with labels: sensitivity and specificity (Wilson intervals)
  and AUC (bootstrap interval) of the batch; an alert when the whole
  interval lies more than :attr:`MonitoringRules.performance_margin` below
  the validated figure. The margin is needed: a threshold chosen on the
  validation set sits exactly at its target there (a screening point picked
  for 95 % sensitivity on validation data shows about 92 % on other images
  of the same distribution).
- Below :attr:`MonitoringRules.min_rows` scored rows no alert is raised at
  all: the figures are reported, the verdict says so.

Both rules are registered as Evidently drift methods, so the report's drift
tables and tests show exactly the verdict that ``summary.json`` gives (the
summary is read back from Evidently's test results).

Evidently is imported inside the functions that need it: scoring never
imports it.
"""


from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from pneumo_batch import predictions as cols
from pneumo_batch import storage
from pneumo_batch.errors import InputError
from pneumo_batch.monitoring.balance import flat_share, share_comparisons
from pneumo_batch.monitoring.drift import column_drifts, drift_columns_of
from pneumo_batch.monitoring.evidently_report import (
    batch_time,
    drifted_by_column,
    evaluation_frames,
    run_evidently,
    snapshot_metadata,
)
from pneumo_batch.monitoring.loading import check_predictions, discover_predictions, read_predictions, read_reference
from pneumo_batch.monitoring.performance import has_labels, performance_figures, validated_figures
from pneumo_batch.monitoring.summary import MonitoringRules, MonitoringSummary, batch_size_rule, models_of, top_error_reasons
from pneumo_batch.monitoring.workspace import DEFAULT_PROJECT, add_to_workspace

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
    rules: MonitoringRules = MonitoringRules(),
) -> MonitoringSummary:
    """Compare a batch of predictions with a reference; write the report files; return the verdict.

    ``current`` is a DataFrame, a predictions file, or a list of files and
    folders of them. ``reference`` is the model's training profile or another
    predictions file (or a DataFrame of either). ``model_metadata`` (a
    model's ``metadata.json`` as a dict) supplies the operating points when
    the predictions lack ``threshold_<point>`` columns, and the validated
    figures. ``validated`` overrides those figures:
    ``{"auc": 0.95, "operating_points": {"screening": {"sensitivity": 0.97,
    "specificity": 0.6}, ...}}``. With ``workspace`` the run is also added
    as a snapshot to that Evidently workspace, in project ``project``.
    """
    out_dir = Path(out_dir)
    if isinstance(current, pd.DataFrame):
        inputs: list[str] = ["<DataFrame>"]
        batch = current
        check_predictions(batch, "predictions")
    else:
        paths = [current] if isinstance(current, (str, Path)) else list(current)
        inputs = [str(p) for p in discover_predictions(paths)]
        batch = read_predictions(inputs)
    reference_frame = read_reference(reference)
    reference_source = "<DataFrame>" if isinstance(reference, pd.DataFrame) else str(reference)
    warnings: list[str] = []

    ok = batch[batch[cols.STATUS] == cols.STATUS_OK].reset_index(drop=True)
    errors = batch[batch[cols.STATUS] != cols.STATUS_OK]
    ref_ok = reference_frame[reference_frame[cols.STATUS] == cols.STATUS_OK].reset_index(drop=True)
    if len(ref_ok) == 0:
        raise InputError(f"the reference {reference_source} has no scored rows")

    thresholds = _operating_points(batch, model_metadata, warnings)
    validated = validated if validated is not None else validated_figures(model_metadata)
    enough = len(ok) >= rules.min_rows

    drift_columns = drift_columns_of(ok, ref_ok, warnings)
    current_frame, reference_eval = evaluation_frames(ok, ref_ok, thresholds, drift_columns)
    balance_columns = [(name, cols.prediction_column(name)) for name in thresholds]
    labelled = has_labels(ok) and has_labels(ref_ok)
    if labelled:
        balance_columns.append(("prevalence", cols.LABEL))

    drift_alpha = rules.family_alpha / max(len(drift_columns[0]) + len(drift_columns[1]), 1)
    balance_alpha = rules.family_alpha / max(len(balance_columns), 1)

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    snapshot = None
    statuses: dict[str, bool] = {}
    if len(ok) > 0:
        snapshot = run_evidently(
            current_frame,
            reference_eval,
            drift_columns,
            [column for _, column in balance_columns],
            drift_alpha,
            balance_alpha,
            rules,
            timestamp=batch_time(batch),
            metadata=snapshot_metadata(batch, ok, errors),
        )
        statuses = drifted_by_column(snapshot)
        with storage.atomic_path(out_dir / REPORT_HTML) as html:
            snapshot.save_html(str(html))
        with storage.atomic_path(out_dir / REPORT_JSON) as json_file:
            snapshot.save_json(str(json_file))
        files.update(html=REPORT_HTML, json=REPORT_JSON)
    else:
        warnings.append("no scored rows: no drift or class-balance figures")

    drift = column_drifts(current_frame, reference_eval, drift_columns, statuses, drift_alpha, rules)
    balance = share_comparisons(current_frame, reference_eval, balance_columns, thresholds, statuses, balance_alpha, rules)
    performance = performance_figures(ok, thresholds, validated, rules) if has_labels(ok) else []

    drift_detected = enough and any(d.drifted for d in drift)
    class_balance_alert = enough and any(c.alert for c in balance)
    performance_alert = enough and any(p.below_validated for p in performance)
    alerts = []
    if drift_detected:
        alerts.append("drift: " + ", ".join(d.column for d in drift if d.drifted))
    if class_balance_alert:
        alerts.append("class balance: " + ", ".join(c.name for c in balance if c.alert))
    if performance_alert:
        alerts.append("performance below validated: " + ", ".join(p.name for p in performance if p.below_validated))

    storage.write_text(out_dir / CLASS_BALANCE_CSV, pd.DataFrame([flat_share(c) for c in balance]).to_csv(index=False))
    files["class_balance"] = CLASS_BALANCE_CSV

    workspace_info = None
    if workspace is not None and snapshot is not None:
        workspace_info = add_to_workspace(snapshot, Path(workspace), project)

    summary = MonitoringSummary(
        drift_detected=drift_detected,
        class_balance_alert=class_balance_alert,
        performance_alert=performance_alert,
        alert=bool(alerts),
        alerts=alerts,
        n_rows=len(batch),
        n_scored=len(ok),
        n_errors=len(errors),
        error_share=len(errors) / len(batch) if len(batch) else 0.0,
        top_errors=top_error_reasons(errors),
        drifted_features=[d for d in drift if d.drifted],
        drift=drift,
        class_balance=balance,
        performance=performance,
        batch_size_rule=batch_size_rule(len(ok), rules),
        rules=rules,
        inputs=inputs,
        reference={"source": reference_source, "n_rows": len(reference_frame), "n_scored": len(ref_ok),
                   "models": models_of(ref_ok)},
        models=models_of(batch),
        run_ids=sorted({str(r) for r in batch.get(cols.RUN_ID, pd.Series(dtype=str)).dropna().unique()}),
        files={**files, "summary": SUMMARY_FILE},
        workspace=workspace_info,
        warnings=warnings,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    storage.write_json(out_dir / SUMMARY_FILE, summary.as_dict(), allow_nan=False)
    return summary


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
