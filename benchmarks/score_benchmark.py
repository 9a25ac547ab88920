"""Time `pneumo-batch score` against the decode-only floor and a naive baseline; measure its peak memory.

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz .venv/bin/python benchmarks/score_benchmark.py

Inputs, made in a temp dir (never in the repository):

- the 240 full-size JPEGs of ``xray_jpegs/`` (beside the data file), hard-linked
  ``--copies`` times into one directory tree;
- the same films written as DICOM, explicit VR little endian (8-bit DX) and
  JPEG baseline, with pydicom by the test corpus builder (tests/dicom_corpus.py),
  hard-linked ``--dicom-copies`` times;
- a manifest of ``--rows`` rows over the test split written as 28x28 PNGs;
- for memory, a manifest of ``--memory-rows`` rows over the same PNGs.

For each input, in one run on the same files:

- floor: the cheapest decode + centre crop + resize to 28x28 of every file in
  ``--workers`` processes and nothing else (wall time of a fresh process,
  start-up included, like the other two); for DICOM, pneumo-batch's own
  :func:`~pneumo_batch.imaging.dicom.decode_dicom` (reduced-resolution where the
  codec allows it) and the crop and resize, as in dicom_benchmark.py;
- score: ``pneumo-batch score INPUT --out ... --workers N`` end to end (a fresh
  process: start-up, input discovery, decoding, model, features, writing);
- naive: what the lesson does, on a sample (``--naive-sample``) and reported
  per image: PIL full decode, crop and resize, then Keras ``model.predict``
  per batch of 64, in one process (TensorFlow import and model build excluded);
  not for DICOM (Pillow cannot open it).

The table's ``floor/score`` is the floor's wall time over score's (``CPU ratio``: the same for CPU time) (1.00:
scoring, gate included, costs no more than decoding alone; the goal is 0.8 or
more), all inputs measured in one run on the CPU printed above it.

Every process tree (floor and score) is sampled every 50 ms from /proc:
wall time, CPU time (user + system of the process and all its descendants;
less sensitive than wall time to other load on a shared machine) and peak
memory (the largest sum of resident set sizes of the process and its workers).

The model for score: ``--model DIR``, else the shipped default model, else an
untrained float32 ``.tflite`` stand-in (timing only) of ``--stand-in``: the
lesson CNN (default; a few tens of microseconds an image, near the model cost
the targets assume) or the default architecture (``pneumo_cnn``, about 60
MFLOP an image, which makes scoring model-bound). The naive baseline always
uses the lesson's Keras CNN. Timings
on a shared machine are noisy; run it when the cores are quiet and read the
figures as indicative.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pneumo_batch.training.architectures import build
from pneumo_batch.training.fit import PRESETS
from pneumo_batch.dataset import load_pneumoniamnist
from pneumo_batch.errors import ModelError
from pneumo_batch.export import export_split
from pneumo_batch.model import default_model_dir, file_sha256, write_metadata
from dicom_films import load_corpus_builder  # benchmarks/dicom_films.py
from machine import cpu_description  # benchmarks/machine.py

SIZE = 28
#: DICOM inputs timed, by the corpus builder that writes them (tests/dicom_corpus.py).
DICOM_SYNTAXES = {"DICOM explicit": "explicit_vr_dx", "DICOM JPEG": "jpeg_baseline"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA)")
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: shipped, else lesson CNN)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--copies", type=int, default=17, help="copies of the 240 JPEGs (default 17: 4,080 files)")
    parser.add_argument("--dicom-copies", type=int, default=4, help="copies of each film as DICOM (default 4: 960 files a syntax)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the 28x28 PNG manifest")
    parser.add_argument("--memory-rows", type=int, default=1_000_000, help="rows of the manifest for peak memory")
    parser.add_argument("--naive-sample", type=int, default=2_000, help="images the naive baseline is timed on")
    parser.add_argument("--stand-in", choices=["lesson", "default"], default="lesson",
                        help="architecture of the untrained stand-in model when no trained model exists")
    parser.add_argument("--only", choices=["jpegs", "dicom", "pngs", "memory"], nargs="*", default=None)
    args = parser.parse_args()
    parts = set(args.only or ["jpegs", "dicom", "pngs", "memory"])

    dataset = load_pneumoniamnist(args.data)
    jpegs = dataset.path.parent / "xray_jpegs"
    with tempfile.TemporaryDirectory(prefix="score-benchmark-") as scratch_name:
        scratch = Path(scratch_name)
        keras_model, model_dir = _models(scratch, args.model, args.stand_in)
        print(f"{cpu_description()}; model for score: {model_dir}; {args.workers} workers", flush=True)
        results = []
        if "jpegs" in parts:
            tree = _replicate(jpegs, scratch / "jpegs", args.copies)
            files = sorted(str(p) for p in tree.rglob("*.jpeg"))
            results.append(_compare("JPEGs", tree, files, model_dir, keras_model, scratch, args))
        if "dicom" in parts:
            for name, syntax in DICOM_SYNTAXES.items():
                tree = _dicom_tree(jpegs, scratch / syntax, syntax, args.dicom_copies)
                files = sorted(str(p) for p in tree.rglob("*.dcm"))
                results.append(_compare(name, tree, files, model_dir, None, scratch, args))
        if parts & {"pngs", "memory"}:
            manifest = export_split(dataset, "test", scratch / "pngs")
            paths = pq.read_table(manifest).column("path").to_pylist()
        if "pngs" in parts:
            big = _cycle_manifest(scratch / "pngs" / "rows.parquet", paths, args.rows)
            files = [str(scratch / "pngs" / p) for p in _cycled(paths, args.rows)]
            results.append(_compare("28x28 PNGs", big, files, model_dir, keras_model, scratch, args))
        print()
        print(f"{cpu_description()}; {args.workers} workers")
        print(f"{'input':<16}{'files':>8}{'floor s':>9}{'score s':>9}{'floor/score':>12}{'CPU ratio':>11}"
              f"{'naive ms/img':>14}{'score ms/img':>14}{'naive/score':>13}")
        for row in results:
            naive = row["naive_ms"]
            print(f"{row['name']:<16}{row['files']:>8,}{row['floor']:>9.2f}{row['score']:>9.2f}"
                  f"{row['floor'] / row['score']:>12.2f}{row['floor_cpu'] / row['score_cpu']:>11.2f}"
                  + (f"{naive:>14.3f}" if naive else f"{'-':>14}") + f"{row['score_ms']:>14.3f}"
                  + (f"{naive / row['score_ms']:>13.1f}" if naive else f"{'-':>13}"))
        if "memory" in parts:
            huge = _cycle_manifest(scratch / "pngs" / "huge.parquet", paths, args.memory_rows)
            seconds, _, peak = _score(huge, scratch / "huge-out.parquet", model_dir, args.workers)
            print(f"\npeak memory of score on {args.memory_rows:,} rows: {peak / 2**20:,.0f} MiB "
                  f"(score process + workers), {seconds:.1f} s, {args.memory_rows / seconds:,.0f} images/s")


def _compare(name, source, files, model_dir, keras_model, scratch, args) -> dict:
    print(f"\n{name}: {len(files):,} files", flush=True)
    floor, floor_cpu, _ = _floor(files, args.workers)
    print(f"  decode floor ({args.workers} processes): {floor:.2f} s wall, {floor_cpu:.2f} s CPU", flush=True)
    seconds, cpu, _ = _score(source, scratch / f"{name.replace(' ', '_')}.parquet", model_dir, args.workers)
    print(f"  pneumo-batch score:            {seconds:.2f} s wall, {cpu:.2f} s CPU "
          f"(the floor's wall time is {floor / seconds:.2f} of it, its CPU {floor_cpu / cpu:.2f})", flush=True)
    naive = 0.0
    if keras_model is not None:
        sample = files[:: max(1, len(files) // args.naive_sample)][: args.naive_sample]
        naive = _naive(sample, keras_model)
        print(f"  naive (PIL + Keras), sample of {len(sample):,}: {naive * 1e3:.3f} ms an image", flush=True)
    return {"name": name, "files": len(files), "floor": floor, "score": seconds, "floor_cpu": floor_cpu,
            "score_cpu": cpu, "naive_ms": naive * 1e3, "score_ms": seconds / len(files) * 1e3}


# --------------------------------------------------------------------------- the three contenders

_FLOOR_SCRIPT = """
import sys, time
from multiprocessing import get_context
import numpy as np
sys.path.insert(0, BENCHMARKS)  # spawned workers inherit it
from decode_floor import cheapest  # benchmarks/decode_floor.py

