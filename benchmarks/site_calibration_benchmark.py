"""Site-calibrated label-free estimates (issue 23): prevalence error and interval coverage, before and after.

    PNEUMO_BATCH_DATA=/path/to/pneumoniamnist.npz .venv/bin/python benchmarks/site_calibration_benchmark.py [--nights 200]

The PneumoniaMNIST test films, scored by the shipped model, stand in for a
site whose films differ from the training hospital's. ``--labelled`` of
them per class (seeded) are one labelled night in an output root's label
store (through ``labels add`` and the realized-performance history, as in
production); the nights are drawn from the other, disjoint test films:
``--nights`` seeded nights at 30 % pneumonia (130 films) and at 95 %
pneumonia (200 films). For each night the prevalence is estimated (BBSE at
the screening point) with the validation confusion and with the site's
(:mod:`pneumo_batch.monitoring.site_calibration`); printed: the mean error
(estimate - truth), the mean absolute error, and the share of nights whose
95 % interval covers the truth. ``--label-seeds`` repeats it with other
draws of the labelled films.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_description  # noqa: E402

from pneumo_batch import storage  # noqa: E402
from pneumo_batch.monitoring import MonitoringRules, refresh_realized  # noqa: E402
from pneumo_batch.monitoring.balance import validation_profile  # noqa: E402
from pneumo_batch.monitoring.prevalence import estimate_prevalence  # noqa: E402
from pneumo_batch.monitoring.site_calibration import site_profile  # noqa: E402

SETTINGS = ((0.30, 130), (0.95, 200))


def site_realized(scored: pd.DataFrame, labelled: pd.DataFrame, folder: Path) -> dict:
    """The realized history of a root whose one night holds the labelled films (and its reads)."""
    from pneumo_batch.labels import add_labels

    root = folder / "root"
    night = root / "predictions" / "date=2026-10-01"
    night.mkdir(parents=True)
    storage.write_parquet(night / "predictions.parquet", pa.Table.from_pandas(
        labelled.drop(columns=["label", "label_name", "split", "index"], errors="ignore"), preserve_index=False))
    labelled[["image_id", "label"]].to_csv(folder / "reads.csv", index=False)
    add_labels(folder / "reads.csv", root)
    return refresh_realized(root)


def run(scored: pd.DataFrame, metadata: dict, per_class: int, n_nights: int, label_seed: int) -> list[dict]:
    rules = MonitoringRules()
    rng = np.random.default_rng(label_seed)
    in_scope = scored[(scored["status"] == "ok") & scored["in_scope"].fillna(True)].reset_index(drop=True)
    normals, sick = np.flatnonzero(in_scope["label"] == 0), np.flatnonzero(in_scope["label"] == 1)
    chosen = np.concatenate([rng.choice(normals, per_class, replace=False), rng.choice(sick, per_class, replace=False)])
    rest = in_scope.drop(index=chosen).reset_index(drop=True)
    thresholds = {name: float(point["threshold"]) for name, point in metadata["operating_points"].items()}
    warnings: list[str] = []
    validation = validation_profile(metadata, thresholds, rules, np.random.default_rng(0), warnings)
    with tempfile.TemporaryDirectory() as folder:
        realized = site_realized(scored, in_scope.iloc[chosen], Path(folder))
    site, basis = site_profile(realized, validation, point=rules.prevalence_point, exclude=set(), models=set(),
                               min_per_class=rules.site_min_per_class, rng=np.random.default_rng(0), warnings=warnings)
    assert basis.startswith("site labels"), (basis, warnings)
    rest_normals, rest_sick = np.flatnonzero(rest["label"] == 0), np.flatnonzero(rest["label"] == 1)
    results = []
    for share, size in SETTINGS:
        n_sick = int(round(share * size))
        for seed in range(n_nights):
            night_rng = np.random.default_rng(1000 + seed)
            picks = np.concatenate([night_rng.choice(rest_sick, n_sick, replace=False),
                                    night_rng.choice(rest_normals, size - n_sick, replace=False)])
            scores = rest["p_pneumonia"].to_numpy(dtype=np.float64)[picks]
            truth = float(rest["label"].to_numpy()[picks].mean())
            for name, profile in (("validation", validation), ("site", site)):
                estimate = estimate_prevalence(profile, scores, rng=np.random.default_rng(seed), confidence=0.95)
                results.append({"setting": f"{share:.0%}", "basis": name, "truth": truth, "value": estimate.value,
                                "covered": estimate.low <= truth <= estimate.high, "low": estimate.low,
                                "high": estimate.high, "label_seed": label_seed})
    if label_seed < 3:
        print(f"  labelled films (seed {label_seed}): {basis}; site sensitivity {site.tpr:.3f}, specificity "
              f"{1 - site.fpr:.3f} (validation {validation.tpr:.3f}, {1 - validation.fpr:.3f})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=200)
    parser.add_argument("--labelled", type=int, default=100, help="labelled films per class")
    parser.add_argument("--label-seeds", type=int, default=1)
    args = parser.parse_args()
    print(cpu_description())
    from pneumo_batch.dataset import locate_dataset, read_npz
    from pneumo_batch.model import load_model

    sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
    from labels_nights import score_test_split

    artifact = load_model(None)
    with tempfile.TemporaryDirectory() as folder:
        scored = score_test_split(read_npz(locate_dataset()), artifact.directory, Path(folder))
    rows = []
    for label_seed in range(args.label_seeds):
        rows.extend(run(scored, artifact.metadata, args.labelled, args.nights, label_seed))
    frame = pd.DataFrame(rows)
    frame["error"] = frame["value"] - frame["truth"]
    table = frame.groupby(["label_seed", "setting", "basis"]).agg(
        nights=("error", "size"), mean_error=("error", "mean"), mean_abs_error=("error", lambda e: e.abs().mean()),
        mean_estimate=("value", "mean"), mean_low=("low", "mean"), mean_high=("high", "mean"), coverage=("covered", "mean"))
    with pd.option_context("display.width", 250, "display.precision", 3, "display.max_columns", 20):
        print(table)
        if args.label_seeds > 1:
            per_seed = table.reset_index()
            print("over the draws of labelled films:")
            print(per_seed.groupby(["setting", "basis"]).agg(
                draws=("mean_error", "size"), mean_error=("mean_error", "mean"),
                mean_abs_of_mean_error=("mean_error", lambda e: e.abs().mean()),
                draws_within_002=("mean_error", lambda e: (e.abs() <= 0.02).mean()),
                mean_abs_error=("mean_abs_error", "mean"), coverage=("coverage", "mean"),
                draws_coverage_90=("coverage", lambda c: (c >= 0.9).mean())))


if __name__ == "__main__":
    main()
