"""Build DICOM test files at test time from the shared full-size JPEGs (never committed).

Every builder takes one grayscale baseline JPEG and writes one DICOM file
into a directory. The stored values are chosen so that the image a viewer
shows equals the JPEG's pixels (to rounding), whatever the encoding: 8-bit
copies, 12-bit copies (1024 + 8v) with a window, a 16-bit copy with a VOI LUT
Sequence, a signed copy with a rescale and a window, an inverted
MONOCHROME1 copy. Each 12/16-bit copy also carries one saturated pixel, so
a decoder that ignored the window or the VOI LUT (and stretched the frame's
min-max instead) would visibly darken the film.

Encoders: pydicom (deflate, RLE), pyjpegls (JPEG-LS), pylibjpeg-openjpeg
(JPEG 2000) and GDCM (JPEG lossless, JPEG extended 12-bit); JPEG baseline
encapsulates the original JPEG bytes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmwrite, uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

#: Distinctive identifying values: none may ever appear in an output, a log or an error.
IDENTIFIERS = {
    "PatientName": "Quokkaby^Zyxwvette",
    "PatientID": "PID8675309ZQ",
    "PatientBirthDate": "19020304",
    "AccessionNumber": "ACC5550199Q",
    "InstitutionName": "Saint Qwertyuiop Hospital",
    "ReferringPhysicianName": "Plovermann^Drqux",
    "PerformingPhysicianName": "Snarkwell^Jubjub",
    "OperatorsName": "Bandersnatch^Frumious",
}

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1.2"


@dataclass(frozen=True)
class Expected:
    """What decoding and the scope rules must say about a corpus file."""

    error: str | None = None
    """A substring of the ImageError message, or ``None`` for a file that decodes."""
    in_scope: bool = True
    reason: str | None = None
    like_jpeg: bool = True
    """Its display image equals the source JPEG's (to rounding)."""


def film_pixels(jpeg: Path) -> np.ndarray:
    with Image.open(jpeg) as image:
        return np.asarray(image.convert("L"))


