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

#: A pixel this close to black or white counts as saturated (clipped exposure,
#: burned-in borders, screenshots).
_SATURATION_MARGIN = 2


def intensity_features(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Compute the numeric features of a stack of 28x28 ``uint8`` images (N, 28, 28)."""
    stack = pixels.astype(np.float32).reshape(len(pixels), -1)
    p05, p50, p95 = np.percentile(stack, [5, 50, 95], axis=1)
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
