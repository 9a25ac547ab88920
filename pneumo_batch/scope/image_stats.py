"""What the full-size image says that the model's 28x28 input throws away.

Two steps, so the per-image work stays tiny and the arithmetic is vectorised:

- :func:`pneumo_batch.imaging.thumbnail.image_thumbnail`, taken by every
  decoder from the image it has already decoded (before it is cropped and downscaled):
  a 64x64 greyscale thumbnail of the whole frame, its colour and proportions;
- :func:`thumbnail_statistics`, over a chunk: the intensity histogram's
  shape, edge and texture statistics and their orientation, left-right
  symmetry, the coarse row and column profiles and a 4x4 grid of the frame
  that give a chest film its layout (dark lungs either side of a bright
  spine; how much of the frame the thorax fills). Nothing depends on the
  file's resolution.

Everything that only needs intensities comes from one 256-level histogram
per image (moments, percentiles, shares, entropy), and edges are computed in
integers, so a chunk costs a handful of passes over its 4 KB thumbnails.
"""

from __future__ import annotations

import numpy as np

from pneumo_batch.imaging.thumbnail import THUMBNAIL, Thumbnail

_PROFILE_BINS = 8
_GRID = 4
_HISTOGRAM_BINS = 32
_LEVELS = 256
#: A strong edge: a central-difference gradient above a quarter of the range (in grey levels, squared).
_STRONG_EDGE_SQUARED = (0.25 * 255) ** 2

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
    *(f"layout_{row}{column}" for row in range(_GRID) for column in range(_GRID)),
    "edge_orientation",
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
    count = len(raw)
    intensity = _intensity_statistics(_histograms(raw))
    levels = raw.astype(np.int16)
    edges = _edge_statistics(levels)
    # 8x8 blocks of 8x8 pixels: sums along the contiguous axis first
    side = THUMBNAIL // _PROFILE_BINS
    blocks = raw.reshape(count, THUMBNAIL, _PROFILE_BINS, side).sum(axis=3, dtype=np.int32)
    blocks = blocks.reshape(count, _PROFILE_BINS, side, _PROFILE_BINS).sum(axis=2) / (side * side * 255.0)
    grid = blocks.reshape(count, _GRID, _PROFILE_BINS // _GRID, _GRID, -1).mean(axis=(2, 4)).reshape(count, -1)
    # correlation with the left-right mirror image, once standardised: E[x * mirrored x]
    grey = raw.astype(np.float32)
    mirrored = np.einsum("nij,nij->n", grey, grey[:, :, ::-1], dtype=np.float64) / (THUMBNAIL * THUMBNAIL * 255.0**2)
    mean, std = intensity[:, 0], intensity[:, 1]
    symmetry = np.where(std > 1e-6, (mirrored - mean * mean) / np.maximum(std, 1e-6) ** 2, 1.0)
    columns = [
        np.array([[t.colour_chroma, t.log_aspect] for t in thumbnails]),
        intensity,
        edges[:, :4],
        symmetry[:, None],
        _standardised(blocks.mean(axis=1)),
        _standardised(blocks.mean(axis=2)),
        _standardised(grid),
        edges[:, 4:],
    ]
    return np.column_stack(columns)


def _histograms(raw: np.ndarray) -> np.ndarray:
    """(N, 256) pixel counts per grey level: one bincount for the whole chunk."""
    count = len(raw)
    offsets = np.arange(count, dtype=np.intp)[:, None] * _LEVELS
    indices = raw.reshape(count, -1) + offsets
    return np.bincount(indices.ravel(), minlength=count * _LEVELS).reshape(count, _LEVELS).astype(np.float64)


def _intensity_statistics(histogram: np.ndarray) -> np.ndarray:
    """mean, std, skewness, log kurtosis, p05, p50, p95, black and white share, entropy: (N, 10), from the histogram."""
    pixels = histogram[0].sum()
    share = histogram / pixels
    levels = np.arange(_LEVELS) / 255.0
    # raw moments E[x^k] in one product, then the central ones from them (float64, x in 0..1)
    first, second, third, fourth = (share @ np.column_stack([levels, levels**2, levels**3, levels**4])).T
    mean = first
    variance = np.maximum(second - mean * mean, 0.0)
    spread = np.maximum(np.sqrt(variance), 1e-6)
    third_central = third - 3 * mean * second + 2 * mean**3
    fourth_central = fourth - 4 * mean * third + 6 * mean**2 * second - 3 * mean**4
    cumulative = np.cumsum(histogram, axis=1)
    percentiles = [_percentile(cumulative, pixels, quantile) for quantile in (0.05, 0.50, 0.95)]
    coarse = share.reshape(len(share), _HISTOGRAM_BINS, -1).sum(axis=2)
    entropy = -(coarse * np.log(np.where(coarse > 0, coarse, 1.0))).sum(axis=1)
    black, white = share[:, :3].sum(axis=1), share[:, 253:].sum(axis=1)
    return np.column_stack([mean, np.sqrt(variance), third_central / spread**3,
                            np.log(np.maximum(fourth_central, 0.0) / spread**4 + 1e-6),
                            *percentiles, black, white, entropy])


def _percentile(cumulative: np.ndarray, pixels: float, quantile: float) -> np.ndarray:
    """The linear-interpolated percentile (0..1) from cumulative counts, as of the sorted pixels."""
    position = quantile * (pixels - 1)
    below = int(np.floor(position))
    weight = position - below
    # the k-th smallest pixel (0-based) is the number of levels with at most k pixels at or below them
    lower = (cumulative <= below).sum(axis=1)
    upper = (cumulative <= min(below + 1, pixels - 1)).sum(axis=1)
    return (lower * (1 - weight) + upper * weight) / 255.0


def _edge_statistics(levels: np.ndarray) -> np.ndarray:
    """gradient, coarse/fine gradient ratio, |laplacian|, strong-edge share, edge orientation: (N, 5).

    ``levels`` are the thumbnails as int16 grey levels: differences are
    exact integers and every pass is over a small contiguous array. Edge
    orientation is log(vertical / horizontal gradient energy): ribs run
    nearly across a young child's chest and slope down in an adult's.
    """
    count = len(levels)
    fine_x, fine_y, fine = _gradient(levels)
    # the same at half resolution: 2x2 sums (exact in int16), scaled back to grey levels
    coarse_levels = levels[:, ::2, ::2] + levels[:, 1::2, ::2] + levels[:, ::2, 1::2] + levels[:, 1::2, 1::2]
    _, _, coarse = _gradient(coarse_levels)
    gradient = fine.mean(axis=1)
    laplacian = (4 * levels[:, 1:-1, 1:-1] - levels[:, :-2, 1:-1] - levels[:, 2:, 1:-1]
                 - levels[:, 1:-1, :-2] - levels[:, 1:-1, 2:])
    return np.column_stack([
        gradient / 255.0,
        (coarse.mean(axis=1) / 4.0) / np.maximum(gradient, 255e-6),
        np.abs(laplacian).reshape(count, -1).sum(axis=1, dtype=np.int64) / (laplacian[0].size * 255.0),
        (fine > np.float32(0.25 * 255)).sum(axis=1) / fine.shape[1],
        np.log((fine_y + 1.0) / (fine_x + 1.0)),
    ])


def _gradient(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean squared x and y central differences (N,) and the gradient magnitude per pixel (N, pixels), float32."""
    count = len(levels)
    dx = (levels[:, 1:-1, 2:] - levels[:, 1:-1, :-2]).astype(np.int32).reshape(count, -1)
    dy = (levels[:, 2:, 1:-1] - levels[:, :-2, 1:-1]).astype(np.int32).reshape(count, -1)
    dx *= dx
    dy *= dy
    energy_x = dx.sum(axis=1, dtype=np.int64) / dx.shape[1]
    energy_y = dy.sum(axis=1, dtype=np.int64) / dy.shape[1]
    dx += dy
    return energy_x, energy_y, np.sqrt(dx, dtype=np.float32)


def _standardised(bins: np.ndarray) -> np.ndarray:
    """Mean intensity of a few bins (rows, columns or blocks), standardised per image (layout, not brightness)."""
    return (bins - bins.mean(axis=1, keepdims=True)) / np.maximum(bins.std(axis=1, keepdims=True), 1e-3)