def base_dataset(pixels: np.ndarray, *, modality: str = "CR", name: str = "film", bits_stored: int = 8,
                 signed: bool = False) -> Dataset:
    """A CR or DX image data set holding ``pixels`` natively (explicit VR little endian)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID = {
        "CR": uid.ComputedRadiographyImageStorage,
        "DX": uid.DigitalXRayImageStorageForPresentation,
        "CT": uid.CTImageStorage,
        "MR": uid.MRImageStorage,
    }[modality]
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.1.2.{sum(map(ord, name))}.{len(name)}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, SERIES_UID
    ds.Modality = modality
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
    ds.PatientAge, ds.PatientSex = "005Y", "F"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    dtype = {(8, False): "<u1", (16, False): "<u2", (16, True): "<i2"}[(ds.BitsAllocated, signed)]
    ds.PixelData = np.ascontiguousarray(pixels.astype(dtype)).tobytes()
    return ds


def save(ds: Dataset, path: Path, *, preamble: bool = True) -> Path:
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    dcmwrite(path, ds, enforce_file_format=True)
    if not preamble:  # an old ACR-NEMA style file: cut the preamble, the magic and the file meta group
        data = path.read_bytes()
        meta_length = int.from_bytes(data[140:144], "little")  # (0002,0000), explicit VR: 132 + 8 bytes in
        path.write_bytes(data[144 + meta_length :])
    return path


def twelve_bit(pixels: np.ndarray) -> np.ndarray:
    """12-bit stored values 1024 + 8v, with one black (0) and one saturated (4095) pixel."""
    stored = 1024 + pixels.astype(np.uint16) * 8
    stored[0, 0], stored[0, 1] = 4095, 0
    return stored


def _window(ds: Dataset, center: float, width: float) -> Dataset:
    ds.WindowCenter, ds.WindowWidth = center, width
    return ds


def _12bit_windowed(pixels: np.ndarray, name: str, modality: str = "CR") -> Dataset:
    # The window [1024, 3072) maps 1024 + 8v back to v.
    return _window(base_dataset(twelve_bit(pixels), modality=modality, name=name, bits_stored=12), 2048, 2048)


def _gdcm_transcode(source: Path, target: Path, syntax_name: str) -> Path:
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read(), "GDCM cannot read its input"
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax_name)))
    change.SetInput(reader.GetImage())
    assert change.Change(), f"GDCM cannot encode {syntax_name}"
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return target


def build(jpeg: Path, directory: Path, name: str) -> Path:
    """Write the corpus file ``name`` (a key of :data:`CORPUS`) made from ``jpeg`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return BUILDERS[name](jpeg, directory / f"{name}.dcm")


def _implicit(jpeg: Path, path: Path) -> Path:
    ds = base_dataset(film_pixels(jpeg), name=path.stem)
    ds.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    return save(ds, path)


def _explicit_dx(jpeg: Path, path: Path) -> Path:
    return save(base_dataset(film_pixels(jpeg), modality="DX", name=path.stem), path)


def _deflated(jpeg: Path, path: Path) -> Path:
    ds = _12bit_windowed(film_pixels(jpeg), path.stem)
    ds.file_meta.TransferSyntaxUID = uid.DeflatedExplicitVRLittleEndian
    return save(ds, path)


def _compressed(syntax: str, bits: int) -> Callable[[Path, Path], Path]:
    def builder(jpeg: Path, path: Path) -> Path:
        pixels = film_pixels(jpeg)
        ds = _12bit_windowed(pixels, path.stem) if bits == 12 else base_dataset(pixels, modality="DX", name=path.stem)
        ds.compress(syntax)
        return save(ds, path)

    return builder


def _jpeg_baseline(jpeg: Path, path: Path) -> Path:
    ds = base_dataset(film_pixels(jpeg), modality="DX", name=path.stem)
    ds.file_meta.TransferSyntaxUID = uid.JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg.read_bytes()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return save(ds, path)


def _gdcm(syntax_name: str) -> Callable[[Path, Path], Path]:
    def builder(jpeg: Path, path: Path) -> Path:
        native = save(_12bit_windowed(film_pixels(jpeg), path.stem), path.with_suffix(".native"))
        _gdcm_transcode(native, path, syntax_name)
        native.unlink()
        return path

    return builder


def _monochrome1(jpeg: Path, path: Path) -> Path:
    ds = base_dataset(255 - film_pixels(jpeg), name=path.stem)
    ds.PhotometricInterpretation = "MONOCHROME1"
    return save(ds, path)


def _voi_lut_16bit(jpeg: Path, path: Path) -> Path:
    # Stored 1000 + 16v; the LUT maps 1000..5080 linearly to 0..4080 and clamps the saturated pixel.
    stored = 1000 + film_pixels(jpeg).astype(np.uint16) * 16
    stored[0, 0] = 65535
    ds = base_dataset(stored, modality="DX", name=path.stem, bits_stored=16)
    entries = 4081
    lut = Dataset()
    lut.LUTDescriptor = [entries, 1000, 12]
    lut.LUTData = list(range(entries))
    lut["LUTData"].VR = "US"
    ds.VOILUTSequence = [lut]
    return save(ds, path)


def _signed_rescaled(jpeg: Path, path: Path) -> Path:
    # Stored 8v - 1024 (signed 12 bit); rescale 0.5x + 100 gives 4v - 412; the window covers exactly that.
    stored = film_pixels(jpeg).astype(np.int16) * 8 - 1024
    stored[0, 0], stored[0, 1] = 2047, -2048
    ds = base_dataset(stored, name=path.stem, bits_stored=12, signed=True)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 0.5, 100, "US"
    return save(_window(ds, 4 * 128 - 412, 4 * 256), path)


def _no_preamble(jpeg: Path, path: Path) -> Path:
    ds = base_dataset(film_pixels(jpeg), name=path.stem)
    ds.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    return save(ds, path, preamble=False)


def _multi_frame(jpeg: Path, path: Path) -> Path:
    pixels = film_pixels(jpeg)
    ds = base_dataset(np.stack([pixels, 255 - pixels, pixels]), name=path.stem)
    ds.NumberOfFrames = 3
    return save(ds, path)


def _no_pixel_data(jpeg: Path, path: Path) -> Path:
    ds = base_dataset(film_pixels(jpeg), name=path.stem)
    del ds.PixelData
    return save(ds, path)


def _with(**attributes: object) -> Callable[[Path, Path], Path]:
    def builder(jpeg: Path, path: Path) -> Path:
        modality = str(attributes.get("Modality", "CR"))
        ds = base_dataset(film_pixels(jpeg), modality=modality, name=path.stem)
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        return save(ds, path)

    return builder


def _truncated(jpeg: Path, path: Path) -> Path:
    save(base_dataset(film_pixels(jpeg), name=path.stem), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])
    return path


BUILDERS: dict[str, Callable[[Path, Path], Path]] = {
    "implicit_vr": _implicit,
    "explicit_vr_dx": _explicit_dx,
    "deflated_12bit_window": _deflated,
    "rle_12bit_window": _compressed(uid.RLELossless, 12),
    "jpeg_baseline": _jpeg_baseline,
    "jpeg_ls_12bit_window": _compressed(uid.JPEGLSLossless, 12),
    "jpeg2000_lossless_8bit": _compressed(uid.JPEG2000Lossless, 8),
    "jpeg2000_lossless_12bit_window": _compressed(uid.JPEG2000Lossless, 12),
    "jpeg_lossless_12bit_window": _gdcm("JPEGLosslessProcess14_1"),
    "jpeg_extended_12bit": _gdcm("JPEGExtendedProcess2_4"),
    "monochrome1": _monochrome1,
    "voi_lut_16bit": _voi_lut_16bit,
    "signed_rescaled_window": _signed_rescaled,
    "no_preamble": _no_preamble,
    "multi_frame": _multi_frame,
    "no_pixel_data": _no_pixel_data,
    "adult": _with(PatientAge="051Y"),
    "ct": _with(Modality="CT", BodyPartExamined="CHEST"),
    "mr": _with(Modality="MR", BodyPartExamined="KNEE"),
    "truncated": _truncated,
    "identifiers": _with(**IDENTIFIERS),
}

CORPUS: dict[str, Expected] = {
    "implicit_vr": Expected(),
    "explicit_vr_dx": Expected(),
    "deflated_12bit_window": Expected(),
    "rle_12bit_window": Expected(),
    "jpeg_baseline": Expected(),
    "jpeg_ls_12bit_window": Expected(),
    "jpeg2000_lossless_8bit": Expected(),
    "jpeg2000_lossless_12bit_window": Expected(),
    "jpeg_lossless_12bit_window": Expected(),
    "jpeg_extended_12bit": Expected(error="unsupported transfer syntax: JPEG Extended", like_jpeg=False),
    "monochrome1": Expected(),
    "voi_lut_16bit": Expected(),
    "signed_rescaled_window": Expected(),
    "no_preamble": Expected(),
    "multi_frame": Expected(in_scope=False, reason="multi-frame: 3 frames"),
    "no_pixel_data": Expected(error="no pixel data", like_jpeg=False),
    "adult": Expected(in_scope=False, reason="adult: age 51 y"),
    "ct": Expected(in_scope=False, reason="modality CT"),
    "mr": Expected(in_scope=False, reason="modality MR"),
    "truncated": Expected(error="truncated", like_jpeg=False),
    "identifiers": Expected(),
}
