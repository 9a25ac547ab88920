"""The label store: radiologists' reads, kept append-only under ``OUTPUT_ROOT/labels/``.

Reads come back days after a night was scored. :func:`add_labels` takes a CSV
or Parquet file with

- an id: ``image_id`` (as in the predictions) or ``sop_instance_uid`` (a DICOM
  film's SOP Instance UID); when both columns exist, ``image_id`` is used;
- ``label``: ``0``/``1`` or ``normal``/``pneumonia`` (any case);
- optionally ``read_at`` (when the film was read; a time without a zone is UTC)
  and ``source`` (who or what read it, e.g. ``radiology-report``).

Each added file becomes one Parquet file ``labels/reads-<hash>.parquet``
(written through :mod:`pneumo_batch.storage`), named by the hash of its
normalised reads: adding the same reads again, as CSV or Parquet, changes
nothing. Nothing is ever rewritten or deleted, so a relabel (a corrected
report) is history: the latest read of a film counts (by ``read_at``, else
by when it was added, then by file order), and the films whose label
changed are counted (:func:`latest_labels`).

Bad input is one :class:`~pneumo_batch.errors.InputError` and nothing is
written: no id or label column, an empty id, a label outside the allowed
set, an unreadable ``read_at``. Ids are identifiers: no message ever names one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pneumo_batch import storage
from pneumo_batch.errors import InputError

LABELS_DIR = "labels"
FILE_PREFIX = "reads-"

ID_COLUMNS = ("image_id", "sop_instance_uid")
"""Id columns a label file may carry, in order of preference."""
LABEL = "label"
READ_AT = "read_at"
SOURCE = "source"
LABEL_VALUES = {"0": 0, "1": 1, "normal": 0, "pneumonia": 1}

#: Columns of a stored reads file.
ID_KIND = "id_kind"
ID = "id"
ADDED_AT = "added_at"
BATCH = "batch"
ROW = "row"
READ_SCHEMA = pa.schema(
    [
        pa.field(ID_KIND, pa.string(), nullable=False),
        pa.field(ID, pa.string(), nullable=False),
        pa.field(LABEL, pa.int8(), nullable=False),
        pa.field(READ_AT, pa.timestamp("us", tz="UTC")),
        pa.field(SOURCE, pa.string()),
        pa.field(ADDED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(BATCH, pa.string(), nullable=False),
        pa.field(ROW, pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class AddedLabels:
    """What :func:`add_labels` did."""

    batch: str
    path: Path
    n_reads: int
    already_present: bool
    """The same reads were added before: nothing was written."""
    n_new_films: int
    """Films that had no read before."""
    n_changed: int
    """Films whose counting label changed with this file (corrected reads)."""
    n_confirmed: int
    """Films read again whose counting label did not change (the same label, or an older read)."""


def labels_folder(output_root: Path) -> Path:
    return Path(output_root) / LABELS_DIR


def read_label_file(path: Path) -> pd.DataFrame:
    """A label file's reads, normalised: ``id_kind``, ``id``, ``label`` (0/1), ``read_at``, ``source``."""
    raw = _read_table(path)
    kind = next((name for name in ID_COLUMNS if name in raw.columns), None)
    if kind is None:
        raise InputError(f"{path.name}: no id column; give image_id or sop_instance_uid")
    if LABEL not in raw.columns:
        raise InputError(f"{path.name}: no label column (label: 0/1 or normal/pneumonia)")
    ids = raw[kind].astype("string").str.strip()
    if ids.isna().any() or (ids == "").any():
        raise InputError(f"{path.name}: {int((ids.isna() | (ids == '')).sum())} rows have an empty {kind}")
    labels = raw[LABEL].map(_label_value)
    bad = int(labels.isna().sum())
    if bad:
        raise InputError(f"{path.name}: {bad} rows have a label outside 0, 1, normal, pneumonia")
    frame = pd.DataFrame({ID_KIND: kind, ID: ids.astype(str), LABEL: labels.astype(np.int8)})
    frame[READ_AT] = _read_times(raw, path)
    frame[SOURCE] = raw[SOURCE].astype("string").str.strip() if SOURCE in raw.columns else pd.NA
    frame[SOURCE] = frame[SOURCE].astype("string")
    return frame.reset_index(drop=True)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"label file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise InputError(f"cannot read {path.name}: {' '.join(str(error).split())[:120]}") from None
    raise InputError(f"{path.name}: a label file is .csv or .parquet")


def _label_value(value: object) -> float:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        return np.nan
    if isinstance(value, (int, np.integer, float, np.floating)):
        return float(value) if value in (0, 1) else np.nan
    found = LABEL_VALUES.get(str(value).strip().lower())
    return np.nan if found is None else float(found)


