"""Realized performance (issue 23): the sensitivity alert's false alarms and delay, and the recompute time.

    PNEUMO_BATCH_DATA=/path/to/pneumoniamnist.npz .venv/bin/python benchmarks/realized_benchmark.py [--runs 4000] [--nights 365]

1. The Bernoulli CUSUM on missed pneumonias (monitoring/sensitivity.py), by
   simulation: in control (sensitivity 0.98) over 12 months at
   ``--positives-per-month`` labelled pneumonias, the share of months with a
   false alarm and the false alarms per year (upward crossings of the
   threshold: the statistic is never reset); after a fall to 0.90, the
   labelled pneumonias until the alarm (mean, median, 95th percentile).
   Then the same with the shipped model's own misses on the PneumoniaMNIST
   test split resampled (its sensitivity there is about 0.984).
2. With ``--nannyml-python`` (a venv with NannyML): 30 nights of 150 test
   films with every read, our per-night sensitivity, specificity, PPV and
   AUC against NannyML's ``PerformanceCalculator`` (recall, specificity,
   precision, roc_auc, one chunk per day): the largest difference.
3. Recomputing the history: ``--nights`` nights of ``--films`` films (rows
   of the test split scored by the shipped model, resampled, each night's ids
   unique), reads for half the films in 30 files, then one new label file:
   the time of ``refresh_realized`` (which rereads everything).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_description  # noqa: E402

from pneumo_batch import metrics, storage  # noqa: E402
from pneumo_batch.monitoring import RealizedRules  # noqa: E402

RULES = RealizedRules()


def upward_crossings(path: np.ndarray, threshold: float) -> int:
    above = path >= threshold
    return int(above[0]) + int((above[1:] & ~above[:-1]).sum()) if len(path) else 0


def cusum_figures(draw, runs: int, per_month: int, seed: int) -> dict[str, float]:
    """False alarms over 12 months of ``draw(rng, n)`` outcomes (True = missed)."""
    rng = np.random.default_rng(seed)
    p0, p1 = 1 - RULES.sensitivity_in_control, 1 - RULES.sensitivity_out_of_control
    per_year, month_alarm = [], []
    for _ in range(runs):
        path = metrics.bernoulli_cusum(draw(rng, 12 * per_month), p0, p1)
        per_year.append(upward_crossings(path, RULES.cusum_threshold))
        month_alarm.append(upward_crossings(path[:per_month], RULES.cusum_threshold) > 0)
    return {"false_alarms_per_year": float(np.mean(per_year)), "months_with_false_alarm": float(np.mean(month_alarm)),
            "years_with_none": float(np.mean(np.array(per_year) == 0))}


def delay_figures(runs: int, seed: int) -> dict[str, float]:
    """Labelled pneumonias from a fall to 0.90 (starting from a statistic of 0) until the alarm."""
    rng = np.random.default_rng(seed)
    p0, p1 = 1 - RULES.sensitivity_in_control, 1 - RULES.sensitivity_out_of_control
    delays = []
    for _ in range(runs):
        path = metrics.bernoulli_cusum(rng.random(2000) < p1, p0, p1)
        hit = np.flatnonzero(path >= RULES.cusum_threshold)
        delays.append(hit[0] + 1 if len(hit) else 2001)
    delays = np.array(delays)
    return {"mean": float(delays.mean()), "median": float(np.median(delays)), "p95": float(np.quantile(delays, 0.95))}


def recompute_time(scored: pd.DataFrame, nights: int, films: int) -> dict[str, float]:
    from pneumo_batch.labels import add_labels
    from pneumo_batch.monitoring import refresh_realized

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "root"
        reads = []
        started = time.perf_counter()
        for offset in range(nights):
            night = date(2025, 1, 1) + timedelta(days=offset)
            rows = scored.iloc[rng.integers(0, len(scored), films)].copy()
            rows["image_id"] = rows["image_id"] + f"@{night.isoformat()}#" + pd.Series(range(films), index=rows.index).astype(str)
            target = root / "predictions" / f"date={night.isoformat()}"
            target.mkdir(parents=True)
            storage.write_parquet(target / "predictions.parquet", pa.Table.from_pandas(
                rows.drop(columns=["label", "label_name", "split", "index"], errors="ignore"), preserve_index=False))
            reads.append(rows[["image_id", "label"]].iloc[: films // 2])
        built = time.perf_counter() - started
        all_reads = pd.concat(reads, ignore_index=True)
        for i, part in enumerate(np.array_split(np.arange(len(all_reads)), 30)):
            all_reads.iloc[part].to_csv(Path(folder) / f"reads-{i}.csv", index=False)
            add_labels(Path(folder) / f"reads-{i}.csv", root)
        refresh_realized(root)
        new = all_reads.iloc[:200].assign(label=1 - all_reads["label"].iloc[:200])
        new.to_csv(Path(folder) / "new.csv", index=False)
        add_labels(Path(folder) / "new.csv", root)
        started = time.perf_counter()
        refreshed = refresh_realized(root)
        seconds = time.perf_counter() - started
        assert refreshed["n_relabelled"] == len(new)
    return {"build_seconds": built, "recompute_seconds": seconds}


def nannyml_comparison(scored: pd.DataFrame, python: str) -> dict[str, float]:
    import subprocess

    from pneumo_batch.labels import add_labels
    from pneumo_batch.monitoring.realized import realized_performance

    sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
    from labels_nights import write_resampled_nights

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        rows = write_resampled_nights(work / "root", scored, n_nights=30, size=150, seed=11)
        rows[["image_id", "label"]].to_csv(work / "reads.csv", index=False)
        add_labels(work / "reads.csv", work / "root")
        ours = realized_performance(work / "root")
        kept = rows[(rows["status"] == "ok") & rows["in_scope"].fillna(True)]
        pd.DataFrame({"night": pd.to_datetime(kept["night"]), "y": kept["label"].astype(int),
                      "p": kept["p_pneumonia"].astype(float), "pred": kept["pred_screening"].astype(int)}
                     ).to_parquet(work / "labelled.parquet")
        subprocess.run([python, str(Path(__file__).parent / "realized_nannyml.py"), str(work)], check=True)
        theirs = pd.read_parquet(work / "nannyml_realized.parquet").set_index("night")
    differences = {"sensitivity": [], "specificity": [], "ppv": [], "auc": []}
    for night in ours.nights:
        point = night.operating_points["screening"]
        row = theirs.loc[night.chunk]
        differences["sensitivity"].append(abs(point.sensitivity.estimate - row["recall"]))
        differences["specificity"].append(abs(point.specificity.estimate - row["specificity"]))
        differences["ppv"].append(abs(point.ppv.estimate - row["precision"]))
        differences["auc"].append(abs(night.auc.estimate - row["roc_auc"]))
    return {"nights": len(ours.nights), **{f"max_abs_diff_{k}": float(max(v)) for k, v in differences.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--positives-per-month", type=int, default=300)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--films", type=int, default=1000)
    parser.add_argument("--nannyml-python", help="python of a venv with nannyml installed (the comparison)")
    args = parser.parse_args()
    print(cpu_description())
    print(f"CUSUM: in control {RULES.sensitivity_in_control}, tuned for {RULES.sensitivity_out_of_control}, "
          f"threshold {RULES.cusum_threshold}; {args.positives_per_month} labelled pneumonias a month, {args.runs} runs")
    p0 = 1 - RULES.sensitivity_in_control
    print("  in control (Bernoulli 0.02):", cusum_figures(lambda rng, n: rng.random(n) < p0, args.runs,
                                                          args.positives_per_month, 1))
    print("  fall to 0.90, labelled pneumonias until the alarm:", delay_figures(args.runs, 2))

    from pneumo_batch.dataset import locate_dataset, read_npz
    from pneumo_batch.model import default_model_dir

    sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
    from labels_nights import score_test_split

    with tempfile.TemporaryDirectory() as folder:
        scored = score_test_split(read_npz(locate_dataset()), default_model_dir(), Path(folder))
    positives = scored[scored["label"] == 1]
    missed = ~positives["pred_screening"].astype(bool).to_numpy()
    print(f"  the shipped model's misses on the test split ({missed.sum()} of {len(missed)}, sensitivity "
          f"{1 - missed.mean():.3f}), resampled:",
          cusum_figures(lambda rng, n: missed[rng.integers(0, len(missed), n)], args.runs, args.positives_per_month, 3))
    if args.nannyml_python:
        print("Against NannyML's realized performance:", nannyml_comparison(scored, args.nannyml_python))
    print(f"Recompute of {args.nights} nights of {args.films} films after one new label file:",
          recompute_time(scored, args.nights, args.films))


if __name__ == "__main__":
    main()
