"""Results back to the PACS: one screening SR per in-scope film, each built and stored on its own (STOW-RS).

Each report's UIDs derive from its film's UIDs and the model version
(:func:`~pneumo_batch.pacs.report.report_uids`), so before building anything
we ask the PACS (QIDO-RS, one query per study) which reports it already
holds: a rerun builds and stores none of those, and a report the PACS
refused or never got is sent again. A new report is built from the film's
header, fetched as WADO-RS metadata (no pixels travel a second time), so it
is filed in the film's study with the patient and study modules the PACS
already holds.

One film never sinks the others: a film whose report cannot be built (a
malformed UID), that the PACS refuses, or that was deleted since it was
scored gets no report and an outcome that says why (:data:`ReportsSent.outcomes`,
the predictions' ``report`` column); the rest are sent. Only a PACS that is
unreachable, or refuses our credentials, stops the step (a rerun sends what
is still missing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pneumo_batch.errors import ReportError
from pneumo_batch.pacs.report import (
    ModelIdentity,
    ValidatedOperatingPoint,
    build_screening_report,
    clean_evidence,
    report_uids,
)
from pneumo_batch.pacs.source import InstanceRef, PacsSource, header_from_metadata

#: Films whose headers are fetched at a time: bounds memory, not requests (each report is its own STOW-RS request).
HEADER_BATCH = 32
#: The outcomes of a film's report, as the predictions' ``report`` column says them.
STORED = "stored"
PRESENT = "already in the PACS"
GONE = "not sent: film gone from the PACS"
LEFT_EMPTY = "stored; left empty: "


@dataclass(frozen=True)
class ReportsSent:
    stored: int
    """Reports this run stored."""
    present: int
    """Reports the PACS already held (an earlier run's)."""
    not_sent: int = 0
    """Films that got no report: not built, refused by the PACS, or gone from it."""
    outcomes: Mapping[InstanceRef, str] = field(default_factory=dict, compare=False)
    """Every film's outcome: :data:`STORED` (or :data:`LEFT_EMPTY` and what), :data:`PRESENT`, or why not."""


def send_reports(
    source: PacsSource,
    films: Sequence[tuple[InstanceRef, float]],
    model: ModelIdentity,
    operating_point: ValidatedOperatingPoint,
) -> ReportsSent:
    """Store one report per ``(film, score)`` unless the PACS holds it already; say what became of each.

    Raises :class:`~pneumo_batch.errors.PacsUnavailableError`,
    :class:`~pneumo_batch.errors.PacsAuthError` or
    :class:`~pneumo_batch.errors.PacsStoreError` (no STOW-RS service); a rerun stores what is still missing.
    """
    outcomes: dict[InstanceRef, str] = {}
    with ThreadPoolExecutor(max_workers=source.settings.workers, thread_name_prefix="pacs-sr") as pool:
        studies = sorted({ref.study_uid for ref, _ in films})
        present = set().union(*pool.map(source.search_reports, studies))
        missing = []
        for ref, score in films:
            if report_uids(ref.series_uid, ref.sop_uid, model).sop_instance in present:
                outcomes[ref] = PRESENT
            else:
                missing.append((ref, score))
        for start in range(0, len(missing), HEADER_BATCH):
            batch = missing[start : start + HEADER_BATCH]
            found = list(pool.map(source.retrieve_metadata, [ref for ref, _ in batch]))
            built = []
            for (ref, score), metadata in zip(batch, found):
                if metadata is None:
                    outcomes[ref] = GONE
                    continue
                try:  # parsed and built here, on one thread: both silence warnings, which are process-wide
                    evidence = clean_evidence(header_from_metadata(metadata))
                    report = build_screening_report(evidence.header, score, model, operating_point)
                except ReportError as error:
                    outcomes[ref] = str(error).replace("report not built", "not built", 1)
                    continue
                left_empty = ", ".join(map(str, evidence.omitted))
                built.append((ref, report, LEFT_EMPTY + left_empty if left_empty else STORED))
            refusals = pool.map(source.store_one, [report for _, report, _ in built])
            for (ref, _, stored_as), refusal in zip(built, refusals):
                outcomes[ref] = stored_as if refusal is None else f"not sent: {refusal}"
    stored = sum(outcome.startswith(STORED) for outcome in outcomes.values())
    return ReportsSent(
        stored=stored,
        present=len(films) - len(missing),
        not_sent=len(missing) - stored,
        outcomes=outcomes,
    )
