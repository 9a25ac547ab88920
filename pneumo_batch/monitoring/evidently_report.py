"""The Evidently report: the frames Evidently sees, the report run, and the verdicts read back from its tests.

Evidently is imported inside the functions that need it: scoring never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pneumo_batch import predictions as cols
from pneumo_batch.monitoring.drift import categorical_method, numeric_method
from pneumo_batch.monitoring.summary import MonitoringRules

if TYPE_CHECKING:
    from evidently.core.report import Snapshot


def evaluation_frames(
    ok: pd.DataFrame,
    ref_ok: pd.DataFrame,
    thresholds: Mapping[str, float],
    drift_columns: tuple[list[str], list[str]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The columns Evidently sees. Reference decisions are re-derived at the batch's thresholds."""
    numeric, categorical = drift_columns
    frames = []
    for frame, is_reference in ((ok, False), (ref_ok, True)):
        out = pd.DataFrame(index=frame.index)
        for column in numeric:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
        for column in categorical:
            out[column] = frame[column].astype("string").astype(object)
        scores = pd.to_numeric(frame[cols.SCORE], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for name, threshold in thresholds.items():
            column = cols.prediction_column(name)
            if not is_reference and column in frame:
                flagged = frame[column].astype("boolean")
            else:
                flagged = pd.Series(np.where(np.isnan(scores), np.nan, scores >= threshold), index=frame.index)
                flagged = flagged.astype("boolean")
            out[column] = flagged.map({True: "flagged", False: "not flagged"}).astype(object)
        if cols.LABEL in frame:
            label = pd.to_numeric(frame[cols.LABEL], errors="coerce")
            out[cols.LABEL] = label.map({1: "pneumonia", 0: "normal"}).astype(object)
        frames.append(out)
    return frames[0], frames[1]


def run_evidently(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    drift_columns: tuple[list[str], list[str]],
    balance_columns: list[str],
    drift_alpha: float,
    balance_alpha: float,
    rules: MonitoringRules,
    *,
    timestamp: datetime,
    metadata: dict[str, str],
) -> Snapshot:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric, categorical = drift_columns
    drift_method = {c: numeric_method(drift_alpha) for c in numeric}
    drift_method.update({c: categorical_method(drift_alpha) for c in categorical})
    drift_threshold = {c: rules.numeric_effect for c in numeric}
    drift_threshold.update({c: rules.categorical_effect for c in categorical})
    balance_method = {c: categorical_method(balance_alpha) for c in balance_columns}
    balance_threshold = {c: rules.categorical_effect for c in balance_columns}

    drift_all = numeric + categorical
    items = [
        # drift_share below 1/m: the data set counts as drifted when any one column drifted
        DataDriftPreset(
            columns=columns, per_column_method=method, per_column_threshold=threshold, drift_share=0.5 / len(columns)
        )
        for columns, method, threshold in (
            (drift_all, drift_method, drift_threshold),
            (balance_columns, balance_method, balance_threshold),
        )
        if columns
    ]
    used = drift_all + balance_columns
    definition = DataDefinition(
        numerical_columns=numeric,
        categorical_columns=[c for c in used if c not in numeric],
    )
    report = Report(items, include_tests=True, metadata=metadata, tags=["pneumo-batch", "monitor"])
    # Evidently correlates the numeric columns with np.corrcoef, which divides
    # by zero for a constant column (every image 28 px wide, say): a normal
    # batch, not an error. The drift methods handle constant columns themselves.
    with np.errstate(divide="ignore", invalid="ignore"):
        return report.run(
            Dataset.from_pandas(current[used], data_definition=definition),
            Dataset.from_pandas(reference[used], data_definition=definition),
            timestamp=timestamp,
        )


def drifted_by_column(snapshot: Snapshot) -> dict[str, bool]:
    """Each column's verdict, read from the report's per-column drift tests (``FAIL`` = drifted)."""
    verdicts: dict[str, bool] = {}
    for test in snapshot.dict()["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift") and "column" in params:
            verdicts[params["column"]] = str(test.get("status", "")).upper().endswith("FAIL")
    return verdicts


def batch_time(batch: pd.DataFrame) -> datetime:
    """The latest ``scored_at`` of the batch (so a backfill lands on its own date), else now."""
    if cols.SCORED_AT in batch:
        stamps = pd.to_datetime(batch[cols.SCORED_AT], errors="coerce", utc=True).dropna()
        if len(stamps):
            return stamps.max().to_pydatetime().replace(tzinfo=None)
    return datetime.now()


def snapshot_metadata(batch: pd.DataFrame, ok: pd.DataFrame, errors: pd.DataFrame) -> dict[str, str]:
    metadata = {"n_rows": str(len(batch)), "n_scored": str(len(ok)), "n_errors": str(len(errors))}
    for column in (cols.RUN_ID, cols.MODEL_VERSION, cols.MODEL_SHA256):
        if column in batch:
            values = sorted({str(v) for v in batch[column].dropna().unique()})
            if values:
                metadata[column] = ",".join(values)[:500]
    return metadata
