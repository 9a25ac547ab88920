"""Labelled site films from a folder, a manifest or an output root, and their scores under a model.

Three sources, one table: ``image_id``, ``label`` (1 = pneumonia), ``study``
(the StudyInstanceUID where there is one, for splits that keep a study on
one side), and what scoring gives (``p_pneumonia``, ``in_scope``, the header
columns). A folder has ``NORMAL/`` and ``PNEUMONIA/`` subfolders (any case);
a manifest (Parquet or CSV) has ``path`` or ``image`` and a ``label`` column
(0/1 or normal/pneumonia); an output root has a label store (``labels
add``) and the predictions it labels. Films are scored with the one
preprocessing, whatever their format (full-size JPEG, DICOM, 28 px PNG).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.model import ModelArtifact

#: The fewest labelled pneumonias and normal films a validation or an adaptation accepts.
MIN_PER_CLASS = 20
_CLASS_FOLDERS = {"normal": 0, "pneumonia": 1}
_LABEL_WORDS = {"0": 0, "1": 1, "normal": 0, "pneumonia": 1}


@dataclass(frozen=True)
class LabelledFilms:
    """Films with labels, not yet scored: ``image_id``, ``path`` or ``image``, ``label``, optional ``study``."""

    table: pd.DataFrame

    @property
    def positives(self) -> int:
        return int((self.table[cols.LABEL] == 1).sum())

    @property
    def negatives(self) -> int:
        return int((self.table[cols.LABEL] == 0).sum())


def read_labelled(source: Path) -> LabelledFilms:
    """The labelled films of a class-folder tree or a manifest. Raises :class:`InputError` on unusable input."""
    if source.is_dir():
        table = _class_folders(source)
    elif source.suffix.lower() in (".parquet", ".csv"):
        table = _manifest(source)
    else:
        raise InputError(f"{source}: labelled films are a folder with NORMAL/ and PNEUMONIA/, or a .parquet/.csv manifest")
    films = LabelledFilms(table.reset_index(drop=True))
    check_classes(films.positives, films.negatives, str(source))
    return films


def check_classes(positives: int, negatives: int, where: str) -> None:
    if positives == 0 or negatives == 0:
        raise InputError(f"{where}: labelled films of one class only ({positives} pneumonia, {negatives} normal)")
    if min(positives, negatives) < MIN_PER_CLASS:
        raise InputError(
            f"{where}: {positives} pneumonia and {negatives} normal films; at least {MIN_PER_CLASS} of each are needed"
        )


def score_labelled(films: LabelledFilms, model: ModelArtifact, *, workers: int | None = None) -> pd.DataFrame:
    """``films`` scored by ``model``: one row per film, label and study kept, films that cannot be read included
    (status ``error``): the callers count them and leave them out of every figure."""
    from pneumo_batch.scoring import score_batch

    with tempfile.TemporaryDirectory(prefix="pneumo-site-") as work:
        manifest = Path(work) / "manifest.parquet"
        pq.write_table(pa.Table.from_pandas(films.table, preserve_index=False), manifest)
        out = Path(work) / "scored.parquet"
        score_batch(manifest, out, model=model, workers=workers)
        scored = pq.read_table(out).to_pandas()
    scored[cols.LABEL] = scored[cols.LABEL].astype(np.int8)
    return scored


def is_output_root(source: Path) -> bool:
    return source.is_dir() and (source / "labels").is_dir() and (source / "predictions").is_dir()


def scored_from_output_root(root: Path, model: ModelArtifact) -> pd.DataFrame:
    """The labelled rows of a nightly output root (its label store joined to its predictions), as scored.

    Only rows that ``model`` scored count: a film scored by another model
    would need its image again, which an output root does not keep.
    """
    from pneumo_batch.labels import join_labels, read_scored_history
    from pneumo_batch.monitoring.subgroups import SUBGROUP_SOURCE_COLUMNS

    points = [point.name for point in model.operating_points]
    columns = [cols.IMAGE_ID, "sop_instance_uid", "study_instance_uid", cols.STATUS, cols.IN_SCOPE, cols.SCORE,
               cols.MODEL_SHA256, *SUBGROUP_SOURCE_COLUMNS, *(cols.prediction_column(p) for p in points)]
    joined, _ = join_labels(read_scored_history(root, list(dict.fromkeys(columns))), root)
    mine = joined[cols.MODEL_SHA256] == model.variant_sha256()
    if not mine.any() and len(joined):
        raise InputError(f"{root}: no night was scored by {model.name} {model.version}; "
                         "give its films as a folder or a manifest to score them with it")
    scored = joined[mine & joined["labelled"] & (joined[cols.STATUS] == cols.STATUS_OK)].reset_index(drop=True)
    scored[cols.LABEL] = scored[cols.LABEL].astype(np.int8)
    check_classes(int((scored[cols.LABEL] == 1).sum()), int((scored[cols.LABEL] == 0).sum()), str(root))
    return scored


def fingerprint(films: LabelledFilms) -> dict[str, object]:
    """What identifies the site data without naming a film: a hash of the sorted (content hash, label) pairs."""
    digests = sorted(f"{_content_hash(row)}:{int(row[cols.LABEL])}" for _, row in films.table.iterrows())
    return {
        "sha256": hashlib.sha256("\n".join(digests).encode()).hexdigest(),
        "films": len(digests),
        "pneumonia": films.positives,
        "normal": films.negatives,
    }


def _content_hash(row: pd.Series) -> str:
    return hashlib.sha256(_content(row)).hexdigest()


def _content(row: pd.Series) -> bytes:
    return bytes(row["image"]) if "image" in row and row["image"] is not None else Path(str(row[cols.PATH])).read_bytes()


def model_pixels(films: LabelledFilms) -> np.ndarray:
    """uint8 (N, 28, 28): each film through the one preprocessing scoring uses (full-size JPEG, DICOM, PNG).

    For films that scoring already read: it keeps no pixels, so they are
    decoded again here, with the same decoders.
    """
    from pneumo_batch.imaging.decoders import decode

    suffixes = films.table[cols.PATH].map(lambda p: Path(str(p)).suffix) if cols.PATH in films.table else None
    return np.stack([decode(_content(row), "" if suffixes is None else suffixes[index], with_thumbnail=False).pixels
                     for index, row in films.table.iterrows()])


def _class_folders(root: Path) -> pd.DataFrame:
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _CLASS_FOLDERS.get(folder.name.lower())
        if label is None:
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rows.append({cols.IMAGE_ID: str(path.relative_to(root)), cols.PATH: str(path.resolve()), cols.LABEL: label})
    if not rows:
        raise InputError(f"{root}: no films under NORMAL/ or PNEUMONIA/")
    return pd.DataFrame(rows).astype({cols.LABEL: np.int8})


def _manifest(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"labelled films not found: {path}")
    table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, dtype=str)
    if cols.LABEL not in table:
        raise InputError(f"{path.name}: no label column (label: 0/1 or normal/pneumonia)")
    if cols.PATH not in table and "image" not in table:
        raise InputError(f"{path.name}: a manifest needs a path or an image column")
    labels = table[cols.LABEL].map(lambda value: _LABEL_WORDS.get(str(value).strip().lower().removesuffix(".0")))
    if labels.isna().any():
        raise InputError(f"{path.name}: {int(labels.isna().sum())} rows have a label outside 0, 1, normal, pneumonia")
    frame = table.copy()
    frame[cols.LABEL] = labels.astype(np.int8)
    if cols.PATH in frame:
        frame[cols.PATH] = [str((path.parent / p).resolve()) if not Path(p).is_absolute() else p for p in frame[cols.PATH]]
    if cols.IMAGE_ID not in frame:
        frame[cols.IMAGE_ID] = frame[cols.PATH] if cols.PATH in frame else [f"row-{i}" for i in range(len(frame))]
    return frame
