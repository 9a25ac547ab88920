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

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from pneumo_batch.errors import InputError
from pneumo_batch.imaging.dicom_header import DicomHeader
from pneumo_batch.toml_files import read_toml


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


#: The fields that hold sets of upper-case codes ("" admits an absent value).
_CODE_SETS = ("modalities", "body_parts", "view_positions")
_KNOWN = ", ".join(field.name for field in fields(HeaderScopeRules))


def header_rules_from_table(table: Mapping[str, Any], source: str = "scope rules") -> HeaderScopeRules:
    """Rules from a TOML/JSON table of field values; a missing field keeps its default.

    ``max_age_years = false`` turns the age rule off. Raises
    :class:`InputError` naming the key for an unknown key or a value of the wrong kind.
    """
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key in _CODE_SETS:
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise InputError(f"{source}: {key} must be a list of strings, got {value!r}")
            changes[key] = frozenset(item.strip().upper() for item in value)
        elif key == "dx_for_presentation_only":
            if not isinstance(value, bool):
                raise InputError(f"{source}: {key} must be true or false, got {value!r}")
            changes[key] = value
        elif key == "max_age_years":
            if value is False:
                changes[key] = None
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InputError(f"{source}: {key} must be a positive number of years, or false, got {value!r}")
            else:
                changes[key] = float(value)
        elif key == "max_frames":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{source}: {key} must be a whole number of frames, 1 or more, got {value!r}")
            changes[key] = value
        else:
            raise InputError(f"{source}: unknown key {key!r}; known: {_KNOWN}")
    return replace(DEFAULT_HEADER_RULES, **changes)


def load_header_rules(path: str | Path) -> HeaderScopeRules:
    """The ``[header]`` table of a scope rules TOML file (``score --scope-rules``, nightly ``scope_rules``)."""
    path = Path(path)
    raw = read_toml(path, "scope rules")
    unknown = sorted(set(raw) - {"header"})
    if unknown:
        raise InputError(f"scope rules {path}: unknown table(s) {', '.join(unknown)}; known: header")
    table = raw.get("header", {})
    if not isinstance(table, dict):
        raise InputError(f"scope rules {path}: header must be a table ([header])")
    return header_rules_from_table(table, f"scope rules {path.name} [header]")


def describe_header_rules(rules: HeaderScopeRules) -> dict[str, Any]:
    """The rules as plain JSON values (sorted lists), as a rules file would hold them."""
    values = asdict(rules)
    described = {key: sorted(values[key]) if key in _CODE_SETS else values[key] for key in values}
    if rules.max_age_years is None:
        described["max_age_years"] = False
    return described
