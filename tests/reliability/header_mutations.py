"""Seeded mutations of the DICOM header elements pneumo-batch reads or copies, as real exports carry them.

Each :class:`Mutation` changes one element of a real film (built from a
shared JPEG, or one of pydicom's own test files) and knows the text it
planted (``needles``): none of it may ever appear in an output, a log, an
error or a report sent to the PACS. Every planted value holds a unique
``QZX<n>`` marker (or is itself unique, such as a 56-character hash), so a
search for it cannot be fooled by a value the film had anyway.

Only one kind of planted value is legitimately copied on: a well-formed
non-ASCII person name, long ID or short string under the character set
that declares it (``keeps_in_report``). It is the patient's own name as the
PACS holds it, so the report carries it in its patient module, and nothing
else does.
"""

from __future__ import annotations

import hashlib
import io
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

#: The elements the product reads (header columns, scope, display) or copies into a report, with their VRs.
READ = {
    "Modality": "CS", "BodyPartExamined": "CS", "ViewPosition": "CS", "PatientAge": "AS", "PatientSex": "CS",
    "NumberOfFrames": "IS", "PresentationIntentType": "CS", "ImageType": "CS", "WindowCenter": "DS",
    "WindowWidth": "DS", "RescaleSlope": "DS", "RescaleIntercept": "DS", "PresentationLUTShape": "CS",
}
COPIED = {
    "PatientName": "PN", "PatientID": "LO", "PatientBirthDate": "DA", "StudyDate": "DA", "StudyTime": "TM",
    "AccessionNumber": "SH", "StudyID": "SH", "ReferringPhysicianName": "PN", "SpecificCharacterSet": "CS",
}
#: UIDs: mutated in files only (a PACS indexes them and will not serve a film by a malformed one).
UIDS = {"SOPInstanceUID": "UI", "SeriesInstanceUID": "UI", "StudyInstanceUID": "UI"}
#: Non-ASCII text under each character set (the defined terms pydicom decodes), planted after the marker.
CHARACTER_SETS = {
    "ISO_IR 100": "Müller^Zoë",
    "ISO_IR 144": "Иванов^Пётр",
    "ISO_IR 192": "山田^太郎",
    "GB18030": "张^三",
    "\\ISO 2022 IR 87": "やまだ^たろう",
    "ISO_IR 126": "Παπαδόπουλος^Νίκος",
}
_TEXT_VRS = {"PN", "LO", "SH"}


@dataclass
class Mutation:
    element: str
    kind: str
    apply: Callable[[Dataset], None]
    needles: tuple[str, ...]
    keeps_in_report: bool = False
    """A well-formed value (non-ASCII text under its declared character set) that the report copies."""
    name: str = field(default="")


def _raw(ds: Dataset, keyword: str, vr: str, value: bytes) -> None:
    tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def _encoded(ds: Dataset, keyword: str, vr: str, charset: str, value: str) -> None:
    """``value`` in ``charset``'s bytes, the charset declared: what a real export of a foreign name holds."""
    from pydicom.charset import convert_encodings, encode_string

    _raw(ds, "SpecificCharacterSet", "CS", charset.encode())
    _raw(ds, keyword, vr, encode_string(value, convert_encodings(charset.split("\\"))))


def mutations(seed: int = 0, *, uids: bool = True) -> list[Mutation]:
    """Every kind of malformation for every element, each with a unique marker; seeded."""
    rng = random.Random(seed)
    elements = {**READ, **COPIED, **(UIDS if uids else {})}
    found: list[Mutation] = []
    counter = iter(range(10**6))

    def marker() -> str:
        return f"QZX{next(counter)}Q"  # closed, so that no marker is the start of another

    for keyword, vr in elements.items():
        wrong_vr = "UT" if vr != "UT" else "LO"
        m = marker()
        found.append(Mutation(keyword, "wrong VR", lambda ds, k=keyword, v=wrong_vr, m=m: _raw(ds, k, v, f"{m}WRONGVR".encode()), (m,)))
        m = marker()
        long_value = (m + "L" * 300)[:300]
        found.append(Mutation(keyword, "over-long", lambda ds, k=keyword, v=vr, x=long_value: _raw(ds, k, v, x.encode()), (m,)))
        found.append(Mutation(keyword, "empty", lambda ds, k=keyword, v=vr: _raw(ds, k, v, b""), ()))
        m = marker()
        found.append(Mutation(keyword, "multi-valued", lambda ds, k=keyword, v=vr, m=m: _raw(ds, k, v, f"{m}A\\{m}B".encode()), (m,)))
        m = marker()
        garbage = m.encode() + bytes(rng.randrange(256) for _ in range(24))
        found.append(Mutation(keyword, "binary garbage", lambda ds, k=keyword, v=vr, g=garbage: _raw(ds, k, v, g), (m,)))
        # pydicom cannot write a numeric string under another character set (it converts it and fails):
        # non-ASCII bytes in IS and DS are covered by the binary garbage.
        if keyword != "SpecificCharacterSet" and vr not in ("IS", "DS"):
            for charset, text in CHARACTER_SETS.items():
                m = marker()
                value = f"{m}{text}"
                found.append(Mutation(
                    keyword, f"non-ASCII under {charset.strip(chr(92))}",
                    lambda ds, k=keyword, v=vr, c=charset, x=value: _encoded(ds, k, v, c, x),
                    (m,), keeps_in_report=vr in _TEXT_VRS,
                ))
        if vr in ("DA", "AS", "TM"):
            digest = hashlib.sha256(f"{keyword}{seed}".encode()).hexdigest()[:48]
            for kind, value in (("ISO date", "1985-03-12"), ("date + hash", "19850312" + digest)):
                found.append(Mutation(keyword, kind, lambda ds, k=keyword, v=vr, x=value: _raw(ds, k, v, x.encode()), (value,)))
    m = marker()
    for keyword in ("VOILUTSequence", "ModalityLUTSequence"):
        found.append(Mutation(keyword, "truncated sequence", lambda ds, k=keyword, m=m: _truncated_sequence(ds, k, m), (m,)))
    for number, mutation in enumerate(found):
        mutation.name = f"m{number:03d}-{mutation.element}-{mutation.kind.replace(' ', '_')}"
    return found


def _truncated_sequence(ds: Dataset, keyword: str, m: str) -> None:
    """A sequence whose one item claims more bytes than the element holds (an export cut short)."""
    item_header = b"\xfe\xff\x00\xe0" + (4096).to_bytes(4, "little")  # item tag, length 4096
    text = f"{m}CUT".encode()
    body = b"\x28\x00\x06\x30" + b"LO" + len(text).to_bytes(2, "little") + text  # LUT Explanation, then cut
    _raw(ds, keyword, "SQ", item_header + body)


def write(ds: Dataset) -> bytes:
    """Part-10 bytes; pydicom's warnings on the planted values (which quote them) are not the product's."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def pydicom_test_files() -> list[Path]:
    """pydicom's own image test files that ship in the wheel (never the ones it would download)."""
    folder = Path(pydicom.data.__file__).parent / "test_files"
    names = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "rtdose.dcm")
    return [folder / name for name in names if (folder / name).exists()]
