"""The training reference profile: what the model's own training data looks like to monitoring.

A reference profile is a predictions file for images the model was trained
on: the same columns scoring writes (:mod:`pneumo_batch.predictions`), with
the per-image features of :func:`pneumo_batch.imaging.features.intensity_features`,
the model's scores and decisions, and the label. The file-level facts
(original width, height, mode, format) are null, since PneumoniaMNIST has no
originals. Training writes it next to the model as
``reference_profile.parquet``; ``pneumo-batch monitor`` compares each batch
with it.

:func:`reweighted_reference` resamples a labelled reference per class to a
night's estimated prevalence, so that the drift tests compare like with
like when only the share of sick children moved.

New features need no change here: every key :func:`intensity_features`
returns becomes a column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from pneumo_batch import predictions as cols
from pneumo_batch import storage
from pneumo_batch.errors import InputError
from pneumo_batch.imaging.dicom_header import HEADER_COLUMNS
from pneumo_batch.imaging.features import FILE_FEATURES, intensity_features
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.model import REFERENCE_PROFILE_FILE, ModelArtifact, load_model
from pneumo_batch.predictions import output_schema

#: ``run_id`` of every row of a reference profile.
REFERENCE_RUN_ID = "reference"

_FILE_FEATURE_DTYPES = {
    "img_width": "Int64",
    "img_height": "Int64",
    "img_aspect_ratio": "Float64",
    "img_mode": "string",
    "img_format": "string",
}


class SupportsPredict(Protocol):
    """Anything that maps the model's float input (N, 28, 28, 1) to probabilities (N,)."""

    def predict(self, model_input: np.ndarray) -> np.ndarray: ...


def write_reference_profile(
    model: ModelArtifact,
    images: np.ndarray,
    labels: np.ndarray,
    out_path: Path,
    *,
    scorer: SupportsPredict | None = None,
    image_ids: list[str] | None = None,
) -> Path:
    """Score ``images`` with ``model`` and write their reference profile to ``out_path`` (Parquet).

    ``images`` are PneumoniaMNIST pixels, ``uint8`` (N, 28, 28); ``labels``
    are 1 for pneumonia. ``scorer`` replaces ``model.scorer()`` (tests pass a
    fake). The file is written to a temporary name and renamed, so
    ``out_path`` never holds a partial profile.
    """
    scorer = scorer if scorer is not None else model.scorer()
    scores = np.asarray(scorer.predict(pixels_to_model_input(images)), dtype=np.float32)
    thresholds = {point.name: point.threshold for point in model.operating_points}
    frame = reference_profile_frame(
        images,
        labels,
        scores,
        thresholds,
        model_sha256=model.variant_sha256(),
        model_version=model.version,
        image_ids=image_ids,
    )
    description = {
        "kind": "reference_profile",
        "model_name": model.name,
        "model_version": model.version,
        "model_sha256": model.variant_sha256(),
        "rows": len(frame),
        "operating_points": thresholds,
    }
    schema = output_schema(list(thresholds), pa.schema([pa.field(cols.LABEL, pa.int8())]))
    return write_predictions_parquet(frame, out_path, description, schema=schema)


