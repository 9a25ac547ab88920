"""Results back to the PACS: one screening SR per in-scope film, stored with STOW-RS.

Each report's UIDs derive from its film's UIDs and the model version
(:func:`~pneumo_batch.pacs.report.report_uids`), so before building anything
we ask the PACS (QIDO-RS, one query per study) which reports it already
holds: a rerun builds and stores none of those, and a report the PACS
refused or never got is sent again. A new report is built from the film's
header, fetched as WADO-RS metadata (no pixels travel a second time), so it
is filed in the film's study with the patient and study modules the PACS
already holds. A film deleted from the PACS since it was scored gets none.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pneumo_batch.pacs.report import ModelIdentity, ValidatedOperatingPoint, build_screening_report, report_uids
from pneumo_batch.pacs.source import InstanceRef, PacsSource

#: Reports per STOW-RS request: few enough that a refused request costs little to redo.
STORE_BATCH = 32


@dataclass(frozen=True)
class ReportsSent:
    stored: int
    """Reports this run stored."""
    present: int
    """Reports the PACS already held (an earlier run's)."""


def send_reports(
    source: PacsSource,
    films: Sequence[tuple[InstanceRef, float]],
    model: ModelIdentity,
    operating_point: ValidatedOperatingPoint,
) -> ReportsSent:
    """Store one report per ``(film, score)`` unless the PACS holds it already.

    Raises :class:`~pneumo_batch.errors.PacsUnavailableError`,
    :class:`~pneumo_batch.errors.PacsAuthError` or
    :class:`~pneumo_batch.errors.PacsStoreError`; a rerun stores what is still missing.
    """
    with ThreadPoolExecutor(max_workers=source.settings.workers, thread_name_prefix="pacs-sr") as pool:
        studies = sorted({ref.study_uid for ref, _ in films})
        present = set().union(*pool.map(source.search_reports, studies))
        missing = [
            (ref, score) for ref, score in films
            if report_uids(ref.series_uid, ref.sop_uid, model).sop_instance not in present
        ]
        stored = 0
        for start in range(0, len(missing), STORE_BATCH):
            batch = missing[start : start + STORE_BATCH]
            headers = list(pool.map(source.retrieve_header, [ref for ref, _ in batch]))
            reports = [
                build_screening_report(header, score, model, operating_point)
                for header, (_, score) in zip(headers, batch)
                if header is not None
            ]
            source.store(reports)
            stored += len(reports)
    return ReportsSent(stored=stored, present=len(films) - len(missing))
