"""Write a PneumoniaMNIST split out as PNG files plus a Parquet manifest.

This is how anyone tries scoring on real images in a minute, and how tests
and benchmarks make real image files without committing any.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from pneumo_batch import storage
from pneumo_batch.dataset import LABEL_NAMES, PneumoniaMNIST

MANIFEST_FILE = "manifest.parquet"


def export_split(
    dataset: PneumoniaMNIST,
    split: str,
    out_dir: Path,
    *,
    limit: int | None = None,
) -> Path:
    """Write ``split`` as ``out_dir/images/<split>_<index>.png`` and return the manifest's path.

    The manifest has ``image_id``, ``path`` (relative to ``out_dir``),
    ``label`` (1 = pneumonia), ``label_name``, ``split`` and ``index`` (the
    row in the dataset file).
    """
    data = dataset.split(split)
    count = len(data) if limit is None else min(limit, len(data))
    image_dir = out_dir / "images"
    storage.make_folder(image_dir)
    rows = []
    for index in range(count):
        name = f"{split}_{index:05d}"
        relative = Path("images") / f"{name}.png"
        Image.fromarray(data.images[index], mode="L").save(out_dir / relative)
        storage.make_private(out_dir / relative)
        label = int(data.labels[index])
        rows.append(
            {
                "image_id": name,
                "path": relative.as_posix(),
                "label": label,
                "label_name": LABEL_NAMES[label],
                "split": split,
                "index": index,
            }
        )
    manifest = out_dir / MANIFEST_FILE
    frame = pd.DataFrame(rows, columns=["image_id", "path", "label", "label_name", "split", "index"])
    frame = frame.astype({"label": np.int8, "index": np.int64})
    # Written last and atomically: a manifest exists only once every image it lists does.
    # (The images themselves are plain writes; an export cut short is simply run again.)
    storage.write_parquet(manifest, pa.Table.from_pandas(frame, preserve_index=False))
    return manifest
