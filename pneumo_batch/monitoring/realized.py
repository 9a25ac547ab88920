"""Realized performance: what the late labels say the model did, per night and over rolling windows.

The shape is NannyML's realized-performance calculator (one set of figures
per chunk, with its sampling error, the estimate beside it), with nights
and rolling 7, 30 and 90 day windows (ending on the latest night) as the
chunks. For each chunk, over its scored in-scope films that have a read in
the label store (:mod:`pneumo_batch.labels`):

- sensitivity, specificity, PPV and NPV at every operating point, from the
  decisions the rows carry (``pred_<point>``), with Wilson intervals;
- AUC with the Hanley-McNeil interval;
- the label coverage (labelled share of the in-scope films), the films
  relabelled, and the model versions that scored the labelled rows;
- nights: the night's label-free estimate (its summary.json) beside the
  realized figures, and whether each estimated interval held;
- windows: calibration, a reliability table and the ECE with a bootstrap interval.

Figures are computed on the labelled films only: with partial coverage
they describe the films that were read, which need not be a random sample.
The whole history is recomputed from the Parquet each time (no cached
state to drift): :func:`refresh_realized` does it when a label file or a
night partition changed since the last time, else reads the file back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from datetime import date as Date
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pneumo_batch import metrics, storage
from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.labels import LABELLED, NIGHT, RELABELLED, in_scope_rows, join_labels, read_scored_history
from pneumo_batch.labels.join import SOP_INSTANCE_UID, night_partitions
from pneumo_batch.labels.store import label_files
from pneumo_batch.monitoring.realized_summary import (
    Calibration,
    ChunkFigures,
    EstimateCheck,
    PointFigures,
    RealizedPerformance,
    RealizedRules,
)
from pneumo_batch.monitoring.sensitivity import sensitivity_test
from pneumo_batch.monitoring.subgroups import SUBGROUP_SOURCE_COLUMNS, subgroup_figures
from pneumo_batch.monitoring.summary import _finite

REALIZED_DIR = "realized"
REALIZED_FILE = "realized_performance.json"
_ESTIMATED = ("prevalence", "sensitivity", "specificity", "ppv", "npv")


def realized_path(output_root: Path) -> Path:
    return Path(output_root) / REALIZED_DIR / REALIZED_FILE


def history_fingerprint(output_root: Path) -> str:
    """Changes when a label file is added or a night's partition is written or replaced."""
    parts = [p.name for p in label_files(output_root)]
    for night, files in night_partitions(output_root).items():
        parts.extend(f"{night}:{f.name}:{f.stat().st_mtime_ns}:{f.stat().st_size}" for f in files)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def refresh_realized(output_root: Path, rules: RealizedRules = RealizedRules(), *, force: bool = False) -> dict[str, Any]:
    """The realized-performance history as a dict: recomputed and rewritten when the labels or nights
    changed since ``realized/realized_performance.json`` was written (or ``force``), else read back."""
    if not (Path(output_root) / "predictions").is_dir():
        raise InputError(f"no predictions/ under {output_root}: is this a nightly output root?")
    path = realized_path(output_root)
    fingerprint = history_fingerprint(output_root)
    if not force and path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = {}
        if stored.get("labels_fingerprint") == fingerprint:
            return stored
    result = realized_performance(output_root, rules, fingerprint=fingerprint).as_dict()
    storage.make_folder(path.parent)
    storage.write_json(path, _finite(result), allow_nan=False)
    return _finite(result)


def realized_performance(output_root: Path, rules: RealizedRules = RealizedRules(), *,
                         fingerprint: str | None = None) -> RealizedPerformance:
    """Recompute the realized-performance history of ``output_root`` from its predictions and label store."""
    root = Path(output_root)
    points = _operating_points(root)
    columns = [cols.IMAGE_ID, SOP_INSTANCE_UID, cols.STATUS, cols.IN_SCOPE, cols.SCORE, cols.MODEL_SHA256,
               cols.MODEL_VERSION, cols.SCORED_AT, *SUBGROUP_SOURCE_COLUMNS,
               *(cols.prediction_column(p) for p in points), *(cols.threshold_column(p) for p in points)]
    # the history is not kept beside its joined copy: at a million rows each copy is ~200 MB
    joined, coverage = join_labels(read_scored_history(root, list(dict.fromkeys(columns))), root)
    for column in (cols.IMAGE_ID, SOP_INSTANCE_UID):  # the join's keys; a million ids are ~80 MB in every copy
        del joined[column]
    in_scope = in_scope_rows(joined).to_numpy()
    ok = (joined[cols.STATUS] == cols.STATUS_OK).to_numpy(dtype=bool)
    rows = _subset(joined, in_scope)
    any_labelled = bool(rows[LABELLED].any())
    subgroups = subgroup_figures(_subset(joined, ok), in_scope[ok], points, rules) if any_labelled else None
    del joined  # every later figure reads the in-scope rows only
    nights = []
    every_night = rows[NIGHT].to_numpy()
    for night in sorted(set(every_night)):
        night_rows = _subset(rows, every_night == night)
        if night_rows[LABELLED].any():
            figures = chunk_figures(night_rows, night.isoformat(), night, night, points, rules, calibration=False)
            nights.append(_with_estimate(figures, root, night))
    windows = []
    if len(rows):
        last = max(rows[NIGHT])
        for days in rules.windows:
            first = last - timedelta(days=days - 1)
            window = _subset(rows, (rows[NIGHT] >= first).to_numpy())
            windows.append(chunk_figures(window, f"{days}d", first, last, points, rules, calibration=True))
    labelled = rows[rows[LABELLED].to_numpy()]
    return RealizedPerformance(
        nights=nights,
        windows=windows,
        sensitivity_test=sensitivity_test(labelled, rules) if len(labelled) else None,
        n_films_read=coverage.n_films_read,
        n_matched=coverage.n_matched,
        n_unmatched=coverage.n_unmatched,
        n_relabelled=coverage.n_relabelled,
        labels_fingerprint=fingerprint or history_fingerprint(root),
        rules=rules,
        computed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        subgroups=subgroups,
    )


