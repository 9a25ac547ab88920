"""A rerun from a PACS takes the rows its output already holds instead of fetching and scoring them again.

A PACS instance is named for good by its SOP Instance UID, so an ``ok`` row
of an earlier output (``--out`` itself, or the night's published partition)
stands for that instance as long as it was scored the same way: the same
pneumo-batch version, model file and version, thresholds, scorer, scope
rules and scope gate (:func:`row_identity`, which every predictions file
carries in its metadata) and the same PACS. Then only the instances the
output lacks are fetched and scored, and :class:`ReusedRows` merges the
earlier rows back in SOP Instance UID order, so every instance of the
current query is in the new output exactly once (the new file replaces the
old one atomically, like any output).

What is never reused: rows scored any other way (a new model version
scores the whole night again), ``error`` rows (a retrieve that failed may
work now), rows of instances the query no longer returns (deleted from the
PACS: they are dropped), and anything from a folder or a manifest, whose
rows are files that may change under the same name.
"""

from __future__ import annotations

import bisect
import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pneumo_batch import __version__
from pneumo_batch import predictions as columns
from pneumo_batch.errors import InputError
from pneumo_batch.inputs import InputSource
from pneumo_batch.model import ModelArtifact
from pneumo_batch.scope.header import HeaderScopeRules, describe_header_rules
from pneumo_batch.scoring.metadata import ROW_IDENTITY_KEY, read_run_metadata
from pneumo_batch.scoring.rows import RowContext
from pneumo_batch.scoring.types import ScorerFactory, TfliteScorerFactory


def describe_scorer(factory: ScorerFactory) -> str:
    """A stable name for a scorer factory: the ``.tflite`` file's sha256, or the fake's qualified name."""
    if isinstance(factory, TfliteScorerFactory):
        return f"tflite:{factory.sha256}:{factory.output}"
    if isinstance(factory, functools.partial):
        factory = factory.func
    named = factory if hasattr(factory, "__qualname__") else type(factory)
    return f"{named.__module__}.{named.__qualname__}"


def row_identity(
    artifact: ModelArtifact, context: RowContext, scorer_factory: ScorerFactory | None, header_rules: HeaderScopeRules
) -> dict[str, Any]:
    """What decides a row's values besides its image; rows are reused only between runs that share it."""
    gate = (artifact.scope_gate_entry or {}).get("sha256") if context.scope_gate is not None else None
    return {
        "pneumo_batch": __version__,
        "model_sha256": context.model_sha256,
        "model_version": context.model_version,
        "operating_points": dict(context.operating_points),
        "scorer": "model" if scorer_factory is None else describe_scorer(scorer_factory),
        "scope_rules": describe_header_rules(header_rules),
        "scope_gate": gate,
        "columns": context.schema.names,
    }


@dataclass
class ReusedRows:
    """An earlier output's ``ok`` rows for instances of this query, sorted by ``image_id``, merged into new chunks."""

    table: pa.Table
    """Without key-value metadata, in the output's columns."""
    _ids: list[str]
    _next: int = 0

    @classmethod
    def none(cls, schema: pa.Schema) -> ReusedRows:
        return cls(schema.remove_metadata().empty_table(), [])

    @classmethod
    def from_output(
        cls, previous: Path | None, source: InputSource, identity: dict[str, Any], schema: pa.Schema
    ) -> ReusedRows:
        """The rows of ``previous`` (a predictions file or a Ray folder) this run may take; none if it may take none."""
        schema = schema.remove_metadata()
        if source.pacs is None or previous is None or not previous.exists():
            return cls.none(schema)
        if not _same_run(previous, source, identity):
            return cls.none(schema)
        table = _read(previous, schema)
        if table is None:  # damaged: score the night again rather than trust part of it
            return cls.none(schema)
        wanted = pa.array([ref.sop_uid for ref in source.pacs.refs], pa.string())
        ids = table.column(columns.IMAGE_ID)
        table = table.filter(pc.and_(pc.equal(table.column(columns.STATUS), columns.STATUS_OK), pc.is_in(ids, wanted)))
        table = table.take(pc.sort_indices(table, [(columns.IMAGE_ID, "ascending")]))
        ids = table.column(columns.IMAGE_ID).to_pylist()
        first = [row for row, uid in enumerate(ids) if row == 0 or uid != ids[row - 1]]  # each instance once
        return cls(table.take(first), [ids[row] for row in first])

    @property
    def count(self) -> int:
        return len(self._ids)

    def remaining(self, source: InputSource) -> InputSource:
        """``source`` without the instances these rows stand for: what this run fetches and scores."""
        if not self._ids or source.pacs is None:
            return source
        taken = set(self._ids)
        refs = tuple(ref for ref in source.pacs.refs if ref.sop_uid not in taken)
        return replace(source, num_rows=len(refs), pacs=replace(source.pacs, refs=refs))

    def merge(self, chunk: pa.Table) -> pa.Table:
        """``chunk`` (new rows, after every earlier chunk) with the reused rows that sort before its last id."""
        if not chunk.num_rows or self._next == len(self._ids):
            return chunk
        end = bisect.bisect_right(self._ids, chunk.column(columns.IMAGE_ID)[-1].as_py(), lo=self._next)
        return self._with(chunk, end)

    def rest(self) -> pa.Table:
        """The reused rows after the last new chunk."""
        return self._with(self.table.slice(0, 0), len(self._ids))

    def _with(self, chunk: pa.Table, end: int) -> pa.Table:
        taken, self._next = self.table.slice(self._next, end - self._next), end
        if not taken.num_rows:
            return chunk
        merged = pa.concat_tables([taken, chunk.replace_schema_metadata(None)])
        return merged.take(pc.sort_indices(merged, [(columns.IMAGE_ID, "ascending")]))


def _same_run(previous: Path, source: InputSource, identity: dict[str, Any]) -> bool:
    try:
        description = read_run_metadata(previous)
    except (InputError, OSError, ValueError, pa.ArrowException):
        return False  # not ours to reuse; whether it may be replaced is the output check's business
    same_pacs = description.get("run", {}).get("input") == str(source.location)
    return same_pacs and description.get(ROW_IDENTITY_KEY) == json.loads(json.dumps(identity))


def _read(previous: Path, schema: pa.Schema) -> pa.Table | None:
    files = sorted(previous.glob("part-*.parquet")) if previous.is_dir() else [previous]
    try:
        return pa.concat_tables([pq.read_table(file, columns=schema.names) for file in files]).cast(schema)
    except (OSError, ValueError, pa.ArrowException):
        return None
