"""Reading what monitoring compares: predictions files (or folders of them) and a reference."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError


def discover_predictions(paths: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of Parquet files.

    A folder contributes every ``*.parquet`` file directly inside it, sorted
    by name. Raises :class:`InputError` for a missing path or an empty result.
    """
    if not paths:
        raise InputError("no predictions given")
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.parquet") if p.is_file() and not p.name.startswith("."))
            if not files:
                raise InputError(f"no .parquet files in folder {path}")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"predictions not found: {path}")
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def read_predictions(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Read and concatenate predictions files (see :func:`discover_predictions`)."""
    frames = [_read_parquet(path) for path in discover_predictions(paths)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    check_predictions(frame, "predictions")
    return frame


def read_run_descriptions(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The run description each predictions file carries (its Parquet metadata); files without one are skipped."""
    descriptions = []
    for path in paths:
        try:
            metadata = pq.read_schema(path).metadata or {}
            raw = metadata.get(cols.PARQUET_METADATA_KEY)
            description = json.loads(raw) if raw else None
        except (OSError, ValueError):
            continue  # read_predictions has already said what is wrong with an unreadable file
        if isinstance(description, dict):
            descriptions.append(description)
    return descriptions


def read_reference(source: pd.DataFrame | str | Path) -> pd.DataFrame:
    """The reference as a DataFrame: a training profile or predictions file, or a frame as is."""
    frame = source if isinstance(source, pd.DataFrame) else _read_parquet(Path(source))
    check_predictions(frame, "reference")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"predictions not found: {path}")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path} as Parquet: {' '.join(str(error).split())[:200]}") from None


def check_predictions(frame: pd.DataFrame, what: str) -> None:
    missing = [name for name in (cols.STATUS, cols.SCORE) if name not in frame.columns]
    if missing:
        raise InputError(f"{what} lack column(s) {', '.join(missing)}; is this a pneumo-batch predictions file?")
