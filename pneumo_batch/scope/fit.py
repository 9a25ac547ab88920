"""Fit the scope gate for an existing model directory, without retraining the network.

Writes two files into the model directory: ``model_int8_features.tflite``
(the deployed model with its ReLU activations as extra outputs; the same
weight bytes, a bit-identical logit) and ``scope_gate.npz`` (the gate's
parameters, thresholds and validation figures), then records both with
their sha256 in ``metadata.json`` (key ``scope_gate``), which is what makes
scoring use them. Same inputs and seed, same bytes.

:func:`collect_fit_inputs` does the slow part once (decoding, the network);
:func:`fit_gate` is pure numpy on its result, so the benchmark can refit
with a source held out in milliseconds.

Thresholds are upper confidence bounds of a quantile, not the quantile
itself: the distance on images the model has never seen runs higher than on
the split it is thresholded on (PneumoniaMNIST's val->test shift), so the
threshold is the order statistic that exceeds the ``1 - rate`` quantile with
the stated confidence. Everything is deterministic for a seed (the seed
only orders the cross-fitting folds of the films).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_batch import storage
from pneumo_batch.dataset import PneumoniaMNIST
from pneumo_batch.errors import ModelError
from pneumo_batch.imaging.decoders import decode
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.model import SCOPE_GATE_KEY, ModelArtifact, Scorer, file_sha256, load_model, write_metadata
from pneumo_batch.scope import exposure
from pneumo_batch.scope.gate import COLOUR_CHROMA, FEATURES_MODEL_FILE, LOG_OFFSET, ImageGaussian, ScopeGate
from pneumo_batch.scope.image_stats import STATISTIC_NAMES, statistics_or_nan
from pneumo_batch.scope.network import add_feature_outputs
from pneumo_batch.scope.power import fit_yeo_johnson, yeo_johnson

FILM_SUFFIXES = {".jpeg", ".jpg", ".png"}
_MIN_FILMS = 30
#: Folders beside the PneumoniaMNIST file that :func:`default_sources` looks for.
FILMS_FOLDER = "xray_jpegs"
OUTLIERS_FOLDER = "outliers"
HELD_OUT_FOLDS = 10
METHOD = (
    "max of threshold-relative scores: class-conditional Mahalanobis (Lee et al. 2018, tied Ledoit-Wolf covariance) "
    "on log per-channel means of every ReLU layer, fitted on train, thresholded on val; a Ledoit-Wolf Gaussian on "
    "full-size image statistics, each Yeo-Johnson transformed (Yeo and Johnson 2000), thresholded on cross-fitted "
    "films; an outlier-exposure logistic head (Hendrycks et al. 2019) on the same statistics; plus a colour rule"
)


@dataclass(frozen=True)
class FitInputs:
    """Everything the gate is fitted from, as arrays."""

    features_model: bytes
    layer_names: list[str]
    train_features: np.ndarray
    train_labels: np.ndarray
    val_features: np.ndarray
    film_features: np.ndarray
    film_statistics: np.ndarray
    outlier_features: np.ndarray
    outlier_statistics: np.ndarray
    outlier_sources: np.ndarray
    description: dict[str, Any]


def fit_scope_gate(
    artifact: ModelArtifact, dataset: PneumoniaMNIST, film_dir: Path, outlier_dir: Path | None = None, *, seed: int = 0
) -> ModelArtifact:
    """Fit the gate for a model directory, write its two files there and record them in its metadata.

    Returns the model directory as reloaded (its files verified).
    """
    inputs = collect_fit_inputs(artifact, dataset, film_dir, outlier_dir)
    network = fit_class_conditional(inputs.train_features, inputs.train_labels)
    gate = fit_gate(inputs, seed=seed, network_model=network)
    flagged = held_out_film_flags(inputs, network, seed=seed)
    gate = replace(gate, info={
        **gate.info,
        "false_flag_rate": float(flagged.mean()),
        "false_flag_rate_basis": (
            f"share of {len(flagged)} in-distribution full-size films flagged, each by a gate fitted and "
            f"thresholded without it ({HELD_OUT_FOLDS}-fold; the network part never sees films)"
        ),
        "validation": {"films": len(flagged), "films_flagged": int(flagged.sum()),
                       "pneumoniamnist_val_flagged_share": gate.info["network"]["val_flagged_share"]},
    })
    features_path = storage.write_bytes(artifact.directory / FEATURES_MODEL_FILE, inputs.features_model)
    gate_path = gate.save(artifact.directory)
    entry = {
        "file": gate_path.name,
        "sha256": file_sha256(gate_path),
        "method": METHOD,
        **gate.info,
        "features_model": {**gate.info["features_model"], "file": features_path.name},
    }
    write_metadata(artifact.directory, {**artifact.metadata, SCOPE_GATE_KEY: entry})
    return load_model(artifact.directory)


def held_out_film_flags(
    inputs: FitInputs, network: tuple[np.ndarray, np.ndarray], *, seed: int = 0, folds: int | None = None
) -> np.ndarray:
    """Whether each film is flagged by the whole gate refitted (and re-thresholded) without its fold.

    This is the gate's validated false-flag rate on full-size in-distribution
    images: no film is judged by a part that saw it.
    """
    flagged = np.zeros(len(inputs.film_features), dtype=bool)
    order = np.random.default_rng([seed, 1]).permutation(len(flagged))
    for held in np.array_split(order, folds or HELD_OUT_FOLDS):
        kept = np.setdiff1d(np.arange(len(flagged)), held)
        subset = replace(inputs, film_features=inputs.film_features[kept], film_statistics=inputs.film_statistics[kept])
        gate = fit_gate(subset, seed=seed, network_model=network)
        flagged[held] = ~gate.assess(inputs.film_features[held], inputs.film_statistics[held]).in_scope
    return flagged


def default_sources(dataset_path: Path) -> tuple[Path | None, Path | None]:
    """The full-size films and outlier folders beside the PneumoniaMNIST file, where they exist."""
    folders = [dataset_path.parent / FILMS_FOLDER, dataset_path.parent / OUTLIERS_FOLDER]
    films, outliers = (folder if folder.is_dir() else None for folder in folders)
    return films, outliers


def collect_fit_inputs(
    artifact: ModelArtifact, dataset: PneumoniaMNIST, film_dir: Path, outlier_dir: Path | None
) -> FitInputs:
    features_model, layer_names = add_feature_outputs(artifact.variant_path().read_bytes())
    scorer = Scorer(features_model, output=artifact.output)

    def features_of(pixels: np.ndarray) -> np.ndarray:
        return scorer.predict_with_features(pixels_to_model_input(pixels)).features

    films = film_paths(film_dir)
    film_pixels, film_statistics = decode_all(films)
    if outlier_dir is not None:
        outliers, sources = exposure.outlier_paths(outlier_dir)
        outlier_pixels, outlier_statistics = decode_all(outliers)
        outlier_features = features_of(outlier_pixels)
    else:
        sources, outlier_features, outlier_statistics = [], np.zeros((0, 1)), np.zeros((0, len(STATISTIC_NAMES)))
    return FitInputs(
        features_model=features_model,
        layer_names=layer_names,
        train_features=features_of(dataset.train.images),
        train_labels=dataset.train.labels.reshape(-1),
        val_features=features_of(dataset.val.images),
        film_features=features_of(film_pixels),
        film_statistics=film_statistics,
        outlier_features=outlier_features,
        outlier_statistics=outlier_statistics,
        outlier_sources=np.array(sources, dtype=str),
        description={
            "features_model": {
                "file": FEATURES_MODEL_FILE,
                "sha256": hashlib.sha256(features_model).hexdigest(),
                "of_variant": artifact.default_variant,
                "of_sha256": artifact.variant_sha256(),
                "feature_layers": len(layer_names),
            },
            "dataset_sha256": dataset.sha256,
            "films": f"{len(films)} full-size pediatric films ({film_dir.name})",
            "outliers": f"{len(sources)} images from {len(set(sources))} sources ({outlier_dir.name})" if outlier_dir else None,
        },
    )


def fit_gate(
    inputs: FitInputs,
    *,
    exclude_sources: tuple[str, ...] = (),
    false_flag_rate: float = 0.005,
    film_false_flag_rate: float = 0.01,
    confidence: float = 0.9,
    folds: int = 10,
    seed: int = 0,
    network_model: tuple[np.ndarray, np.ndarray] | None = None,
) -> ScopeGate:
    """Fit all components from arrays; ``exclude_sources`` keeps outlier sources out of the head.

    ``network_model`` (from :func:`fit_class_conditional` on the same
    training features) skips refitting the part that never sees films or
    outliers, for callers that refit many times.
    """
    means, whitening = network_model or fit_class_conditional(inputs.train_features, inputs.train_labels)
    gate = ScopeGate(
        class_means=means, network_whitening=whitening, network_threshold=1.0, image_columns=(),
        image=ImageGaussian(mean=np.zeros(0), scale=np.ones(0), lambdas=np.ones(0), centre=np.zeros(0),
                            whitening=np.zeros((0, 0))),
        image_threshold=1.0,
        colour_chroma=COLOUR_CHROMA, head_mean=np.zeros(0), head_scale=np.ones(0), head_weights=np.zeros(0),
        head_threshold=0.0, info={},
    )
    val_distance = gate.network_distance(inputs.val_features)
    network_threshold, above = upper_bound_threshold(val_distance, false_flag_rate, confidence)

    films = inputs.film_statistics
    columns = informative_columns(films)
    fold_of = np.empty(len(films), dtype=np.intp)
    for index, members in enumerate(np.array_split(np.random.default_rng(seed).permutation(len(films)), folds)):
        fold_of[members] = index
    film_image_distance = cross_fitted_distances(films, columns, fold_of)
    image_threshold, _ = upper_bound_threshold(film_image_distance, film_false_flag_rate, confidence)
    gate = replace(gate, network_threshold=network_threshold, image_columns=columns,
                   image=fit_gaussian(films, columns), image_threshold=image_threshold)
    info: dict[str, Any] = {
        **inputs.description,
        "network": {
            "fitted_on": f"PneumoniaMNIST train ({len(inputs.train_features)} images)",
            "threshold_rule": f"upper {confidence:.0%} confidence bound of the val {1 - false_flag_rate:.1%} quantile "
                              f"(order statistic with {above} val images above)",
            "false_flag_rate": false_flag_rate,
            "val_flagged_share": float((val_distance > network_threshold).mean()),
        },
        "image": {
            "threshold_rule": f"upper {confidence:.0%} confidence bound of the {1 - film_false_flag_rate:.1%} quantile "
                              f"of {folds}-fold cross-fitted film distances",
            "false_flag_rate": film_false_flag_rate,
            "cross_fitted_flagged_share": float((film_image_distance > image_threshold).mean()),
            "statistics": list(columns),
        },
        "colour_chroma": COLOUR_CHROMA,
        "seed": seed,
        "excluded_sources": list(exclude_sources),
    }
    kept = ~np.isin(inputs.outlier_sources, exclude_sources)
    if kept.any():
        gate, info["head"] = _fit_head(gate, inputs, kept, film_image_distance, fold_of, film_false_flag_rate, confidence)
    return replace(gate, info=info)


def _fit_head(
    gate: ScopeGate, inputs: FitInputs, kept: np.ndarray, film_image_distance: np.ndarray, fold_of: np.ndarray,
    rate: float, confidence: float,
) -> tuple[ScopeGate, dict[str, Any]]:
    """Train the exposure head; its threshold comes from films it was not trained on (cross-fitting)."""
    columns = [STATISTIC_NAMES.index(name) for name in gate.image_columns]
    film_rows = exposure.head_inputs(inputs.film_statistics[:, columns], gate.network_distance(inputs.film_features),
                                     film_image_distance)
    outlier_statistics = inputs.outlier_statistics[kept]
    outlier_rows = exposure.head_inputs(outlier_statistics[:, columns],
                                        gate.network_distance(inputs.outlier_features[kept]),
                                        gate.image_distance(outlier_statistics))
    film_logit = np.empty(len(film_rows))
    for fold in np.unique(fold_of):
        held = fold_of == fold
        rows = np.vstack([film_rows[~held], outlier_rows])
        labels = np.r_[np.zeros((~held).sum()), np.ones(len(outlier_rows))]
        film_logit[held] = exposure.head_logit(film_rows[held], *exposure.fit_logistic(rows, labels))
    threshold, _ = upper_bound_threshold(film_logit, rate, confidence)
    mean, scale, weights = exposure.fit_logistic(
        np.vstack([film_rows, outlier_rows]), np.r_[np.zeros(len(film_rows)), np.ones(len(outlier_rows))]
    )
    gate = replace(gate, head_mean=mean, head_scale=scale, head_weights=weights, head_threshold=threshold)
    sources = sorted(set(inputs.outlier_sources[kept].tolist()))
    return gate, {
        "trained_on": f"films vs {kept.sum()} outliers from {len(sources)} sources: {', '.join(sources)}",
        "threshold_rule": f"upper {confidence:.0%} confidence bound of the {1 - rate:.1%} quantile of cross-fitted film logits",
        "false_flag_rate": rate,
        "cross_fitted_flagged_share": float((film_logit > threshold).mean()),
    }


def informative_columns(statistics: np.ndarray) -> tuple[str, ...]:
    """Statistics that vary across most films (a column constant in 80 % of them, like the share of
    white pixels, would make the Gaussian's scale hinge on a handful of films)."""
    low, high = np.percentile(statistics, (10.0, 90.0), axis=0)
    return tuple(name for name, lo, hi in zip(STATISTIC_NAMES, low, high) if name != "colour_chroma" and hi - lo > 1e-6)


def fit_class_conditional(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class means and a shared whitening of the log features (Lee et al. 2018, tied covariance)."""
    logs = np.log(np.maximum(features, 0.0) + LOG_OFFSET).astype(np.float64)
    classes = np.unique(labels)
    means = np.stack([logs[labels == k].mean(axis=0) for k in classes])
    centred = np.concatenate([logs[labels == k] - means[i] for i, k in enumerate(classes)])
    return means, whitening_of(ledoit_wolf(centred))


def fit_gaussian(statistics: np.ndarray, columns: tuple[str, ...]) -> ImageGaussian:
    """Standardise, Yeo-Johnson transform (exponents by maximum likelihood), then a Ledoit-Wolf Gaussian.

    The whitening takes the transformed values' standard deviations in, so
    the shrinkage target (a multiple of the identity) sees unit variances.
    """
    values = statistics[:, [STATISTIC_NAMES.index(name) for name in columns]]
    mean, scale = values.mean(axis=0), values.std(axis=0)
    standardised = (values - mean) / scale
    lambdas = fit_yeo_johnson(standardised)
    transformed = yeo_johnson(standardised, lambdas)
    centre, spread = transformed.mean(axis=0), transformed.std(axis=0)
    whitening = whitening_of(ledoit_wolf((transformed - centre) / spread)) / spread
    return ImageGaussian(mean=mean, scale=scale, lambdas=lambdas, centre=centre, whitening=whitening)


def cross_fitted_distances(statistics: np.ndarray, columns: tuple[str, ...], fold_of: np.ndarray) -> np.ndarray:
    """Each film's image distance under a Gaussian fitted without its fold."""
    distances = np.empty(len(statistics))
    indices = [STATISTIC_NAMES.index(name) for name in columns]
    for fold in np.unique(fold_of):
        held = fold_of == fold
        distances[held] = fit_gaussian(statistics[~held], columns).distance(statistics[held][:, indices])
    return distances


def upper_bound_threshold(scores: np.ndarray, rate: float, confidence: float) -> tuple[float, int]:
    """The order statistic above the ``1 - rate`` quantile with probability >= ``confidence``.

    With j scores above it, the threshold exceeds the quantile iff at least
    j + 1 of n draws land above the quantile: P(Binomial(n, rate) >= j + 1).
    The largest j with that probability at least ``confidence`` is used; if
    even the maximum falls short (too few scores for the rate), the maximum.
    """
    ordered = np.sort(scores)
    n = len(ordered)
    above = 0
    for j in range(n):
        if _binomial_tail(n, rate, j + 1) < confidence:
            break
        above = j
    return float(ordered[n - 1 - above]), above


def _binomial_tail(n: int, p: float, k: int) -> float:
    """P(Binomial(n, p) >= k)."""
    return 1.0 - sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k))


