"""What the full-size image says that the model's 28x28 input throws away.

Two steps, so the per-image work stays tiny and the arithmetic is vectorised:

- :func:`pneumo_batch.imaging.thumbnail.image_thumbnail`, taken by every
  decoder from the image it decoded (before it is cropped and downscaled):
  a 64x64 greyscale thumbnail of the whole frame, its colour and proportions;
- :func:`thumbnail_statistics`, over a chunk: the intensity histogram's
  shape, edge and texture statistics, left-right symmetry and the coarse row
  and column profiles that give a chest film its layout (dark lungs either
  side of a bright spine). Nothing depends on the file's resolution.
"""

from __future__ import annotations

import numpy as np

from pneumo_batch.imaging.thumbnail import THUMBNAIL, Thumbnail

_PROFILE_BINS = 8
_HISTOGRAM_BINS = 32

STATISTIC_NAMES: tuple[str, ...] = (
    "colour_chroma",
    "log_aspect",
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "p05",
    "p50",
    "p95",
    "black_share",
    "white_share",
    "entropy",
    "gradient",
    "gradient_coarse_ratio",
    "laplacian",
    "strong_edge_share",
    "symmetry",
    *(f"column_profile_{i}" for i in range(_PROFILE_BINS)),
    *(f"row_profile_{i}" for i in range(_PROFILE_BINS)),
)
"""One float per name, in this order, from :func:`thumbnail_statistics`."""

COLOUR = STATISTIC_NAMES.index("colour_chroma")


def statistics_or_nan(thumbnails: list[Thumbnail | None]) -> np.ndarray:
    """Statistics (N, len(STATISTIC_NAMES)) of a chunk; all-NaN rows where an image had no thumbnail.

    The gate judges an all-NaN row on the network part alone.
    """
    result = np.full((len(thumbnails), len(STATISTIC_NAMES)), np.nan)
    present = [row for row, thumbnail in enumerate(thumbnails) if thumbnail is not None]
    if present:
        result[present] = thumbnail_statistics([thumbnails[row] for row in present])
    return result


def thumbnail_statistics(thumbnails: list[Thumbnail]) -> np.ndarray:
    """Statistics (N, len(STATISTIC_NAMES)) of a chunk of thumbnails, vectorised over the chunk."""
    raw = np.stack([t.grey for t in thumbnails])
    grey = raw.astype(np.float32) / np.float32(255.0)
    count = len(grey)
    values = grey.reshape(count, -1)
    mean = values.mean(axis=1)
    std = values.std(axis=1)
    centred = (values - mean[:, None]) / np.maximum(std, 1e-6)[:, None]
    p05, p50, p95 = _percentiles(raw.reshape(count, -1), (0.05, 0.50, 0.95))
    # uint8 // 8 is the 32-bin histogram; one bincount for the whole chunk
    bins = (raw.reshape(count, -1) // (256 // _HISTOGRAM_BINS)).astype(np.intp) + _HISTOGRAM_BINS * np.arange(count)[:, None]
    histogram = np.bincount(bins.ravel(), minlength=count * _HISTOGRAM_BINS).reshape(count, -1) / values.shape[1]
    entropy = -(histogram * np.log(np.where(histogram > 0, histogram, 1.0))).sum(axis=1)
    gradient = _gradient_magnitude(grey)
    coarse = _gradient_magnitude(grey.reshape(count, THUMBNAIL // 2, 2, THUMBNAIL // 2, 2).mean(axis=(2, 4)))
    laplacian = (4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1]
                 - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:])
    squared = centred * centred
    mirrored = centred.reshape(count, THUMBNAIL, THUMBNAIL)[:, :, ::-1].reshape(count, -1)  # the same values, flipped
    symmetry = np.where(std > 1e-6, (centred * mirrored).mean(axis=1), 1.0)
    gradient_mean = gradient.reshape(count, -1).mean(axis=1)
    columns = [
        np.array([t.colour_chroma for t in thumbnails]),
        np.array([t.log_aspect for t in thumbnails]),
        mean,
        std,
        (squared * centred).mean(axis=1),
        np.log((squared * squared).mean(axis=1) + 1e-6),
        p05,
        p50,
        p95,
        (values <= 2 / 255).mean(axis=1),
        (values >= 253 / 255).mean(axis=1),
        entropy,
        gradient_mean,
        coarse.reshape(count, -1).mean(axis=1) / np.maximum(gradient_mean, 1e-6),
        np.abs(laplacian).reshape(count, -1).mean(axis=1),
        (gradient > 0.25).reshape(count, -1).mean(axis=1),
        symmetry,
    ]
    return np.column_stack([*columns, _profile(grey.mean(axis=1)), _profile(grey.mean(axis=2))]).astype(np.float64)


def _percentiles(rows: np.ndarray, quantiles: tuple[float, ...]) -> list[np.ndarray]:
    """Linear-interpolated percentiles of uint8 rows, 0..1 (a radix sort: fast for uint8)."""
    ordered = np.sort(rows, axis=1, kind="stable").astype(np.float32) / np.float32(255.0)
    last = ordered.shape[1] - 1
    result = []
    for quantile in quantiles:
        position = quantile * last
        below = int(np.floor(position))
        weight = np.float32(position - below)
        result.append(ordered[:, below] * (1 - weight) + ordered[:, min(below + 1, last)] * weight)
    return result


def _gradient_magnitude(grey: np.ndarray) -> np.ndarray:
    dx = grey[:, 1:-1, 2:] - grey[:, 1:-1, :-2]
    dy = grey[:, 2:, 1:-1] - grey[:, :-2, 1:-1]
    return np.sqrt(dx * dx + dy * dy)


def _profile(lines: np.ndarray) -> np.ndarray:
    """Mean intensity profiles (N, 64) in a few bins, standardised (layout, not brightness)."""
    bins = lines.reshape(len(lines), _PROFILE_BINS, -1).mean(axis=2)
    return (bins - bins.mean(axis=1, keepdims=True)) / np.maximum(bins.std(axis=1, keepdims=True), 1e-3)