def _subset(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """The rows ``keep`` selects, renumbered; ``frame`` itself (no copy) when it keeps them all."""
    if keep.all() and frame.index.equals(pd.RangeIndex(len(frame))):
        return frame
    return frame[keep].reset_index(drop=True)


def chunk_figures(rows: pd.DataFrame, name: str, start: Date, end: Date, points: list[str],
                  rules: RealizedRules, *, calibration: bool) -> ChunkFigures:
    """The realized figures of one chunk's in-scope rows (those without a label count for the coverage only)."""
    labelled = rows[rows[LABELLED].to_numpy()]
    labels = labelled[cols.LABEL].to_numpy(dtype=np.int8)
    scores = pd.to_numeric(labelled[cols.SCORE], errors="coerce").to_numpy(dtype=np.float64)
    both = len(labels) and 0 < labels.sum() < len(labels)
    return ChunkFigures(
        chunk=name,
        start=start.isoformat(),
        end=end.isoformat(),
        n_in_scope=len(rows),
        n_labelled=len(labelled),
        coverage=len(labelled) / len(rows) if len(rows) else float("nan"),
        n_pneumonia=int(labels.sum()),
        n_normal=int(len(labels) - labels.sum()),
        n_relabelled=int(labelled[RELABELLED].sum()),
        models=_models(labelled),
        operating_points={p: point_figures(labelled, p, rules.confidence) for p in points},
        auc=metrics.auc_interval(labels, scores, rules.confidence) if both else None,
        calibration=_calibration(labels, scores, rules) if calibration and len(labels) else None,
    )


def point_figures(labelled: pd.DataFrame, point: str, confidence: float) -> PointFigures:
    """Confusion counts of the decisions made (``pred_<point>``; rows without one are left out) and the rates."""
    decided = labelled[cols.prediction_column(point)].to_numpy(dtype=object)
    keep = pd.notna(decided)
    flagged = decided[keep].astype(bool)
    positive = labelled[cols.LABEL].to_numpy(dtype=np.float64, na_value=np.nan)[keep] == 1
    tp, fp = int((flagged & positive).sum()), int((flagged & ~positive).sum())
    tn, fn = int((~flagged & ~positive).sum()), int((~flagged & positive).sum())
    thresholds = labelled[cols.threshold_column(point)].to_numpy(dtype=np.float64, na_value=np.nan)
    thresholds = thresholds[np.isfinite(thresholds)]
    return PointFigures(
        threshold=float(thresholds[-1]) if len(thresholds) else None,
        tp=tp, fp=fp, tn=tn, fn=fn,
        sensitivity=metrics.wilson_interval(tp, tp + fn, confidence),
        specificity=metrics.wilson_interval(tn, tn + fp, confidence),
        ppv=metrics.wilson_interval(tp, tp + fp, confidence),
        npv=metrics.wilson_interval(tn, tn + fn, confidence),
    )


def _calibration(labels: np.ndarray, scores: np.ndarray, rules: RealizedRules) -> Calibration:
    return Calibration(
        ece=metrics.expected_calibration_error(labels, scores, n_bins=rules.calibration_bins,
                                               n_resamples=rules.ece_resamples, confidence=rules.confidence,
                                               seed=rules.seed),
        table=metrics.reliability_table(labels, scores, rules.calibration_bins),
    )


def _models(rows: pd.DataFrame) -> list[dict[str, Any]]:
    versions = rows[cols.MODEL_VERSION].to_numpy(dtype=object)
    shas = rows[cols.MODEL_SHA256].to_numpy(dtype=object)
    counts = Counter(("" if pd.isna(v) else str(v), "" if pd.isna(s) else str(s)) for v, s in zip(versions, shas))
    return [{cols.MODEL_VERSION: version, cols.MODEL_SHA256: sha, "rows": n} for (version, sha), n in sorted(counts.items())]


def _operating_points(root: Path) -> list[str]:
    names: set[str] = set()
    for night, files in night_partitions(root).items():
        for path in files:
            try:
                schema = pq.read_schema(path)
            except (OSError, pa.ArrowInvalid):
                raise InputError(f"cannot read the predictions of {night}: not a Parquet file") from None
            names.update(n[len(cols.PREDICTION_PREFIX):] for n in schema.names if n.startswith(cols.PREDICTION_PREFIX))
    return sorted(names)


def _with_estimate(figures: ChunkFigures, root: Path, night: Date) -> ChunkFigures:
    """The night's figures with its label-free estimate (reports/date=NIGHT/summary.json) beside them."""
    summary_path = root / "reports" / f"date={night.isoformat()}" / "summary.json"
    try:
        estimated = json.loads(summary_path.read_text(encoding="utf-8")).get("estimated_performance")
    except (OSError, ValueError):
        return figures
    if not isinstance(estimated, Mapping) or estimated.get("operating_point") not in figures.operating_points:
        return figures
    point = figures.operating_points[estimated["operating_point"]]
    realized = {
        "prevalence": figures.n_pneumonia / figures.n_labelled if figures.n_labelled else None,
        "sensitivity": point.sensitivity.estimate, "specificity": point.specificity.estimate,
        "ppv": point.ppv.estimate, "npv": point.npv.estimate,
    }
    checks: dict[str, dict[str, float | bool | None]] = {}
    for name in _ESTIMATED:
        guess = estimated.get(name) or {}
        value = realized[name]
        low, high = guess.get("low"), guess.get("high")
        known = value is not None and np.isfinite(value) and low is not None and high is not None
        checks[name] = {"estimated": guess.get("value"), "low": low, "high": high, "realized": value,
                        "held": bool(low <= value <= high) if known else None}
    verdicts = [c["held"] for c in checks.values() if c["held"] is not None]
    check = EstimateCheck(operating_point=estimated["operating_point"], coverage=figures.coverage, figures=checks,
                          held=all(verdicts) if verdicts else None)
    return dataclasses.replace(figures, estimate=check)


def compact(realized: Mapping[str, Any]) -> dict[str, Any]:
    """What a night's summary.json carries of the history (the whole is in ``realized/realized_performance.json``)."""
    nights = realized.get("nights") or []
    test = dict(realized.get("sensitivity_test") or {}) or None
    if test is not None:
        test.pop("path", None)
    return {
        "file": f"{REALIZED_DIR}/{REALIZED_FILE}",
        "computed_at": realized.get("computed_at"),
        "n_nights_labelled": len(nights),
        "latest_labelled_night": nights[-1] if nights else None,
        "windows": realized.get("windows") or [],
        "sensitivity_test": test,
        "alert": bool(test and test.get("alert")),
        "history": [_history_entry(night, test) for night in nights],
        "n_films_read": realized.get("n_films_read"),
        "n_unmatched": realized.get("n_unmatched"),
        "n_relabelled": realized.get("n_relabelled"),
    }


def _history_entry(night: Mapping[str, Any], test: Mapping[str, Any] | None) -> dict[str, Any]:
    """A night of the history plot: coverage, realized screening figures, the estimate and whether it held."""
    point = (test or {}).get("operating_point", "screening")
    figures = (night.get("operating_points") or {}).get(point) or {}
    estimate = night.get("estimate") or {}
    prevalence = (estimate.get("figures") or {}).get("prevalence") or {}
    return {
        "night": night.get("chunk"), "n_labelled": night.get("n_labelled"), "coverage": night.get("coverage"),
        "sensitivity": figures.get("sensitivity"), "specificity": figures.get("specificity"),
        "prevalence_realized": prevalence.get("realized"), "prevalence_estimated": prevalence.get("estimated"),
        "prevalence_low": prevalence.get("low"), "prevalence_high": prevalence.get("high"),
        "estimate_held": estimate.get("held"),
    }


def window_gauges(realized: Mapping[str, Any] | None, days: int = 30) -> dict[str, float | None]:
    """The dashboard's and Prometheus' figures from ``realized_performance``: the ``days`` window at the
    sensitivity test's point (sensitivity, specificity, coverage) and the CUSUM with its threshold."""
    realized = realized or {}
    window = next((w for w in realized.get("windows") or [] if w.get("chunk") == f"{days}d"), {})
    test = realized.get("sensitivity_test") or {}
    point = (window.get("operating_points") or {}).get(test.get("operating_point", "screening")) or {}
    return {
        "realized_sensitivity": (point.get("sensitivity") or {}).get("estimate"),
        "realized_specificity": (point.get("specificity") or {}).get("estimate"),
        "label_coverage": window.get("coverage"),
        "sensitivity_cusum": test.get("statistic"),
        "sensitivity_cusum_threshold": test.get("threshold"),
    }
