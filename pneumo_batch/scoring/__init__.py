"""Batch scoring: images in, predictions out, one row per input row.

:func:`score_batch` is the library behind ``pneumo-batch score`` and the
nightly job; its ``engine`` argument chooses where the work runs (the
engines live in :mod:`pneumo_batch.scoring.engines`, and callers never
import one). Every engine turns rows into output rows with the one pure
function :func:`score_rows`, so the engines agree row for row.

Bad rows never stop the batch: any failure to find, read or decode one
image, including a path outside ``root``, becomes an ``error`` row with a
one-line reason. Scores do not depend on ``workers`` or ``batch_size`` (the
interpreter always runs fixed blocks, see :class:`~pneumo_batch.model.Scorer`).

These are the package's public names; engines use nothing else.
"""

from pneumo_batch.scoring.types import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
    ROW_GROUP_ROWS,
    Engine,
    Predictor,
    Progress,
    ProgressCallback,
    ScoreRequest,
    ScorerFactory,
    ScoreSummary,
    TfliteScorerFactory,
    check_batch_size,
    chunk_rows,
    check_root,
    default_workers,
    now,
)
from pneumo_batch.scoring.rows import RowContext, score_rows
from pneumo_batch.scoring.metadata import read_run_metadata, run_metadata
from pneumo_batch.scoring.reuse import ReusedRows, describe_scorer, row_identity
from pneumo_batch.scoring.workdir import work_dir_for
from pneumo_batch.scoring.writer import PartWriter, check_out_file, check_out_folder, read_predictions_folder
from pneumo_batch.scoring.api import score_batch

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_BATCH_SIZE",
    "ROW_GROUP_ROWS",
    "Engine",
    "PartWriter",
    "Predictor",
    "Progress",
    "ProgressCallback",
    "ReusedRows",
    "RowContext",
    "ScoreRequest",
    "ScoreSummary",
    "ScorerFactory",
    "TfliteScorerFactory",
    "check_batch_size",
    "chunk_rows",
    "check_out_file",
    "check_out_folder",
    "check_root",
    "default_workers",
    "describe_scorer",
    "now",
    "read_predictions_folder",
    "read_run_metadata",
    "row_identity",
    "run_metadata",
    "score_batch",
    "score_rows",
    "work_dir_for",
]
