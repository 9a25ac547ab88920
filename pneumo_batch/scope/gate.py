"""The pixel scope gate: is this image like the ones the model was trained on?

Two one-class models of the training distribution, each with its own
threshold, and one rule:

- **network**: class-conditional Mahalanobis distance (Lee et al. 2018,
  tied covariance with Ledoit-Wolf shrinkage) on the log of the per-channel
  mean of every ReLU layer of the deployed int8 network, fitted on
  PneumoniaMNIST train, thresholded on val;
- **image**: a Gaussian (Ledoit-Wolf) on statistics of the full-size image
  (:mod:`pneumo_batch.scope.image_stats`), each standardised and
  Yeo-Johnson transformed (:mod:`pneumo_batch.scope.power`), fitted on
  full-size pediatric films, thresholded on their cross-fitted distances;
- **exposure head** (optional, :mod:`pneumo_batch.scope.exposure`): a
  logistic regression on the image statistics and both distances, trained
  against known outlier sources, thresholded on cross-fitted films;
- **colour**: a film is grey; a file with visible colour is out of scope.

``scope_score`` is the largest of the components, each divided by its
threshold (the head's probability by its threshold probability), so 1.0 is
the threshold and higher means less like training.
Scoring is numpy only: two matrix products and an elementwise power transform per chunk.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_batch import storage
from pneumo_batch.errors import ModelError
from pneumo_batch.imaging.thumbnail import Thumbnail
from pneumo_batch.scope import IN_SCOPE, ScopeVerdict
from pneumo_batch.scope.exposure import head_inputs, head_logit
from pneumo_batch.scope.image_stats import COLOUR, STATISTIC_NAMES, statistics_or_nan
from pneumo_batch.scope.power import yeo_johnson

GATE_FILE = "scope_gate.npz"
FEATURES_MODEL_FILE = "model_int8_features.tflite"
#: 2: statistics of an area-averaged thumbnail, with a 4x4 layout grid and edge orientation (a format-1
#: gate was fitted on statistics computed differently, so it is refused rather than misjudged).
#: 3: the image statistics are Yeo-Johnson transformed before the Gaussian (``image_lambdas``, ``image_centre``).
FORMAT_VERSION = 3
#: Activations are non-negative and right-skewed; their log is closer to Gaussian.
LOG_OFFSET = 0.05
#: Mean chroma (max - min of R, G, B, 0..1) above which an image counts as
#: colour: a grey film saved as RGB or colour JPEG stays below 1/255.
COLOUR_CHROMA = 0.02
#: How a pixel verdict's reason starts, naming the rule (the header rules' start "header").
PIXELS_RULE = "pixels"
_EVIDENCE = ("network features", "full-size image", "resembles known out-of-scope images")


@dataclass(frozen=True)
class GateVerdicts:
    scope_score: np.ndarray
    """float32 (N,): the larger threshold-relative distance; 1.0 is the threshold."""
    in_scope: np.ndarray
    """bool (N,)."""
    scope_reason: list[str | None]
    """None in scope, else a short phrase naming the evidence."""


@dataclass(frozen=True)
class ImageGaussian:
    """The image part: a Gaussian on standardised, Yeo-Johnson transformed statistics."""

    mean: np.ndarray
    scale: np.ndarray
    """Standardise each statistic, ``z = (x - mean) / scale``, before its power transform."""
    lambdas: np.ndarray
    """The Yeo-Johnson exponent of each statistic."""
    centre: np.ndarray
    """The films' mean of the transformed statistics."""
    whitening: np.ndarray
    """W with d = |W (y - centre)|^2 for the transformed statistics y."""

    def distance(self, values: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of rows of the gate's statistics (N, C)."""
        transformed = yeo_johnson((values - self.mean) / self.scale, self.lambdas)
        return _squared_norm((transformed - self.centre) @ self.whitening.T)


@dataclass(frozen=True)
class ScopeGate:
    class_means: np.ndarray
    """(2, F) training mean of the log features per class."""
    network_whitening: np.ndarray
    """(F, F) W with W.T @ W = the shrunk inverse covariance, so d = |W (x - mean)|^2."""
    network_threshold: float
    image_columns: tuple[str, ...]
    image: ImageGaussian
    image_threshold: float
    colour_chroma: float
    head_mean: np.ndarray
    head_scale: np.ndarray
    head_weights: np.ndarray
    """Empty when the gate has no exposure head."""
    head_threshold: float
    info: dict[str, Any]
    """How it was fitted and its validation figures (copied into metadata.json by the fit)."""

    def network_distance(self, features: np.ndarray) -> np.ndarray:
        logs = np.log(np.maximum(features, 0.0) + LOG_OFFSET)
        # W (x - m) = W x - W m: one product for the chunk, whatever the number of classes
        whitened = logs @ self.network_whitening.T
        offsets = self.class_means @ self.network_whitening.T
        return np.min([_squared_norm(whitened - offset) for offset in offsets], axis=0)

    def image_distance(self, statistics: np.ndarray) -> np.ndarray:
        columns = [STATISTIC_NAMES.index(name) for name in self.image_columns]
        return self.image.distance(statistics[:, columns])

    def head_ratio(self, statistics: np.ndarray, network: np.ndarray, image: np.ndarray) -> np.ndarray:
        """The exposure head's probability over its threshold probability (0 without a head)."""
        if self.head_weights.size == 0:
            return np.zeros(len(statistics))
        columns = [STATISTIC_NAMES.index(name) for name in self.image_columns]
        inputs = head_inputs(statistics[:, columns], network, image)
        return _sigmoid(head_logit(inputs, self.head_mean, self.head_scale, self.head_weights)) / _sigmoid(
            np.array([self.head_threshold])
        )

    def assess(self, features: np.ndarray, statistics: np.ndarray | None = None) -> GateVerdicts:
        """Verdicts for a chunk: network features (N, F) and, when the full-size image was seen, its statistics.

        Rows of ``statistics`` that are all NaN (no full-size image, e.g.
        pixels handed over at 28 px) are judged on the network alone.
        """
        network_distance = self.network_distance(features)
        network = network_distance / self.network_threshold
        if statistics is None:
            statistics = np.full((len(features), len(STATISTIC_NAMES)), np.nan)
        seen = ~np.isnan(statistics).all(axis=1)
        image, head = np.zeros(len(features)), np.zeros(len(features))
        if seen.any():
            image_distance = self.image_distance(statistics[seen])
            image[seen] = image_distance / self.image_threshold
            head[seen] = self.head_ratio(statistics[seen], network_distance[seen], image_distance)
        colour = seen & (np.nan_to_num(statistics[:, COLOUR]) > self.colour_chroma)
        score = np.maximum(np.maximum(network, image), head).astype(np.float32)
        in_scope = (score <= 1.0) & ~colour
        reasons: list[str | None] = [None] * len(score)
        evidence = np.argmax(np.column_stack([network, image, head]), axis=1)
        for row in np.flatnonzero(~in_scope).tolist():
            reasons[row] = _reason(bool(colour[row]), int(evidence[row]), float(score[row]))
        return GateVerdicts(scope_score=score, in_scope=in_scope, scope_reason=reasons)

    def arrays(self) -> dict[str, np.ndarray]:
        """The gate as named arrays, as :func:`gate_file_bytes` stores them."""
        return {
            "format_version": np.int64(FORMAT_VERSION),
            "class_means": self.class_means.astype(np.float32),
            "network_whitening": self.network_whitening.astype(np.float32),
            "network_threshold": np.float64(self.network_threshold),
            "image_columns": np.array(self.image_columns),
            "image_mean": self.image.mean,
            "image_scale": self.image.scale,
            "image_lambdas": self.image.lambdas,
            "image_centre": self.image.centre,
            "image_whitening": self.image.whitening,
            "image_threshold": np.float64(self.image_threshold),
            "colour_chroma": np.float64(self.colour_chroma),
            "head_mean": self.head_mean,
            "head_scale": self.head_scale,
            "head_weights": self.head_weights,
            "head_threshold": np.float64(self.head_threshold),
            "info": np.array(json.dumps(self.info, sort_keys=True)),
        }

    def judge(self, features: np.ndarray, thumbnails: list[Thumbnail | None]) -> tuple[np.ndarray, list[ScopeVerdict]]:
        """``scope_score`` (float64) and a per-row verdict ("pixels: ...") for a chunk of decoded images."""
        verdicts = self.assess(features, statistics_or_nan(thumbnails))
        rows = [
            IN_SCOPE if inside else ScopeVerdict(False, f"{PIXELS_RULE}: {reason}")
            for inside, reason in zip(verdicts.in_scope.tolist(), verdicts.scope_reason)
        ]
        return verdicts.scope_score.astype(np.float64), rows

    def save(self, model_dir: Path) -> Path:
        """Write ``scope_gate.npz`` into ``model_dir`` (atomically; same gate, same bytes)."""
        return storage.write_bytes(Path(model_dir) / GATE_FILE, gate_file_bytes(self.arrays()))


def gate_file_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (readable by :func:`numpy.load`) whose bytes depend only on the arrays.

    ``numpy.savez`` stamps each member with the current time, so two fits of
    the same gate would differ in sha256; here every member gets a fixed date.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def read_gate(path: Path) -> ScopeGate:
    """The gate stored at ``path`` (a model directory's ``scope_gate.npz``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format_version"]) != FORMAT_VERSION:
                raise ModelError(f"{path}: gate format {int(data['format_version'])}, this pneumo-batch reads "
                                 f"{FORMAT_VERSION}; refit it: pneumo-batch fit-scope MODEL_DIR")
            return ScopeGate(
                class_means=data["class_means"].astype(np.float64),
                network_whitening=data["network_whitening"].astype(np.float64),
                network_threshold=float(data["network_threshold"]),
                image_columns=tuple(str(name) for name in data["image_columns"]),
                image=ImageGaussian(
                    mean=data["image_mean"], scale=data["image_scale"], lambdas=data["image_lambdas"],
                    centre=data["image_centre"], whitening=data["image_whitening"],
                ),
                image_threshold=float(data["image_threshold"]),
                colour_chroma=float(data["colour_chroma"]),
                head_mean=data["head_mean"],
                head_scale=data["head_scale"],
                head_weights=data["head_weights"],
                head_threshold=float(data["head_threshold"]),
                info=json.loads(str(data["info"])),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ModelError(f"cannot read the scope gate {path}: {error}") from None


def _squared_norm(values: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", values, values)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def _reason(colour: bool, evidence: int, score: float) -> str:
    """The reason of an out-of-scope row: colour, else the component furthest past its threshold."""
    if colour:
        return "unlike training images: colour image"
    return f"unlike training images: {_EVIDENCE[evidence]} (score {score:.2f} > 1.00)"
