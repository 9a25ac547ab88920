"""Drift and class-balance monitoring of predictions against a reference, with Evidently.

:func:`build_monitoring_report` reads one or more predictions files (what
``pneumo-batch score`` writes), compares their ``ok`` rows with a reference
(the model's training profile, :mod:`pneumo_batch.profile`, or another
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

import json
import math
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.features import NUMERIC_IMAGE_FEATURES

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

WORKSPACE_ENV = "PNEUMO_BATCH_WORKSPACE"
"""Environment variable naming the Evidently workspace (the CLI's ``--workspace`` default)."""

DEFAULT_PROJECT = "pneumo-batch"
"""Name of the Evidently project that collects the runs."""

SUMMARY_FILE = "summary.json"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
CLASS_BALANCE_CSV = "class_balance.csv"
SUMMARY_FORMAT_VERSION = 1

#: Numeric file facts; compared only when the reference has them.
_NUMERIC_FILE_FEATURES = ("img_width", "img_height", "img_aspect_ratio")
_CATEGORICAL_FILE_FEATURES = ("img_mode", "img_format")
_TOP_ERRORS = 5
_EXACT_KS_MAX_ROWS = 1000


@dataclass(frozen=True)
class MonitoringRules:
    """The thresholds of the verdict (see the module docstring)."""

    family_alpha: float = 0.01
    """Significance level of each family of tests (drift; class balance), split across its columns."""
    numeric_effect: float = 0.2
    """Smallest move of a numeric column that counts: Wasserstein distance / reference standard deviation."""
    categorical_effect: float = 0.05
    """Smallest move of a categorical column that counts: total variation distance (for a share, its difference)."""
    min_rows: int = 10
    """Fewer scored rows than this raise no alert at all."""
    confidence: float = 0.95
    """Level of the reported intervals."""
    performance_margin: float = 0.05
    """A performance figure alerts when its interval lies wholly below the validated figure minus this."""
    bootstrap_resamples: int = 500


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    """``numeric`` or ``categorical``."""
    method: str
    score: float
    """The effect size: normed Wasserstein distance, or total variation distance."""
    threshold: float
    p_value: float
    alpha: float
    drifted: bool
    reference_mean: float | None = None
    current_mean: float | None = None


@dataclass(frozen=True)
class ShareComparison:
    """A share of the batch (flagged at an operating point, or with pneumonia) against the reference."""

    name: str
    column: str
    threshold: float | None
    count: int
    n: int
    share: metrics.Interval
    reference_count: int
    reference_n: int
    reference_share: metrics.Interval
    difference: float
    p_value: float
    alpha: float
    min_difference: float
    alert: bool


@dataclass(frozen=True)
class PerformanceFigure:
    name: str
    """``auc``, or ``<point>.sensitivity`` / ``<point>.specificity``."""
    value: metrics.Interval
    n: int
    validated: float | None
    below_validated: bool


@dataclass(frozen=True)
class MonitoringSummary:
    """What ``summary.json`` holds (:meth:`as_dict`)."""

    drift_detected: bool
    class_balance_alert: bool
    performance_alert: bool
    alert: bool
    alerts: list[str]
    n_rows: int
    n_scored: int
    n_errors: int
    error_share: float
    top_errors: list[dict[str, Any]]
    drifted_features: list[ColumnDrift]
    drift: list[ColumnDrift]
    class_balance: list[ShareComparison]
    performance: list[PerformanceFigure]
    batch_size_rule: dict[str, Any]
    rules: MonitoringRules
    inputs: list[str]
    reference: dict[str, Any]
    models: list[dict[str, Any]]
    run_ids: list[str]
    files: dict[str, str]
    workspace: dict[str, str] | None
    warnings: list[str] = field(default_factory=list)
    created_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format_version": SUMMARY_FORMAT_VERSION, **_finite(data)}


# --------------------------------------------------------------------------- inputs


def discover_predictions(paths: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of Parquet files.

    A folder contributes every ``*.parquet`` file directly inside it, sorted
    by name. Raises :class:`InputError` for a missing path or an empty result.
    """
    if not paths:
        raise InputError("no predictions given")
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.parquet") if p.is_file() and not p.name.startswith("."))
            if not files:
                raise InputError(f"no .parquet files in folder {path}")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"predictions not found: {path}")
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def read_predictions(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Read and concatenate predictions files (see :func:`discover_predictions`)."""
    frames = [_read_parquet(path) for path in discover_predictions(paths)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    _check_predictions(frame, "predictions")
    return frame


def read_reference(source: pd.DataFrame | str | Path) -> pd.DataFrame:
    """The reference as a DataFrame: a training profile or predictions file, or a frame as is."""
    frame = source if isinstance(source, pd.DataFrame) else _read_parquet(Path(source))
    _check_predictions(frame, "reference")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"predictions not found: {path}")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path} as Parquet: {' '.join(str(error).split())[:200]}") from None


def _check_predictions(frame: pd.DataFrame, what: str) -> None:
    missing = [name for name in (cols.STATUS, cols.SCORE) if name not in frame.columns]
    if missing:
        raise InputError(f"{what} lack column(s) {', '.join(missing)}; is this a pneumo-batch predictions file?")


# --------------------------------------------------------------------------- statistics


def numeric_drift(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Normed Wasserstein distance and two-sample K-S p-value of two samples (NaNs dropped)."""
    from scipy import stats

    reference = _finite_values(reference)
    current = _finite_values(current)
    if len(reference) == 0 or len(current) == 0:
        return float("nan"), 1.0
    norm = max(float(np.std(reference)), 1e-3)
    effect = float(stats.wasserstein_distance(reference, current)) / norm
    # The exact distribution matters for small batches; past a thousand rows
    # the asymptotic one is as good and a hundred times faster.
    method = "asymp" if min(len(reference), len(current)) > _EXACT_KS_MAX_ROWS else "auto"
    p_value = float(stats.ks_2samp(reference, current, method=method).pvalue)
    return effect, p_value


def categorical_drift(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Total variation distance and the p-value of a two-sample test of two categorical samples.

    Fisher's exact test for two categories (exact at any batch size), the
    chi-square test of the 2 x k table otherwise. A category absent from one
    sample is a real difference, not an error.
    """
    from scipy import stats

    reference, current = reference.dropna(), current.dropna()
    if len(reference) == 0 or len(current) == 0:
        return float("nan"), 1.0
    ref_counts = reference.astype(str).value_counts()
    cur_counts = current.astype(str).value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index))
    if len(categories) < 2:
        return 0.0, 1.0
    table = np.array([[ref_counts.get(c, 0) for c in categories], [cur_counts.get(c, 0) for c in categories]])
    effect = 0.5 * float(np.abs(table[0] / table[0].sum() - table[1] / table[1].sum()).sum())
    if len(categories) == 2:
        p_value = float(stats.fisher_exact(table).pvalue)
    else:
        p_value = float(stats.chi2_contingency(table).pvalue)
    return effect, p_value


