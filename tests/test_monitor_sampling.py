"""Monitoring at archive scale (issue 27): a night is read whole; a larger batch is sampled, deterministically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pneumo_batch.imaging.features import NUMERIC_IMAGE_FEATURES
from pneumo_batch.monitoring import MonitoringRules, build_monitoring_report, write_verdict_page
from pneumo_batch.monitoring.sampling import read_batch, read_sample, sample_indices

#: What may differ between two runs on the same rows (and, between sample sizes, the rule itself).
_RUN_KEYS = ("created_at", "rules", "sample", "inputs")


@pytest.fixture(scope="module")
def night_file(tmp_path_factory, pneumoniamnist, make_predictions) -> Path:
    """The test split as a night of 624 films: labels, 6 error rows and 5 out of scope, in row groups of 100."""
    frame = make_predictions(pneumoniamnist.test.images, pneumoniamnist.test.labels)
    frame.loc[:5, ["status", "error"]] = ["error", "file not found: x.png"]
    frame.loc[:5, ["p_pneumonia", *NUMERIC_IMAGE_FEATURES]] = np.nan
    frame["in_scope"] = pd.array([None] * 6 + [False] * 5 + [True] * (len(frame) - 11), dtype="boolean")
    frame["scope_reason"] = [None] * 6 + ["pixels: unlike the training images"] * 5 + [None] * (len(frame) - 11)
    path = tmp_path_factory.mktemp("night") / "predictions.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=100)
    return path


_WHOLE: dict[str, dict] = {}


def _report(path: Path, out: Path, reference, metadata, **rules) -> dict:
    if not rules and str(path) in _WHOLE:  # the default run, shared by two tests
        return _WHOLE[str(path)]
    build_monitoring_report(path, reference, out, model_metadata=metadata, rules=MonitoringRules(**rules))
    data = json.loads((out / "summary.json").read_text())
    if not rules:
        _WHOLE[str(path)] = data
    return data


def _without(data: dict, keys=_RUN_KEYS) -> dict:
    return {key: value for key, value in data.items() if key not in keys}


def test_a_night_smaller_than_the_sample_is_read_whole_and_its_summary_is_unchanged(
    night_file, tmp_path, reference_profile, fake_model_metadata
):
    default = _report(night_file, tmp_path / "default", reference_profile, fake_model_metadata)
    exact = _report(night_file, tmp_path / "exact", reference_profile, fake_model_metadata, sample_rows=624)
    assert default["sample"] == {"n_rows": 624, "size": 624, "seed": 0, "max_rows": 20_000, "sampled": False,
                                 "used_for": default["sample"]["used_for"]}
    assert exact["sample"]["sampled"] is False and exact["sample"]["max_rows"] == 624
    assert _without(default) == _without(exact)
    assert default["rules"]["sample_rows"] == 20_000 and default["format_version"] == 4
    # the night's verdict: the labelled test split is short of pneumonia, the images did not drift
    assert default["class_balance_alert"] is True and default["drift_detected"] is False
    assert (default["n_rows"], default["n_errors"], default["n_out_of_scope"]) == (624, 6, 5)


def test_a_sampled_batch_takes_counts_scope_errors_prevalence_and_balance_from_every_row(
    night_file, tmp_path, reference_profile, fake_model_metadata
):
    whole = _report(night_file, tmp_path / "whole", reference_profile, fake_model_metadata)
    sampled = _report(night_file, tmp_path / "sampled", reference_profile, fake_model_metadata, sample_rows=250)
    assert sampled["sample"]["sampled"] is True and sampled["sample"]["size"] == 250
    every_row = ("n_rows", "n_scored", "n_in_scope", "n_flagged", "n_out_of_scope", "out_of_scope_test",
                 "top_out_of_scope_reasons", "n_errors", "error_share", "top_errors", "class_balance", "models",
                 "run_ids", "prevalence_estimate", "estimated_performance", "out_of_scope_alert", "class_balance_alert")
    for key in every_row:
        if key == "estimated_performance":  # valid follows drift, which the sample decides
            assert _without(sampled[key], ("valid", "reason")) == _without(whole[key], ("valid", "reason"))
        else:
            assert sampled[key] == whole[key], key
    # what the sample decides saw only its rows
    whole_auc, sampled_auc = (next(f for f in data["performance"] if f["name"] == "auc") for data in (whole, sampled))
    assert whole_auc["n"] == 624 - 11 and sampled_auc["n"] < 250


def test_a_batch_larger_than_the_sample_is_sampled_deterministically(
    night_file, tmp_path, reference_profile, fake_model_metadata
):
    first = _report(night_file, tmp_path / "first", reference_profile, fake_model_metadata, sample_rows=300)
    again = _report(night_file, tmp_path / "again", reference_profile, fake_model_metadata, sample_rows=300)
    assert first["sample"] == {"n_rows": 624, "size": 300, "seed": 0, "max_rows": 300, "sampled": True,
                               "used_for": first["sample"]["used_for"]}
    assert _without(first, ("created_at",)) == _without(again, ("created_at",))
    other_seed = _report(night_file, tmp_path / "seed", reference_profile, fake_model_metadata, sample_rows=300, seed=1)
    assert other_seed["sample"]["seed"] == 1
    assert [d["score"] for d in other_seed["drift"]] != [d["score"] for d in first["drift"]]


def test_the_sample_is_read_row_group_by_row_group_across_files(night_file, tmp_path):
    """The streamed sample is exactly those rows of the files read whole, in file order."""
    whole = pd.read_parquet(night_file)
    second = tmp_path / "second.parquet"
    pq.write_table(pa.Table.from_pandas(whole.iloc[:150], preserve_index=False), second, row_group_size=64)
    batch = read_batch([night_file, second], max_rows=200, seed=5)
    both = pd.concat([whole, whole.iloc[:150]], ignore_index=True)
    picks = sample_indices(len(both), 200, 5)
    assert len(picks) == 200 and (np.diff(picks) > 0).all()
    pd.testing.assert_frame_equal(batch.sample, both.iloc[picks].reset_index(drop=True))
    pd.testing.assert_frame_equal(read_sample([night_file, second], 200, 5), batch.sample)
    assert len(batch.light) == 774 and "path" not in batch.light and "img_mean" not in batch.light
    assert batch.light["status"].eq("error").sum() == 12


def test_the_verdict_page_counts_the_whole_batch_when_thumbnails_come_from_a_sample(night_file, tmp_path):
    rows = read_sample([night_file], 300, 0)
    summary = {"n_rows": 624, "n_scored": 618, "n_errors": 6, "n_out_of_scope": 5, "alert": False,
               "sample": {"sampled": True, "n_rows": 624, "size": 300}}
    page = write_verdict_page(tmp_path, summary, rows).read_text()
    assert "Most unusual: least like the training images (8 shown of 618, from a sample of 300)" in page
