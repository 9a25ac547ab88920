"""Monitoring at archive scale: every row's light columns, and a seeded sample of bounded size for the rest.

A night is hundreds to a few thousand films; a research team rescoring an
archive hands ``monitor`` a million. What costs memory and time per row is
the drift report (Evidently keeps several copies of every column), the
measured performance's AUC bootstrap and the thumbnails; what the verdict
needs from every row is a handful of light columns. So
:func:`read_batch` gives two frames:

- the **light** frame: every row, only :func:`light_columns` (status, error,
  scope, score, label, the decisions and thresholds, model and run): the
  counts, errors, scope test, prevalence estimate, flagged count and class
  balance come from it;
- the **sample**: every column of at most
  :attr:`~pneumo_batch.monitoring.summary.MonitoringRules.sample_rows` rows
  drawn without replacement with
  :attr:`~pneumo_batch.monitoring.summary.MonitoringRules.seed` (the same
  file gives the same sample), in file order. Drift, the Evidently report,
  the measured performance (labels) and the verdict page's thumbnails use it.
  At 20,000 rows the drift tests' power is ample, and the effect-size rule
  keeps them from alerting on trivial moves.

A batch no larger than the sample size is read whole, once, and both frames
are that one frame: a night's verdict is exactly what it was before
sampling existed. ``summary.json`` records the sample (:class:`SampleRecord`).
The sample is read row group by row group, so memory stays bounded by the
sample, not the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.monitoring.loading import check_predictions, discover_predictions, read_predictions

#: Rows per Arrow batch when picking the sample out of a file.
_READ_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class SampleRecord:
    """What ``summary.json`` says under ``sample``: how many rows the per-row-heavy parts saw."""

    n_rows: int
    """Rows in the batch (every file)."""
    size: int
    """Rows in the sample (``n_rows`` when not sampled)."""
    seed: int
    max_rows: int
    """The largest batch read whole (:attr:`MonitoringRules.sample_rows`)."""
    sampled: bool
    used_for: str = ("drift, the Evidently report, measured performance (labels) and thumbnails; counts, errors, "
                     "scope, prevalence, flagged and class balance use every row")


@dataclass(frozen=True)
class Batch:
    light: pd.DataFrame
    """Every row; only :func:`light_columns` when sampled, every column otherwise."""
    sample: pd.DataFrame
    """Every column of the sampled rows (the whole batch when not sampled)."""
    record: SampleRecord


def light_columns(names: Sequence[str]) -> list[str]:
    """The columns of ``names`` the verdict reads from every row."""
    fixed = (cols.STATUS, cols.ERROR, cols.IN_SCOPE, cols.SCOPE_REASON, cols.SCORE, cols.LABEL,
             cols.MODEL_SHA256, cols.MODEL_VERSION, cols.RUN_ID, cols.SCORED_AT)
    decisions = (cols.PREDICTION_PREFIX, cols.THRESHOLD_PREFIX)
    return [name for name in names if name in fixed or name.startswith(decisions)]


def read_batch(paths: Sequence[Path], max_rows: int, seed: int) -> Batch:
    """The batch in ``paths`` (predictions files or folders of part files) as its light frame and its sample
    (see the module docstring)."""
    paths = discover_predictions(paths)
    n_rows = sum(_row_count(path) for path in paths)
    if n_rows <= max_rows:
        frame = read_predictions(paths)
        return Batch(frame, frame, SampleRecord(n_rows, n_rows, seed, max_rows, sampled=False))
    picks = sample_indices(n_rows, max_rows, seed)
    light = _concat([_read_light(path) for path in paths])
    check_predictions(light, "predictions")
    sample = _concat(_read_rows(paths, picks))
    # Arrow's allocator keeps the read buffers for reuse; at a million rows that is ~200 MB nobody reuses
    pa.default_memory_pool().release_unused()
    return Batch(light, sample, SampleRecord(n_rows, len(sample), seed, max_rows, sampled=True))


def sample_frame(frame: pd.DataFrame, max_rows: int, seed: int) -> Batch:
    """:func:`read_batch` for a batch already in memory."""
    n_rows = len(frame)
    if n_rows <= max_rows:
        return Batch(frame, frame, SampleRecord(n_rows, n_rows, seed, max_rows, sampled=False))
    sample = frame.iloc[sample_indices(n_rows, max_rows, seed)].reset_index(drop=True)
    return Batch(frame, sample, SampleRecord(n_rows, len(sample), seed, max_rows, sampled=True))


def read_sample(paths: Sequence[Path], max_rows: int, seed: int) -> pd.DataFrame:
    """Every column of the rows :func:`read_batch` samples (the whole batch when it is small enough).

    ``paths`` are files or folders of part files (a Ray engine's partition), as :func:`discover_predictions` takes.
    """
    paths = discover_predictions(paths)
    n_rows = sum(_row_count(path) for path in paths)
    if n_rows <= max_rows:
        return read_predictions(paths)
    return _concat(_read_rows(paths, sample_indices(n_rows, max_rows, seed)))


def sample_indices(n_rows: int, size: int, seed: int) -> np.ndarray:
    """``size`` distinct row numbers of ``n_rows``, drawn with ``seed``, in increasing order."""
    if size < 1:
        raise InputError(f"the monitoring sample needs at least one row, got {size}")
    picks = np.random.default_rng(seed).choice(n_rows, size=min(size, n_rows), replace=False, shuffle=False)
    return np.sort(picks)


def _row_count(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"cannot read {path} as Parquet: {' '.join(str(error).split())[:200]}") from None


def _read_light(path: Path) -> pd.DataFrame:
    """The light columns of every row of ``path``.

    Strings are read dictionary-encoded and become plain object columns
    whose repeated values (status, model, run, the commonest errors) share
    one Python string: a million rows take about 100 MB.
    """
    try:
        schema = pq.read_schema(path)
        columns = light_columns(schema.names)
        strings = [c for c in columns if pa.types.is_string(schema.field(c).type)]
        frame = pq.read_table(path, columns=columns, read_dictionary=strings).to_pandas()
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"cannot read {path} as Parquet: {' '.join(str(error).split())[:200]}") from None
    for column in strings:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def _read_rows(paths: Sequence[Path], picks: np.ndarray) -> list[pd.DataFrame]:
    """Every column of the rows numbered ``picks`` (increasing, over the files in order), batch by batch."""
    frames: list[pd.DataFrame] = []
    offset = 0
    for path in paths:
        parquet = pq.ParquetFile(path)
        taken: list[pa.RecordBatch] = []
        for batch in parquet.iter_batches(batch_size=_READ_BATCH_ROWS):
            start, stop = np.searchsorted(picks, [offset, offset + batch.num_rows])
            if stop > start:
                taken.append(batch.take(pa.array(picks[start:stop] - offset)))
            offset += batch.num_rows
        if taken:
            frames.append(pa.Table.from_batches(taken).to_pandas())
    return frames


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
