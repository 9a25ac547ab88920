"""The behaviour-preservation record: what scoring decides for real images, without their pixels.

:func:`golden_rows` scores the shared full-size JPEGs, the first 200
PneumoniaMNIST test images (exported as PNG) and a few broken files with
the shipped model, and keeps only ids, statuses, reasons (with the scratch
folder replaced by ``<dir>``), scores rounded to 6 decimals, scope verdicts and decisions.
``python tests/golden_rows.py`` rewrites ``tests/golden/shipped_model.csv``
(do that only for an intended change of behaviour, and say so in the commit);
``tests/test_golden.py`` checks the current code reproduces it exactly.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

GOLDEN_FILE = Path(__file__).parent / "golden" / "shipped_model.csv"
#: Files no scanner would send, to pin the reasons of error rows.
BROKEN_FILES = {"empty.png": b"", "not_an_image.jpg": b"this is text, not a JPEG\n", "truncated.png": b"\x89PNG\r\n\x1a\n\0\0"}


def golden_rows(dataset_path: Path, model_dir: Path, scratch: Path) -> pd.DataFrame:
    """The golden columns of three scoring runs (JPEGs, exported PNGs, broken files), one frame."""
    from pneumo_batch.dataset import read_npz
    from pneumo_batch.export import export_split
    from pneumo_batch.scoring import score_batch

    broken = scratch / "broken"
    broken.mkdir()
    for name, content in BROKEN_FILES.items():
        (broken / name).write_bytes(content)
    manifest = export_split(read_npz(dataset_path), "test", scratch / "exported", limit=200)
    inputs = {"xray_jpegs": dataset_path.parent / "xray_jpegs", "pneumoniamnist_test": manifest, "broken": broken}
    frames = []
    for name, source in inputs.items():
        out = scratch / f"{name}.parquet"
        score_batch(source, out, model=model_dir, workers=0)
        frame = pd.read_parquet(out)
        keep = ["image_id", "status", "error", "p_pneumonia", "in_scope", "scope_reason"]
        keep += sorted(c for c in frame if c.startswith("pred_"))
        frame = frame[keep].assign(input=name)
        frame["error"] = frame["error"].str.replace(str(source), "<dir>", regex=False)
        frame["p_pneumonia"] = frame["p_pneumonia"].round(6)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[["input", *keep]]


def read_golden() -> pd.DataFrame:
    return pd.read_csv(GOLDEN_FILE, keep_default_na=False, na_values=[""], dtype={"error": "string"})


def as_csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as it reads back from the CSV, so the comparison is exact and dtype-blind."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.csv"
        frame.to_csv(path, index=False, float_format="%.6f")
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"error": "string"})


def main() -> None:
    from pneumo_batch.dataset import locate_dataset
    from pneumo_batch.model import default_model_dir

    with tempfile.TemporaryDirectory() as folder:
        frame = golden_rows(locate_dataset(), default_model_dir(), Path(folder))
    GOLDEN_FILE.parent.mkdir(exist_ok=True)
    frame.to_csv(GOLDEN_FILE, index=False, float_format="%.6f")
    print(f"wrote {len(frame)} rows to {GOLDEN_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
