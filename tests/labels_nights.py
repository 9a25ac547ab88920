"""Nights of real films for the label tests: the PneumoniaMNIST test split scored once by the shipped model.

The films are scored once per session (in this process) and their rows are
laid out as night partitions ``predictions/date=YYYY-MM-DD/predictions.parquet``,
as the nightly job leaves them.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pneumo_batch import storage

FIRST_NIGHT = date(2026, 11, 1)


def score_test_split(pneumoniamnist, shipped_model: Path, folder: Path) -> pd.DataFrame:
    """Every test film scored by the real model (rows as `score` writes them; the truth in ``label``)."""
    from pneumo_batch.export import export_split
    from pneumo_batch.scoring import score_batch

    manifest = export_split(pneumoniamnist, "test", folder)
    out = folder / "scored.parquet"
    score_batch(manifest, out, model=shipped_model, workers=0)
    return pq.read_table(out).to_pandas()


def write_nights(root: Path, scored: pd.DataFrame, sizes: list[int], first: date = FIRST_NIGHT) -> list[date]:
    """Consecutive nights of ``sizes`` films each (in the scored order), without the truth column."""
    nights = []
    start = 0
    table = pa.Table.from_pandas(scored.drop(columns=["label", "label_name", "split", "index"], errors="ignore"),
                                 preserve_index=False)
    for offset, size in enumerate(sizes):
        night = first + timedelta(days=offset)
        folder = root / "predictions" / f"date={night.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        storage.write_parquet(folder / "predictions.parquet", table.slice(start, size))
        nights.append(night)
        start += size
    return nights


def reads_csv(path: Path, ids: list[str], labels: list[int] | np.ndarray, *, words: bool = False,
              read_at: str | None = None, source: str | None = None) -> Path:
    frame = pd.DataFrame({"image_id": ids, "label": [("pneumonia" if v else "normal") if words else int(v) for v in labels]})
    if read_at is not None:
        frame["read_at"] = read_at
    if source is not None:
        frame["source"] = source
    frame.to_csv(path, index=False)
    return path


def write_resampled_nights(root: Path, scored: pd.DataFrame, n_nights: int, size: int, seed: int = 0,
                           first: date = FIRST_NIGHT) -> pd.DataFrame:
    """``n_nights`` nights of ``size`` films drawn from the scored test films, each film's id made unique to
    its night (a film sent again is a new film). Returns every written row with its true ``label``."""
    rng = np.random.default_rng(seed)
    written = []
    for offset in range(n_nights):
        night = first + timedelta(days=offset)
        rows = scored.iloc[rng.choice(len(scored), size, replace=False)].copy()
        rows["image_id"] = rows["image_id"] + f"@{night.isoformat()}"
        folder = root / "predictions" / f"date={night.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(rows.drop(columns=["label", "label_name", "split", "index"], errors="ignore"),
                                     preserve_index=False)
        storage.write_parquet(folder / "predictions.parquet", table)
        written.append(rows.assign(night=night))
    return pd.concat(written, ignore_index=True)