def _finite_values(values: Any) -> np.ndarray:
    array = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return array[np.isfinite(array)]


# --------------------------------------------------------------------------- Evidently methods


_REGISTERED: set[str] = set()


def _numeric_method(alpha: float) -> str:
    """Register (once) and name the Evidently drift method of numeric columns at level ``alpha``."""
    return _gated_method(
        f"pneumo_wasserstein_ks_{alpha:.3g}",
        f"Wasserstein distance (normed), drift only if K-S p < {alpha:.2g}",
        "Numerical",
        MonitoringRules.numeric_effect,
        lambda reference, current: numeric_drift(reference.to_numpy(), current.to_numpy()),
        alpha,
    )


def _categorical_method(alpha: float) -> str:
    """Register (once) and name the Evidently drift method of categorical columns at level ``alpha``."""
    return _gated_method(
        f"pneumo_tvd_exact_{alpha:.3g}",
        f"total variation distance, drift only if Fisher/chi-square p < {alpha:.2g}",
        "Categorical",
        MonitoringRules.categorical_effect,
        categorical_drift,
        alpha,
    )


def _gated_method(
    name: str,
    display_name: str,
    column_type: str,
    default_threshold: float,
    drift: Callable[[pd.Series, pd.Series], tuple[float, float]],
    alpha: float,
) -> str:
    """Register an Evidently drift method: drift when the effect reaches the threshold and ``p < alpha``."""
    if name not in _REGISTERED:
        from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
        from evidently.legacy.core import ColumnType

        def gated(reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float) -> tuple[float, bool]:
            effect, p_value = drift(reference, current)
            return effect, bool(effect >= threshold and p_value < alpha)

        register_stattest(
            StatTest(
                name=name,
                display_name=display_name,
                allowed_feature_types=[getattr(ColumnType, column_type)],
                default_threshold=default_threshold,
            ),
            gated,
        )
        _REGISTERED.add(name)
    return name


