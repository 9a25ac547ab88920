"""DICOM files to the image a radiologist's viewer shows, at no more resolution than the model needs.

:func:`decode_dicom` reads one file (path or bytes) and returns its first
frame as an 8-bit grayscale PIL image plus the header fields of
:mod:`pneumo_batch.imaging.dicom_header`; the caller hands the image to
:func:`pneumo_batch.imaging.raster.image_to_pixels`, the one preprocessing.

Display pipeline (DICOM PS3.4 N.2): stored values -> modality LUT (Modality
LUT Sequence, else Rescale Slope/Intercept) -> VOI LUT (VOI LUT Sequence,
else the first Window Center/Width, else the min-max of the frame) -> 8 bit
-> inverted when MONOCHROME1 (or when a Presentation LUT Shape says
INVERSE). The LUTs are evaluated once over the frame's stored range and
applied as a table, so a 12-bit film costs one index per pixel.

Multi-frame files: the first frame is decoded (and the header reports the
frame count, which the scope rules put out of scope by default).

Decoders (all permissively licensed): pydicom itself (native, deflated,
RLE), Pillow (JPEG baseline 8-bit, JPEG 2000), pyjpegls (JPEG-LS), GDCM
(JPEG lossless), pylibjpeg-openjpeg and pylibjpeg-rle. Two syntaxes are
decoded at reduced resolution, keeping at least :data:`MIN_DECODED_SIDE`
pixels on the short side (JPEG 2000: :data:`J2K_MIN_DECODED_SIDE`): JPEG 8-bit through Pillow's DCT scaling
(``Image.draft``) and JPEG 2000 through Pillow's resolution levels
(``reduce``; pylibjpeg-openjpeg has no such option). Everything else is
decoded in full and box-reduced (``Image.reduce``) to at least
:data:`J2K_MIN_DECODED_SIDE` px after the display LUTs. JPEG Extended 12-bit
has no permissive decoder pydicom trusts (GDCM wraps undershooting samples
around), so it is an "unsupported transfer syntax" error.

pydicom's warnings while reading or decoding are suppressed inside this
module: they can quote element values, and element values can identify a
patient. Error messages name syntaxes and sizes, never values or paths.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from pneumo_batch.errors import ImageError
from pneumo_batch.imaging.dicom_header import DicomHeader, read_header
from pneumo_batch.imaging.dicom_values import HeaderReader
from pneumo_batch.imaging.raster import JPEG_DRAFT_MIN_SIDE, MAX_IMAGE_PIXELS

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
#: Bytes to read to tell a Part-10 file by its magic.
SNIFF_LENGTH = PREAMBLE_LENGTH + len(MAGIC)
#: Reduced-resolution decoders keep at least this many pixels on the short side.
MIN_DECODED_SIDE = JPEG_DRAFT_MIN_SIDE
#: JPEG 2000 keeps twice as many: its wavelet low band at 1/8 scale differs from
#: a full decode by about 3/255 RMSE at 28x28 pixels, at 1/4 scale by about 1.4.
J2K_MIN_DECODED_SIDE = 2 * MIN_DECODED_SIDE
#: Stored ranges up to this many values are mapped through a lookup table.
_MAX_TABLE = 1 << 20

#: A data set without preamble starts with a group 0002 or 0008 tag, little endian.
_HEADERLESS_STARTS = (b"\x02\x00", b"\x08\x00")
_JPEG_8BIT = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
_JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
_JPEG_2000 = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
#: Display attributes (PS3.3 C.11) read as text: a malformed one is dropped, never applied.
_DISPLAY_TEXT = ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept", "VOILUTFunction",
                 "PresentationLUTShape", "RescaleType")
_SINGLE_VALUED_DISPLAY = ("RescaleSlope", "RescaleIntercept", "VOILUTFunction", "PresentationLUTShape")
_DISPLAY_SEQUENCES = ("VOILUTSequence", "ModalityLUTSequence")


class DicomImageError(ImageError):
    """A DICOM file whose header was read but whose pixels cannot be shown; carries the header for its row."""

    def __init__(self, message: str, header: DicomHeader) -> None:
        super().__init__(message)
        self.header = header


@dataclass(frozen=True)
class DicomDecoded:
    image: Image.Image
    """The first frame as displayed, mode ``L``; possibly at reduced resolution."""
    header: DicomHeader
    rows: int
    columns: int
    decoder: str
    """``pillow-draft`` (JPEG DCT scaling), ``pillow-reduce`` (JPEG 2000 levels), ``pydicom-box`` (full
    decode, then a box reduction to at least :data:`J2K_MIN_DECODED_SIDE` px) or ``pydicom`` (full resolution)."""


def looks_like_dicom(source: str | Path | bytes) -> bool:
    """True for a ``.dcm``/``.dicom`` path, or a file or bytes with ``DICM`` at offset 128.

    Files without the Part-10 preamble are not recognised here; see
    :func:`looks_like_headerless_dicom`.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[PREAMBLE_LENGTH:SNIFF_LENGTH]) == MAGIC
    path = Path(source)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as stream:
            return stream.read(SNIFF_LENGTH)[PREAMBLE_LENGTH:] == MAGIC
    except OSError:
        return False


