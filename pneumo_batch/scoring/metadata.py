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
from pneumo_batch.scope.header import DEFAULT_HEADER_RULES, HeaderScopeRules, describe_header_rules

#: The run description's section on the scope rules in use (``header``: the DICOM header rules, as a rules file holds them).
SCOPE_RULES_SECTION = "scope_rules"
#: The run description's section on the pixel scope gate; ``false_flag_rate`` in it is what monitoring tests against.
SCOPE_GATE_SECTION = "scope_gate"
#: The run description's entry saying how its rows were scored (:func:`pneumo_batch.scoring.reuse.row_identity`).
ROW_IDENTITY_KEY = "row_identity"


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
    scope_gate_applied: bool = False,
    header_rules: HeaderScopeRules = DEFAULT_HEADER_RULES,
    row_identity: dict[str, Any] | None = None,
) -> dict[bytes, bytes]:
    """The Parquet key-value metadata of a predictions file: thresholds, model, scope gate and run settings.

    ``run_extra`` adds entries to the ``run`` section (the Ray engine names
    itself there). ``scope_gate_applied``: whether the rows were judged by
    the model's pixel scope gate (not when the caller replaced the model's
    scorer: a fake gives no features), see :func:`scope_gate_description`.
    ``row_identity``: how the rows were scored, so a rerun knows which it may reuse.
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
        SCOPE_GATE_SECTION: scope_gate_description(artifact, applied=scope_gate_applied),
        SCOPE_RULES_SECTION: {"header": describe_header_rules(header_rules)},
        "run": {
            "input": str(source.location),
            "input_kind": source.kind,
            "input_rows": source.num_rows,
            "root": root,
            "batch_size": batch_size,
            "workers": workers,
            **(run_extra or {}),
        },
        ROW_IDENTITY_KEY: row_identity,
    }
    return {columns.PARQUET_METADATA_KEY: json.dumps(description, default=str).encode()}


def scope_gate_description(artifact: ModelArtifact, *, applied: bool = True) -> dict[str, Any]:
    """The run's ``scope_gate`` section: whether the pixel gate judged the images, and its validated figures.

    ``false_flag_rate`` is the share of in-distribution images the gate is
    known to flag (monitoring tests the run's out-of-scope share against it);
    null when no gate ran, and then every decoded image is in scope by pixels.
    """
    entry = artifact.scope_gate_entry
    if entry is None or not applied:
        note = "the model directory has none" if entry is None else "not applied in this run (the model's scorer was replaced)"
        return {"applied": False, "note": f"no scope gate: {note}; every decoded image is in scope by pixels",
                "false_flag_rate": None}
    return {
        "applied": True,
        "file": entry["file"],
        "sha256": entry["sha256"],
        "false_flag_rate": entry["false_flag_rate"],
        "false_flag_rate_basis": entry["false_flag_rate_basis"],
        "validation": entry["validation"],
        "method": entry["method"],
    }


def read_run_metadata(path: str | Path) -> dict[str, Any]:
    """The run description a predictions file (or a Ray engine's folder) carries under
    :data:`~pneumo_batch.predictions.PARQUET_METADATA_KEY`."""
    if Path(path).is_dir():  # every part of a Ray folder carries the same
        path = min(Path(path).glob("part-*.parquet"), default=Path(path) / "part-00000000.parquet")
    metadata = pq.read_schema(path).metadata or {}
    if columns.PARQUET_METADATA_KEY not in metadata:
        raise InputError(f"{path}: not a pneumo-batch predictions file (no {columns.PARQUET_METADATA_KEY.decode()} metadata)")
    return dict(json.loads(metadata[columns.PARQUET_METADATA_KEY]))