def _method_text(kind: str, rules: MonitoringRules, alpha: float) -> str:
    if kind == "numeric":
        return (
            f"normed Wasserstein distance >= {rules.numeric_effect:g} "
            f"and two-sample Kolmogorov-Smirnov p < {alpha:.3g}"
        )
    return f"total variation distance >= {rules.categorical_effect:g} and Fisher/chi-square p < {alpha:.3g}"


# --------------------------------------------------------------------------- the report


def resolve_reference(
    model: str | Path | None = None, reference: str | Path | None = None
) -> tuple[Path, dict[str, Any] | None]:
    """The reference to compare with and the model metadata to use.

    Without ``reference``, the model's (default: the shipped default model)
    ``reference_profile.parquet``. The metadata comes from ``model`` when a
    model is named or no reference is given; else it is ``None``.
    """
    from pneumo_batch.model import REFERENCE_PROFILE_FILE, load_model

    if reference is not None and model is None:
        return Path(reference), None
    artifact = load_model(model, verify=False)
    if reference is not None:
        return Path(reference), artifact.metadata
    if not artifact.reference_profile_path.is_file():
        raise InputError(f"model {artifact.directory} has no {REFERENCE_PROFILE_FILE}; pass --reference FILE")
    return artifact.reference_profile_path, artifact.metadata


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
        _check_predictions(batch, "predictions")
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

    drift_columns = _drift_columns(ok, ref_ok, warnings)
    current_frame, reference_eval = _evaluation_frames(ok, ref_ok, thresholds, drift_columns)
    balance_columns = [(name, cols.prediction_column(name)) for name in thresholds]
    has_labels = _has_labels(ok) and _has_labels(ref_ok)
    if has_labels:
        balance_columns.append(("prevalence", cols.LABEL))

    drift_alpha = rules.family_alpha / max(len(drift_columns[0]) + len(drift_columns[1]), 1)
    balance_alpha = rules.family_alpha / max(len(balance_columns), 1)

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    snapshot = None
    statuses: dict[str, bool] = {}
    if len(ok) > 0:
        snapshot = _run_evidently(
            current_frame,
            reference_eval,
            drift_columns,
            [column for _, column in balance_columns],
            drift_alpha,
            balance_alpha,
            rules,
            timestamp=_batch_time(batch),
            metadata=_snapshot_metadata(batch, ok, errors),
        )
        statuses = _drifted_by_column(snapshot)
        snapshot.save_html(str(out_dir / REPORT_HTML))
        snapshot.save_json(str(out_dir / REPORT_JSON))
        files.update(html=REPORT_HTML, json=REPORT_JSON)
    else:
        warnings.append("no scored rows: no drift or class-balance figures")

    drift = _column_drifts(current_frame, reference_eval, drift_columns, statuses, drift_alpha, rules)
    balance = _share_comparisons(current_frame, reference_eval, balance_columns, thresholds, statuses, balance_alpha, rules)
    performance = _performance(ok, thresholds, validated, rules) if _has_labels(ok) else []

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

    pd.DataFrame([_flat_share(c) for c in balance]).to_csv(out_dir / CLASS_BALANCE_CSV, index=False)
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
        batch_size_rule=_batch_size_rule(len(ok), rules),
        rules=rules,
        inputs=inputs,
        reference={"source": reference_source, "n_rows": len(reference_frame), "n_scored": len(ref_ok),
                   "models": _models(ref_ok)},
        models=_models(batch),
        run_ids=sorted({str(r) for r in batch.get(cols.RUN_ID, pd.Series(dtype=str)).dropna().unique()}),
        files={**files, "summary": SUMMARY_FILE},
        workspace=workspace_info,
        warnings=warnings,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    _write_json(out_dir / SUMMARY_FILE, summary.as_dict())
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


