"""A DICOM Structured Report per in-scope film, built from highdicom's typed templates.

The report is a TID 1500 Measurement Report in a Comprehensive SR: one
measurement group that references the source image and carries the finding
("pneumonia suspected" / "pneumonia not suspected" at the screening
operating point), the score, the threshold and the operating point's
validated sensitivity and specificity, identified by the model's name and
version (TID 4019 Algorithm Identification), plus "screening aid, not a
diagnosis". highdicom copies the patient and study modules from the source
(the evidence), so the PACS files the SR in the source's study; nothing of
those modules ever reaches our own outputs.

The film's header is never copied whole. :func:`clean_evidence` takes the
four UIDs a reference needs and the patient and study attributes a PACS files
a report by (the type 2 ones of PS3.3 C.7.1.1 and C.7.2.1), each checked
against its VR: a malformed one is left empty in the report and named
(``PatientBirthDate (DA) malformed``), and a malformed UID means no report
(:class:`~pneumo_batch.errors.ReportError`). highdicom and pydicom's value
types raise on malformed values and warn quoting them; building happens with
both silenced, so a value never reaches a log.

UIDs are derived (``2.25.`` + a hash) from the source UIDs and the model's
name and version, so a rerun rebuilds the same SR instance and the PACS
keeps one copy. Out-of-scope films get no report: callers only build one
for a film that has a decision.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pneumo_batch.errors import ReportError
from pneumo_batch.imaging.dicom_values import MALFORMED, HeaderIssue, HeaderReader

if TYPE_CHECKING:
    import highdicom
    import pydicom

#: Local codes (a "99" coding scheme is private by DICOM's rules) where no
#: standard code says exactly what we mean.
CODING_SCHEME = "99PNEUMOBATCH"
DISCLAIMER = "screening aid, not a diagnosis"
SR_SERIES_NUMBER = 9917
SR_SERIES_DESCRIPTION = f"AI pneumonia screening: {DISCLAIMER}"  # LO: at most 64 characters
MANUFACTURER = "pneumo-batch"
SUSPECTED_MEANING = "pneumonia suspected"
NOT_SUSPECTED_MEANING = "pneumonia not suspected"
#: Fixed forever: changing it would change every report's UID and duplicate SRs in the PACS.
_UID_NAMESPACE = uuid.UUID("8f1d6a52-3c1e-5b8a-9a43-2f6c0d7e4b19")
#: What a reference to the film needs: without all four, well formed, there is no report.
_EVIDENCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
#: Attributes highdicom reads from the evidence to fill the SR's patient and study
#: modules; DICOM lets a source leave them empty (type 2), and so do we when one is malformed.
_PATIENT_STUDY_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
                        "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")
_PATIENT_SEX_VALUES = frozenset({"M", "F", "O"})
_TEXT_VRS = frozenset({"PN", "LO", "SH"})


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str


@dataclass(frozen=True)
class ValidatedOperatingPoint:
    """An operating point with the sensitivity and specificity measured on validation data."""

    name: str
    threshold: float
    sensitivity: float
    specificity: float


@dataclass(frozen=True)
class ReportUids:
    series: str
    sop_instance: str
    tracking: str
    device: str


def report_uids(series_uid: str, sop_uid: str, model: ModelIdentity) -> ReportUids:
    """Deterministic UIDs: the same source (its series and SOP instance UIDs) and model version give the same SR.

    The series is per (source series, model), so the SRs of one source series
    land in one SR series; the SOP instance is per (source instance, model).
    """

    def derived(*parts: str) -> str:
        # A name-based (RFC 4122 version 5) UUID as a 2.25 UID (PS3.5 B.2).
        # Not pydicom's generate_uid(prefix=None, entropy_srcs=...): with no
        # prefix it ignores entropy_srcs and returns a random uuid4.
        name = "\x1f".join((model.name, model.version, *parts))
        return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"

    return ReportUids(
        series=derived("sr-series", series_uid),
        sop_instance=derived("sr-instance", sop_uid),
        tracking=derived("tracking", sop_uid),
        device=derived("device"),
    )


def build_screening_report(
    source: pydicom.Dataset,
    score: float,
    model: ModelIdentity,
    operating_point: ValidatedOperatingPoint,
) -> highdicom.sr.ComprehensiveSR:
    """The SR for one in-scope film scored ``score``; suspected when ``score >= threshold``.

    Raises :class:`~pneumo_batch.errors.ReportError` when the film's UIDs are
    malformed or the report cannot be built for another reason (named by type only).
    """
    evidence = clean_evidence(source).header
    with _quiet_builders():
        try:
            return _build(evidence, score, model, operating_point)
        except Exception as error:  # noqa: BLE001 - highdicom raises many types; its text may quote a value
            raise ReportError(f"report not built: {type(error).__name__}") from None


def _build(
    evidence: pydicom.Dataset, score: float, model: ModelIdentity, operating_point: ValidatedOperatingPoint
) -> highdicom.sr.ComprehensiveSR:
    import highdicom as hd

    uids = report_uids(str(evidence.SeriesInstanceUID), str(evidence.SOPInstanceUID), model)
    algorithm = hd.sr.AlgorithmIdentification(
        name=model.name,
        version=model.version,
        manufacturer=MANUFACTURER,
        parameters=[
            f"operating point: {operating_point.name}",
            f"threshold: {operating_point.threshold:.6g} (chosen on validation data)",
            DISCLAIMER,
        ],
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.tracking, identifier="pneumonia screening"),
        finding_type=_code("233604007", "Pneumonia", scheme="SCT"),
        algorithm_id=algorithm,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(evidence)],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=_code("PNFINDING", f"finding at the {operating_point.name} operating point"),
                value=_finding_code(score >= operating_point.threshold),
            ),
            hd.sr.QualitativeEvaluation(
                name=_code("PNUSE", "intended use"), value=_code("PNAIDONLY", DISCLAIMER)
            ),
        ],
        measurements=[
            _fraction("PNSCORE", "pneumonia score", score, algorithm),
            _fraction("PNTHRESH", f"{operating_point.name} operating point threshold", operating_point.threshold),
            _fraction("PNVALSENS", "validated sensitivity at the operating point", operating_point.sensitivity),
            _fraction("PNVALSPEC", "validated specificity at the operating point", operating_point.specificity),
        ],
    )
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uids.device, name=model.name, manufacturer_name=MANUFACTURER, model_name=model.version
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_code("399208008", "Plain X-ray of chest", scheme="SCT"),
        imaging_measurements=[group],
    )
    return hd.sr.ComprehensiveSR(
        evidence=[evidence],
        content=content[0],
        series_instance_uid=uids.series,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sop_instance,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
    )


def read_finding(report: pydicom.Dataset) -> tuple[str, str]:
    """(finding meaning, referenced SOP Instance UID) of a report we built; for checks and tests."""
    import highdicom as hd

    sr = hd.sr.ComprehensiveSR.from_dataset(report)
    group = sr.content.get_image_measurement_groups()[0]
    finding = next(item for item in group.get_qualitative_evaluations() if item.name.value == "PNFINDING")
    return str(finding.value.meaning), str(group.source_images[0].referenced_sop_instance_uid)


@dataclass(frozen=True)
class Evidence:
    header: pydicom.Dataset
    """The film's UIDs, modality and size, and its well-formed patient and study attributes, nothing else."""
    omitted: tuple[HeaderIssue, ...]
    """The attributes left empty because they were malformed."""


