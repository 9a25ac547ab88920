"""Outlier exposure: a small supervised head that has seen what out-of-scope images look like.

One-class distances at 28 px cannot tell an adult chest film from a child's
(both are chest films to the network). Hendrycks et al. (2019, "Deep anomaly
detection with outlier exposure") show that a detector trained against a
broad set of auxiliary outliers generalises to outlier distributions it has
not seen; here the head is an L2-regularised logistic regression on the
full-size image statistics plus the two one-class log distances, trained
with pediatric films (label 0) against the shared outlier sources (label 1),
classes weighted equally. Because it learns from outliers, every figure
claimed for it must hold a whole source out (benchmarks/scope_benchmark.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from pneumo_batch.errors import ModelError

OUTLIER_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
#: Ridge penalty on the standardised inputs: strong enough that 30-odd
#: weights fitted on a few hundred images do not memorise a source.
L2_PENALTY = 1.0


def head_inputs(statistics: np.ndarray, network_distance: np.ndarray, image_distance: np.ndarray) -> np.ndarray:
    """The head's input rows: the chosen statistics and the log of both one-class distances."""
    return np.column_stack([statistics, np.log(network_distance), np.log(image_distance)])


def fit_logistic(inputs: np.ndarray, labels: np.ndarray, penalty: float = L2_PENALTY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise, then fit a class-balanced L2 logistic regression by Newton's method.

    Returns (mean, scale, weights) with weights[-1] the intercept; deterministic.
    """
    mean, scale = inputs.mean(axis=0), inputs.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    design = np.column_stack([(inputs - mean) / scale, np.ones(len(inputs))])
    counts = Counter(labels.tolist())
    sample_weight = np.array([len(labels) / (2.0 * counts[label]) for label in labels.tolist()])
    ridge = np.full(design.shape[1], penalty)
    ridge[-1] = 0.0
    weights = np.zeros(design.shape[1])
    for _ in range(50):
        probability = 1.0 / (1.0 + np.exp(-design @ weights))
        gradient = design.T @ (sample_weight * (probability - labels)) + ridge * weights
        curvature = (design * (sample_weight * probability * (1 - probability))[:, None]).T @ design + np.diag(ridge)
        step = np.linalg.solve(curvature + 1e-9 * np.eye(len(weights)), gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return mean, scale, weights


def head_logit(inputs: np.ndarray, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return ((inputs - mean) / scale) @ weights[:-1] + weights[-1]


def outlier_paths(outlier_dir: Path, exclude_sources: tuple[str, ...] = ()) -> tuple[list[Path], list[str]]:
    """Image files under ``outlier_dir`` and their source names, sorted.

    A file's source is the part of its name before ``__`` (the shared
    outlier set's ``<source>__<name>`` convention), else its folder's name.
    """
    paths, sources = [], []
    for path in sorted(outlier_dir.rglob("*")):
        if path.suffix.lower() not in OUTLIER_SUFFIXES or not path.is_file():
            continue
        source = outlier_source(path)
        if source in exclude_sources:
            continue
        paths.append(path)
        sources.append(source)
    if not paths:
        raise ModelError(f"{outlier_dir}: no outlier images to train the exposure head on")
    return paths, sources


def outlier_source(path: Path) -> str:
    return path.name.split("__", 1)[0] if "__" in path.name else path.parent.name