def looks_like_headerless_dicom(source: str | Path | bytes) -> bool:
    """True for a DICOM data set without the Part-10 preamble (old ACR-NEMA style files).

    It must start with a group 0002 or 0008 tag (little endian) and parse,
    header only, into a data set with an image's attributes.
    """
    import pydicom

    data = bytes(source[:4]) if isinstance(source, (bytes, bytearray, memoryview)) else _first_bytes(Path(source), 4)
    if len(data) < 4 or data[:2] not in _HEADERLESS_STARTS:
        return False
    try:
        with warnings.catch_warnings(), _open(source) as stream:
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(stream, force=True, stop_before_pixels=True)
            return "Rows" in ds or "SOPClassUID" in ds
    except Exception:  # noqa: BLE001 - any failure to parse means "not DICOM"
        return False


def decode_dicom(source: bytes | str | Path) -> DicomDecoded:
    """Decode the first frame of a DICOM file (path or bytes) to its display image, with its header.

    Raises :class:`ImageError` ("not a DICOM file", "truncated or malformed
    DICOM", "no pixel data", "unsupported transfer syntax: NAME (UID)",
    "cannot decode pixel data", ...) with no element value in the message;
    a :class:`DicomImageError` (carrying the header) once the header was read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _read(source)
        values = HeaderReader(ds)
        _drop_malformed_display_attributes(ds, values)
        header = read_header(ds, values)
        try:
            return _decode_pixels(ds, header)
        except ImageError as error:
            raise DicomImageError(str(error), header) from None
        except Exception as error:  # noqa: BLE001 - a malformed pixel module breaks pydicom in many ways
            raise DicomImageError(f"cannot decode pixel data: {type(error).__name__}", header) from None


def _drop_malformed_display_attributes(ds: Any, values: HeaderReader) -> None:
    """Delete display attributes that are malformed (or empty), so the display pipeline falls back (no window: min-max).

    Each malformed one is an issue of ``values``; so is a LUT sequence that cannot be read.
    """
    for keyword in _DISPLAY_TEXT:
        if keyword in ds:
            kept = values.text(keyword) if keyword in _SINGLE_VALUED_DISPLAY else values.texts(keyword)
            if not kept:
                del ds[keyword]
    for keyword in _DISPLAY_SEQUENCES:
        if keyword in ds and values.sequence_items(keyword) == 0:
            del ds[keyword]


def _decode_pixels(ds: Any, header: DicomHeader) -> DicomDecoded:
    if not any(keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageError("no pixel data")
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows < 1 or columns < 1:
        raise ImageError(f"no pixel data: image of {columns}x{rows} pixels")
    if rows * columns > MAX_IMAGE_PIXELS:
        raise ImageError(f"image of {columns}x{rows} pixels exceeds the limit of {MAX_IMAGE_PIXELS:,} pixels")
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
    stored, decoder = _decode_first_frame(ds, syntax, rows, columns, header.number_of_frames)
    image = Image.fromarray(to_display(stored, ds))
    factor = min(image.size) // J2K_MIN_DECODED_SIDE
    if decoder == "pydicom" and factor >= 2:
        # A box reduction is cheap; the anti-aliased resizes to 28 px (model)
        # and 64 px (scope gate) then work on 1/factor^2 of the pixels.
        image, decoder = image.reduce(factor), "pydicom-box"
    return DicomDecoded(image=image, header=header, rows=rows, columns=columns, decoder=decoder)


def to_display(stored: np.ndarray, ds: Any) -> np.ndarray:
    """Stored values of one frame -> 8-bit display values (modality LUT, VOI LUT, MONOCHROME1 inverted)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if stored.ndim == 3:  # colour: the LUT modules do not apply; Pillow's luma conversion
        return np.asarray(Image.fromarray(_as_uint8(stored)).convert("L"))
    if stored.dtype.kind in "iu" and stored.size and int(stored.max()) - int(stored.min()) < _MAX_TABLE:
        low, high = int(stored.min()), int(stored.max())
        values: np.ndarray = np.arange(low, high + 1, dtype=np.int64).astype(stored.dtype)
        table = _display_table(values, ds, apply_modality_lut, apply_voi_lut)
        if stored.dtype.kind == "u":  # index by the stored values themselves: no 64-bit copy of the frame
            display = np.concatenate([np.zeros(low, dtype=np.uint8), table])[stored]
        else:
            display = table[stored.astype(np.int64) - low]
    else:
        display = _display_table(stored.astype(np.float64), ds, apply_modality_lut, apply_voi_lut)
    return 255 - display if _inverted(ds) else display


