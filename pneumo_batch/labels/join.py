"""Late labels joined to the nights they belong to.

:func:`read_scored_history` reads what every night's partition under
``OUTPUT_ROOT/predictions/date=YYYY-MM-DD/`` scored (only the columns asked
for, so 365 nights of 1,000 films read in a moment), and
:func:`join_labels` gives each row the label that counts for its film: by
``image_id`` for reads keyed that way, by ``sop_instance_uid`` for the
others. A film scored on two nights gets its label on both. Reads whose id
matches no scored row are counted (:class:`Coverage`), never listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.labels.store import ID, ID_KIND, LABEL, latest_labels, read_reads

NIGHT = "night"
"""The night a row was scored (the partition's date)."""
LABELLED = "labelled"
"""Bool: the row's film has a read in the store."""
RELABELLED = "relabelled"
"""Bool: the film's reads disagree (its label was corrected at least once)."""
SOP_INSTANCE_UID = "sop_instance_uid"
PARTITION_PREFIX = "date="


@dataclass(frozen=True)
class Coverage:
    n_films_read: int
    """Films with at least one read in the store."""
    n_matched: int
    """Of those, films that match a scored row of this output root."""
    n_unmatched: int
    """Films read that match no scored row (another root's ids, or not scored yet). Never listed."""
    n_relabelled: int
    """Films whose label changed at least once (the latest read counts)."""


def night_partitions(output_root: Path) -> dict[Date, list[Path]]:
    """Each night's Parquet files (a local run's ``predictions.parquet`` or a Ray run's part files), by date."""
    folder = Path(output_root) / "predictions"
    nights: dict[Date, list[Path]] = {}
    if not folder.is_dir():
        return nights
    for partition in sorted(folder.glob(f"{PARTITION_PREFIX}*")):
        try:
            night = Date.fromisoformat(partition.name[len(PARTITION_PREFIX):])
        except ValueError:
            continue
        files = sorted(p for p in partition.glob("*.parquet") if not p.name.startswith((".", "_")))
        if files:
            nights[night] = files
    return nights


def read_scored_history(output_root: Path, columns: list[str]) -> pd.DataFrame:
    """The named columns of every night's rows (those a file lacks are null), plus ``night``.

    Read and joined in Arrow, converted to pandas once: 365 nights of 1,000 films take about a second.
    """
    tables: list[pa.Table] = []
    nights: list[tuple[Date, int]] = []
    for night, files in night_partitions(output_root).items():
        for path in files:
            try:
                schema = pq.read_schema(path)
                present = [c for c in columns if c in schema.names]
                table = pq.read_table(path, columns=present, read_dictionary=_repeated_strings(schema, present))
            except (OSError, pa.ArrowInvalid) as error:
                raise InputError(f"cannot read the predictions of {night}: {' '.join(str(error).split())[:150]}") from None
            for missing in (c for c in columns if c not in table.column_names):
                table = table.append_column(missing, pa.nulls(table.num_rows))
            tables.append(table.select(columns))
            nights.append((night, table.num_rows))
    if not tables:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in [*columns, NIGHT]})
    # split_blocks and self_destruct: no second, consolidated copy of a million rows while converting
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas(split_blocks=True, self_destruct=True)
    del tables
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):  # the dictionary-read strings, plain again
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    # one date object per night, not per row
    frame[NIGHT] = np.repeat(np.array([night for night, _ in nights], dtype=object), [n for _, n in nights])
    # Arrow's allocator keeps the read buffers for reuse; at a million rows that is ~200 MB nobody reuses
    pa.default_memory_pool().release_unused()
    return frame


def _repeated_strings(schema: pa.Schema, columns: list[str]) -> list[str]:
    """String columns other than the ids: read dictionary-encoded, so a million rows of one model or one
    manufacturer hold each value once while being read."""
    return [c for c in columns if pa.types.is_string(schema.field(c).type) and c not in (cols.IMAGE_ID, SOP_INSTANCE_UID)]


def join_labels(scored: pd.DataFrame, output_root: Path) -> tuple[pd.DataFrame, Coverage]:
    """``scored`` with ``label`` (nullable Int8: the latest read), ``labelled`` and ``relabelled``."""
    latest = latest_labels(read_reads(output_root))
    # a new frame (the caller's is never modified); no .copy(): a million rows would be held three times
    joined = scored.drop(columns=[c for c in (LABEL, LABELLED, RELABELLED) if c in scored])
    label = pd.Series(pd.NA, index=joined.index, dtype="Int8")
    relabelled = np.zeros(len(joined), dtype=bool)
    matched = 0
    for kind in (cols.IMAGE_ID, SOP_INSTANCE_UID):
        reads = latest[latest[ID_KIND] == kind]
        if reads.empty or kind not in joined:
            continue
        keys = joined[kind].to_numpy(dtype=object)
        positions = pd.Index(reads[ID].to_numpy(dtype=object)).get_indexer(keys)
        hit = (positions >= 0) & label.isna().to_numpy()
        label[hit] = reads[LABEL].to_numpy(dtype=np.int8)[positions[hit]]
        relabelled[hit] = reads["n_changes"].to_numpy(dtype=np.int64)[positions[hit]] > 0
        matched += len(np.unique(positions[positions >= 0]))
    joined[LABEL] = label
    joined[LABELLED] = label.notna().to_numpy()
    joined[RELABELLED] = relabelled
    coverage = Coverage(
        n_films_read=len(latest),
        n_matched=matched,
        n_unmatched=len(latest) - matched,
        n_relabelled=int((latest["n_changes"] > 0).sum()) if len(latest) else 0,
    )
    return joined, coverage


def in_scope_rows(frame: pd.DataFrame) -> pd.Series:
    """Bool: scored (``ok``) and in scope (a file without ``in_scope`` predates the gate: every ok row counts)."""
    ok = (frame[cols.STATUS] == cols.STATUS_OK).to_numpy(dtype=bool)
    if cols.IN_SCOPE not in frame:
        return pd.Series(ok, index=frame.index)
    in_scope = frame[cols.IN_SCOPE].astype("boolean").fillna(True).to_numpy(dtype=bool)
    return pd.Series(ok & in_scope, index=frame.index)


def night_coverage(output_root: Path) -> tuple[pd.DataFrame, Coverage]:
    """Per night: in-scope films scored, labelled, the coverage, pneumonias and normals read, relabelled films."""
    scored = read_scored_history(output_root, [cols.IMAGE_ID, SOP_INSTANCE_UID, cols.STATUS, cols.IN_SCOPE])
    joined, coverage = join_labels(scored, output_root)
    joined = joined[in_scope_rows(joined).to_numpy()]
    label = joined[LABEL]
    table = pd.DataFrame({
        NIGHT: joined[NIGHT],
        "in_scope": 1,
        "labelled": joined[LABELLED].astype(int),
        "pneumonia": (label == 1).fillna(False).astype(int),
        "normal": (label == 0).fillna(False).astype(int),
        "relabelled": joined[RELABELLED].astype(int),
    }).groupby(NIGHT, sort=True).sum().reset_index()
    table["coverage"] = table["labelled"] / table["in_scope"]
    return table, coverage