def validated_figures(model_metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The validated AUC, sensitivity and specificity from a model's metadata, if it has them.

    Reads ``metadata["metrics"]["validation"]`` (or ``["val"]``): ``auc`` (or
    ``roc_auc``) and, per operating point, ``sensitivity`` and
    ``specificity``, either under ``operating_points`` or at the top level
    under the point's name. Falls back to the same keys inside each
    ``metadata["operating_points"][name]``.
    """
    if not model_metadata:
        return None
    section = model_metadata.get("metrics") or {}
    validation = section.get("validation") or section.get("val") or {}
    figures: dict[str, Any] = {"operating_points": {}}
    auc = validation.get("auc", validation.get("roc_auc"))
    if isinstance(auc, Mapping):
        auc = auc.get("estimate", auc.get("value"))
    if auc is not None:
        figures["auc"] = float(auc)
    points = validation.get("operating_points") or {}
    for name, point in (model_metadata.get("operating_points") or {}).items():
        source = points.get(name) or validation.get(name) or point
        if not isinstance(source, Mapping):
            continue
        found = {}
        for key in ("sensitivity", "specificity"):
            value = source.get(key)
            if isinstance(value, Mapping):
                value = value.get("estimate", value.get("value"))
            if value is not None:
                found[key] = float(value)
        if found:
            figures["operating_points"][name] = found
    return figures if ("auc" in figures or figures["operating_points"]) else None


def _drift_columns(
    ok: pd.DataFrame, ref_ok: pd.DataFrame, warnings: list[str]
) -> tuple[list[str], list[str]]:
    """Numeric and categorical columns to test: those with values in both frames."""

    def usable(column: str) -> bool:
        return column in ok and column in ref_ok and ok[column].notna().any() and ref_ok[column].notna().any()

    numeric = [c for c in (*NUMERIC_IMAGE_FEATURES, cols.SCORE, *_NUMERIC_FILE_FEATURES) if usable(c)]
    categorical = [c for c in _CATEGORICAL_FILE_FEATURES if usable(c)]
    missing = [c for c in NUMERIC_IMAGE_FEATURES if c not in ok.columns or c not in ref_ok.columns]
    if missing:
        warnings.append(f"feature column(s) missing, not monitored: {', '.join(missing)}")
    return numeric, categorical


def _evaluation_frames(
    ok: pd.DataFrame,
    ref_ok: pd.DataFrame,
    thresholds: Mapping[str, float],
    drift_columns: tuple[list[str], list[str]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The columns Evidently sees. Reference decisions are re-derived at the batch's thresholds."""
    numeric, categorical = drift_columns
    frames = []
    for frame, is_reference in ((ok, False), (ref_ok, True)):
        out = pd.DataFrame(index=frame.index)
        for column in numeric:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
        for column in categorical:
            out[column] = frame[column].astype("string").astype(object)
        scores = pd.to_numeric(frame[cols.SCORE], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for name, threshold in thresholds.items():
            column = cols.prediction_column(name)
            if not is_reference and column in frame:
                flagged = frame[column].astype("boolean")
            else:
                flagged = pd.Series(np.where(np.isnan(scores), np.nan, scores >= threshold), index=frame.index)
                flagged = flagged.astype("boolean")
            out[column] = flagged.map({True: "flagged", False: "not flagged"}).astype(object)
        if cols.LABEL in frame:
            label = pd.to_numeric(frame[cols.LABEL], errors="coerce")
            out[cols.LABEL] = label.map({1: "pneumonia", 0: "normal"}).astype(object)
        frames.append(out)
    return frames[0], frames[1]


def _has_labels(frame: pd.DataFrame) -> bool:
    return cols.LABEL in frame and pd.to_numeric(frame[cols.LABEL], errors="coerce").isin([0, 1]).any()


def _run_evidently(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    drift_columns: tuple[list[str], list[str]],
    balance_columns: list[str],
    drift_alpha: float,
    balance_alpha: float,
    rules: MonitoringRules,
    *,
    timestamp: datetime,
    metadata: dict[str, str],
) -> Snapshot:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric, categorical = drift_columns
    drift_method = {c: _numeric_method(drift_alpha) for c in numeric}
    drift_method.update({c: _categorical_method(drift_alpha) for c in categorical})
    drift_threshold = {c: rules.numeric_effect for c in numeric}
    drift_threshold.update({c: rules.categorical_effect for c in categorical})
    balance_method = {c: _categorical_method(balance_alpha) for c in balance_columns}
    balance_threshold = {c: rules.categorical_effect for c in balance_columns}

    items = []
    drift_all = numeric + categorical
    if drift_all:
        # drift_share below 1/m: the data set counts as drifted when any one column drifted
        items.append(
            DataDriftPreset(
                columns=drift_all,
                per_column_method=drift_method,
                per_column_threshold=drift_threshold,
                drift_share=0.5 / len(drift_all),
            )
        )
    if balance_columns:
        items.append(
            DataDriftPreset(
                columns=balance_columns,
                per_column_method=balance_method,
                per_column_threshold=balance_threshold,
                drift_share=0.5 / len(balance_columns),
            )
        )
    used = drift_all + balance_columns
    definition = DataDefinition(
        numerical_columns=numeric,
        categorical_columns=[c for c in used if c not in numeric],
    )
    report = Report(items, include_tests=True, metadata=metadata, tags=["pneumo-batch", "monitor"])
    # Evidently correlates the numeric columns with np.corrcoef, which divides
    # by zero for a constant column (every image 28 px wide, say): a normal
    # batch, not an error. The drift methods handle constant columns themselves.
    with np.errstate(divide="ignore", invalid="ignore"):
        return report.run(
            Dataset.from_pandas(current[used], data_definition=definition),
            Dataset.from_pandas(reference[used], data_definition=definition),
            timestamp=timestamp,
        )


def _drifted_by_column(snapshot: Snapshot) -> dict[str, bool]:
    """Each column's verdict, read from the report's per-column drift tests (``FAIL`` = drifted)."""
    verdicts: dict[str, bool] = {}
    for test in snapshot.dict()["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift") and "column" in params:
            verdicts[params["column"]] = str(test.get("status", "")).upper().endswith("FAIL")
    return verdicts


def _column_drifts(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    drift_columns: tuple[list[str], list[str]],
    statuses: Mapping[str, bool],
    alpha: float,
    rules: MonitoringRules,
) -> list[ColumnDrift]:
    numeric, categorical = drift_columns
    result = []
    for column in numeric:
        effect, p_value = numeric_drift(reference[column].to_numpy(), current[column].to_numpy())
        result.append(
            ColumnDrift(
                column=column,
                kind="numeric",
                method=_method_text("numeric", rules, alpha),
                score=effect,
                threshold=rules.numeric_effect,
                p_value=p_value,
                alpha=alpha,
                drifted=statuses.get(column, False),
                reference_mean=float(np.nanmean(reference[column])) if len(reference) else None,
                current_mean=float(np.nanmean(current[column])) if current[column].notna().any() else None,
            )
        )
    for column in categorical:
        effect, p_value = categorical_drift(reference[column], current[column])
        result.append(
            ColumnDrift(
                column=column,
                kind="categorical",
                method=_method_text("categorical", rules, alpha),
                score=effect,
                threshold=rules.categorical_effect,
                p_value=p_value,
                alpha=alpha,
                drifted=statuses.get(column, False),
            )
        )
    return result


def _share_comparisons(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    balance_columns: list[tuple[str, str]],
    thresholds: Mapping[str, float],
    statuses: Mapping[str, bool],
    alpha: float,
    rules: MonitoringRules,
) -> list[ShareComparison]:
    positive = {cols.LABEL: "pneumonia"}
    result = []
    for name, column in balance_columns:
        wanted = positive.get(column, "flagged")
        cur, ref = current[column].dropna(), reference[column].dropna()
        count, n = int((cur == wanted).sum()), len(cur)
        ref_count, ref_n = int((ref == wanted).sum()), len(ref)
        _, p_value = categorical_drift(ref, cur) if n and ref_n else (float("nan"), 1.0)
        share = metrics.wilson_interval(count, n, rules.confidence)
        ref_share = metrics.wilson_interval(ref_count, ref_n, rules.confidence)
        result.append(
            ShareComparison(
                name=name,
                column=column,
                threshold=thresholds.get(name),
                count=count,
                n=n,
                share=share,
                reference_count=ref_count,
                reference_n=ref_n,
                reference_share=ref_share,
                difference=share.estimate - ref_share.estimate if n else float("nan"),
                p_value=p_value,
                alpha=alpha,
                min_difference=rules.categorical_effect,
                alert=statuses.get(column, False),
            )
        )
    return result


def _performance(
    ok: pd.DataFrame,
    thresholds: Mapping[str, float],
    validated: Mapping[str, Any] | None,
    rules: MonitoringRules,
) -> list[PerformanceFigure]:
    labels = pd.to_numeric(ok[cols.LABEL], errors="coerce")
    scores = pd.to_numeric(ok[cols.SCORE], errors="coerce")
    known = labels.isin([0, 1]) & scores.notna()
    y = labels[known].to_numpy(dtype=np.int8)
    s = scores[known].to_numpy(dtype=np.float64)
    validated = validated or {}
    points = validated.get("operating_points") or {}
    figures = []
    if len(y) and 0 < y.sum() < len(y):
        auc = metrics.bootstrap_interval(
            y, s, metrics.roc_auc, n_resamples=rules.bootstrap_resamples, confidence=rules.confidence
        )
        figures.append(_figure("auc", auc, len(y), validated.get("auc"), rules))
    for name, threshold in thresholds.items():
        confusion = metrics.confusion_at(y, s, threshold)
        point = points.get(name) or {}
        positives, negatives = confusion.tp + confusion.fn, confusion.tn + confusion.fp
        if positives:
            sensitivity = metrics.wilson_interval(confusion.tp, positives, rules.confidence)
            figures.append(_figure(f"{name}.sensitivity", sensitivity, positives, point.get("sensitivity"), rules))
        if negatives:
            specificity = metrics.wilson_interval(confusion.tn, negatives, rules.confidence)
            figures.append(_figure(f"{name}.specificity", specificity, negatives, point.get("specificity"), rules))
    return figures


def _figure(name: str, value: metrics.Interval, n: int, validated: Any, rules: MonitoringRules) -> PerformanceFigure:
    reference = None if validated is None else float(validated)
    margin = rules.performance_margin
    return PerformanceFigure(
        name=name,
        value=value,
        n=n,
        validated=reference,
        below_validated=reference is not None and math.isfinite(value.high) and value.high < reference - margin,
    )


def _batch_size_rule(n_scored: int, rules: MonitoringRules) -> dict[str, Any]:
    applied = "tests" if n_scored >= rules.min_rows else "too_few_rows"
    return {
        "min_rows": rules.min_rows,
        "n_scored": n_scored,
        "applied": applied,
        "text": (
            f"A column alerts only when it moved by at least the effect threshold and the move is significant "
            f"at the family level {rules.family_alpha:g} (Bonferroni-split across columns); the tests' p-values "
            f"account for the batch size, so small batches need larger moves. Below {rules.min_rows} scored rows "
            f"no alert is raised."
        ),
    }


def top_error_reasons(errors: pd.DataFrame, limit: int = _TOP_ERRORS) -> list[dict[str, Any]]:
    """The most common error reasons, with one example message each.

    Messages are grouped by their text before the first ``": "`` with digits
    masked, so ``file not found: a.png`` and ``file not found: b.png`` count
    as one reason.
    """
    if cols.ERROR not in errors or errors.empty:
        return []
    messages = errors[cols.ERROR].fillna("(no reason given)").astype(str)
    reasons = messages.map(_reason)
    counts = reasons.value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    examples: dict[str, str] = {}
    for reason, message in zip(reasons, messages):
        examples.setdefault(reason, message)  # the first message of each reason
    total = len(errors)
    return [
        {"reason": reason, "count": int(count), "share_of_errors": count / total, "example": examples[reason]}
        for reason, count in ordered
    ]


def _reason(message: str) -> str:
    head = message.split(": ", 1)[0].strip()
    return re.sub(r"\d[\d,.x]*", "N", head)[:120] or "(no reason given)"


def _models(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if cols.MODEL_SHA256 not in frame:
        return []
    keys = [c for c in (cols.MODEL_SHA256, cols.MODEL_VERSION) if c in frame]
    grouped = frame[keys].astype("string").fillna("").value_counts().sort_index()
    return [{**dict(zip(keys, index if isinstance(index, tuple) else (index,))), "rows": int(n)}
            for index, n in grouped.items()]


def _batch_time(batch: pd.DataFrame) -> datetime:
    """The latest ``scored_at`` of the batch (so a backfill lands on its own date), else now."""
    if cols.SCORED_AT in batch:
        stamps = pd.to_datetime(batch[cols.SCORED_AT], errors="coerce", utc=True).dropna()
        if len(stamps):
            return stamps.max().to_pydatetime().replace(tzinfo=None)
    return datetime.now()


def _snapshot_metadata(batch: pd.DataFrame, ok: pd.DataFrame, errors: pd.DataFrame) -> dict[str, str]:
    metadata = {"n_rows": str(len(batch)), "n_scored": str(len(ok)), "n_errors": str(len(errors))}
    for column in (cols.RUN_ID, cols.MODEL_VERSION, cols.MODEL_SHA256):
        if column in batch:
            values = sorted({str(v) for v in batch[column].dropna().unique()})
            if values:
                metadata[column] = ",".join(values)[:500]
    return metadata


def add_to_workspace(snapshot: Snapshot, workspace: Path, project: str = DEFAULT_PROJECT) -> dict[str, str]:
    """Add ``snapshot`` to the local Evidently workspace at ``workspace`` (created if needed)."""
    from evidently.ui.workspace import Workspace

    workspace.mkdir(parents=True, exist_ok=True)
    store = Workspace(str(workspace))
    found = store.search_project(project)
    target = found[0] if found else store.create_project(
        project, description="Nightly pneumo-batch runs: drift and class balance against the training profile"
    )
    ref = store.add_run(target.id, snapshot, include_data=False)
    return {"path": str(workspace), "project": project, "project_id": str(target.id), "snapshot_id": str(ref.id)}


def _flat_share(comparison: ShareComparison) -> dict[str, Any]:
    return {
        "name": comparison.name,
        "threshold": comparison.threshold,
        "count": comparison.count,
        "n": comparison.n,
        "share": comparison.share.estimate,
        "share_low": comparison.share.low,
        "share_high": comparison.share.high,
        "reference_count": comparison.reference_count,
        "reference_n": comparison.reference_n,
        "reference_share": comparison.reference_share.estimate,
        "reference_share_low": comparison.reference_share.low,
        "reference_share_high": comparison.reference_share.high,
        "difference": comparison.difference,
        "p_value": comparison.p_value,
        "alpha": comparison.alpha,
        "alert": comparison.alert,
    }


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