def _display_table(values: np.ndarray, ds: Any, modality_lut: Any, voi_lut: Any) -> np.ndarray:
    modality = np.asarray(modality_lut(values, ds), dtype=np.float64)
    has_lut = bool(ds.get("VOILUTSequence"))
    if has_lut or (ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None):
        # A VOI LUT is indexed by integer values (pydicom logs a warning for floats).
        voi_input = np.rint(modality).astype(np.int64) if has_lut else modality
        voi = np.asarray(voi_lut(voi_input, ds, prefer_lut=True), dtype=np.float64)
        # The VOI's output range: what it maps everything far below and far above its input range to.
        probe = np.array([-(2**31), 2**31], dtype=np.int64 if has_lut else np.float64)
        ends = np.asarray(voi_lut(probe, ds, prefer_lut=True), dtype=np.float64)
        low, high = float(ends.min()), float(ends.max())
    elif int(ds.get("BitsStored") or 8) <= 8 and "ModalityLUTSequence" not in ds and "RescaleSlope" not in ds:
        voi, low, high = modality, 0.0, 255.0  # 8-bit samples are display values already
    else:
        voi, low, high = modality, float(modality.min()), float(modality.max())
    if high <= low:
        return np.zeros(voi.shape, dtype=np.uint8)
    return np.clip(np.rint((voi - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


def _inverted(ds: Any) -> bool:
    shape = str(ds.get("PresentationLUTShape") or "").strip().upper()
    if shape in ("INVERSE", "IDENTITY"):
        return shape == "INVERSE"
    return str(ds.get("PhotometricInterpretation") or "").strip().upper() == "MONOCHROME1"


def _decode_first_frame(ds: Any, syntax: str, rows: int, columns: int, frames: int) -> tuple[np.ndarray, str]:
    from pydicom.encaps import get_frame
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    name = UID(syntax).name
    if syntax == _JPEG_EXTENDED and int(ds.get("BitsStored") or 8) > 8:
        raise ImageError(f"unsupported transfer syntax: {name} 12-bit ({syntax})")
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageError(f"unsupported transfer syntax: {name} ({syntax})") from None
    if not decoder.is_available:
        raise ImageError(f"unsupported transfer syntax: {name} ({syntax}); no decoder installed")
    if syntax in _JPEG_8BIT or syntax in _JPEG_2000:
        try:
            frame = get_frame(ds.PixelData, 0, number_of_frames=frames)
        except Exception as error:  # noqa: BLE001 - pydicom raises several types for bad fragments
            raise ImageError(f"truncated or malformed pixel data: {type(error).__name__}") from None
        reduced = _reduced(frame, syntax, ds, rows, columns)
        if reduced is not None:
            return reduced
    try:
        ds.pixel_array_options(index=0)
        return ds.pixel_array, "pydicom"
    except (ValueError, EOFError) as error:
        raise ImageError(f"truncated or malformed pixel data: {type(error).__name__}") from None
    except (RuntimeError, NotImplementedError) as error:
        raise ImageError(f"cannot decode pixel data ({name}): {type(error).__name__}") from None


def _reduced(frame: bytes, syntax: str, ds: Any, rows: int, columns: int) -> tuple[np.ndarray, str] | None:
    """Decode at reduced resolution with Pillow, or ``None`` where only a full decode is right."""
    if int(ds.get("PixelRepresentation") or 0) != 0:
        return None  # Pillow reads unsigned samples only
    try:
        image = Image.open(io.BytesIO(frame))
        if syntax in _JPEG_8BIT:
            if image.format != "JPEG" or image.mode not in ("L", "RGB", "YCbCr"):
                return None
            image.draft(image.mode, (MIN_DECODED_SIDE, MIN_DECODED_SIDE))
            method = "pillow-draft"
        else:
            if image.format != "JPEG2000" or image.mode not in ("L", "I;16", "RGB"):
                return None
            image.reduce = _j2k_reduction(frame, min(rows, columns))  # type: ignore[method-assign, assignment]
            method = "pillow-reduce"
        image.load()
    except (OSError, ValueError, SyntaxError):
        return None  # let pydicom's decoders try, and name the failure
    array = np.asarray(image)
    if image.mode == "I;16":
        array = _undo_precision_scaling(array, int(ds.get("BitsStored") or 16), frame)
    return array, method


def _undo_precision_scaling(array: np.ndarray, bits_stored: int, frame: bytes) -> np.ndarray:
    """Pillow scales J2K samples of precision p < 16 up to 16 bits; shift back to stored values."""
    from pydicom.pixels.utils import get_j2k_parameters

    precision = int(get_j2k_parameters(frame).get("precision", bits_stored))
    return (array.astype(np.uint16) >> (16 - precision)) if precision < 16 else array


def _j2k_reduction(frame: bytes, short_side: int) -> int:
    """Resolution levels to discard: as many as the codestream has and the short side can spare."""
    levels = _j2k_decomposition_levels(frame)
    reduction = 0
    while reduction < levels and (short_side >> (reduction + 1)) >= J2K_MIN_DECODED_SIDE:
        reduction += 1
    return reduction


def _j2k_decomposition_levels(frame: bytes) -> int:
    """Number of wavelet decomposition levels in the COD marker of a J2K codestream (0 if not found)."""
    position = frame.find(b"\xff\x4f\xff\x51")
    if position < 0:
        return 0
    position += 2
    while position + 4 <= len(frame):
        marker = frame[position : position + 2]
        if marker == b"\xff\x90":  # first tile: the main header is over
            return 0
        length = int.from_bytes(frame[position + 2 : position + 4], "big")
        if marker == b"\xff\x52" and position + 9 < len(frame):
            return frame[position + 9]
        position += 2 + length
    return 0


def _read(source: bytes | str | Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if isinstance(source, (bytes, bytearray, memoryview)) and len(source) == 0:
        raise ImageError("empty file")
    try:
        with _open(source) as stream:
            header = stream.read(SNIFF_LENGTH)
            stream.seek(0)
            force = header[PREAMBLE_LENGTH:] != MAGIC
            if force and header[:2] not in _HEADERLESS_STARTS:
                raise ImageError("not a DICOM file")
            try:
                ds = pydicom.dcmread(stream, force=force)
            except InvalidDicomError:
                raise ImageError("not a DICOM file") from None
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("is a directory, not a file") from None
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on malformed files
        raise ImageError(f"truncated or malformed DICOM: {type(error).__name__}") from None
    if force and "Rows" not in ds and "SOPClassUID" not in ds:
        raise ImageError("not a DICOM file")
    if "TransferSyntaxUID" not in ds.file_meta:  # no file meta: the encoding pydicom read it in
        implicit, little = ds.original_encoding
        if implicit is None or not little:
            raise ImageError("not a DICOM file: no transfer syntax")
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian
    return ds


def _open(source: bytes | str | Path) -> BinaryIO:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    return Path(source).open("rb")


def _first_bytes(path: Path, count: int) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(count)
    except OSError:
        return b""


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    top = float(array.max()) or 1.0
    return np.clip(np.rint(array.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)