def reference_profile_frame(
    images: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    thresholds: Mapping[str, float],
    *,
    model_sha256: str | None = None,
    model_version: str | None = None,
    image_ids: list[str] | None = None,
    scored_at: datetime | None = None,
) -> pd.DataFrame:
    """The profile as a DataFrame with the predictions columns, from pixels, labels and scores.

    Pure function (no model): decisions are ``score >= threshold`` for each
    operating point in ``thresholds``.
    """
    count = len(images)
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise InputError(f"reference images must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    if len(labels) != count or len(scores) != count:
        raise InputError(f"{count} images but {len(labels)} labels and {len(scores)} scores")
    if image_ids is not None and len(image_ids) != count:
        raise InputError(f"{count} images but {len(image_ids)} image ids")
    if not thresholds:
        raise InputError("a reference profile needs at least one operating point")
    stamp = pd.Timestamp(scored_at or datetime.now(timezone.utc))
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    frame: dict[str, object] = {
        cols.IMAGE_ID: image_ids if image_ids is not None else [f"reference_{i:06d}" for i in range(count)],
        cols.PATH: pd.Series([None] * count, dtype="string"),
        cols.STATUS: cols.STATUS_OK,
        cols.ERROR: pd.Series([None] * count, dtype="string"),
        cols.SCORE: scores,
    }
    for name, threshold in thresholds.items():
        frame[cols.prediction_column(name)] = scores >= np.float32(threshold)
        frame[cols.threshold_column(name)] = float(threshold)
    frame.update(
        {
            cols.MODEL_SHA256: model_sha256,
            cols.MODEL_VERSION: model_version,
            cols.RUN_ID: REFERENCE_RUN_ID,
            cols.SCORED_AT: stamp,
        }
    )
    frame.update(intensity_features(images))
    for name in FILE_FEATURES:
        frame[name] = pd.Series([None] * count, dtype=_FILE_FEATURE_DTYPES.get(name, "string"))
    # Training images have no DICOM header, and are in scope by definition.
    for name in HEADER_COLUMNS:
        frame[name] = pd.Series([None] * count, dtype="Float64" if name == cols.PATIENT_AGE_YEARS else "string")
    frame[cols.IN_SCOPE] = True
    frame[cols.SCOPE_REASON] = pd.Series([None] * count, dtype="string")
    frame[cols.SCOPE_SCORE] = pd.Series([None] * count, dtype="Float64")
    frame[cols.REPORT] = pd.Series([None] * count, dtype="string")
    frame[cols.LABEL] = labels.astype(np.int8)
    return pd.DataFrame(frame)


def write_predictions_parquet(
    frame: pd.DataFrame,
    out_path: Path,
    description: Mapping[str, object],
    *,
    schema: pa.Schema | None = None,
) -> Path:
    """Write ``frame`` atomically, with ``description`` as the file's JSON key-value metadata.

    With ``schema`` (:func:`pneumo_batch.predictions.output_schema`)
    the columns get exactly the types and order that scoring writes.
    """
    out_path = Path(out_path)
    storage.make_folder(out_path.parent)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), cols.PARQUET_METADATA_KEY: json.dumps(description).encode()}
    table = table.replace_schema_metadata(metadata)
    return storage.write_parquet(out_path, table)


def resolve_reference(
    model: str | Path | None = None, reference: str | Path | None = None
) -> tuple[Path, dict[str, Any] | None]:
    """The reference to compare with and the model metadata to use.

    Without ``reference``, the model's (default: the shipped default model)
    ``reference_profile.parquet``. The metadata comes from ``model`` when a
    model is named or no reference is given; else it is ``None``.
    """
    if reference is not None and model is None:
        return Path(reference), None
    artifact = load_model(model, verify=False)
    if reference is not None:
        return Path(reference), artifact.metadata
    if not artifact.reference_profile_path.is_file():
        raise InputError(f"model {artifact.directory} has no {REFERENCE_PROFILE_FILE}; pass --reference FILE")
    return artifact.reference_profile_path, artifact.metadata


def reweighted_reference(
    reference: pd.DataFrame,
    prevalence: float,
    rng: np.random.Generator,
    *,
    label_column: str = cols.LABEL,
    size: int | None = None,
) -> pd.DataFrame:
    """The reference resampled per class to ``prevalence`` (weights w(y) = q(y) / p(y), applied by sampling).

    Rows are drawn without replacement, so the drift tests see no
    duplicates and their p-values stay honest; the default ``size`` is the
    largest the rarer class allows at that prevalence. ``reference`` must
    have labels (0/1 in ``label_column``); rows without one are dropped.
    """
    if label_column not in reference.columns:
        raise InputError(f"reference has no {label_column!r} column: reweighting to a prevalence needs labels")
    if not 0.0 <= prevalence <= 1.0 or not math.isfinite(prevalence):
        raise InputError(f"prevalence must lie in [0, 1], got {prevalence}")
    labels = pd.to_numeric(reference[label_column], errors="coerce")
    positives = np.flatnonzero(labels.to_numpy(dtype=np.float64, na_value=np.nan) == 1)
    negatives = np.flatnonzero(labels.to_numpy(dtype=np.float64, na_value=np.nan) == 0)
    largest = min(
        len(positives) / prevalence if prevalence > 0 else math.inf,
        len(negatives) / (1 - prevalence) if prevalence < 1 else math.inf,
    )
    total = int(min(largest, size if size is not None else largest))
    n_positive = int(round(total * prevalence))
    n_positive = min(n_positive, len(positives))
    n_negative = min(total - n_positive, len(negatives))
    if n_positive + n_negative == 0:
        raise InputError("reference has no labelled rows to reweight")
    picked = np.concatenate(
        (rng.choice(positives, n_positive, replace=False), rng.choice(negatives, n_negative, replace=False))
    )
    return reference.iloc[np.sort(picked)].reset_index(drop=True)
