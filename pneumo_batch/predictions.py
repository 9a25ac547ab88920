"""The columns of a predictions file: the contract between scoring and monitoring.

Scoring writes one row per input row with these columns (plus the manifest's
pass-through columns); monitoring and the training reference profile read
them; :func:`output_schema` gives their order and types. Per operating point ``NAME`` in the model's metadata there is a
boolean ``pred_NAME`` (null on error) and a float ``threshold_NAME``.

DICOM inputs fill the header columns (:data:`HEADER_COLUMNS`, null for other
formats). Every row says whether it is in the model's scope (:data:`SCOPE_COLUMNS`,
null on error rows): an out-of-scope row keeps ``status`` ok and its score,
for audit, but gets no decision (every ``pred_NAME`` is null).
"""

from __future__ import annotations

import pyarrow as pa

from pneumo_batch.errors import InputError
from pneumo_batch.imaging.dicom_header import HEADER_COLUMNS
from pneumo_batch.imaging.features import FILE_FEATURES, NUMERIC_IMAGE_FEATURES

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

PATIENT_AGE_YEARS = "patient_age_years"
"""The one numeric header column (float64); the other header columns are strings."""

IN_SCOPE = "in_scope"
"""Bool: the row may get a decision (null on error rows)."""
SCOPE_REASON = "scope_reason"
"""Why a row is out of scope, naming the rule ("header: modality CT"); null when in scope."""
SCOPE_SCORE = "scope_score"
"""Float64 from the pixel scope gate, higher = less like the training images; null without a gate."""
SCOPE_COLUMNS: tuple[str, ...] = (IN_SCOPE, SCOPE_REASON, SCOPE_SCORE)
REPORT = "report"
"""What became of the film's screening report in its PACS (``--send-results``): ``stored`` (or ``stored; left
empty: KEYWORD (VR) malformed``), ``already in the PACS``, or ``not built: ...`` / ``not sent: ...`` with the
reason; null when no report was asked for or due (not a PACS run, error rows, out-of-scope films)."""

#: Key of the Parquet key-value metadata entry holding the run's JSON description.
PARQUET_METADATA_KEY = b"pneumo_batch"


def prediction_column(operating_point: str) -> str:
    return f"{PREDICTION_PREFIX}{operating_point}"


def threshold_column(operating_point: str) -> str:
    return f"{THRESHOLD_PREFIX}{operating_point}"


def output_schema(operating_points: list[str], passthrough: pa.Schema) -> pa.Schema:
    """The columns of a predictions file, in order, for these operating points and pass-through columns."""
    fields = [
        pa.field(IMAGE_ID, pa.string()),
        pa.field(PATH, pa.string()),
        pa.field(STATUS, pa.string(), nullable=False),
        pa.field(ERROR, pa.string()),
        pa.field(SCORE, pa.float32()),
        *(pa.field(prediction_column(name), pa.bool_()) for name in operating_points),
        *(pa.field(threshold_column(name), pa.float64()) for name in operating_points),
        pa.field(MODEL_SHA256, pa.string()),
        pa.field(MODEL_VERSION, pa.string()),
        pa.field(RUN_ID, pa.string()),
        pa.field(SCORED_AT, pa.timestamp("us", tz="UTC")),
        *(pa.field(name, pa.float32()) for name in NUMERIC_IMAGE_FEATURES),
        pa.field("img_width", pa.int32()),
        pa.field("img_height", pa.int32()),
        pa.field("img_aspect_ratio", pa.float32()),
        pa.field("img_mode", pa.string()),
        pa.field("img_format", pa.string()),
        *(pa.field(name, pa.float64() if name == PATIENT_AGE_YEARS else pa.string()) for name in HEADER_COLUMNS),
        pa.field(IN_SCOPE, pa.bool_()),
        pa.field(SCOPE_REASON, pa.string()),
        pa.field(SCOPE_SCORE, pa.float64()),
        pa.field(REPORT, pa.string()),
    ]
    taken = {field.name for field in fields}
    clashes = [name for name in passthrough.names if name in taken]
    if clashes:
        raise InputError(
            f"manifest columns {', '.join(clashes)} clash with output columns of the same name; rename or drop them"
        )
    return pa.schema(fields + [field.remove_metadata() for field in passthrough])
