"""Evaluation of scores against labels: metrics with intervals and operating points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pneumo_batch import metrics

SWEEP_THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)


@dataclass(frozen=True)
class ChosenPoint:
    name: str
    threshold: float
    rule: str


def choose_operating_points(labels: np.ndarray, scores: np.ndarray, target_sensitivity: float) -> list[ChosenPoint]:
    """The ``screening`` and ``balanced`` thresholds, from validation labels and scores only."""
    return [
        ChosenPoint(
            "screening",
            metrics.screening_threshold(labels, scores, target_sensitivity),
            f"highest threshold whose validation sensitivity is at least {target_sensitivity:g}",
        ),
        ChosenPoint(
            "balanced",
            metrics.youden_threshold(labels, scores),
            "threshold maximising validation sensitivity + specificity - 1 (Youden's J)",
        ),
    ]


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    points: list[ChosenPoint],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC and, at each operating point, sensitivity, specificity and accuracy with 95% bootstrap intervals."""

    def interval(statistic: Any) -> dict[str, float]:
        return metrics.bootstrap_interval(labels, scores, statistic, n_resamples=n_resamples, seed=seed).as_dict()

    result: dict[str, Any] = {
        "n": int(len(labels)),
        "prevalence": float(np.mean(labels)),
        "auc": interval(metrics.roc_auc),
        "operating_points": {},
    }
    for point in points:
        threshold = point.threshold

        def rate(name: str, t: float = threshold) -> Any:
            return lambda lab, sco: getattr(metrics.confusion_at(lab, sco, t), name)

        result["operating_points"][point.name] = {
            "threshold": threshold,
            "confusion": {
                key: value
                for key, value in metrics.confusion_at(labels, scores, threshold).as_dict().items()
                if key in ("tp", "fp", "tn", "fn")
            },
            **{name: interval(rate(name)) for name in ("sensitivity", "specificity", "accuracy")},
        }
    return result


def sweep(labels: np.ndarray, scores: np.ndarray, points: list[ChosenPoint]) -> list[dict[str, Any]]:
    """Confusion counts and rates at regular thresholds and at the operating points."""
    thresholds = np.unique(np.concatenate((SWEEP_THRESHOLDS, [p.threshold for p in points])))
    names = {p.threshold: p.name for p in points}
    return [{"operating_point": names.get(row["threshold"], ""), **row} for row in metrics.threshold_sweep(labels, scores, thresholds)]
