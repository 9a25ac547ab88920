"""Class balance: how many children are sick tonight, corrected for the model's errors, against training.

The alert (:func:`prevalence_finding`): the night's pneumonia share is
estimated from the in-scope scores by black-box shift estimation with the
validation confusion at the screening point
(:mod:`~pneumo_batch.monitoring.prevalence`); it fires when the estimate's
``1 - 2 test_alpha`` bootstrap interval lies wholly outside the expected
range (:attr:`~pneumo_batch.monitoring.summary.MonitoringRules.expected_prevalence`,
default the training prevalence +/- ``prevalence_tolerance``). Only the tail
on the range's side can miss it, so the test has level ``test_alpha``, its
share of the false-alarm budget. When every row is labelled, the labelled
share's Wilson interval at that level decides instead: the truth beats an
estimate.

For information (:func:`share_comparisons`, ``class_balance.csv``): the
share flagged at each operating point (and, with labels, the prevalence)
against the reference as is, with the categorical drift rule (an absolute
move of at least ``categorical_effect`` that Fisher's exact test finds
significant). These shares move whenever the prevalence does, which is why
they no longer raise the alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.monitoring.drift import categorical_drift
from pneumo_batch.monitoring.performance import has_labels
from pneumo_batch.monitoring.prevalence import (
    PrevalenceEstimate,
    ValidationProfile,
    estimate_prevalence,
    expected_range,
    percentiles,
)
from pneumo_batch.monitoring.summary import MonitoringRules, PrevalenceFinding, ShareComparison


def validation_profile(
    model_metadata: Mapping[str, Any] | None,
    thresholds: Mapping[str, float],
    rules: MonitoringRules,
    rng: np.random.Generator,
    warnings: list[str],
) -> ValidationProfile | None:
    """The validation confusion at :attr:`MonitoringRules.prevalence_point`, from the model metadata.

    ``None`` (with a warning saying why) when the metadata lacks it or the
    predictions were scored at another threshold than it was counted at.
    """
    point = rules.prevalence_point
    confusion, counted_at = _validation_confusion(model_metadata, point)
    if confusion is None:
        warnings.append(f"prevalence not estimated: no validation confusion counts for operating point {point!r}")
        return None
    applied = thresholds.get(point, counted_at)
    if applied is None or (counted_at is not None and not math.isclose(applied, counted_at, abs_tol=1e-6)):
        warnings.append(f"prevalence not estimated: operating point {point!r} was scored at another threshold "
                        "than its validation counts were taken at")
        return None
    try:
        return ValidationProfile.from_confusion(
            tp=int(confusion["tp"]), fn=int(confusion["fn"]), tn=int(confusion["tn"]), fp=int(confusion["fp"]),
            threshold=float(applied), rng=rng, n_bootstrap=rules.bootstrap_resamples,
        )
    except (KeyError, TypeError, ValueError, InputError) as error:
        warnings.append(f"prevalence not estimated: validation confusion of {point!r} unusable: {error}")
        return None


def _validation_confusion(
    metadata: Mapping[str, Any] | None, point: str
) -> tuple[Mapping[str, Any] | None, float | None]:
    """Where training writes it: ``metrics.validation.operating_points.<point>``, else ``operating_points.<point>.validation``."""
    metadata = metadata or {}
    validation = (metadata.get("metrics") or {}).get("validation") or {}
    candidates = [
        (validation.get("operating_points") or {}).get(point),
        ((metadata.get("operating_points") or {}).get(point) or {}).get("validation"),
    ]
    for entry in candidates:
        if isinstance(entry, Mapping) and isinstance(entry.get("confusion"), Mapping):
            threshold = entry.get("threshold", ((metadata.get("operating_points") or {}).get(point) or {}).get("threshold"))
            return entry["confusion"], None if threshold is None else float(threshold)
    return None, None


def training_prevalence(
    reference: pd.DataFrame, model_metadata: Mapping[str, Any] | None, validation: ValidationProfile | None
) -> float | None:
    """The share of pneumonia the model was trained at: the metadata's, else the labelled reference's."""
    splits = ((model_metadata or {}).get("dataset") or {}).get("splits") or {}
    train = splits.get("train") or {}
    if isinstance(train.get("prevalence"), (int, float)):
        return float(train["prevalence"])
    if has_labels(reference):
        labels = pd.to_numeric(reference[cols.LABEL], errors="coerce")
        return float(labels[labels.isin([0, 1])].mean())
    return validation.prevalence if validation is not None else None


def prevalence_finding(
    validation: ValidationProfile,
    in_scope: pd.DataFrame,
    training: float,
    rules: MonitoringRules,
    rng: np.random.Generator,
) -> tuple[PrevalenceEstimate, PrevalenceFinding]:
    """The night's error-corrected prevalence (BBSE) and the class-balance verdict on it."""
    scores = pd.to_numeric(in_scope[cols.SCORE], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    estimate = estimate_prevalence(validation, scores, rng=rng, method="bbse", confidence=rules.confidence)
    expected = rules.expected_prevalence or expected_range(training, rules.prevalence_tolerance)
    alert_low, alert_high = percentiles(estimate.draws, 1 - 2 * rules.test_alpha)
    basis, realized = "estimate", None
    labels = pd.to_numeric(in_scope[cols.LABEL], errors="coerce") if cols.LABEL in in_scope else None
    if labels is not None and labels.isin([0, 1]).any():
        known = labels[labels.isin([0, 1])]
        realized = float(known.mean())
        if len(known) == len(in_scope):
            # every row labelled: the labelled share is the truth, the estimate is reported beside it
            basis = "labels"
            interval = metrics.wilson_interval(int(known.sum()), len(known), 1 - 2 * rules.test_alpha)
            alert_low, alert_high = interval.low, interval.high
    finding = PrevalenceFinding(
        value=estimate.value,
        low=estimate.low,
        high=estimate.high,
        training=training,
        expected_low=float(expected[0]),
        expected_high=float(expected[1]),
        alert_low=alert_low,
        alert_high=alert_high,
        alert=bool(alert_high < expected[0] or alert_low > expected[1]),
        basis=basis,
        method=estimate.method,
        operating_point=rules.prevalence_point,
        threshold=validation.threshold,
        n=estimate.n,
        realized=realized,
    )
    return estimate, finding


def share_comparisons(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    balance_columns: list[tuple[str, str]],
    thresholds: Mapping[str, float],
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
        effect, p_value = categorical_drift(ref, cur) if n and ref_n else (float("nan"), 1.0)
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
                moved=bool(effect >= rules.categorical_effect and p_value < alpha),
            )
        )
    return result


def flat_share(comparison: ShareComparison) -> dict[str, Any]:
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
        "moved": comparison.moved,
    }
