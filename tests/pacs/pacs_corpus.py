"""The PACS tests' DICOM corpus, built at run time, and a source pointed at an Orthanc.

Synthetic films (tiny uncompressed pixels) and shared chest JPEGs
encapsulated unchanged as JPEG baseline. Nothing here is committed: the
DICOM is made per test session.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from orthanc import OrthancServer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from PIL import Image
from typer.testing import CliRunner, Result
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from pneumo_batch.pacs import PacsCredentials, PacsSettings, PacsSource, parse_pacs_url

NIGHT = "20261130"
NIGHT_BEFORE = "20261129"
SOP_CLASS = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1", "CT": "1.2.840.10008.5.1.4.1.1.2"}
#: Identifying values planted in every film: no error text may carry them.
PATIENT_NAME = "Testchild^Ada"
PATIENT_ID = "MRN-4711-0042"
#: Fast fault handling for tests: real defaults back off for seconds.
FAST = PacsSettings(connect_timeout_s=2, read_timeout_s=10, retries=2, backoff_s=0.02, backoff_max_s=0.1)


@dataclass(frozen=True)
class Film:
    dataset: Dataset
    part10: bytes

    @property
    def sop_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)


def _header(modality: str, study_uid: str, study_date: str, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.StudyDate = study_date
    ds.StudyTime = "013000"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "20200101"
    ds.PatientSex = "F"
    ds.PatientAge = "006Y"
    ds.AccessionNumber = "ACC0042"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    return ds


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def synthetic_film(modality: str, study_date: str, seed: int, study_uid: str | None = None) -> Film:
    ds = _header(modality, study_uid or generate_uid(), study_date, generate_uid())
    pixels = np.random.default_rng(seed).integers(0, 4096, size=(64, 64), dtype=np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = pixels.tobytes()
    return Film(ds, _part10(ds))


def _baseline_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(rows, columns) of a single-component 8-bit baseline (SOF0) JPEG, else None."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            baseline = marker == 0xC0 and data[i + 4] == 8 and data[i + 9] == 1
            rows, columns = int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            return (rows, columns) if baseline else None
        i += 2 + length
    return None


def jpeg_film(path: Path, study_date: str) -> Film | None:
    """A shared chest JPEG, its bytes encapsulated unchanged as DX JPEG baseline."""
    data = path.read_bytes()
    size = _baseline_jpeg_size(data)
    if size is None:
        return None
    ds = _header("DX", generate_uid(), study_date, generate_uid())
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows, ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return Film(ds, _part10(ds))


@dataclass(frozen=True)
class Corpus:
    night_films: list[Film]
    """CR and DX films of the night: what the night's query must return."""
    night_before_films: list[Film]
    excluded: list[Film]
    """A CT of the night and a film of another day: never returned."""


def source_for(server: OrthancServer, *, password: str | None = None, settings: PacsSettings = FAST) -> PacsSource:
    credentials = PacsCredentials(kind="basic", user=server.user, secret=password or server.password)
    return PacsSource(parse_pacs_url(server.dicomweb_url), credentials, settings)


# -- the end-to-end night: 30 CR/DX instances and a CT --------------------------------

E2E_NIGHT = "20261125"
#: (transfer syntax, modality) of the children's films, cycled over the shared JPEGs.
CHILD_SYNTAXES = (
    (JPEGBaseline8Bit, "DX"),
    (ExplicitVRLittleEndian, "CR"),
    (ImplicitVRLittleEndian, "DX"),
    (DeflatedExplicitVRLittleEndian, "CR"),
    (RLELossless, "DX"),
    (JPEGLSLossless, "CR"),
    (JPEG2000Lossless, "DX"),
)
CHILD_FILMS = 27


@dataclass(frozen=True)
class NightFilm(Film):
    kind: str
    """"child" (in scope), "adult" (out of scope by age), "lateral" (out by view), "no pixels" (an error row), "ct"."""


def _small_pixels(path: Path) -> np.ndarray:
    """The film at about a quarter of its size (JPEG DCT scaling): a real chest film, cheap to encode."""
    with Image.open(path) as image:
        image.draft("L", (image.size[0] // 4, image.size[1] // 4))
        return np.asarray(image.convert("L"))


def _native_film(pixels: np.ndarray, modality: str, study_uid: str, study_date: str) -> Dataset:
    ds = _header(modality, study_uid, study_date, generate_uid())
    if modality == "CT":
        ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return ds


#: pydicom's own encoders, never GDCM's (its RLE encoder aborts the process on some widths).
ENCODER = {RLELossless: "pydicom", JPEGLSLossless: "pyjpegls", JPEG2000Lossless: "pylibjpeg"}


def _encoded(ds: Dataset, syntax: str) -> Dataset:
    if syntax in ENCODER:
        ds.compress(syntax, encoding_plugin=ENCODER[syntax])
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _night_film(ds: Dataset, kind: str) -> NightFilm:
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return NightFilm(ds, _part10(ds), kind)


def night_corpus(xray_jpegs_dir: Path, study_date: str = E2E_NIGHT) -> list[NightFilm]:
    """27 children's films in 7 transfer syntaxes, an adult, a lateral view, a film without pixels, and a CT.

    Studies hold two or three films each, as a night's do. Every film carries
    the planted patient identifiers.
    """
    by_class = [[path for path in sorted(folder.glob("*.jpeg")) if _baseline_jpeg_size(path.read_bytes())]
                for folder in sorted(xray_jpegs_dir.iterdir()) if folder.is_dir()]
    jpegs = [path for pair in zip(*by_class) for path in pair]  # NORMAL and PNEUMONIA films alternate
    assert len(jpegs) >= CHILD_FILMS + 4, "too few baseline JPEGs in the shared folder"
    studies = [generate_uid() for _ in range(12)]
    films = []
    for i, path in enumerate(jpegs[:CHILD_FILMS]):
        syntax, modality = CHILD_SYNTAXES[i % len(CHILD_SYNTAXES)]
        if syntax == JPEGBaseline8Bit:
            film = jpeg_film(path, study_date)
            assert film is not None
            film.dataset.StudyInstanceUID = studies[i % len(studies)]
            film.dataset.ViewPosition = "PA"
            films.append(_night_film(film.dataset, "child"))
            continue
        ds = _native_film(_small_pixels(path), modality, studies[i % len(studies)], study_date)
        films.append(_night_film(_encoded(ds, syntax), "child"))
    others = iter(jpegs[CHILD_FILMS:])
    adult = _native_film(_small_pixels(next(others)), "CR", studies[0], study_date)
    adult.PatientAge = "045Y"
    lateral = _native_film(_small_pixels(next(others)), "DX", studies[1], study_date)
    lateral.ViewPosition = "LL"
    no_pixels = _native_film(_small_pixels(next(others)), "CR", studies[2], study_date)
    del no_pixels.PixelData
    ct = _native_film(_small_pixels(next(others)), "CT", generate_uid(), study_date)
    films += [_night_film(adult, "adult"), _night_film(lateral, "lateral"), _night_film(no_pixels, "no pixels"),
              _night_film(ct, "ct")]
    return films


def rows_of(films: list[NightFilm]) -> list[NightFilm]:
    """The films the night's CR/DX query finds: all but the CT."""
    return [film for film in films if film.kind != "ct"]


def score_cli(*args: str) -> Result:
    """``pneumo-batch score ARGS`` in this process, one worker, chunks of 8."""
    from pneumo_batch.cli.app import app

    return CliRunner().invoke(app, ["score", *args, "--workers", "1", "--batch-size", "8"])