def ledoit_wolf(centred: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of centred rows (the sklearn formula, numpy only)."""
    n, p = centred.shape
    empirical = centred.T @ centred / n
    squares = centred**2
    trace_share = squares.sum(axis=0) / n
    mu = trace_share.sum() / p
    delta_sum = (empirical**2).sum()
    beta = ((squares.T @ squares).sum() / n - delta_sum) / (p * n)
    delta = (delta_sum - 2 * mu * trace_share.sum() + p * mu**2) / p
    shrinkage = 0.0 if delta == 0 else min(beta, delta) / delta
    return (1 - shrinkage) * empirical + shrinkage * mu * np.eye(p)


def whitening_of(covariance: np.ndarray) -> np.ndarray:
    """W with W.T @ W = inverse(covariance)."""
    return np.linalg.cholesky(np.linalg.inv(covariance)).T


def film_paths(film_dir: Path) -> list[Path]:
    paths = sorted(p for p in film_dir.rglob("*") if p.suffix.lower() in FILM_SUFFIXES and p.is_file())
    if len(paths) < _MIN_FILMS:
        raise ModelError(f"{film_dir}: {len(paths)} full-size films, the image model needs at least {_MIN_FILMS}")
    return paths


def decode_all(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """28x28 pixels (N, 28, 28) and image statistics (N, S) of image files, decoded as scoring decodes them."""
    decoded = [decode(path.read_bytes(), path.suffix) for path in paths]
    return np.stack([image.pixels for image in decoded]), statistics_or_nan([image.thumbnail for image in decoded])
