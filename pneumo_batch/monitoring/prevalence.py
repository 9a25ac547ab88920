"""How many children are sick tonight, corrected for the model's errors: the label-shift estimators.

A night with fewer sick children moves the scores and the image features
although nothing about the images changed (label shift: p(y) moves,
p(x | y) does not). :func:`estimate_prevalence` gives the night's share of
pneumonia with a bootstrap interval, by one of two estimators:

- ``bbse``, black-box shift estimation (Lipton et al. 2018): invert the
  validation confusion matrix at the screening threshold,
  ``pi = (flagged share - FPR) / (TPR - FPR)``. The default: it needs only
  the confusion counts (which every model's metadata has), no calibration,
  and it measured the more accurate of the two on nights unlike validation
  (``benchmarks/label_shift_benchmark.py``).
- ``em``, the maximum-likelihood estimate of Saerens et al. (2002) from the
  scores, recalibrated on validation data (Platt scaling, the
  bias-corrected calibration Alexandari et al. 2020 show EM needs). Needs
  the validation scores, not only the counts.

:func:`class_balance_alert` fires when the estimate's interval at the
test's level lies wholly outside the expected range (training prevalence
+/- a tolerance).

Every estimate needs labelled rows the model was not trained on (the
validation split): :class:`ValidationProfile`. Training-split scores are
overconfident and would make both estimators wrong. Callers pass in-scope,
scored rows only. Pure numpy; every random draw comes from the
``numpy.random.Generator`` the caller passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from pneumo_batch.errors import InputError

Method = Literal["bbse", "em"]
METHODS: tuple[Method, ...] = ("bbse", "em")

#: Scores are clipped this far from 0 and 1 before taking logits (float32
#: scores of the shipped model reach exactly 1.0).
_SCORE_EPSILON = 1e-6
#: Below this TPR - FPR the confusion matrix is too close to singular to invert.
_MIN_SEPARATION = 0.2
_EM_MAX_ITERATIONS = 200
_EM_TOLERANCE = 1e-7
#: Row picks of the BBSE bootstrap drawn one by one (8 bytes each); larger nights draw binomial counts.
_MAX_BOOTSTRAP_PICKS = 25_000_000


@dataclass(frozen=True)
class PrevalenceEstimate:
    value: float
    low: float
    high: float
    method: Method
    n: int
    confidence: float
    draws: np.ndarray
    """Bootstrap draws of the prevalence (paired with the validation draws; see :func:`estimate_performance`)."""

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "method": self.method, "n": self.n}


class ValidationProfile:
    """What the model does on labelled data it was not trained on, and its bootstrap replicates.

    Built from the validation split's labels and scores at the screening
    threshold (:meth:`__init__`, BBSE and EM), or from its confusion counts
    alone (:meth:`from_confusion`, BBSE only: resampling the positives and
    counting the flagged ones is a binomial draw, so the counts give the
    same bootstrap). ``n_bootstrap`` replicates resample the positives and
    negatives separately (so both classes stay in every replicate); the
    night's bootstrap pairs its draw ``b`` with replicate ``b``, so every
    interval carries the validation set's own uncertainty (135 normal
    children in PneumoniaMNIST's validation split) as well as the night's.
    """

    tpr: float
    fpr: float
    prevalence: float
    threshold: float
    n_bootstrap: int
    n_positive: int
    n_negative: int
    tpr_draws: np.ndarray
    fpr_draws: np.ndarray
    calibration: tuple[float, float] | None
    """Platt scaling ``(a, b)``; ``None`` when built from counts (no EM then)."""
    calibration_draws: np.ndarray | None

    def __init__(
        self,
        labels: np.ndarray,
        scores: np.ndarray,
        threshold: float,
        *,
        rng: np.random.Generator,
        n_bootstrap: int = 500,
    ) -> None:
        labels = np.asarray(labels).reshape(-1)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if labels.shape != scores.shape or not np.isin(labels, (0, 1)).all():
            raise InputError("validation labels must be 0/1 and as many as the scores")
        positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        _check_counts(len(positives), len(negatives))
        labels = labels.astype(np.int8)
        self.threshold, self.n_bootstrap = float(threshold), n_bootstrap
        self.tpr, self.fpr, self.prevalence, self.calibration = _operating_figures(labels, scores, threshold)
        self.n_positive, self.n_negative = len(positives), len(negatives)
        _check_separation(self.tpr, self.fpr)
        replicates = (
            np.concatenate((rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))))
            for _ in range(n_bootstrap)
        )
        figures = [_operating_figures(labels[picked], scores[picked], threshold) for picked in replicates]
        self.tpr_draws = np.array([f[0] for f in figures])
        self.fpr_draws = np.array([f[1] for f in figures])
        self.calibration_draws = np.array([f[3] for f in figures])

    @classmethod
    def from_confusion(
        cls,
        *,
        tp: int,
        fn: int,
        tn: int,
        fp: int,
        threshold: float,
        rng: np.random.Generator,
        n_bootstrap: int = 500,
    ) -> ValidationProfile:
        """From the validation confusion counts at ``threshold`` (a model's metadata has them): BBSE only."""
        n_positive, n_negative = tp + fn, tn + fp
        if min(tp, fn, tn, fp) < 0:
            raise InputError(f"validation confusion counts must not be negative: tp={tp} fn={fn} tn={tn} fp={fp}")
        _check_counts(n_positive, n_negative)
        profile = cls.__new__(cls)
        profile.threshold, profile.n_bootstrap = float(threshold), n_bootstrap
        profile.tpr, profile.fpr = tp / n_positive, fp / n_negative
        profile.prevalence = n_positive / (n_positive + n_negative)
        profile.n_positive, profile.n_negative = n_positive, n_negative
        _check_separation(profile.tpr, profile.fpr)
        profile.tpr_draws = rng.binomial(n_positive, profile.tpr, n_bootstrap) / n_positive
        profile.fpr_draws = rng.binomial(n_negative, profile.fpr, n_bootstrap) / n_negative
        profile.calibration = profile.calibration_draws = None
        return profile

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        threshold: float,
        *,
        rng: np.random.Generator,
        n_bootstrap: int = 500,
        label_column: str = "label",
        score_column: str = "p_pneumonia",
    ) -> ValidationProfile:
        """From a predictions-shaped frame of validation rows (``ok`` rows with labels)."""
        missing = [c for c in (label_column, score_column) if c not in frame.columns]
        if missing:
            raise InputError(f"validation profile lacks column(s) {', '.join(missing)}")
        rows = frame.dropna(subset=[label_column, score_column])
        labels, scores = rows[label_column].to_numpy(), rows[score_column].to_numpy()
        return cls(labels, scores, threshold, rng=rng, n_bootstrap=n_bootstrap)


