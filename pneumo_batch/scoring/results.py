"""``--send-results``: a finished run's in-scope films go back to their PACS as screening SRs.

The figures in each report come from the predictions file itself: its
model's name and version, and the screening operating point's threshold
with the sensitivity and specificity measured on validation data (the
model metadata's ``operating_points.screening.validation``; never the test
figures). Only ``ok`` rows that are in scope get a report: an out-of-scope
film has a score but no finding.

The predictions are written before any report is sent, and then each
reported row's ``report`` column is filled in (the file, or each part file,
replaced atomically): what was stored, what the PACS already held, and why a
film got none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pneumo_batch import predictions as columns
from pneumo_batch import storage
from pneumo_batch.errors import ModelError
from pneumo_batch.inputs.pacs import PacsOptions, pacs_source, ref_from_url
from pneumo_batch.pacs.report import ModelIdentity, ValidatedOperatingPoint
from pneumo_batch.pacs.results import PRESENT, STORED, ReportsSent, send_reports
from pneumo_batch.scoring.metadata import read_run_metadata

REPORTED_OPERATING_POINT = "screening"


def send_run_results(predictions: Path, url: str, options: PacsOptions) -> ReportsSent:
    """Store one SR per in-scope ``ok`` row of ``predictions`` in the PACS at ``url`` unless it holds it already."""
    model = read_run_metadata(predictions)["model"]
    point = validated_operating_point(model["metadata"], REPORTED_OPERATING_POINT)
    table = pq.read_table(predictions, columns=[columns.PATH, columns.STATUS, columns.SCORE, columns.IN_SCOPE])
    chosen = table.filter(
        pc.and_(
            pc.and_(pc.equal(table.column(columns.STATUS), columns.STATUS_OK), pc.is_valid(table.column(columns.SCORE))),
            pc.fill_null(table.column(columns.IN_SCOPE), False),
        )
    )
    paths = chosen.column(columns.PATH).to_pylist()
    films = [(ref_from_url(path), float(score)) for path, score in zip(paths, chosen.column(columns.SCORE).to_pylist())]
    sent = send_reports(pacs_source(url, options), films, ModelIdentity(str(model["name"]), str(model["version"])), point)
    by_ref = {ref: path for path, (ref, _) in zip(paths, films)}
    record_report_outcomes(predictions, {by_ref[ref]: outcome for ref, outcome in sent.outcomes.items()})
    return sent


def record_report_outcomes(predictions: Path, outcomes: Mapping[str, str]) -> None:
    """Fill the ``report`` column of the rows whose ``path`` is in ``outcomes``; other rows keep theirs.

    ``predictions`` is a file or a folder of part files (the Ray engine); each
    file is replaced atomically, its key-value metadata kept.
    """
    files = sorted(predictions.glob("*.parquet")) if predictions.is_dir() else [predictions]
    for file in files:
        table = pq.read_table(file)
        if columns.REPORT not in table.column_names:
            continue  # written by an older version: its rows cannot say it
        earlier = table.column(columns.REPORT).to_pylist()
        paths = table.column(columns.PATH).to_pylist()
        filled = [_outcome(outcomes.get(path) if path is not None else None, before) for path, before in zip(paths, earlier)]
        if filled == earlier:
            continue
        index = table.schema.get_field_index(columns.REPORT)
        table = table.set_column(index, table.schema.field(index), pa.array(filled, pa.string()))
        storage.write_parquet(file, table)


def _outcome(now: str | None, before: str | None) -> str | None:
    """A rerun that finds the report in the PACS keeps what the run that stored it said."""
    if now is None or (now == PRESENT and before is not None and before.startswith(STORED)):
        return before
    return now


def validated_operating_point(metadata: dict[str, Any], name: str) -> ValidatedOperatingPoint:
    """``name``'s threshold and validation sensitivity and specificity, from a model's metadata."""
    try:
        point = metadata["operating_points"][name]
        validation = point["validation"]
        return ValidatedOperatingPoint(
            name=name,
            threshold=float(point["threshold"]),
            sensitivity=float(validation["sensitivity"]["estimate"]),
            specificity=float(validation["specificity"]["estimate"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ModelError(
            f"the model metadata has no validated sensitivity and specificity for the {name!r} operating point; "
            "a report needs them"
        ) from None
