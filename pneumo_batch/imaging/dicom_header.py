"""The DICOM header fields pneumo-batch reads, and nothing else.

Only the attributes named here are ever read from a dataset: the
prediction columns (:data:`HEADER_COLUMNS`) and what the scope rules need
(frames, SOP class, presentation intent, image type). Patient names, ids,
birth dates, accession numbers, institutions and physicians are never
touched, so they cannot reach a row, a log line or an error message.

Every value is read through :class:`~pneumo_batch.imaging.dicom_values.HeaderReader`:
a malformed one (wrong VR, too long, not its VR's characters, several values
where one is allowed) is ``None`` in its column, and the ``header_issues``
column names it (``PatientAge (AS) malformed``) without its value.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from pneumo_batch.imaging.dicom_values import HeaderReader

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
    "header_issues",
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
    header_issues: str | None = None
    """The malformed elements, ``; ``-joined (``PatientAge (AS) malformed``); ``None`` when every value read was well formed."""

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


def read_header(ds: Any, values: HeaderReader | None = None) -> DicomHeader:
    """Build a :class:`DicomHeader` from a pydicom ``Dataset`` (pixel data not needed); never raises on a value.

    ``values``: a reader of ``ds`` that already holds issues (the display
    attributes the decoder dropped), so the row names them too.
    """
    values = values or HeaderReader(ds)
    file_meta = getattr(ds, "file_meta", None)
    meta = HeaderReader(file_meta) if file_meta is not None else None
    sop_class = values.text("SOPClassUID")
    intent = values.text("PresentationIntentType")
    if intent is None and sop_class is not None:
        intent = "FOR PROCESSING" if sop_class in FOR_PROCESSING_SOP_CLASSES else None
    fields = {
        "modality": values.text("Modality"),
        "body_part_examined": values.text("BodyPartExamined"),
        "view_position": values.text("ViewPosition"),
        "patient_age_years": parse_patient_age(values.text("PatientAge")),
        "patient_sex": values.text("PatientSex"),
        "sop_instance_uid": values.text("SOPInstanceUID"),
        "series_instance_uid": values.text("SeriesInstanceUID"),
        "study_instance_uid": values.text("StudyInstanceUID"),
        "transfer_syntax": meta.text("TransferSyntaxUID") if meta is not None else None,
        "photometric_interpretation": values.text("PhotometricInterpretation"),
        "number_of_frames": max(values.integer("NumberOfFrames") or 1, 1),
        "sop_class_uid": sop_class,
        "presentation_intent_type": intent,
        "image_type": values.texts("ImageType"),
        "manufacturer": values.text("Manufacturer"),
        "manufacturer_model_name": values.text("ManufacturerModelName"),
    }
    issues = sorted({*values.issues, *(meta.issues if meta is not None else ())})
    return DicomHeader(**fields, header_issues="; ".join(map(str, issues)) or None)
