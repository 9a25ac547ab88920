"""The run description every predictions file carries in its Parquet key-value metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pneumo_batch import __version__
from pneumo_batch import predictions as columns
from pneumo_batch.errors import InputError
from pneumo_batch.inputs import InputSource
from pneumo_batch.model import ModelArtifact


def run_metadata(
    artifact: ModelArtifact,
    source: InputSource,
    *,
    run_id: str,
    started_at: str,
    root: str | None,
    batch_size: int,
    workers: int,
    run_extra: dict[str, Any] | None = None,
) -> dict[bytes, bytes]:
    """The Parquet key-value metadata of a predictions file: thresholds, model and run settings.

    ``run_extra`` adds entries to the ``run`` section (the Ray engine names itself there).
    """
    points = artifact.operating_points
    description = {
        "run_id": run_id,
        "started_at": started_at,
        "pneumo_batch_version": __version__,
        "thresholds": {point.name: point.threshold for point in points},
        "operating_points": {point.name: {"threshold": point.threshold, "rule": point.rule} for point in points},
        "model": {
            "name": artifact.name,
            "version": artifact.version,
            "variant": artifact.default_variant,
            "sha256": artifact.variant_sha256(),
            "directory": str(artifact.directory),
            "metadata": artifact.metadata,
        },
        "run": {
            "input": str(source.location),
            "input_kind": source.kind,
            "input_rows": source.num_rows,
            "root": root,
            "batch_size": batch_size,
            "workers": workers,
            **(run_extra or {}),
        },
    }
    return {columns.PARQUET_METADATA_KEY: json.dumps(description, default=str).encode()}


def read_run_metadata(path: str | Path) -> dict[str, Any]:
    """The run description a predictions file carries under :data:`~pneumo_batch.predictions.PARQUET_METADATA_KEY`."""
    metadata = pq.read_schema(path).metadata or {}
    if columns.PARQUET_METADATA_KEY not in metadata:
        raise InputError(f"{path}: not a pneumo-batch predictions file (no {columns.PARQUET_METADATA_KEY.decode()} metadata)")
    return dict(json.loads(metadata[columns.PARQUET_METADATA_KEY]))
