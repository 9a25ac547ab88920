"""Late labels: the append-only label store (:mod:`.store`) and its join to the scored nights (:mod:`.join`)."""

from pneumo_batch.labels.join import (
    LABELLED,
    NIGHT,
    RELABELLED,
    Coverage,
    in_scope_rows,
    join_labels,
    night_coverage,
    read_scored_history,
)
from pneumo_batch.labels.store import AddedLabels, add_labels, labels_fingerprint, latest_labels, read_reads

__all__ = [
    "LABELLED",
    "NIGHT",
    "RELABELLED",
    "AddedLabels",
    "Coverage",
    "add_labels",
    "in_scope_rows",
    "join_labels",
    "labels_fingerprint",
    "latest_labels",
    "night_coverage",
    "read_reads",
    "read_scored_history",
]
