"""Time `pneumo-batch monitor` on a 10,000-row predictions file (target: under 30 s on 2 cores).

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz .venv/bin/python benchmarks/monitor_benchmark.py

Inputs, made in a temp dir (never in the repository): a predictions file of
``--rows`` rows drawn from PneumoniaMNIST's test and validation images (half
of them with a changed acquisition, so the report has drift to draw), and a
model directory holding ``metadata.json`` and the training split's
``reference_profile.parquet``. The scores come from ``--model DIR`` (or the
shipped default model) when one exists, else from a fixed logistic function
of two pixel statistics (timing only).

Prints three figures:

- ``end to end``: ``pneumo-batch monitor`` in a fresh process (start-up and
  the Evidently import included), writing the HTML, JSON, figures, summary
  and a workspace snapshot;
- ``library``: :func:`build_monitoring_report` in this process, Evidently
  already imported;
- ``import``: the Evidently import alone, the fixed cost of every run.

Timings on a shared machine are noisy; read them as indicative.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pneumo_batch.dataset import load_pneumoniamnist
from pneumo_batch.errors import ModelError
from pneumo_batch.model import load_model, write_metadata
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.monitoring.reference import reference_profile_frame, write_predictions_parquet
from machine import cpu_description  # benchmarks/machine.py

SEED = 7


class _PixelLogistic:
    """Timing-only stand-in for a model: a fixed logistic function of the mean and centre brightness."""

    def predict(self, model_input: np.ndarray) -> np.ndarray:
        images = model_input[..., 0]
        centre = images[:, 8:20, 8:20].mean(axis=(1, 2))
        return (1 / (1 + np.exp(-(8 * (centre - images.mean(axis=(1, 2))) + 1)))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA)")
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: shipped, else a stand-in)")
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    print(cpu_description(), flush=True)

    dataset = load_pneumoniamnist(args.data)
    scorer, metadata = _scorer(args.model)
    thresholds = {name: float(point["threshold"]) for name, point in metadata["operating_points"].items()}

    rng = np.random.default_rng(SEED)
    pool_images = np.concatenate([dataset.test.images, dataset.val.images])
    pool_labels = np.concatenate([dataset.test.labels, dataset.val.labels])
    rows = rng.integers(0, len(pool_images), args.rows)
    images, labels = pool_images[rows].copy(), pool_labels[rows]
    changed = rng.random(args.rows) < 0.5
    images[changed] = np.rint(255.0 * (images[changed] / 255.0) ** 0.7).astype(np.uint8)

    with tempfile.TemporaryDirectory(prefix="monitor-benchmark-") as temporary:
        root = Path(temporary)
        model_dir = root / "model"
        model_dir.mkdir()
        write_metadata(model_dir, metadata)
        train = dataset.train
        reference = reference_profile_frame(
            train.images, train.labels, scorer.predict(pixels_to_model_input(train.images)), thresholds
        )
        write_predictions_parquet(reference, model_dir / "reference_profile.parquet", {"kind": "reference_profile"})
        batch = reference_profile_frame(
            images, labels, scorer.predict(pixels_to_model_input(images)), thresholds, model_version="benchmark"
        )
        batch["run_id"] = "benchmark"
        batch["img_width"], batch["img_height"], batch["img_aspect_ratio"] = 28, 28, 1.0
        batch["img_mode"], batch["img_format"] = "L", "PNG"
        predictions = root / "predictions.parquet"
        batch.to_parquet(predictions)

        command = [
            str(Path(sys.executable).with_name("pneumo-batch")),
            "monitor",
            str(predictions),
            "--out",
            str(root / "report"),
            "--model",
            str(model_dir),
            "--workspace",
            str(root / "workspace"),
        ]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        end_to_end = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"monitor failed ({result.returncode}): {result.stderr or result.stdout}")

        start = time.perf_counter()
        import evidently  # noqa: F401  (the fixed cost of each run)

        import_seconds = time.perf_counter() - start
        from pneumo_batch.monitoring import build_monitoring_report

        start = time.perf_counter()
        summary = build_monitoring_report(predictions, model_dir / "reference_profile.parquet", root / "again",
                                          model_metadata=metadata)
        library = time.perf_counter() - start

    print(f"rows: {args.rows:,} (reference {len(train):,}); verdict: {'; '.join(summary.alerts) or 'no alert'}")
    print(f"end to end (fresh process): {end_to_end:6.1f} s   target < 30 s")
    print(f"library (warm):             {library:6.1f} s")
    print(f"evidently import:           {import_seconds:6.1f} s")


def _scorer(model: Path | None):
    try:
        artifact = load_model(model)
        metadata = {key: value for key, value in artifact.metadata.items() if key != "format_version"}
        return artifact.scorer(), metadata
    except ModelError:
        stand_in = {
            "name": "pixel-logistic",
            "version": "benchmark",
            "default_variant": "none",
            "variants": {"none": {"file": "none.tflite", "sha256": "0" * 64}},
            "input": {"size": 28},
            "operating_points": {
                "screening": {"threshold": 0.5, "rule": "fixed (benchmark)"},
                "balanced": {"threshold": 0.7, "rule": "fixed (benchmark)"},
            },
        }
        return _PixelLogistic(), stand_in


if __name__ == "__main__":
    main()
