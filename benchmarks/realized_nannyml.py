"""NannyML's realized performance on the realized benchmark's nights; run by realized_benchmark.py in NannyML's own venv.

    /path/to/nannyml-venv/bin/python benchmarks/realized_nannyml.py WORKDIR

NannyML is a benchmark-only dependency (it pins its own pandas and numpy),
never in the project's venv; this script imports nothing from pneumo_batch.
It reads ``WORKDIR/labelled.parquet`` (``night`` as a timestamp, ``y``,
``p``, ``pred``), computes roc_auc, recall, specificity and precision per
day (``chunk_period="D"``) with ``PerformanceCalculator`` and writes
``WORKDIR/nannyml_realized.parquet``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import nannyml
import pandas as pd


def main() -> None:
    work = Path(sys.argv[1])
    rows = pd.read_parquet(work / "labelled.parquet")
    calculator = nannyml.PerformanceCalculator(
        problem_type="classification_binary", y_true="y", y_pred="pred", y_pred_proba="p", timestamp_column_name="night",
        metrics=["roc_auc", "recall", "specificity", "precision"], chunk_period="D",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calculator.fit(rows)
        result = calculator.calculate(rows).filter(period="analysis").to_df()
    out = pd.DataFrame({
        "night": result[("chunk", "start_date")].dt.date.astype(str),
        **{metric: result[(metric, "value")] for metric in ("roc_auc", "recall", "specificity", "precision")},
    })
    out.to_parquet(work / "nannyml_realized.parquet")


if __name__ == "__main__":
    main()
