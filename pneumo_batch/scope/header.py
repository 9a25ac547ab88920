"""Header scope rules: which DICOM images the model may decide on, as data.

The model was trained on single-frame frontal chest radiographs of children
(CR or DX for presentation). :class:`HeaderScopeRules` holds that scope as
plain values with the defaults below; a site changes a field, not code.
:func:`check_header` returns ``(True, None)`` or ``(False, reason)`` with a
short fixed phrase first ("modality CT", "adult: age 51 y").

Unknown is not out of scope: an absent age, body part, view position or
presentation intent passes, because many exports leave them empty and the
pixel gate (pneumo_batch.scope.gate) looks at the image itself. An absent
modality is out: it is required in every image IOD.
"""

from __future__ import annotations

from dataclasses import dataclass

from pneumo_batch.imaging.dicom_header import DicomHeader


@dataclass(frozen=True)
class HeaderScopeRules:
    modalities: frozenset[str] = frozenset({"CR", "DX"})
    """Modalities in scope."""
    dx_for_presentation_only: bool = True
    """DX images must be FOR PRESENTATION (raw FOR PROCESSING detector data is out)."""
    body_parts: frozenset[str] = frozenset({"CHEST", ""})
    """BodyPartExamined values in scope; ``""`` admits an absent or empty one."""
    view_positions: frozenset[str] = frozenset({"PA", "AP", ""})
    """ViewPosition values in scope (frontal); ``""`` admits an absent or empty one."""
    max_age_years: float | None = 18.0
    """Patients of this age or older are out; an unknown age passes; ``None`` turns the rule off."""
    max_frames: int = 1
    """Images with more frames are out."""


DEFAULT_HEADER_RULES = HeaderScopeRules()


def check_header(header: DicomHeader, rules: HeaderScopeRules = DEFAULT_HEADER_RULES) -> tuple[bool, str | None]:
    """``(True, None)`` when the header is in scope, else ``(False, short reason)`` for the first rule it fails."""
    reason = _first_failure(header, rules)
    return reason is None, reason


def _first_failure(header: DicomHeader, rules: HeaderScopeRules) -> str | None:
    modality = (header.modality or "").upper()
    if not modality:
        return "modality missing"
    if modality not in rules.modalities:
        return f"modality {modality}"
    if rules.dx_for_presentation_only and modality == "DX" and header.presentation_intent_type == "FOR PROCESSING":
        return "DX for processing"
    if header.number_of_frames > rules.max_frames:
        return f"multi-frame: {header.number_of_frames} frames"
    body_part = (header.body_part_examined or "").upper()
    if body_part not in rules.body_parts:
        return f"body part {body_part}"
    view = (header.view_position or "").upper()
    if view not in rules.view_positions:
        return f"view position {view}"
    age = header.patient_age_years
    if rules.max_age_years is not None and age is not None and age >= rules.max_age_years:
        return f"adult: age {age:g} y"
    return None
