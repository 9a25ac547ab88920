"""Train the lesson CNN and the default architecture in one run; print their test figures side by side.

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz .venv/bin/python benchmarks/train_benchmark.py

Both models go through the full pipeline (quantization, LiteRT scoring,
validation-chosen operating points); figures are for the deployed variant
on the official test split. Takes about 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pneumo_batch.dataset import load_pneumoniamnist
from pneumo_batch.training import PRESETS, train_and_package
from machine import cpu_description  # benchmarks/machine.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA)")
    parser.add_argument("--presets", nargs="+", default=["lesson", "default"], choices=sorted(PRESETS))
    args = parser.parse_args()
    print(cpu_description(), flush=True)
    dataset = load_pneumoniamnist(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for preset in args.presets:
            started = time.perf_counter()
            artifact = train_and_package(dataset, PRESETS[preset], Path(scratch) / preset, name=preset)
            wall = time.perf_counter() - started
            meta = artifact.metadata
            test = meta["metrics"]["test"]
            screening, balanced = test["operating_points"]["screening"], test["operating_points"]["balanced"]
            rows.append(
                (
                    preset,
                    meta["default_variant"],
                    f"{meta['metrics']['keras_test_auc']:.4f}",
                    f"{test['auc']['estimate']:.4f} [{test['auc']['low']:.3f}, {test['auc']['high']:.3f}]",
                    f"{screening['sensitivity']['estimate']:.3f}/{screening['specificity']['estimate']:.3f}",
                    f"{balanced['accuracy']['estimate']:.3f}",
                    f"{meta['training']['seconds']:.0f}",
                    f"{wall:.0f}",
                )
            )
    header = ("preset", "variant", "keras AUC", "test AUC [95% CI]", "screening sens/spec", "balanced acc", "fit s", "total s")
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


if __name__ == "__main__":
    main()
