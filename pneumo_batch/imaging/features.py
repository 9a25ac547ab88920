"""Per-image features for drift monitoring, computed once at scoring time.

Evidently has no raw-image support, so monitoring compares these numbers
instead. Intensity features are computed on the model's own 28x28 pixels:
that is what the model sees, and what the training reference profile (made
from PneumoniaMNIST, which has no full-size originals) can also provide. The
file-level facts (original size, colour mode, format) are recorded too; they
are compared only against a reference of real predictions, since the
training data has none.

To add a feature, add it to :func:`intensity_features` (a vectorised
function of the pixel stack); it then flows into predictions, the training
profile and the drift report.
"""

from __future__ import annotations

import numpy as np

NUMERIC_IMAGE_FEATURES: tuple[str, ...] = (
    "img_mean",
    "img_std",
    "img_p05",
    "img_p50",
    "img_p95",
    "img_contrast",
    "img_sharpness",
    "img_saturated_share",
)
"""Features computed from the 28x28 pixels; present in the training profile."""

FILE_FEATURES: tuple[str, ...] = ("img_width", "img_height", "img_aspect_ratio", "img_mode", "img_format")
"""Facts about the original file; null in the training profile."""

#: What each monitored column measures, in words (the verdict page names features so, the column beside).
FEATURE_WORDS: dict[str, str] = {
    "img_mean": "mean brightness",
    "img_std": "brightness spread",
    "img_p05": "dark end (5th percentile of brightness)",
    "img_p50": "median brightness",
    "img_p95": "bright end (95th percentile of brightness)",
    "img_contrast": "contrast",
    "img_sharpness": "sharpness (edge strength)",
    "img_saturated_share": "share of pure black or white pixels",
    "img_width": "original width",
    "img_height": "original height",
    "img_aspect_ratio": "aspect ratio",
    "img_mode": "colour mode",
    "img_format": "file format",
    "p_pneumonia": "model score",
}

#: A pixel this close to black or white counts as saturated (clipped exposure,
#: burned-in borders, screenshots).
_SATURATION_MARGIN = 2


def intensity_features(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Compute the numeric features of a stack of 28x28 ``uint8`` images (N, 28, 28)."""
    stack = pixels.astype(np.float32).reshape(len(pixels), -1)
    p05, p50, p95 = _percentiles(pixels, stack, (5.0, 50.0, 95.0))
    images = stack.reshape(pixels.shape)
    laplacian = (
        4 * images[:, 1:-1, 1:-1]
        - images[:, :-2, 1:-1]
        - images[:, 2:, 1:-1]
        - images[:, 1:-1, :-2]
        - images[:, 1:-1, 2:]
    )
    saturated = (stack <= _SATURATION_MARGIN) | (stack >= 255 - _SATURATION_MARGIN)
    return {
        "img_mean": stack.mean(axis=1),
        "img_std": stack.std(axis=1),
        "img_p05": p05.astype(np.float32),
        "img_p50": p50.astype(np.float32),
        "img_p95": p95.astype(np.float32),
        "img_contrast": (p95 - p05).astype(np.float32),
        "img_sharpness": np.abs(laplacian).reshape(len(pixels), -1).mean(axis=1),
        "img_saturated_share": saturated.mean(axis=1, dtype=np.float32),
    }


def _percentiles(pixels: np.ndarray, stack: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Per-image percentiles, exactly as ``np.percentile(stack, quantiles, axis=1)`` computes them.

    For ``uint8`` pixels a radix sort (``kind="stable"``) and numpy's own
    linear interpolation give the same numbers in a fifth of the time;
    scoring computes this for every image, so it matters.
    """
    if pixels.dtype != np.uint8:
        return np.percentile(stack, quantiles, axis=1)
    ordered = np.sort(pixels.reshape(len(pixels), -1), axis=1, kind="stable")
    last = ordered.shape[1] - 1
    positions = np.asarray(quantiles, dtype=np.float64) / 100.0 * last
    below = np.floor(positions).astype(np.intp)
    above = np.minimum(below + 1, last)
    weight = positions - below
    low = ordered[:, below].astype(np.float64)
    high = ordered[:, above].astype(np.float64)
    difference = high - low
    # numpy's _lerp: from the nearer end, so that weight 1 gives ``high`` exactly
    values = np.where(weight >= 0.5, high - difference * (1 - weight), low + difference * weight)
    return values.T
