"""The one seam for input formats: a file's bytes to :class:`DecodedImage`, whatever the format.

Each format registers a :class:`Decoder` in :data:`DECODERS`: a name, a
``claims`` test on the bytes and the file name's suffix, and a ``decode``.
:func:`decode` asks them in order and the first that claims the file decodes
it, so a caller never branches per format. DICOM comes first (its sniff is a
suffix or a few bytes); Pillow's raster formats are last and take the rest,
so anything no decoder reads fails with Pillow's "not a recognised image file".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pneumo_batch.errors import ImageError
from pneumo_batch.imaging.dicom import DICOM_SUFFIXES, decode_dicom, looks_like_dicom, looks_like_headerless_dicom
from pneumo_batch.imaging.dicom_header import DicomHeader
from pneumo_batch.imaging.raster import DecodedImage, decode_image, image_to_pixels
from pneumo_batch.imaging.thumbnail import image_thumbnail

__all__ = ["DECODERS", "DecodedImage", "Decoder", "decode", "header_of"]


@dataclass(frozen=True)
class Decoder:
    name: str
    claims: Callable[[bytes, str], bool]
    """``claims(data, suffix)``: is this file this decoder's (``suffix`` lower case with its dot, or "")?"""
    decode: Callable[[bytes, bool], DecodedImage]
    """``decode(data, with_thumbnail)``; the scope gate's thumbnail only when asked. Raises :class:`ImageError` with a one-line reason (never a path or a header value)."""


def _is_dicom(data: bytes, suffix: str) -> bool:
    return suffix in DICOM_SUFFIXES or looks_like_dicom(data) or looks_like_headerless_dicom(data)


def _decode_dicom(data: bytes, with_thumbnail: bool) -> DecodedImage:
    decoded = decode_dicom(data)
    return DecodedImage(
        pixels=image_to_pixels(decoded.image),
        width=decoded.columns,
        height=decoded.rows,
        mode=decoded.image.mode,
        format="DICOM",
        header=decoded.header,
        thumbnail=image_thumbnail(decoded.image) if with_thumbnail else None,
    )


DECODERS: tuple[Decoder, ...] = (
    Decoder("dicom", _is_dicom, _decode_dicom),
    Decoder("raster", lambda data, suffix: True, decode_image),
)


def decode(data: bytes, suffix: str = "", *, with_thumbnail: bool = True) -> DecodedImage:
    """Decode a file's bytes with the first decoder in :data:`DECODERS` that claims them.

    ``with_thumbnail`` False skips the scope gate's thumbnail: scoring without a gate does not pay for it.
    """
    suffix = suffix.lower()
    for decoder in DECODERS:
        if decoder.claims(data, suffix):
            return decoder.decode(data, with_thumbnail)
    raise ImageError("not a recognised image file")


def header_of(error: ImageError) -> DicomHeader | None:
    """The header a decoder read before it failed (a DICOM file with unreadable pixels), else None."""
    header = getattr(error, "header", None)
    return header if isinstance(header, DicomHeader) else None