def clean_evidence(source: pydicom.Dataset) -> Evidence:
    """What a report copies from ``source``: the film's UIDs and its patient and study attributes, each checked.

    Raises :class:`~pneumo_batch.errors.ReportError` naming the first UID that
    is missing or malformed, or a SOP class that is no image storage.
    """
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = HeaderReader(source)
        header = pydicom.Dataset()
        for keyword in _EVIDENCE_UIDS:
            uid = values.text(keyword)
            if uid is None:
                raise ReportError(f"report not built: {keyword} (UI) {'missing' if keyword not in source else MALFORMED}")
            setattr(header, keyword, uid)
        if not _is_known_sop_class(header.SOPClassUID):
            raise ReportError("report not built: SOPClassUID (UI) not an image storage class")
        # highdicom checks that a source image is one: its modality and pixel size.
        header.Modality = values.text("Modality")
        header.Rows, header.Columns = values.integer("Rows"), values.integer("Columns")
        for keyword in ("Modality", "Rows", "Columns"):
            if header.get(keyword) is None:
                raise ReportError(f"report not built: {keyword} ({_vr(keyword)}) missing or malformed")
        charsets, ascii_only = _character_sets(values)
        if charsets:
            header.SpecificCharacterSet = charsets if len(charsets) > 1 else charsets[0]
        omitted = []
        for keyword in _PATIENT_STUDY_TYPE2:
            value = values.text(keyword)
            if value is not None and not _fits(keyword, value, ascii_only):
                omitted.append(HeaderIssue(keyword, _vr(keyword)))
                value = None
            setattr(header, keyword, value)
    issues = {issue for issue in values.issues if issue.keyword in _PATIENT_STUDY_TYPE2 or issue.keyword == "SpecificCharacterSet"}
    return Evidence(header=header, omitted=tuple(sorted(issues | set(omitted))))


