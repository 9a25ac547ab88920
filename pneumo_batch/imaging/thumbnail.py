"""A 64 px greyscale thumbnail of the whole decoded frame, for the pixel scope gate.

The model's 28 px input is a centre crop; what it throws away (the frame's
proportions, its colour, the histogram and texture at a finer scale) is what
tells a chest film from a photo or another radiograph. Every decoder takes
the thumbnail from the image it has already decoded (no second decode), so
the gate (:mod:`pneumo_batch.scope.image_stats`) costs a 4 KB array per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pneumo_batch.errors import ImageError

THUMBNAIL = 64
"""Side of the square thumbnail, in pixels. Images with a shorter side give none (see :func:`image_thumbnail`)."""
_COLOUR_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
_WIDE_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


@dataclass(frozen=True)
class Thumbnail:
    """What the scope gate's image statistics need from one decoded image."""

    grey: np.ndarray
    """``uint8`` (64, 64): the whole frame, not cropped, in greyscale."""
    colour_chroma: float
    """Mean (max - min) of R, G, B in 0..1; 0 for greyscale modes."""
    log_aspect: float
    """log(width / height)."""


def image_thumbnail(image: Image.Image) -> Thumbnail | None:
    """The thumbnail of an opened, loaded image; None when its short side is under :data:`THUMBNAIL`.

    An image that small (a PneumoniaMNIST PNG is 28 px) holds no more than
    the model's own input, so only the network part of the gate judges it:
    upscaled, its texture would look unlike any full-size film.
    """
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if min(width, height) < THUMBNAIL:
        return None
    grey, chroma = _grey_and_chroma(image)
    return Thumbnail(grey=grey, colour_chroma=chroma, log_aspect=float(np.log(width / height)))


def _grey_and_chroma(image: Image.Image) -> tuple[np.ndarray, float]:
    """The 64 px greyscale frame and the mean (max - min) of R, G, B in 0..1 (0 for greyscale modes).

    Area averaging (BOX) is the cheapest resize that does not alias; a colour
    image is reduced once, in colour, and both come from the small copy.
    """
    size = (THUMBNAIL, THUMBNAIL)
    mode = image.mode
    if mode in _WIDE_MODES:
        values = np.asarray(image, dtype=np.float32)
        wide = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), mode="L")
        return np.asarray(wide.resize(size, Image.Resampling.BOX), dtype=np.uint8), 0.0
    if mode in _COLOUR_MODES:
        small = (image if mode == "RGB" else image.convert("RGB")).resize(size, Image.Resampling.BOX)
        rgb = np.asarray(small, dtype=np.int16)
        chroma = float((rgb.max(axis=2) - rgb.min(axis=2)).mean() / 255.0)
        return np.asarray(small.convert("L"), dtype=np.uint8), chroma
    grey = image if mode == "L" else image.convert("L")
    return np.asarray(grey.resize(size, Image.Resampling.BOX), dtype=np.uint8), 0.0
