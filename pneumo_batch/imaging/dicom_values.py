"""Header values read defensively: a malformed value becomes ``None`` and a counted issue, never an exception.

Real exports carry values that break their VR's rules: a hash in a DA, a
date written ``1985-03-12``, a CS in lower case or over 16 characters, two
values where one is allowed, bytes that are no text at all, an element
stored under another VR. pydicom keeps most of them as strings (and warns,
quoting them); highdicom and pydicom's value types (DA, TM, PN, AS) raise on
them. :class:`HeaderReader` reads each element the product touches, checks
it against its VR (PS3.5 6.2) and its value multiplicity, and hands back
either a clean value or ``None`` with an :class:`HeaderIssue` recorded.

An issue names the element keyword and VR (``PatientBirthDate (DA)
malformed``), never the value: values can identify a patient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date as Date
from typing import Any

#: Problems, as they appear in an issue's text.
MALFORMED = "malformed"
WRONG_VR = "wrong VR"
MULTI_VALUED = "multi-valued"
UNREADABLE = "unreadable"

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f]")  # ESC (0x1b) is allowed: ISO 2022 code extensions
_TEXT_LIMITS = {"LO": 64, "SH": 16, "PN": 64 * 3 + 2}
_PATTERNS: dict[str, re.Pattern[str]] = {
    # Lower-case code strings and ages are common in real exports and unambiguous: accepted, and CS is upper-cased.
    "CS": re.compile(r"[A-Za-z0-9 _]{0,16}"),
    "UI": re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*"),
    "AS": re.compile(r"[0-9]{1,3}[DWMYdwmy]"),  # some modalities drop the zero padding
    "DA": re.compile(r"[0-9]{8}"),
    "TM": re.compile(r"([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9](\.[0-9]{1,6})?)?)?"),
    "IS": re.compile(r" *[+-]?[0-9]{1,12} *"),
    "DS": re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *"),
}
_UID_MAX = 64
_DS_MAX = 16
_INT_MAX = 2**31 - 1


@dataclass(frozen=True, order=True)
class HeaderIssue:
    """One header element that was malformed; ``str()`` is the one phrase outputs carry."""

    keyword: str
    vr: str
    problem: str = MALFORMED

    def __str__(self) -> str:
        return f"{self.keyword} ({self.vr}) {self.problem}"


def is_well_formed(value: str, vr: str) -> bool:
    """Whether one value (no backslash-separated parts) obeys ``vr``'s character set and length."""
    if vr in _TEXT_LIMITS:
        return len(value) <= _TEXT_LIMITS[vr] and not _CONTROL.search(value) and "\\" not in value
    pattern = _PATTERNS.get(vr)
    if pattern is None or not pattern.fullmatch(value):
        return False
    if vr == "UI":
        return len(value) <= _UID_MAX
    if vr == "DA":
        return _real_date(value)
    if vr == "IS":
        return abs(int(value)) <= _INT_MAX
    if vr == "DS":
        return len(value) <= _DS_MAX
    return True


def _real_date(value: str) -> bool:
    try:
        Date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return False
    return True


class HeaderReader:
    """Reads elements of one pydicom ``Dataset`` by keyword; every malformed one is ``None`` plus an issue.

    Call it with pydicom's warnings suppressed (they quote values). The
    expected VR is the data dictionary's; an element stored under another
    VR is an issue of its own (``wrong VR``), as is one that cannot be read
    at all (``unreadable``).
    """

    def __init__(self, ds: Any) -> None:
        self._ds = ds
        self._issues: set[HeaderIssue] = set()

    @property
    def issues(self) -> tuple[HeaderIssue, ...]:
        return tuple(sorted(self._issues))

    def text(self, keyword: str, *, strip: bool = True) -> str | None:
        """A single-valued text element (CS, UI, AS, DA, TM, LO, SH, PN, IS, DS); ``None`` if absent, empty or malformed."""
        values = self.texts(keyword, strip=strip)
        if len(values) > 1:
            self.note(keyword, MULTI_VALUED)
            return None
        return values[0] if values else None

    def texts(self, keyword: str, *, strip: bool = True) -> tuple[str, ...]:
        """Every value of a text element, each checked; ``()`` if absent, empty or any value is malformed."""
        element = self._element(keyword)
        if element is None:
            return ()
        vr = self._vr(keyword)
        raw = element.value
        if raw is None or raw == "":
            return ()
        if isinstance(raw, (bytes, bytearray)):
            self.note(keyword, WRONG_VR)
            return ()
        parts = [str(part) for part in raw] if _is_multi(raw) else [str(raw)]
        if vr in ("UI", "CS", "AS", "DA", "TM", "IS", "DS"):
            parts = [part.strip(" \x00") for part in parts] if strip else parts
        elif strip:
            parts = [part.rstrip(" ") for part in parts]
        if any(not is_well_formed(part, vr) for part in parts):
            self.note(keyword, MALFORMED)
            return ()
        return tuple(part.upper() if vr == "CS" else part for part in parts if part)

    def integer(self, keyword: str) -> int | None:
        """A single-valued integer element (IS, US, SS, UL); ``None`` if absent or malformed."""
        element = self._element(keyword)
        if element is None or element.value is None or element.value == "":
            return None
        value = element.value
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        text = self.text(keyword)
        return None if text is None else int(text)

    def sequence_items(self, keyword: str) -> int:
        """How many items a sequence element has; 0 when absent, and an issue when it cannot be read."""
        element = self._element(keyword)
        if element is None:
            return 0
        try:
            return len(element.value or ())
        except Exception:  # noqa: BLE001 - a truncated sequence raises while its items are parsed
            self.note(keyword, UNREADABLE)
            return 0

    def _element(self, keyword: str) -> Any:
        if keyword not in self._ds:
            return None
        try:
            element = self._ds[keyword]
        except Exception:  # noqa: BLE001 - pydicom raises many types while converting a raw element
            self.note(keyword, UNREADABLE)
            return None
        expected = self._vr(keyword)
        if element.VR != expected and not (expected in ("US", "SS") and element.VR in ("US", "SS")):
            self.note(keyword, WRONG_VR)
            return None
        return element

    def _vr(self, keyword: str) -> str:
        from pydicom.datadict import dictionary_VR

        vr = dictionary_VR(keyword)
        return "US" if vr == "US or SS" else vr

    def note(self, keyword: str, problem: str = MALFORMED) -> None:
        """Record an issue (also one the caller found: a well-formed value it cannot use)."""
        self._issues.add(HeaderIssue(keyword, self._vr(keyword), problem))


def _is_multi(value: Any) -> bool:
    from pydicom.multival import MultiValue

    return isinstance(value, (MultiValue, list, tuple))

