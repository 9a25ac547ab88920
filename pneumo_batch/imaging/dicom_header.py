"""The DICOM header fields pneumo-batch reads, and nothing else.

Only the attributes named here are ever read from a dataset: the twelve
prediction columns (:data:`HEADER_COLUMNS`) and what the scope rules need
(frames, SOP class, presentation intent, image type). Patient names, ids,
birth dates, accession numbers, institutions and physicians are never
touched, so they cannot reach a row, a log line or an error message.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

#: The header columns of the predictions, in schema order.
HEADER_COLUMNS: tuple[str, ...] = (
    "modality",
    "body_part_examined",
    "view_position",
    "patient_age_years",
    "patient_sex",
    "sop_instance_uid",
    "series_instance_uid",
    "study_instance_uid",
    "transfer_syntax",
    "photometric_interpretation",
    "manufacturer",
    "manufacturer_model_name",
)

#: SOP classes whose UID alone says "for processing" (DX, mammography, intra-oral).
FOR_PROCESSING_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray Image Storage - For Processing
    }
)

_AGE = re.compile(r"(\d{1,3})([DWMY])")
_DAYS_PER_YEAR = 365.25
_YEARS_PER_UNIT = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / _DAYS_PER_YEAR, "D": 1.0 / _DAYS_PER_YEAR}


@dataclass(frozen=True)
class DicomHeader:
    """What pneumo-batch keeps from a DICOM header. Empty text attributes are ``None``."""

    modality: str | None
    body_part_examined: str | None
    view_position: str | None
    patient_age_years: float | None
    patient_sex: str | None
    sop_instance_uid: str | None
    series_instance_uid: str | None
    study_instance_uid: str | None
    transfer_syntax: str | None
    photometric_interpretation: str | None
    number_of_frames: int
    sop_class_uid: str | None
    presentation_intent_type: str | None
    """``FOR PRESENTATION`` / ``FOR PROCESSING``: the DX attribute, else implied by the SOP class, else ``None``."""
    image_type: tuple[str, ...]
    manufacturer: str | None = None
    """The scanner's maker and model, for realized performance by scanner (never station or institution)."""
    manufacturer_model_name: str | None = None

    def columns(self) -> dict[str, Any]:
        """The prediction columns, exactly :data:`HEADER_COLUMNS`."""
        values = asdict(self)
        return {name: values[name] for name in HEADER_COLUMNS}


def parse_patient_age(value: object) -> float | None:
    """Years from a DICOM Age String (``015Y``, ``006M``, ``010W``, ``020D``); ``None`` if absent or malformed.

    The standard says three digits; one or two are accepted too, since some
    modalities drop the zero padding. Anything else (no unit, a bare number,
    free text) is ``None``, never a guess.
    """
    if value is None:
        return None
    match = _AGE.fullmatch(str(value).strip().upper())
    if match is None:
        return None
    return int(match.group(1)) * _YEARS_PER_UNIT[match.group(2)]


def read_header(ds: Any) -> DicomHeader:
    """Build a :class:`DicomHeader` from a pydicom ``Dataset`` (pixel data not needed)."""
    file_meta = getattr(ds, "file_meta", None)
    transfer_syntax = _text(file_meta.get("TransferSyntaxUID")) if file_meta is not None else None
    sop_class = _text(ds.get("SOPClassUID"))
    intent = _text(ds.get("PresentationIntentType"))
    if intent is None and sop_class is not None:
        intent = "FOR PROCESSING" if sop_class in FOR_PROCESSING_SOP_CLASSES else None
    image_type = ds.get("ImageType")
    if isinstance(image_type, str):
        image_type = [image_type]
    return DicomHeader(
        modality=_text(ds.get("Modality")),
        body_part_examined=_text(ds.get("BodyPartExamined")),
        view_position=_text(ds.get("ViewPosition")),
        patient_age_years=parse_patient_age(ds.get("PatientAge")),
        patient_sex=_text(ds.get("PatientSex")),
        sop_instance_uid=_text(ds.get("SOPInstanceUID")),
        series_instance_uid=_text(ds.get("SeriesInstanceUID")),
        study_instance_uid=_text(ds.get("StudyInstanceUID")),
        transfer_syntax=transfer_syntax,
        photometric_interpretation=_text(ds.get("PhotometricInterpretation")),
        number_of_frames=_frames(ds.get("NumberOfFrames")),
        sop_class_uid=sop_class,
        presentation_intent_type=intent.upper() if intent else None,
        image_type=tuple(str(part) for part in image_type) if image_type is not None else (),
        manufacturer=_text(ds.get("Manufacturer")),
        manufacturer_model_name=_text(ds.get("ManufacturerModelName")),
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _frames(value: object) -> int:
    try:
        frames = int(str(value)) if value is not None else 1
    except ValueError:
        return 1
    return max(frames, 1)
