"""Statistics for two models scored on the same labelled films: DeLong, McNemar, non-inferiority.

The companion of :mod:`pneumo_batch.metrics` for ``validate`` and ``compare``.
DeLong's covariance of correlated AUCs (DeLong, DeLong and Clarke-Pearson
1988, in the midrank form of Sun and Xu 2014) is written here: no library
we depend on has it. McNemar's exact test comes from statsmodels and the
Wilson intervals from :func:`pneumo_batch.metrics.wilson_interval`. The
non-inferiority test on sensitivity uses Agresti and Min's (2005)
interval for a difference of paired proportions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pneumo_batch.metrics import Interval

#: A challenger's screening sensitivity may be at most this much below the champion's: two films in a hundred
#: pneumonias. Strict, because sensitivity is the promise; with a few hundred positives the interval must
#: exclude it, so a challenger that misses even slightly more often is not promoted.
SENSITIVITY_MARGIN = 0.02


@dataclass(frozen=True)
class DeLong:
    aucs: np.ndarray
    """The AUC of each score set (rows of the input)."""
    covariance: np.ndarray
    """DeLong's covariance matrix of the AUCs."""
    smaller_class: int = 0
    """Films in the smaller class (for the interval when the classes do not overlap)."""

    def interval(self, index: int = 0, confidence: float = 0.95) -> Interval:
        """DeLong's interval; when no pair is misordered (AUC 0 or 1) its variance is 0, so the interval
        is then the exact bound for a sample of the smaller class's size that shows no error,
        ``((1 - confidence) / 2) ** (1 / k)`` away from the edge, rather than a point."""
        auc = float(self.aucs[index])
        variance = float(self.covariance[index, index])
        if variance <= 0 and auc in (0.0, 1.0) and self.smaller_class:
            reach = 1.0 - ((1 - confidence) / 2) ** (1 / self.smaller_class)
            return Interval(auc, 1.0 - reach, 1.0) if auc == 1.0 else Interval(auc, 0.0, reach)
        half = _z(confidence) * float(np.sqrt(max(variance, 0.0)))
        return Interval(auc, max(0.0, auc - half), min(1.0, auc + half))

    def difference(self, confidence: float = 0.95) -> tuple[Interval, float]:
        """AUC of the second minus the first, its interval, and the two-sided p-value of no difference."""
        from scipy.stats import norm

        delta = float(self.aucs[1] - self.aucs[0])
        variance = float(self.covariance[0, 0] + self.covariance[1, 1] - 2 * self.covariance[0, 1])
        if variance <= 0:
            return Interval(delta, delta, delta), 1.0 if delta == 0 else 0.0
        spread = float(np.sqrt(variance))
        p_value = float(2 * norm.sf(abs(delta) / spread))
        half = _z(confidence) * spread
        return Interval(delta, delta - half, delta + half), p_value


def delong(labels: np.ndarray, *score_sets: np.ndarray) -> DeLong:
    """DeLong's AUCs and their covariance for one or more score sets on the same films (label 1 = pneumonia)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.vstack([np.asarray(s, dtype=np.float64).ravel() for s in score_sets])
    positives, negatives = scores[:, labels], scores[:, ~labels]
    m, n = positives.shape[1], negatives.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two films of each class")
    within_pos = rankdata(positives, axis=1)
    within_neg = rankdata(negatives, axis=1)
    overall = rankdata(np.hstack([positives, negatives]), axis=1)
    aucs = (overall[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    # Structural components: each positive's share of negatives it outranks, each negative's of positives.
    v_pos = (overall[:, :m] - within_pos) / n
    v_neg = 1.0 - (overall[:, m:] - within_neg) / m
    covariance = np.atleast_2d(np.cov(v_pos)) / m + np.atleast_2d(np.cov(v_neg)) / n
    return DeLong(aucs=aucs, covariance=covariance, smaller_class=min(m, n))


def mcnemar_p(first: np.ndarray, second: np.ndarray) -> float:
    """Exact McNemar p-value that two paired yes/no outcomes (say, correct at the screening point) differ."""
    from statsmodels.stats.contingency_tables import mcnemar

    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    table = [[int(np.sum(first & second)), int(np.sum(first & ~second))],
             [int(np.sum(~first & second)), int(np.sum(~first & ~second))]]
    if table[0][1] + table[1][0] == 0:
        return 1.0
    return float(mcnemar(table, exact=True).pvalue)


def paired_difference(champion: np.ndarray, challenger: np.ndarray, confidence: float = 0.95) -> Interval:
    """Challenger's share of successes minus the champion's, paired, with the Agresti-Min interval.

    Agresti and Min (2005): a Wald interval after adding one half to each
    cell of the paired 2x2 table. Unlike Newcombe's method 10 it stays
    narrow when the two models agree on every film (no discordant pair),
    and its coverage is close to nominal (Fagerland, Lydersen and Laake 2014).
    """
    a, b = np.asarray(champion, dtype=bool), np.asarray(challenger, dtype=bool)
    total = len(a)
    if total == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    delta = (only_b - only_a) / total
    n, x, y = total + 2, only_b + 0.5, only_a + 0.5
    adjusted = (x - y) / n
    half = _z(confidence) * float(np.sqrt(max((x + y) - (x - y) ** 2 / n, 0.0))) / n
    return Interval(float(delta), float(max(-1.0, adjusted - half)), float(min(1.0, adjusted + half)))


def non_inferior(difference: Interval, margin: float = SENSITIVITY_MARGIN) -> bool:
    """Whether the interval of (challenger - champion) lies wholly above ``-margin``."""
    return bool(np.isfinite(difference.low) and difference.low > -margin)


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - confidence) / 2))