def _check_counts(n_positive: int, n_negative: int) -> None:
    if n_positive < 10 or n_negative < 10:
        raise InputError(
            f"validation profile needs at least 10 rows of each class, has {n_positive} pneumonia, {n_negative} normal"
        )


def _check_separation(tpr: float, fpr: float) -> None:
    if tpr - fpr < _MIN_SEPARATION:
        raise InputError(f"validation TPR - FPR is {tpr - fpr:.3f}: too small to correct for errors")


def _operating_figures(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[float, float, float, tuple[float, float]]:
    flagged = scores >= threshold
    positive = labels == 1
    return (
        float(flagged[positive].mean()),
        float(flagged[~positive].mean()),
        float(positive.mean()),
        platt_calibration(labels, scores),
    )


# --------------------------------------------------------------------------- estimators


def bbse_prevalence(flagged_share: np.ndarray | float, tpr: np.ndarray | float, fpr: np.ndarray | float) -> np.ndarray:
    """Black-box shift estimate for two classes: ``(flagged share - FPR) / (TPR - FPR)``, clipped to [0, 1]."""
    return np.clip((np.asarray(flagged_share) - fpr) / (np.asarray(tpr) - fpr), 0.0, 1.0)


def platt_calibration(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` of ``sigmoid(a * logit(score) + b)`` fitted to ``labels`` by damped Newton."""
    x = _logit(scores)
    y = np.asarray(labels, dtype=np.float64)

    def loss(params: np.ndarray) -> float:
        z = params[0] * x + params[1]
        return float(np.sum(np.logaddexp(0.0, z) - y * z))

    params = np.array([1.0, 0.0])
    current = loss(params)
    for _ in range(100):
        p = _sigmoid(params[0] * x + params[1])
        weight = p * (1 - p)
        gradient = np.array([np.sum((p - y) * x), np.sum(p - y)])
        hessian = np.array([[np.sum(weight * x * x), np.sum(weight * x)], [np.sum(weight * x), np.sum(weight)]])
        # the ridge keeps the step finite when few rows sit near the boundary
        step = np.linalg.solve(hessian + 1e-3 * np.eye(2), gradient)
        # backtracking: a full Newton step overshoots on scores piled up at 0 and 1
        scale = 1.0
        while scale > 1e-6 and loss(params - scale * step) > current:
            scale /= 2
        params = params - scale * step
        previous, current = current, loss(params)
        if previous - current < 1e-10:
            break
    return float(params[0]), float(params[1])


def em_prevalence(
    posteriors: np.ndarray, source_prevalence: np.ndarray | float, *, max_iterations: int = _EM_MAX_ITERATIONS
) -> np.ndarray:
    """Saerens et al. (2002) EM estimate of the target prevalence from calibrated posteriors.

    ``posteriors`` is (n,) or (B, n), calibrated at ``source_prevalence``
    (scalar or (B,)). Returns a scalar array or (B,).
    """
    post = np.atleast_2d(np.asarray(posteriors, dtype=np.float64))
    source = np.broadcast_to(np.asarray(source_prevalence, dtype=np.float64), (post.shape[0],))[:, None]
    prevalence = source.copy()
    for _ in range(max_iterations):
        positive = post * (prevalence / source)
        negative = (1 - post) * ((1 - prevalence) / (1 - source))
        updated = np.mean(positive / (positive + negative), axis=1, keepdims=True)
        converged = np.max(np.abs(updated - prevalence)) < _EM_TOLERANCE
        prevalence = updated
        if converged:
            break
    result = prevalence[:, 0]
    return result if np.ndim(posteriors) == 2 else result[0]


def estimate_prevalence(
    validation: ValidationProfile,
    night_scores: np.ndarray,
    *,
    rng: np.random.Generator,
    method: Method = "bbse",
    confidence: float = 0.95,
) -> PrevalenceEstimate:
    """The night's pneumonia prevalence from its scores (in-scope rows only), with a bootstrap interval.

    Each of ``validation.n_bootstrap`` draws resamples the night and pairs
    it with one validation replicate.
    """
    scores = np.asarray(night_scores, dtype=np.float64).reshape(-1)
    scores = scores[np.isfinite(scores)]
    if len(scores) == 0:
        raise InputError("no scored rows to estimate the prevalence from")
    if method not in METHODS:
        raise InputError(f"unknown prevalence method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "bbse":
        flagged = scores >= validation.threshold
        value = float(bbse_prevalence(flagged.mean(), validation.tpr, validation.fpr))
        draws = bbse_prevalence(_resampled_shares(flagged, validation.n_bootstrap, rng),
                                validation.tpr_draws, validation.fpr_draws)
    else:
        if validation.calibration is None or validation.calibration_draws is None:
            raise InputError("the EM estimate needs validation scores; this profile has only confusion counts")
        picks = rng.integers(0, len(scores), size=(validation.n_bootstrap, len(scores)))
        a, b = validation.calibration
        value = float(em_prevalence(_sigmoid(a * _logit(scores) + b), validation.prevalence))
        slopes, intercepts = validation.calibration_draws[:, :1], validation.calibration_draws[:, 1:]
        posteriors = _sigmoid(slopes * _logit(scores)[picks] + intercepts)
        # each validation replicate resamples the classes separately, so its prevalence is the validation one
        draws = em_prevalence(posteriors, validation.prevalence)
    low, high = percentiles(draws, confidence)
    return PrevalenceEstimate(value, low, high, method, len(scores), confidence, draws)


def _resampled_shares(flagged: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """The flagged share of ``n_bootstrap`` resamples (with replacement) of the night's rows.

    Up to :data:`_MAX_BOOTSTRAP_PICKS` row picks the rows are drawn one by
    one (nightly sizes: the figures of every earlier release). Past it, a
    resample's flagged count is drawn as what it is, Binomial(n, flagged
    share): the same distribution without n_bootstrap x n picks in memory
    (4 GB at a million rows).
    """
    n = len(flagged)
    if n_bootstrap * n <= _MAX_BOOTSTRAP_PICKS:
        return flagged[rng.integers(0, n, size=(n_bootstrap, n))].mean(axis=1)
    return rng.binomial(n, flagged.mean(), n_bootstrap) / n


def expected_range(training_prevalence: float, tolerance: float = 0.05) -> tuple[float, float]:
    """The prevalence range a night may show without a class-balance alert."""
    return max(0.0, training_prevalence - tolerance), min(1.0, training_prevalence + tolerance)


def class_balance_alert(estimate: PrevalenceEstimate, expected: tuple[float, float], *, alpha: float) -> bool:
    """True when the estimate's ``1 - 2 alpha`` bootstrap interval lies wholly outside ``expected`` (low, high).

    A test of "the night's prevalence lies in the expected range" at level
    ``alpha``: only the tail on the side the range lies can miss it. The
    monitor passes its share of the false-alarm budget
    (:attr:`~pneumo_batch.monitoring.summary.MonitoringRules.test_alpha`).
    """
    low, high = percentiles(estimate.draws, 1 - 2 * alpha)
    return bool(high < expected[0] or low > expected[1])


# --------------------------------------------------------------------------- helpers


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(scores, dtype=np.float64), _SCORE_EPSILON, 1 - _SCORE_EPSILON)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap draws (NaN draws ignored)."""
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(np.asarray(draws, dtype=np.float64), [tail, 1 - tail])
    return float(low), float(high)
