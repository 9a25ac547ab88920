"""Label-free estimates calibrated on the site's own labelled films, never the judged night's."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from pneumo_batch import storage
from pneumo_batch.cli.app import app
from pneumo_batch.labels import add_labels
from pneumo_batch.model import load_model
from pneumo_batch.monitoring import MonitoringRules, refresh_realized
from pneumo_batch.monitoring.balance import validation_profile
from pneumo_batch.monitoring.prevalence import estimate_prevalence
from pneumo_batch.monitoring.site_calibration import judged_nights, site_profile

LABELLED_NIGHT, JUDGED_NIGHT = "2026-11-01", "2026-11-02"


def write_night(root, night, rows):
    folder = root / "predictions" / f"date={night}"
    folder.mkdir(parents=True)
    storage.write_parquet(folder / "predictions.parquet", pa.Table.from_pandas(
        rows.drop(columns=["label", "label_name", "split", "index"]), preserve_index=False))
    return folder / "predictions.parquet"


@pytest.fixture()
def site(tmp_path, scored_test_split):
    """100 labelled films of each class on one night; a judged night at 30 % pneumonia, its reads in the store too."""
    rows = scored_test_split[(scored_test_split["status"] == "ok") & scored_test_split["in_scope"].fillna(True)]
    rng = np.random.default_rng(0)
    normal, sick = rows.index[rows["label"] == 0], rows.index[rows["label"] == 1]
    labelled = rows.loc[np.concatenate([rng.choice(normal, 100, replace=False), rng.choice(sick, 100, replace=False)])]
    rest = rows.drop(index=labelled.index)
    judged = rest.loc[np.concatenate([rng.choice(rest.index[rest["label"] == 1], 39, replace=False),
                                      rng.choice(rest.index[rest["label"] == 0], 91, replace=False)])]
    root = tmp_path / "root"
    write_night(root, LABELLED_NIGHT, labelled)
    judged_path = write_night(root, JUDGED_NIGHT, judged)
    reads = tmp_path / "reads.csv"
    reads.write_text(labelled._append(judged)[["image_id", "label"]].to_csv(index=False))
    add_labels(reads, root)
    return root, judged, judged_path


def test_site_labels_correct_the_estimate_without_the_judged_nights_labels(site, shipped_default_model):
    root, judged, judged_path = site
    metadata = load_model(shipped_default_model).metadata
    rules = MonitoringRules()
    thresholds = {name: float(point["threshold"]) for name, point in metadata["operating_points"].items()}
    validation = validation_profile(metadata, thresholds, rules, np.random.default_rng(0), [])
    warnings: list[str] = []
    exclude = judged_nights([judged_path], None)
    assert exclude == {JUDGED_NIGHT}
    profile, basis = site_profile(refresh_realized(root), validation, point="screening", exclude=exclude, models=set(),
                                  min_per_class=50, rng=np.random.default_rng(0), warnings=warnings)
    assert basis == "site labels, n=200 (100 pneumonia, 100 normal, 1 nights)"  # the judged night's 130 reads left out
    truth = float(judged["label"].mean())
    scores = judged["p_pneumonia"].to_numpy(dtype=np.float64)
    before = estimate_prevalence(validation, scores, rng=np.random.default_rng(1))
    after = estimate_prevalence(profile, scores, rng=np.random.default_rng(1))
    assert abs(after.value - truth) < abs(before.value - truth) and after.low <= truth <= after.high
    assert before.value > truth + 0.05  # the validation matrix overstates a site whose normals are harder

    too_few, basis = site_profile(refresh_realized(root), validation, point="screening", exclude=exclude, models=set(),
                                  min_per_class=150, rng=np.random.default_rng(0), warnings=warnings)
    assert basis == "validation" and too_few is validation and "150 of each needed" in warnings[-1]
    _, basis = site_profile(refresh_realized(root), validation, point="screening", exclude=exclude,
                            models={"another-model"}, min_per_class=50, rng=np.random.default_rng(0), warnings=[])
    assert basis == "validation"  # another model's reads say nothing about this one


@pytest.mark.slow
def test_summary_json_says_the_basis(site, shipped_default_model, tmp_path):
    root, judged, judged_path = site
    result = CliRunner().invoke(app, ["monitor", str(judged_path), "--out", str(tmp_path / "report"), "--output-root",
                                      str(root), "--model", str(shipped_default_model), "--no-workspace"])
    assert result.exit_code in (0, 4), result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["estimate_basis"] == "site labels, n=200 (100 pneumonia, 100 normal, 1 nights)"
    assert abs(summary["prevalence_estimate"]["value"] - float(judged["label"].mean())) < 0.06
