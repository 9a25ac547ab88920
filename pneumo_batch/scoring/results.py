"""``--send-results``: a finished run's in-scope films go back to their PACS as screening SRs.

The figures in each report come from the predictions file itself: its
model's name and version, and the screening operating point's threshold
with the sensitivity and specificity measured on validation data (the
model metadata's ``operating_points.screening.validation``; never the test
figures). Only ``ok`` rows that are in scope get a report: an out-of-scope
film has a score but no finding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pneumo_batch import predictions as columns
from pneumo_batch.errors import ModelError
from pneumo_batch.inputs.pacs import PacsOptions, pacs_source, ref_from_url
from pneumo_batch.pacs.report import ModelIdentity, ValidatedOperatingPoint
from pneumo_batch.pacs.results import ReportsSent, send_reports
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
    films = [
        (ref_from_url(path), float(score))
        for path, score in zip(chosen.column(columns.PATH).to_pylist(), chosen.column(columns.SCORE).to_pylist())
    ]
    return send_reports(pacs_source(url, options), films, ModelIdentity(str(model["name"]), str(model["version"])), point)


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
