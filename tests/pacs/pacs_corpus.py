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
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

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
