"""The columns of a predictions file: the contract between scoring and monitoring.

Scoring writes one row per input row with these columns (plus the manifest's
pass-through columns); monitoring and the training reference profile read
them. Per operating point ``NAME`` in the model's metadata there is a
boolean ``pred_NAME`` (null on error) and a float ``threshold_NAME``.
"""

from __future__ import annotations

from pneumo_batch.features import FILE_FEATURES, NUMERIC_IMAGE_FEATURES

IMAGE_ID = "image_id"
PATH = "path"
STATUS = "status"
ERROR = "error"
SCORE = "p_pneumonia"
MODEL_SHA256 = "model_sha256"
MODEL_VERSION = "model_version"
RUN_ID = "run_id"
SCORED_AT = "scored_at"
LABEL = "label"
"""Optional ground truth carried through from a manifest (1 = pneumonia)."""

STATUS_OK = "ok"
STATUS_ERROR = "error"

PREDICTION_PREFIX = "pred_"
THRESHOLD_PREFIX = "threshold_"

FEATURE_COLUMNS: tuple[str, ...] = NUMERIC_IMAGE_FEATURES + FILE_FEATURES

#: Key of the Parquet key-value metadata entry holding the run's JSON description.
PARQUET_METADATA_KEY = b"pneumo_batch"


def prediction_column(operating_point: str) -> str:
    return f"{PREDICTION_PREFIX}{operating_point}"


def threshold_column(operating_point: str) -> str:
    return f"{THRESHOLD_PREFIX}{operating_point}"