def chunk(paths):
    return np.stack([cheapest(p) for p in paths])

if __name__ == "__main__":
    paths = open(sys.argv[1]).read().split("\\n")
    workers = int(sys.argv[2])
    chunks = [paths[i:i + 128] for i in range(0, len(paths), 128)]
    with get_context("spawn").Pool(workers) as pool:
        total = sum(len(c) for c in pool.imap(chunk, chunks))
    assert total == len(paths)
"""


def _floor(files: list[str], workers: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "files.txt"
        listing.write_text("\n".join(files))
        script = Path(scratch) / "floor.py"
        script.write_text(_FLOOR_SCRIPT.replace("BENCHMARKS", repr(str(Path(__file__).resolve().parent))))
        seconds, cpu, peak, _ = _measured([sys.executable, str(script), str(listing), str(workers)])
        return seconds, cpu, peak


def _score(source: Path, out: Path, model_dir: Path, workers: int) -> tuple[float, float, int]:
    command = [str(Path(sys.executable).with_name("pneumo-batch")), "score", str(source), "--out", str(out),
               "--model", str(model_dir), "--workers", str(workers)]
    seconds, cpu, peak, stderr = _measured(command)
    print(f"  {stderr.strip().splitlines()[-1]}", flush=True)
    return seconds, cpu, peak


def _measured(command: list[str]) -> tuple[float, float, int, str]:
    """Run a command; return its wall time, the CPU time and peak RSS of its process tree, and its stderr."""
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stderr=errors, text=True)
        cpu: dict[int, float] = {}
        peak = 0
        while process.poll() is None:
            rss = 0
            for pid, (seconds, resident) in _tree(process.pid).items():
                cpu[pid] = seconds
                rss += resident
            peak = max(peak, rss)
            time.sleep(0.05)
        wall = time.perf_counter() - started
        errors.seek(0)
        stderr = errors.read()
    if process.returncode not in (0, 3):
        raise SystemExit(f"{command[0]} failed ({process.returncode}): {stderr}")
    return wall, sum(cpu.values()), peak, stderr


def _naive(files: list[str], keras_model) -> float:
    """The lesson's way: full decode with PIL, then Keras predict per batch of 64, one process."""
    started = time.perf_counter()
    for start in range(0, len(files), 64):
        batch = []
        for path in files[start : start + 64]:
            image = Image.open(path).convert("L")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            batch.append(np.asarray(image, dtype=np.float32) / 255.0)
        keras_model.predict(np.stack(batch)[..., np.newaxis], verbose=0)
    return (time.perf_counter() - started) / len(files)


