"""Results back to the PACS: one screening SR per in-scope film, stored with STOW-RS.

Each report is built from the film's header, fetched as WADO-RS metadata
(no pixels travel a second time), so it is filed in the film's study with
the patient and study modules the PACS already holds. UIDs are derived from
the film and the model version (:func:`~pneumo_batch.pacs.report.report_uids`):
sending the same night again stores the same instances, and the PACS keeps
one copy. A film deleted from the PACS since it was scored gets no report.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pneumo_batch.pacs.report import ModelIdentity, ValidatedOperatingPoint, build_screening_report
from pneumo_batch.pacs.source import InstanceRef, PacsSource

#: Reports per STOW-RS request: few enough that a refused request costs little to redo.
STORE_BATCH = 32


def send_reports(
    source: PacsSource,
    films: Sequence[tuple[InstanceRef, float]],
    model: ModelIdentity,
    operating_point: ValidatedOperatingPoint,
) -> int:
    """Store one report per ``(film, score)``; return how many the PACS accepted.

    Raises :class:`~pneumo_batch.errors.PacsUnavailableError`,
    :class:`~pneumo_batch.errors.PacsAuthError` or
    :class:`~pneumo_batch.errors.PacsStoreError`; a rerun stores the same UIDs again.
    """
    sent = 0
    with ThreadPoolExecutor(max_workers=source.settings.workers, thread_name_prefix="pacs-sr") as pool:
        for start in range(0, len(films), STORE_BATCH):
            batch = films[start : start + STORE_BATCH]
            headers = list(pool.map(source.retrieve_header, [ref for ref, _ in batch]))
            reports = [
                build_screening_report(header, score, model, operating_point)
                for header, (_, score) in zip(headers, batch)
                if header is not None
            ]
            source.store(reports)
            sent += len(reports)
    return sent
