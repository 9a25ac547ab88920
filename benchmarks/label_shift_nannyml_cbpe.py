"""NannyML's CBPE on the label-shift benchmark's nights; run by label_shift_benchmark.py in NannyML's own venv.

    /work/venv-nannyml/bin/python benchmarks/label_shift_nannyml_cbpe.py WORKDIR THRESHOLD

NannyML is a benchmark-only dependency: it pins pandas and numpy versions of
its own, so it never goes into the project's venv or pyproject. This script
imports nothing from pneumo_batch. It reads ``WORKDIR/reference.parquet``
(validation scores ``p`` and labels ``y``) and every
``<setting>_<size>_<kind>.parquet`` (one night after another, ``night``,
``p``), fits CBPE (isotonic calibration, NannyML's default) on the reference
and estimates recall (sensitivity), specificity and precision (PPV) per
night, one chunk per night. Writes ``WORKDIR/nannyml_cbpe.parquet``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import nannyml
import pandas as pd


def main() -> None:
    work, threshold = Path(sys.argv[1]), float(sys.argv[2])
    reference = pd.read_parquet(work / "reference.parquet")
    reference["pred"] = (reference["p"] >= threshold).astype(int)
    out = []
    for path in sorted(work.glob("*_*_*.parquet")):
        if path.name in ("reference.parquet", "nannyml_cbpe.parquet"):
            continue
        setting, size, kind = path.stem.split("_", 2)
        nights = pd.read_parquet(path)
        nights["pred"] = (nights["p"] >= threshold).astype(int)
        estimator = nannyml.CBPE(
            problem_type="classification_binary", y_pred_proba="p", y_pred="pred", y_true="y",
            metrics=["recall", "specificity", "precision"], chunk_size=int(size),
        )
        with warnings.catch_warnings():
            # one chunk per night is what we want; NannyML warns that so few chunks are unusual
            warnings.filterwarnings("ignore", "The resulting number of chunks is too low", UserWarning)
            warnings.filterwarnings("ignore", "Too few unique values present in 'y'", UserWarning)
            estimator.fit(reference)
            result = estimator.estimate(nights[["p", "pred"]]).filter(period="analysis").to_df()
        estimates = pd.DataFrame({
            "size": int(size), "kind": kind, "night": nights["night"].drop_duplicates().to_numpy(),
            "nml_sens": result[("recall", "value")].to_numpy(),
            "nml_spec": result[("specificity", "value")].to_numpy(),
            "nml_ppv": result[("precision", "value")].to_numpy(),
        })
        out.append(estimates)
    pd.concat(out).to_parquet(work / "nannyml_cbpe.parquet")


if __name__ == "__main__":
    main()
