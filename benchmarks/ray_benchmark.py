"""Throughput of `pneumo-batch score --engine ray` next to the local engine, and Ray's fixed start-up cost.

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz .venv/bin/python benchmarks/ray_benchmark.py

Inputs, made in a temp dir (never in the repository):

- the 40 full-size JPEGs of ``xray_jpegs/`` (beside the data file), hard-linked
  ``--copies`` times into one directory tree (default 4,000 files);
- a manifest of ``--rows`` rows (default 100,000) cycling over the test split
  written as 28x28 PNGs;
- a one-image manifest, for the fixed cost.

Every run is a fresh ``pneumo-batch score`` process, timed end to end as a
user sees it (start-up, listing, decoding, model, writing, and for Ray its
start and shutdown), with ``--workers`` (default 2) for both engines: worker
processes for the local engine, the CPUs of the local Ray instance for Ray.
Ray's fixed cost is its one-image run's wall time minus the local engine's;
"Ray, net of start-up" divides the rows by the wall time minus that cost.
The model is ``--model DIR``, else the shipped default, else an untrained
float32 stand-in of the lesson CNN (timing only; needs the train extra).
Timings on a shared machine are noisy: read them as indicative.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from pneumo_batch.dataset import load_pneumoniamnist
from pneumo_batch.export import export_split
from pneumo_batch.errors import ModelError
from pneumo_batch.model import default_model_dir, file_sha256, write_metadata
from score_benchmark import _cycle_manifest, _replicate  # the same inputs as the local benchmark
from machine import cpu_description  # benchmarks/machine.py

ENGINES = ("local", "ray")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA)")
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped default)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes / local Ray CPUs")
    parser.add_argument("--copies", type=int, default=100, help="copies of the 40 JPEGs (default 100: 4,000 files)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the 28x28 PNG manifest")
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()

    dataset = load_pneumoniamnist(args.data)
    print(f"{cpu_description()}; {args.workers} workers / Ray CPUs; "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="ray-benchmark-") as scratch_name:
        scratch = Path(scratch_name)
        model = args.model or _default_or_stand_in(scratch)
        manifest = export_split(dataset, "test", scratch / "pngs")
        paths = pq.read_table(manifest).column("path").to_pylist()
        inputs = {
            "1 image": _cycle_manifest(scratch / "pngs" / "one.parquet", paths, 1),
            f"{args.copies * 40:,} JPEGs": _replicate(dataset.path.parent / "xray_jpegs", scratch / "jpegs", args.copies),
            f"{args.rows:,} PNGs": _cycle_manifest(scratch / "pngs" / "rows.parquet", paths, args.rows),
        }
        print(f"model {model}", flush=True)
        results: dict[tuple[str, str], tuple[int, float]] = {}
        for name, source in inputs.items():
            for engine in ENGINES:
                out = scratch / f"out-{engine}-{len(results)}{'' if engine == 'ray' else '.parquet'}"
                rows, seconds = _score(source, out, model, engine, args)
                results[name, engine] = rows, seconds
                print(f"  {name:<14} {engine:<6} {rows:>8,} rows {seconds:>8.2f} s {rows / seconds:>9,.0f} images/s", flush=True)

    fixed = results["1 image", "ray"][1] - results["1 image", "local"][1]
    print(f"\nRay's fixed cost (one-image run, ray minus local): {fixed:.1f} s "
          f"(local one-image run {results['1 image', 'local'][1]:.1f} s, ray {results['1 image', 'ray'][1]:.1f} s)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end\n")
    print(f"{'input':<14}{'local img/s':>13}{'ray img/s':>11}{'ray/local':>11}{'ray net of start-up':>21}")
    for name in list(inputs)[1:]:
        rows, local = results[name, "local"]
        _, ray = results[name, "ray"]
        print(f"{name:<14}{rows / local:>13,.0f}{rows / ray:>11,.0f}{local / ray:>11.2f}"
              f"{rows / max(ray - fixed, 1e-9):>16,.0f} img/s")


def _score(source: Path, out: Path, model: Path, engine: str, args: argparse.Namespace) -> tuple[int, float]:
    command = [str(Path(sys.executable).with_name("pneumo-batch")), "score", str(source), "--out", str(out),
               "--model", str(model), "--workers", str(args.workers), "--batch-size", str(args.batch_size),
               "--engine", engine]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    summary = [line for line in finished.stderr.splitlines() if line.startswith("scored ")]
    if finished.returncode not in (0, 3) or not summary:
        raise SystemExit(f"{' '.join(command)} failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    rows = int(re.match(r"scored ([\d,]+) rows", summary[-1]).group(1).replace(",", ""))
    return rows, seconds


def _default_or_stand_in(scratch: Path) -> Path:
    try:
        model = default_model_dir()
        if model.is_dir():
            return model
    except ModelError:
        pass
    import tensorflow as tf

    from pneumo_batch.training.architectures import build

    model = scratch / "stand-in"
    model.mkdir()
    (model / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(build("lesson_cnn", 32)).convert())
    write_metadata(model, {
        "name": "lesson-untrained-stand-in", "version": "benchmark", "default_variant": "float32",
        "variants": {"float32": {"file": "model.tflite", "sha256": file_sha256(model / "model.tflite")}},
        "operating_points": {"screening": {"threshold": 0.3, "rule": "benchmark"},
                             "balanced": {"threshold": 0.5, "rule": "benchmark"}},
        "input": {"size": 28},
        "output": "logit",
    })
    return model


if __name__ == "__main__":
    main()