# --------------------------------------------------------------------------- inputs and models


def _replicate(source: Path, target: Path, copies: int) -> Path:
    originals = sorted(source.rglob("*.jpeg"))
    for copy in range(copies):
        for original in originals:
            destination = target / f"copy{copy:03d}" / original.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(original, destination)
            except OSError:
                destination.write_bytes(original.read_bytes())
    return target


def _dicom_tree(jpegs: Path, target: Path, syntax: str, copies: int) -> Path:
    """The films of ``jpegs`` as DICOM files of one transfer syntax, hard-linked ``copies`` times under ``target``."""
    corpus = load_corpus_builder()
    built = [corpus.build(film, target / "built" / f"{i:03d}", syntax) for i, film in enumerate(sorted(jpegs.rglob("*.jpeg")))]
    for copy in range(copies):
        folder = target / "in" / f"copy{copy:03d}"
        folder.mkdir(parents=True)
        for index, path in enumerate(built):
            try:
                os.link(path, folder / f"{index:03d}.dcm")
            except OSError:
                (folder / f"{index:03d}.dcm").write_bytes(path.read_bytes())
    return target / "in"




def _cycled(paths: list[str], rows: int) -> list[str]:
    return [paths[i % len(paths)] for i in range(rows)]


def _cycle_manifest(path: Path, paths: list[str], rows: int) -> Path:
    writer = None
    for start in range(0, rows, 100_000):
        count = min(100_000, rows - start)
        index = np.arange(start, start + count)
        table = pa.table({
            "image_id": pa.array([f"row{i:07d}" for i in index]),
            "path": pa.array([paths[i % len(paths)] for i in index]),
            "site": pa.array(np.where(index % 2 == 0, "north", "south")),
        })
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path


def _models(scratch: Path, model: Path | None, stand_in_kind: str):
    import tensorflow as tf  # the naive baseline needs Keras; score itself never imports TensorFlow

    keras_model = build("lesson_cnn", 32)
    if model is None:
        try:
            model = default_model_dir()
            if not model.is_dir():
                raise ModelError("missing")
        except ModelError:
            model = scratch / "stand-in"
            model.mkdir()
            stand_in = keras_model if stand_in_kind == "lesson" else build(PRESETS["default"].architecture, PRESETS["default"].width)
            (model / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(stand_in).convert())
            write_metadata(model, {
                "name": f"{stand_in_kind}-untrained-stand-in", "version": "benchmark", "default_variant": "float32",
                "variants": {"float32": {"file": "model.tflite", "sha256": file_sha256(model / "model.tflite")}},
                "operating_points": {"screening": {"threshold": 0.3, "rule": "benchmark"},
                                     "balanced": {"threshold": 0.5, "rule": "benchmark"}},
                "input": {"size": SIZE},
                "output": "logit",
            })
    return keras_model, model


def _tree(pid: int) -> dict[int, tuple[float, int]]:
    """CPU seconds and resident bytes of a process and each of its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    usage: dict[int, tuple[float, int]] = {}
    page, ticks = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        usage[int(entry)] = ((int(fields[11]) + int(fields[12])) / ticks, int(fields[21]) * page)
    found, stack = {}, [pid]
    while stack:
        current = stack.pop()
        if current in usage:
            found[current] = usage[current]
        stack.extend(children.get(current, []))
    return found


if __name__ == "__main__":
    multiprocessing.freeze_support()
    main()
