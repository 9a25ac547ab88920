"""Yeo-Johnson power transform (Yeo and Johnson 2000), so the image Gaussian fits its statistics.

The full-size image part is a Gaussian, but several of its statistics are
far from Gaussian on the films (the share of white pixels has kurtosis
about 50, the outer column and row profiles 6 to 9). A Gaussian on
heavy-tailed columns puts a few ordinary films far out, the threshold (set
on the films) follows them, and an outlier that is moderately unusual on
many statistics passes. Each column is therefore standardised and
transformed by the Yeo-Johnson power with its exponent ``lambda`` chosen by
maximum likelihood on the films (the transform ``sklearn``'s
``PowerTransformer`` uses), before the Gaussian is fitted.

``lambda`` is restricted to ``[0, 2]``: outside it the transform is bounded
on one side (for ``lambda < 0``, ``x -> inf`` maps to at most ``-1/lambda``),
which would make an image that is extreme on that statistic look ordinary.
Inside it both tails stay unbounded, so an extreme value stays extreme.
"""

from __future__ import annotations

import numpy as np

LAMBDA_RANGE = (0.0, 2.0)
_COARSE_STEP = 0.1
_FINE_STEP = 0.01


def yeo_johnson(values: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """The transform of each column of ``values`` (N, C) with its own exponent (C,); any shapes that broadcast.

    ``((x + 1)^l - 1) / l`` for ``x >= 0`` and ``-((1 - x)^(2 - l) - 1) / (2 - l)`` below,
    with ``log`` where the exponent is 0: one expression on ``|x|`` with the exponent of its side.
    """
    values, lambdas = np.asarray(values, dtype=np.float64), np.asarray(lambdas, dtype=np.float64)
    positive = values >= 0
    exponent = np.where(positive, lambdas, 2.0 - lambdas)
    logs = np.log1p(np.abs(values))
    at_zero = np.abs(exponent) < 1e-12
    safe = np.where(at_zero, 1.0, exponent)
    magnitude = np.where(at_zero, logs, np.expm1(safe * logs) / safe)
    return np.where(positive, magnitude, -magnitude)


def fit_yeo_johnson(values: np.ndarray) -> np.ndarray:
    """The maximum-likelihood exponent of each column (N, C) in :data:`LAMBDA_RANGE`, to 0.01.

    A grid, not an optimiser, so it is deterministic: every 0.1 first, then
    every 0.01 within 0.1 of the best, all grid points of a step in one array
    operation, since the gate is refitted many times when it is cross-fitted.
    That assumes the profile likelihood is unimodal on the range (it
    is concave for the Box-Cox transform); on the shipped gate's films it
    gives exactly the exponents of the full 0.01 grid.
    """
    values = np.asarray(values, dtype=np.float64)
    jacobian = (np.sign(values) * np.log1p(np.abs(values))).sum(axis=0)
    low, high = LAMBDA_RANGE
    coarse = _best_on_grid(values, jacobian, np.linspace(low, high, round((high - low) / _COARSE_STEP) + 1)[:, None])
    offsets = np.arange(-_COARSE_STEP, _COARSE_STEP + _FINE_STEP / 2, _FINE_STEP)
    fine = np.clip(np.round(coarse[None, :] + offsets[:, None], 10), low, high)
    return _best_on_grid(values, jacobian, fine)


def _best_on_grid(values: np.ndarray, jacobian: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per column, the exponent among ``grid`` (G, 1 or C) with the highest profile log-likelihood."""
    transformed = yeo_johnson(values[None], grid[:, None, :])
    variance = np.maximum(transformed.var(axis=1), np.finfo(np.float64).tiny)
    likelihood = -0.5 * len(values) * np.log(variance) + (grid - 1.0) * jacobian
    best = np.argmax(likelihood, axis=0)
    return np.broadcast_to(grid, likelihood.shape)[best, np.arange(likelihood.shape[1])]
