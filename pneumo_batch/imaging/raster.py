"""Raster image files (PNG, JPEG, TIFF... through Pillow) to the model's 28x28 pixels.

PneumoniaMNIST was made by centre-cropping each source X-ray to a square and
downscaling it to 28x28 grayscale. :func:`image_to_pixels` does the same to
any image (Pillow's anti-aliased bilinear resize reproduces the dataset's own
pixels to about 5/255 RMSE); :func:`decode_image` opens a file and applies
it. The float input of the model is then
:func:`~pneumo_batch.imaging.preprocess.pixels_to_model_input`'s job.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from pneumo_batch.errors import ImageError, one_line
from pneumo_batch.imaging.preprocess import MODEL_INPUT_SIZE
from pneumo_batch.imaging.thumbnail import Thumbnail, image_thumbnail

if TYPE_CHECKING:
    from pneumo_batch.imaging.dicom_header import DicomHeader


#: Images with more pixels than this are refused as possible decompression
#: bombs. The largest chest X-rays we know of (14x17 inch detectors at
#: 0.1 mm) have about 15 megapixels; 64 leaves room for anything real.
MAX_IMAGE_PIXELS = 64_000_000

#: JPEGs are decoded at a reduced DCT scale whose short side stays at least
#: this long; the crop and the anti-aliased resize then take it to 28 px.
#: Decoding, not the model, bounds scoring speed, and this is 3-5x faster
#: than a full decode while keeping the result within about 2/255 of it.
JPEG_DRAFT_MIN_SIDE = 4 * MODEL_INPUT_SIZE

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


@dataclass(frozen=True)
class DecodedImage:
    """A file reduced to the model's 28x28 pixels, plus what it was before: what every decoder returns."""

    pixels: np.ndarray
    """``uint8`` array of shape (28, 28)."""
    width: int
    height: int
    mode: str
    format: str
    header: DicomHeader | None = None
    """The DICOM header fields we keep (DICOM input only)."""
    thumbnail: Thumbnail | None = None
    """The whole frame at 64 px for the pixel scope gate, from the same decode (None for images under 64 px)."""


def decode_image(source: bytes | str | Path, with_thumbnail: bool = True) -> DecodedImage:
    """Decode an image file (path or encoded bytes) into the model's 28x28 pixels.

    ``with_thumbnail`` False skips the scope gate's thumbnail (a model without a gate has no use for it).

    Raises :class:`ImageError` with a one-line reason for anything that is
    not a readable image of a supported mode, or that is larger than
    :data:`MAX_IMAGE_PIXELS`.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty image bytes")
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        path = Path(source)
        if path.is_dir():
            raise ImageError("is a directory, not an image file")
        if not path.exists():
            raise ImageError("file not found")
        if path.stat().st_size == 0:
            raise ImageError("empty file")
        stream = path
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x its limit raises) on huge images; here
            # both become an error row rather than a warning in the log.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageError(
                        f"possible decompression bomb: {width}x{height} pixels, over the limit of {MAX_IMAGE_PIXELS:,}"
                    )
                mode, file_format = image.mode, image.format or "unknown"
                if file_format == "JPEG":
                    # the same reduced DCT scale image_to_pixels asks for, but in the file's own colours,
                    # so the scope gate sees a colour photo as one (greyscale files: identical pixels)
                    image.draft(None, (JPEG_DRAFT_MIN_SIDE, JPEG_DRAFT_MIN_SIDE))
                image.load()
                thumbnail = image_thumbnail(image) if with_thumbnail else None
                pixels = image_to_pixels(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"possible decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise ImageError("not a recognised image file") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"cannot decode image: {one_line(error)}") from None
    return DecodedImage(pixels=pixels, width=width, height=height, mode=mode, format=file_format, thumbnail=thumbnail)


def image_to_pixels(image: Image.Image) -> np.ndarray:
    """Centre-crop an opened image to a square and downscale it to 28x28 ``uint8``.

    Accepts 1-bit, 8-bit and 16-bit grayscale, RGB, RGBA, LA, palette and
    CMYK images. 16-bit images are scaled by their full range (v / 257), so
    a 16-bit copy of an 8-bit image gives the same pixels.
    """
    if image.format == "JPEG":
        image.draft("L", (JPEG_DRAFT_MIN_SIDE, JPEG_DRAFT_MIN_SIDE))
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels: {width}x{height}")
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Crop first: resizing with a box would let pixels outside the square
    # bleed into the edge of the result, which the dataset's images lack.
    square = image.crop((left, top, left + side, top + side))
    small = _to_grayscale(square).resize((MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.uint8)


def _to_grayscale(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "L":
        return image
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float32)
        return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), mode="L")
    if mode in {"1", "LA", "RGB", "P"}:
        return image.convert("L")
    if mode in {"RGBA", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "La"}:
        return image.convert("RGB").convert("L")
    raise ImageError(f"unsupported image mode: {mode}")
