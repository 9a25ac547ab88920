"""Performance on labelled batches against the model's validated figures.

Sensitivity and specificity (Wilson intervals) and AUC (bootstrap interval);
a figure alerts when its whole interval lies more than
:attr:`~pneumo_batch.monitoring.summary.MonitoringRules.performance_margin`
below the validated figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols
from pneumo_batch.monitoring.summary import MonitoringRules, PerformanceFigure


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


def has_labels(frame: pd.DataFrame) -> bool:
    return cols.LABEL in frame and pd.to_numeric(frame[cols.LABEL], errors="coerce").isin([0, 1]).any()


def performance_figures(
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
