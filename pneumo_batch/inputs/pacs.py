"""Rows from a PACS: the instances a QIDO-RS query finds, their bytes fetched per chunk over WADO-RS.

``INPUT`` is a DICOMweb base URL (``dicomweb+http://HOST:PORT/PATH`` or
``dicomweb+https://...``). :func:`open_pacs_input` checks that the PACS
answers (before anything is written) and queries the instances of the
study dates, modality CR or DX, sorted by SOP Instance UID, so a chunk's
number names the same instances from one run to the next. A chunk carries
only ``image_id`` (the SOP Instance UID: no patient data) and ``path`` (the
instance's WADO-RS URL, which carries no credentials); its ``image`` bytes
are fetched by :class:`PacsFetcher` in the worker that scores the chunk,
in parallel and bounded, so a chunk an earlier run finished is never
downloaded again. From there the bytes decode like a DICOM file's.

Why CR and DX only: a night's CTs and MRs are thousands of slices each,
which must never be downloaded only to be put out of scope. A DICOM file in
a folder still meets the header rules ("modality CT").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from pneumo_batch.errors import ImageError, InputError, PacsConfigError, PacsUnavailableError
from pneumo_batch.inputs.source import ID_COLUMN, IMAGE_COLUMN, PATH_COLUMN
from pneumo_batch.pacs import (
    InstanceRef,
    PacsSettings,
    PacsSource,
    StudyDateRange,
    load_credentials,
    parse_pacs_url,
    parse_study_date,
)
from pneumo_batch.pacs.source import FILM_MODALITIES

RESUME_HINT = "finished chunks are kept; run the same command again to resume"
#: The Ray engine writes nothing before the end, so a stopped run has nothing to resume from.
RESTART_HINT = "nothing was written; run the same command again once the PACS is back"


@dataclass(frozen=True)
class PacsOptions:
    """What a run from a PACS needs besides the URL: which studies, how to log in, how patient to be."""

    study_dates: StudyDateRange
    credentials_file: Path | None = None
    """An owner-only file with ``user:password`` or ``Bearer TOKEN``; ``PNEUMO_BATCH_PACS_AUTH`` wins over it."""
    settings: PacsSettings = field(default_factory=PacsSettings)
    modalities: tuple[str, ...] = FILM_MODALITIES
    send_results: bool = False
    """After scoring, store one DICOM SR per in-scope film in the PACS (STOW-RS)."""


@dataclass(frozen=True)
class PacsRows:
    """The instances one query found, and the source to fetch them from."""

    source: PacsSource
    refs: tuple[InstanceRef, ...]
    options: PacsOptions

    def chunks(self, size: int) -> Iterator[pa.Table]:
        for start in range(0, len(self.refs), size):
            refs = self.refs[start : start + size]
            yield pa.table(
                {
                    ID_COLUMN: pa.array([ref.sop_uid for ref in refs], pa.string()),
                    PATH_COLUMN: pa.array([instance_url(self.source, ref) for ref in refs], pa.string()),
                    IMAGE_COLUMN: pa.nulls(len(refs), pa.binary()),
                }
            )

    def identity(self) -> dict[str, object]:
        """What a resumed run must share; the chunks' own digests catch a changed set of instances."""
        return {
            "kind": "pacs",
            "location": self.source.location.base_url,
            "study_dates": self.options.study_dates.qido_value,
            "modalities": list(self.options.modalities),
        }


def pacs_source(url: str, options: PacsOptions) -> PacsSource:
    """The PACS at ``url`` with the credentials of the environment or ``options.credentials_file``."""
    return PacsSource(parse_pacs_url(url), load_credentials(options.credentials_file), options.settings)


def open_pacs_input(url: str, options: PacsOptions) -> PacsRows:
    """Check the PACS at ``url`` and query its films; :class:`PacsUnavailableError` or :class:`PacsAuthError` first."""
    source = pacs_source(url, options)
    source.check()
    refs = source.search_films(options.study_dates, options.modalities)
    return PacsRows(source, tuple(sorted(refs, key=lambda ref: ref.sop_uid)), options)


