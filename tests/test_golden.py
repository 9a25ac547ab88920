"""Scoring decides today exactly what it decided when the golden file was made (see tests/golden_rows.py)."""

from __future__ import annotations

import pandas as pd

from golden_rows import as_csv_frame, golden_rows, read_golden


def test_shipped_model_reproduces_the_golden_rows(dataset_path, shipped_default_model, tmp_path):
    expected = read_golden()
    actual = as_csv_frame(golden_rows(dataset_path, shipped_default_model, tmp_path))

    assert len(actual) == len(expected)
    assert (actual["status"] == "error").sum() == 3, "the broken files must stay error rows"
    pd.testing.assert_frame_equal(actual, expected)
