"""Performance: measured on labelled batches, and estimated without labels.

With labels (:func:`performance_figures`): sensitivity and specificity
(Wilson intervals) and AUC (bootstrap interval); a figure alerts when its
whole interval lies more than
:attr:`~pneumo_batch.monitoring.summary.MonitoringRules.performance_margin`
below the validated figure.

Without labels (:func:`estimate_performance`): under label shift p(score | y)
does not change, so sensitivity and specificity carry over from validation;
PPV, NPV and the expected flagged, caught and missed pneumonias follow from
the night's estimated prevalence. Intervals pair each prevalence draw with
its validation replicate, so they carry both uncertainties. When the images
drifted the assumption is broken and the estimate is marked not valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols
from pneumo_batch.monitoring.prevalence import PrevalenceEstimate, ValidationProfile, percentiles
from pneumo_batch.monitoring.summary import EstimatedPerformance, Estimate, MonitoringRules, PerformanceFigure


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


def estimate_performance(
    validation: ValidationProfile,
    prevalence: PrevalenceEstimate,
    *,
    image_drift: bool,
    operating_point: str,
    realized: dict[str, float | int | None] | None = None,
) -> EstimatedPerformance:
    """Expected screening figures of the night at its estimated prevalence, with bootstrap intervals.

    Note that under BBSE ``expected_flagged`` equals the observed count by
    construction; the informative figures are PPV, NPV and ``expected_missed``.
    """
    pi, tpr, fpr = prevalence.draws, validation.tpr_draws, validation.fpr_draws
    p0, t0, f0 = prevalence.value, validation.tpr, validation.fpr
    n = prevalence.n

    def figure(point: Any, draws: np.ndarray) -> Estimate:
        low, high = percentiles(draws, prevalence.confidence)
        return Estimate(float(point), low, high)

    return EstimatedPerformance(
        valid=not image_drift,
        reason="image drift detected: sensitivity and specificity may not carry over" if image_drift
        else "only the prevalence may have moved: validation sensitivity and specificity carry over",
        operating_point=operating_point,
        threshold=validation.threshold,
        prevalence=Estimate(prevalence.value, prevalence.low, prevalence.high),
        sensitivity=figure(t0, tpr),
        specificity=figure(1 - f0, 1 - fpr),
        ppv=figure(_ratio(p0 * t0, p0 * t0 + (1 - p0) * f0), _ratio(pi * tpr, pi * tpr + (1 - pi) * fpr)),
        npv=figure(
            _ratio((1 - p0) * (1 - f0), (1 - p0) * (1 - f0) + p0 * (1 - t0)),
            _ratio((1 - pi) * (1 - fpr), (1 - pi) * (1 - fpr) + pi * (1 - tpr)),
        ),
        expected_flagged=figure(n * (p0 * t0 + (1 - p0) * f0), n * (pi * tpr + (1 - pi) * fpr)),
        expected_caught=figure(n * p0 * t0, n * pi * tpr),
        expected_missed=figure(n * p0 * (1 - t0), n * pi * (1 - tpr)),
        n=n,
        realized=realized,
    )


def realized_screening(in_scope: pd.DataFrame, threshold: float) -> dict[str, float | int | None] | None:
    """The figures :func:`estimate_performance` estimates, counted on labelled rows (``None`` without labels)."""
    if not has_labels(in_scope):
        return None
    labels = pd.to_numeric(in_scope[cols.LABEL], errors="coerce")
    scores = pd.to_numeric(in_scope[cols.SCORE], errors="coerce")
    known = labels.isin([0, 1]) & scores.notna()
    sick = labels[known].to_numpy() == 1
    flagged = scores[known].to_numpy(dtype=np.float64) >= threshold

    def share(part: np.ndarray, whole: np.ndarray) -> float | None:
        return float(part.sum() / whole.sum()) if whole.sum() else None

    return {
        "n": int(known.sum()),
        "prevalence": float(sick.mean()) if len(sick) else None,
        "sensitivity": share(flagged & sick, sick),
        "specificity": share(~flagged & ~sick, ~sick),
        "ppv": share(flagged & sick, flagged),
        "npv": share(~flagged & ~sick, ~flagged),
        "flagged": int(flagged.sum()),
        "caught": int((flagged & sick).sum()),
        "missed": int((~flagged & sick).sum()),
    }


def _ratio(numerator: Any, denominator: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(denominator) > 0, numerator / np.maximum(denominator, 1e-300), np.nan)