def _read_times(raw: pd.DataFrame, path: Path) -> pd.Series:
    if READ_AT not in raw.columns:
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    given = raw[READ_AT]
    parsed = pd.to_datetime(given, utc=True, errors="coerce", format="mixed")
    bad = int((parsed.isna() & given.notna()).sum())
    if bad:
        raise InputError(f"{path.name}: {bad} rows have a read_at that is not a date or time")
    return parsed.astype("datetime64[us, UTC]")


def reads_batch(reads: pd.DataFrame) -> str:
    """The content hash that names a file's reads (the same reads give the same name, whatever the format)."""
    digest = hashlib.sha256()
    for kind, identifier, label, read_at, source in zip(
        reads[ID_KIND], reads[ID], reads[LABEL], reads[READ_AT], reads[SOURCE]
    ):
        when = "" if pd.isna(read_at) else read_at.isoformat()
        who = "" if pd.isna(source) else str(source)
        digest.update(f"{kind}\x1f{identifier}\x1f{int(label)}\x1f{when}\x1f{who}\x1e".encode())
    return digest.hexdigest()[:20]


def add_labels(path: Path, output_root: Path, *, now: datetime | None = None) -> AddedLabels:
    """Store the reads of the label file ``path`` under ``OUTPUT_ROOT/labels/`` (see the module docstring)."""
    reads = read_label_file(Path(path))
    if reads.empty:
        raise InputError(f"{Path(path).name}: no rows")
    batch = reads_batch(reads)
    folder = labels_folder(output_root)
    target = folder / f"{FILE_PREFIX}{batch}.parquet"
    before = latest_labels(read_reads(output_root))
    if target.exists():
        return AddedLabels(batch, target, len(reads), True, 0, 0, 0)
    added_at = pd.Timestamp(now or datetime.now(timezone.utc)).tz_convert("UTC")
    stored = reads.assign(**{ADDED_AT: added_at, BATCH: batch, ROW: np.arange(len(reads), dtype=np.int64)})
    stored[ADDED_AT] = stored[ADDED_AT].astype("datetime64[us, UTC]")
    storage.make_folder(folder)
    storage.write_parquet(target, pa.Table.from_pandas(stored[READ_SCHEMA.names], schema=READ_SCHEMA, preserve_index=False))
    after = latest_labels(read_reads(output_root))
    merged = after.merge(before[[ID_KIND, ID, LABEL]], on=[ID_KIND, ID], how="left", suffixes=("", "_before"))
    had = merged[f"{LABEL}_before"].notna()
    touched = merged.set_index([ID_KIND, ID]).index.isin(reads.set_index([ID_KIND, ID]).index)
    return AddedLabels(
        batch=batch,
        path=target,
        n_reads=len(reads),
        already_present=False,
        n_new_films=int((~had).sum()),
        n_changed=int((had & (merged[LABEL] != merged[f"{LABEL}_before"])).sum()),
        n_confirmed=int((had & touched & (merged[LABEL] == merged[f"{LABEL}_before"])).sum()),
    )


def label_files(output_root: Path) -> list[Path]:
    folder = labels_folder(output_root)
    return sorted(folder.glob(f"{FILE_PREFIX}*.parquet")) if folder.is_dir() else []


def labels_fingerprint(output_root: Path) -> str:
    """Changes whenever a reads file is added: the hash of the stored files' names."""
    return hashlib.sha256("\n".join(p.name for p in label_files(output_root)).encode()).hexdigest()[:20]


def read_reads(output_root: Path) -> pd.DataFrame:
    """Every stored read (the whole history), in no particular order."""
    files = label_files(output_root)
    if not files:
        return READ_SCHEMA.empty_table().to_pandas()
    try:
        table = pa.concat_tables([pq.read_table(f, schema=READ_SCHEMA) for f in files])
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"the label store {labels_folder(output_root)} is unreadable: {error}") from None
    return table.to_pandas()


def latest_labels(reads: pd.DataFrame) -> pd.DataFrame:
    """One row per film: the label that counts (its latest read), ``n_reads``, and ``n_changes`` along its reads."""
    columns = [ID_KIND, ID, LABEL, READ_AT, SOURCE, "n_reads", "n_changes"]
    if reads.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    ordered = reads.assign(_when=reads[READ_AT].fillna(reads[ADDED_AT]))
    ordered = ordered.sort_values([ID_KIND, ID, "_when", ADDED_AT, BATCH, ROW], kind="mergesort").reset_index(drop=True)
    same_film = (ordered[ID_KIND] == ordered[ID_KIND].shift()) & (ordered[ID] == ordered[ID].shift())
    ordered["n_changes"] = (same_film & (ordered[LABEL] != ordered[LABEL].shift())).astype(np.int64)
    grouped = ordered.groupby([ID_KIND, ID], sort=False)
    latest = grouped.tail(1).copy()
    latest["n_reads"] = grouped.size().to_numpy()
    latest["n_changes"] = grouped["n_changes"].sum().to_numpy()
    return latest[columns].reset_index(drop=True)