def _character_sets(values: HeaderReader) -> tuple[list[str], bool]:
    """The film's Specific Character Set if pydicom knows every term; otherwise none, and names must be ASCII."""
    from pydicom.charset import python_encoding

    terms = list(values.texts("SpecificCharacterSet", strip=False))
    known = all(term.strip() in python_encoding or term.strip() == "" for term in terms)
    if not known:
        values.note("SpecificCharacterSet")
        return [], True
    if terms and terms[0].startswith("ISO 2022"):
        # "\ISO 2022 IR 87": the empty first value (the default repertoire) is dropped on reading,
        # highdicom refuses it empty and pydicom will not encode a code extension alone: name it.
        terms = ["ISO 2022 IR 6", *terms]
    return terms, not terms


def _fits(keyword: str, value: str, ascii_only: bool) -> bool:
    if keyword == "PatientSex":
        return value in _PATIENT_SEX_VALUES
    return not (ascii_only and _vr(keyword) in _TEXT_VRS and not value.isascii())


def _vr(keyword: str) -> str:
    from pydicom.datadict import dictionary_VR

    return str(dictionary_VR(keyword))


def _is_known_sop_class(uid: str) -> bool:
    """Whether highdicom knows the IOD of ``uid`` (it needs it to copy the patient and study modules)."""
    try:
        from highdicom._standard_utils import get_sop_class_iod_map
    except ImportError:  # a private helper: if it moves, building still fails cleanly, by type
        return True
    return uid in get_sop_class_iod_map()


@contextmanager
def _quiet_builders() -> Iterator[None]:
    """highdicom warns and logs quoting values (a name without a caret): silence both while a report is built.

    Not thread-safe (warnings filters are global): reports are built on one thread.
    """
    quieted = [logging.getLogger(name) for name in ("highdicom", "pydicom")]
    before = [log.disabled for log in quieted]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for log in quieted:
            log.disabled = True
        try:
            yield
        finally:
            for log, was in zip(quieted, before):
                log.disabled = was


def _code(value: str, meaning: str, *, scheme: str = CODING_SCHEME) -> highdicom.sr.CodedConcept:
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _finding_code(suspected: bool) -> highdicom.sr.CodedConcept:
    if suspected:
        return _code("PNSUSP", SUSPECTED_MEANING)
    return _code("PNNOTSUSP", NOT_SUSPECTED_MEANING)


def _fraction(
    value: str, meaning: str, number: float, algorithm: highdicom.sr.AlgorithmIdentification | None = None
) -> highdicom.sr.Measurement:
    import highdicom as hd

    return hd.sr.Measurement(
        name=_code(value, meaning),
        value=float(number),
        unit=hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units"),
        algorithm_id=algorithm,
    )
