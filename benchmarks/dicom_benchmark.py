"""Time DICOM per transfer syntax: ``score`` against the decode-only floor, and the floor against plain pydicom.

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz .venv/bin/python benchmarks/dicom_benchmark.py

Inputs, made in a temp dir (never in the repository): ``--films`` of the
full-size JPEGs of ``xray_jpegs/`` (beside the data file), each written in
every transfer syntax below by the test corpus builder (tests/dicom_corpus.py)
and hard-linked ``--copies`` times (plain pydicom is timed on one copy).

For each syntax, in one process and one run on the same files:

- score: :func:`pneumo_batch.scoring.score_batch` on the folder of those
  files, in this process (``workers=0``), with the shipped model: the folder
  walk, reading, the decoder registry, the model, the features, the scope
  rules and the Parquet file (process start-up excluded: it is the same for
  every syntax);
- floor: :func:`pneumo_batch.imaging.dicom.decode_dicom` (reduced-resolution
  decoding where the codec allows it, LUTs as a table) then
  :func:`pneumo_batch.imaging.raster.image_to_pixels` and nothing else: the
  floor under scoring. Goal: score at 0.8x of the floor or better;
- plain: ``pydicom.dcmread`` + ``ds.pixel_array`` at full resolution +
  ``apply_modality_lut`` + ``apply_voi_lut`` + min-max to 8 bit
  (MONOCHROME1 inverted) + the same ``image_to_pixels``.

Each is run ``--rounds`` times alternately and the fastest round is kept
(CPU time of this process; wall time beside it). A shared machine is noisy:
read the ratios, measured side by side, rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from pneumo_batch.dataset import load_pneumoniamnist
from pneumo_batch.imaging.dicom import decode_dicom
from pneumo_batch.imaging.raster import image_to_pixels
from pneumo_batch.model import default_model_dir, load_model
from pneumo_batch.scoring import score_batch
from dicom_films import load_corpus_builder  # benchmarks/dicom_films.py
from machine import cpu_description  # benchmarks/machine.py

#: Corpus builders timed, one per transfer syntax (see tests/dicom_corpus.py for the stored values).
SYNTAXES = {
    "explicit VR LE, 8-bit": "explicit_vr_dx",
    "implicit VR LE, 8-bit": "implicit_vr",
    "deflated, 12-bit": "deflated_12bit_window",
    "RLE lossless, 12-bit": "rle_12bit_window",
    "JPEG baseline, 8-bit": "jpeg_baseline",
    "JPEG lossless SV1, 12-bit": "jpeg_lossless_12bit_window",
    "JPEG-LS lossless, 12-bit": "jpeg_ls_12bit_window",
    "JPEG 2000 lossless, 8-bit": "jpeg2000_lossless_8bit",
    "JPEG 2000 lossless, 12-bit": "jpeg2000_lossless_12bit_window",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA)")
    parser.add_argument("--films", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--copies", type=int, default=8,
                        help="hard links of each file, so that a run's fixed cost (model load, writing) is spread "
                             "over as many files as a night has")
    args = parser.parse_args()

    corpus = load_corpus_builder()
    jpegs = sorted((load_pneumoniamnist(args.data).path.parent / "xray_jpegs").rglob("*.jpeg"))[: args.films]
    print(f"{cpu_description()}; Python {platform.python_version()}")
    artifact = load_model(default_model_dir())
    print(f"{len(jpegs)} films x {args.copies} copies, fastest of {args.rounds} rounds, one process; "
          f"model {artifact.name} {artifact.version}")
    print(f"{'transfer syntax':<28}{'score ms':>9}{'floor ms':>9}{'floor/score':>12}{'plain ms':>9}"
          f"{'plain/floor':>12}{'score wall':>11}{'floor wall':>11}  decoder")
    with tempfile.TemporaryDirectory(prefix="dicom-benchmark-") as scratch:
        for label, name in SYNTAXES.items():
            folder = Path(scratch) / name
            built = [_build(corpus, jpeg, folder / "in", name, i) for i, jpeg in enumerate(jpegs)]
            files = built + [_link(path, copy) for copy in range(1, args.copies) for path in built]
            outs = itertools.count()
            scored, scored_wall = _fastest(
                lambda: score_batch(folder / "in", folder / f"out-{next(outs)}.parquet", model=artifact, workers=0),
                args.rounds,
            )
            floor, floor_wall = _fastest(lambda: [ours_pixels(f) for f in files], args.rounds)
            plain, _ = _fastest(lambda: [plain_pixels(f) for f in built], args.rounds)
            plain *= len(files) / len(built)  # per file, like the others: each copy is the same film
            decoder = decode_dicom(files[0]).decoder
            per = 1e3 / len(files)
            # floor/score: score's speed as a share of the floor's (1.00: scoring costs no more than decoding alone).
            print(f"{label:<28}{scored * per:>9.1f}{floor * per:>9.1f}{floor / scored:>12.2f}{plain * per:>9.1f}"
                  f"{plain / floor:>12.2f}{scored_wall * per:>11.1f}{floor_wall * per:>11.1f}  {decoder}", flush=True)


def _build(corpus, jpeg: Path, folder: Path, name: str, index: int) -> Path:  # noqa: ANN001 - a module
    """One film in one syntax, as ``folder/NAME_III.dcm`` (one flat folder per syntax, for score)."""
    path = corpus.build(jpeg, folder, name)
    return path.rename(folder / f"{name}_{index:03d}.dcm")


def _link(path: Path, copy: int) -> Path:
    link = path.with_name(f"{path.stem}_copy{copy}{path.suffix}")
    os.link(path, link)
    return link


def ours_pixels(path: Path) -> np.ndarray:
    return image_to_pixels(decode_dicom(path).image)


def plain_pixels(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    low, high = values.min(), values.max()
    display = np.rint((values - low) * (255.0 / max(high - low, 1e-9))).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        display = 255 - display
    return image_to_pixels(Image.fromarray(display))


def _fastest(work: Callable[[], object], rounds: int) -> tuple[float, float]:
    best_cpu = best_wall = float("inf")
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        work()
        best_cpu, best_wall = min(best_cpu, time.process_time() - cpu), min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall






if __name__ == "__main__":
    main()
