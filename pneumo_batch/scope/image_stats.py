"""What the full-size image says that the model's 28x28 input throws away.

Two steps, so the per-image work stays tiny and the arithmetic is vectorised:

- :func:`image_thumbnail`, a pure function of the decoded image (the one the
  scoring decode already has, before it is cropped and downscaled): a 64x64
  greyscale thumbnail of the whole frame, its colour and its proportions;
- :func:`thumbnail_statistics`, over a chunk: the intensity histogram's
  shape, edge and texture statistics, left-right symmetry and the coarse row
  and column profiles that give a chest film its layout (dark lungs either
  side of a bright spine). Nothing depends on the file's resolution.

:func:`decode_with_thumbnail` is the scoring decode of
:func:`pneumo_batch.imaging.raster.decode_image` with the thumbnail taken from
the same opened image; it is what the scoring path should do (see
``notes/scope.md``) and what fitting and the benchmark use.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pneumo_batch.errors import ImageError
from pneumo_batch.imaging.raster import (
    JPEG_DRAFT_MIN_SIDE,
    MAX_IMAGE_PIXELS,
    DecodedImage,
    decode_image,
    image_to_pixels,
)

THUMBNAIL = 64
_PROFILE_BINS = 8
_HISTOGRAM_BINS = 32
_COLOUR_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}

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
"""One float per name, in this order, from :func:`image_statistics`."""

COLOUR = STATISTIC_NAMES.index("colour_chroma")


@dataclass(frozen=True)
class Thumbnail:
    """What the statistics need from one decoded image: 4 KB, cheap to keep beside the 28 px pixels."""

    grey: np.ndarray
    """``uint8`` (64, 64): the whole frame, not cropped, in greyscale."""
    colour_chroma: float
    """Mean (max - min) of R, G, B in 0..1; 0 for greyscale modes."""
    log_aspect: float
    """log(width / height)."""


def image_thumbnail(image: Image.Image) -> Thumbnail:
    """The per-image part: a pure function of an opened, loaded image at any resolution."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    return Thumbnail(grey=_grey_thumbnail(image), colour_chroma=_colour_chroma(image), log_aspect=float(np.log(width / height)))


def image_statistics(image: Image.Image) -> np.ndarray:
    """Statistics (float64, len(STATISTIC_NAMES)) of one opened image."""
    return thumbnail_statistics([image_thumbnail(image)])[0]


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
    mirrored = (grey[:, :, ::-1].reshape(count, -1) - mean[:, None]) / np.maximum(std, 1e-6)[:, None]
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


def decode_with_thumbnail(source: bytes | str | Path) -> tuple[DecodedImage, Thumbnail]:
    """One decode giving :func:`decode_image`'s pixels and the :class:`Thumbnail` for the statistics.

    This is the change proposed for ``decode_image`` itself (one open, one
    draft, one load): the JPEG draft keeps the file's colour where
    ``decode_image`` asks for greyscale, so a colour photograph still shows
    its colour; greyscale files give exactly ``decode_image``'s pixels.
    Files it cannot read go through ``decode_image`` for its error wording.
    """
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source)
    try:
        with Image.open(stream) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError("too large")
            mode, file_format = image.mode, image.format or "unknown"
            if image.format == "JPEG":
                image.draft(None, (JPEG_DRAFT_MIN_SIDE, JPEG_DRAFT_MIN_SIDE))
            image.load()
            thumbnail = image_thumbnail(image)
            pixels = image_to_pixels(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        decode_image(source)  # raises ImageError with the one decode's wording
        raise
    return DecodedImage(pixels=pixels, width=width, height=height, mode=mode, format=file_format), thumbnail


def _colour_chroma(image: Image.Image) -> float:
    """Mean of (max - min) over the RGB channels, 0..1; 0 for any greyscale mode."""
    if image.mode not in _COLOUR_MODES:
        return 0.0
    small = image.convert("RGB").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float32)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean() / 255.0)


def _grey_thumbnail(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        values = np.asarray(image, dtype=np.float32)
        grey = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), mode="L")
    elif mode == "L":
        grey = image
    else:
        grey = image.convert("RGB").convert("L") if mode in _COLOUR_MODES or mode in {"LA", "La"} else image.convert("L")
    return np.asarray(grey.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR), dtype=np.uint8)


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