def instance_url(source: PacsSource, ref: InstanceRef) -> str:
    return f"{source.location.base_url}/studies/{ref.study_uid}/series/{ref.series_uid}/instances/{ref.sop_uid}"


def ref_from_url(url: str) -> InstanceRef:
    """The UIDs in an :func:`instance_url` (UIDs are digits and dots, so splitting on ``/`` is safe)."""
    parts = url.rsplit("/", 6)
    return InstanceRef(study_uid=parts[-5], series_uid=parts[-3], sop_uid=parts[-1])


@dataclass(frozen=True)
class PacsFetcher:
    """Fetches a chunk's images in the worker that scores it; picklable (credentials travel in memory only)."""

    source: PacsSource
    resume_hint: str = RESUME_HINT
    """What the error says a stopped run leaves (the local engine keeps its finished chunks)."""

    def __call__(self, table: pa.Table) -> Iterator[bytes | ImageError]:
        """Each row's Part-10 bytes, in order, or an :class:`ImageError` with the reason ("instance gone from PACS").

        Raises :class:`PacsUnavailableError` when the PACS stops answering
        (after the retries): the chunk is not written, so a rerun fetches it.
        """
        refs = [ref_from_url(url) for url in table.column(PATH_COLUMN).to_pylist()]
        try:
            for result in self.source.retrieve_all(refs):
                yield ImageError(result.error) if result.part10 is None else result.part10
        except PacsUnavailableError as error:
            raise PacsUnavailableError(f"{error}; {self.resume_hint}") from None


#: Keys of a ``[pacs]`` config section besides ``url``, ``study_date``, ``auth_file``, ``modalities`` and ``send_results``.
SETTINGS_KEYS = ("connect_timeout_s", "read_timeout_s", "retries", "backoff_s", "backoff_max_s", "workers",
                 "max_in_flight", "page_size", "ca_bundle")
SECTION_KEYS = frozenset({"url", "study_date", "auth_file", "modalities", "send_results", *SETTINGS_KEYS})


def pacs_options(section: Mapping[str, Any], *, study_date: str | None = None, send_results: bool | None = None,
                 default_study_date: str | None = None) -> PacsOptions:
    """:class:`PacsOptions` from a ``[pacs]`` section (paths already absolute), the command line winning.

    Raises :class:`PacsConfigError` for an unknown key or a bad value, and
    :class:`InputError` when no study date is given and there is no default.
    """
    unknown = sorted(set(section) - SECTION_KEYS)
    if unknown:
        raise PacsConfigError(f"[pacs]: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(SECTION_KEYS))}")
    dates = study_date or section.get("study_date") or default_study_date
    if dates is None:
        raise InputError("a PACS input needs --study-date YYYYMMDD or YYYYMMDD-YYYYMMDD")
    changes: dict[str, Any] = {key: section[key] for key in SETTINGS_KEYS if key in section}
    try:
        settings = replace(PacsSettings(), **changes)
        if settings.ca_bundle is not None:
            settings = replace(settings, ca_bundle=Path(settings.ca_bundle))
    except TypeError as error:
        raise PacsConfigError(f"[pacs]: {error}") from None
    if min(settings.connect_timeout_s, settings.read_timeout_s) <= 0 or settings.retries < 0 or settings.workers < 1:
        raise PacsConfigError("[pacs]: timeouts must be positive, retries 0 or more, workers 1 or more")
    modalities = section.get("modalities", FILM_MODALITIES)
    return PacsOptions(
        study_dates=parse_study_date(str(dates)),
        credentials_file=Path(section["auth_file"]) if "auth_file" in section else None,
        settings=settings,
        modalities=tuple(str(modality).upper() for modality in modalities),
        send_results=bool(section.get("send_results", False) if send_results is None else send_results),
    )
