"""Classification metrics, bootstrap intervals and operating-point selection.

Pure numpy, no scikit-learn: scoring and monitoring machines install only
the light dependencies. Convention everywhere: label 1 is pneumonia (the
positive class) and a case is flagged when ``score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn)

    @property
    def ppv(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        return _ratio(self.tn, self.tn + self.fn)

    def as_dict(self) -> dict[str, float | int]:
        return {
            **asdict(self),
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "accuracy": self.accuracy,
            "ppv": self.ppv,
            "npv": self.npv,
        }


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return labels.astype(np.int8), scores


def confusion_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Confusion:
    """Confusion counts when cases with ``score >= threshold`` are flagged."""
    labels, scores = _check(labels, scores)
    flagged = scores >= threshold
    positive = labels == 1
    return Confusion(
        tp=int(np.sum(flagged & positive)),
        fp=int(np.sum(flagged & ~positive)),
        tn=int(np.sum(~flagged & ~positive)),
        fn=int(np.sum(~flagged & positive)),
    )


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count one half); NaN with one class."""
    labels, scores = _check(labels, scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # ranks 1..n, tied values share the mean of their ranks
    boundaries = np.concatenate(([True], sorted_values[1:] != sorted_values[:-1], [True]))
    starts = np.flatnonzero(boundaries)
    mean_ranks = (starts[:-1] + starts[1:] + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_ranks, np.diff(starts))
    return ranks


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds that give them (descending)."""
    labels, scores = _check(labels, scores)
    thresholds = np.unique(scores)[::-1]
    flagged = scores[None, :] >= thresholds[:, None]
    tpr = (flagged & (labels == 1)).sum(axis=1) / max(int(labels.sum()), 1)
    fpr = (flagged & (labels == 0)).sum(axis=1) / max(int((labels == 0).sum()), 1)
    return (
        np.concatenate(([0.0], fpr)),
        np.concatenate(([0.0], tpr)),
        np.concatenate(([np.inf], thresholds)),
    )


def screening_threshold(labels: np.ndarray, scores: np.ndarray, target_sensitivity: float) -> float:
    """The highest threshold whose sensitivity on these cases reaches ``target_sensitivity``.

    With positives' scores sorted from high to low, that is the score of the
    ``ceil(target * n_positive)``-th positive.
    """
    labels, scores = _check(labels, scores)
    if not 0.0 < target_sensitivity <= 1.0:
        raise ValueError("target sensitivity must be in (0, 1]")
    positive_scores = np.sort(scores[labels == 1])[::-1]
    if len(positive_scores) == 0:
        raise ValueError("no positive cases to choose a screening threshold on")
    needed = int(np.ceil(target_sensitivity * len(positive_scores) - 1e-9))
    return float(positive_scores[max(needed, 1) - 1])


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that maximises sensitivity + specificity - 1 (Youden's J).

    Among equal J the lowest threshold wins: a missed pneumonia costs more
    than a false alarm.
    """
    fpr, tpr, thresholds = roc_curve(labels, scores)
    j = tpr[1:] - fpr[1:]
    best = np.flatnonzero(j == j.max())[-1]
    return float(thresholds[1:][best])


def threshold_sweep(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> list[dict[str, float | int]]:
    """One row of confusion counts and rates for each threshold."""
    return [{"threshold": float(t), **confusion_at(labels, scores, float(t)).as_dict()} for t in thresholds]


def bootstrap_interval(
    labels: np.ndarray,
    scores: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(labels, scores)``.

    Resamples positives and negatives separately so every resample keeps
    both classes (and AUC stays defined).
    """
    labels, scores = _check(labels, scores)
    estimate = statistic(labels, scores)
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(labels == 1)
    neg = np.flatnonzero(labels == 0)
    values = np.empty(n_resamples)
    for i in range(n_resamples):
        picked = np.concatenate(
            (rng.choice(pos, len(pos)) if len(pos) else pos, rng.choice(neg, len(neg)) if len(neg) else neg)
        )
        values[i] = statistic(labels[picked], scores[picked])
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(values, [alpha, 1 - alpha])
    return Interval(float(estimate), float(low), float(high))


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion; exact enough for small batches."""
    if total == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    z = _normal_quantile(1 - (1 - confidence) / 2)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return Interval(float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def _normal_quantile(probability: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(probability)


def auc_interval(labels: np.ndarray, scores: np.ndarray, confidence: float = 0.95) -> Interval:
    """AUC with the Hanley-McNeil (1982) normal interval, clipped to [0, 1]; NaN with one class.

    Closed form rather than a bootstrap: the realized-performance history
    computes it for every night and window, and must stay fast.
    """
    auc = roc_auc(labels, scores)
    n_pos = int(np.sum(np.asarray(labels) == 1))
    n_neg = len(np.asarray(labels).ravel()) - n_pos
    if not np.isfinite(auc):
        return Interval(float("nan"), float("nan"), float("nan"))
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    half = _normal_quantile(1 - (1 - confidence) / 2) * float(np.sqrt(max(variance, 0.0)))
    return Interval(float(auc), max(0.0, auc - half), min(1.0, auc + half))


def reliability_table(labels: np.ndarray, scores: np.ndarray, n_bins: int = 10) -> list[dict[str, float | int]]:
    """Per equal-width score bin: its edges, films, mean score and observed pneumonia share (empty bins left out)."""
    labels, scores = _check(labels, scores)
    bins = np.clip((scores * n_bins).astype(int), 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    score_sums = np.bincount(bins, weights=scores, minlength=n_bins)
    positives = np.bincount(bins, weights=labels, minlength=n_bins)
    return [
        {"low": b / n_bins, "high": (b + 1) / n_bins, "n": int(counts[b]),
         "mean_score": float(score_sums[b] / counts[b]), "observed": float(positives[b] / counts[b])}
        for b in range(n_bins) if counts[b]
    ]


def expected_calibration_error(
    labels: np.ndarray, scores: np.ndarray, *, n_bins: int = 10, n_resamples: int = 200,
    confidence: float = 0.95, seed: int = 0,
) -> Interval:
    """ECE (film-weighted mean |observed share - mean score| over equal-width bins), percentile bootstrap interval."""
    labels, scores = _check(labels, scores)
    if len(labels) == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    bins = np.clip((scores * n_bins).astype(int), 0, n_bins - 1)

    def ece(picked: np.ndarray) -> float:
        gap = np.bincount(bins[picked], weights=labels[picked] - scores[picked], minlength=n_bins)
        return float(np.abs(gap).sum() / len(picked))

    rng = np.random.default_rng(seed)
    values = np.array([ece(rng.integers(0, len(labels), len(labels))) for _ in range(n_resamples)])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Interval(ece(np.arange(len(labels))), float(low), float(high))


def bernoulli_cusum(outcomes: np.ndarray, p_in_control: float, p_out_of_control: float) -> np.ndarray:
    """The Bernoulli CUSUM path (Reynolds and Stoumbos 1999) of 0/1 outcomes (1 = an event, here a missed pneumonia).

    ``S_n = max(0, S_{n-1} + w_n)`` with the log-likelihood ratio
    ``w = log(p1/p0)`` for an event and ``log((1-p1)/(1-p0))`` otherwise;
    the caller signals when ``S_n`` reaches its threshold.
    """
    outcomes = np.asarray(outcomes, dtype=bool).ravel()
    event = np.log(p_out_of_control / p_in_control)
    no_event = np.log((1 - p_out_of_control) / (1 - p_in_control))
    steps = np.where(outcomes, event, no_event)
    path = np.empty(len(steps))
    level = 0.0
    for i, step in enumerate(steps):
        level = max(0.0, level + step)
        path[i] = level
    return path
