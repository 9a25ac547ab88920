"""The alert when realized sensitivity falls: a Bernoulli CUSUM on the missed pneumonias of labelled films."""

from __future__ import annotations

import json

import numpy as np
import pytest
from labels_nights import write_resampled_nights
from typer.testing import CliRunner

from pneumo_batch import metrics
from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.labels import add_labels
from pneumo_batch.monitoring import RealizedRules, refresh_realized

RULES = RealizedRules()
#: The documented detection delay (docs/monitoring-rules.md): 95 % of falls from 0.98 to 0.90 are
#: signalled within this many labelled pneumonias (benchmarks/realized_benchmark.py measures it).
DOCUMENTED_DELAY_P95 = 150
#: The documented false-alarm budget: at 300 labelled pneumonias a month, at most one false alarm in 12 months.
POSITIVES_PER_MONTH = 300


def fall_labels(rows, missed_rate: float, seed: int):
    """Reads in which the model's sensitivity is ``1 - missed_rate``: unflagged normals read as pneumonia."""
    rng = np.random.default_rng(seed)
    labels = rows["label"].astype(int).to_numpy().copy()
    flagged = rows["pred_screening"].astype(bool).to_numpy()
    caught = int((flagged & (labels == 1)).sum())
    wanted_missed = int(round(caught * missed_rate / (1 - missed_rate)))
    already = int((~flagged & (labels == 1)).sum())
    candidates = np.flatnonzero(~flagged & (labels == 0))
    extra = rng.choice(candidates, min(max(wanted_missed - already, 0), len(candidates)), replace=False)
    labels[extra] = 1
    return labels


def test_a_fall_from_098_to_090_alerts_within_the_documented_delay(tmp_path, scored_test_split):
    root = tmp_path / "root"
    rows = write_resampled_nights(root, scored_test_split, n_nights=12, size=150, seed=3)
    before = rows[rows["night"] < sorted(rows["night"].unique())[4]]
    after = rows[rows["night"] >= sorted(rows["night"].unique())[4]]
    tmp_path.joinpath("before.csv").write_text(before[["image_id", "label"]].to_csv(index=False))
    add_labels(tmp_path / "before.csv", root)
    quiet = refresh_realized(root)
    assert quiet["sensitivity_test"]["alert"] is False

    after = after.assign(label=fall_labels(after, 0.10, seed=1))
    tmp_path.joinpath("after.csv").write_text(after[["image_id", "label"]].to_csv(index=False))
    add_labels(tmp_path / "after.csv", root)
    test = refresh_realized(root)["sensitivity_test"]
    assert test["alert"] is True
    positives_before = sum(p["positives"] for p in test["path"] if p["night"] < str(sorted(rows["night"].unique())[4]))
    crossed = next(i for i, p in enumerate(test["path"]) if p["statistic"] >= RULES.cusum_threshold)
    delay = sum(p["positives"] for p in test["path"][: crossed + 1]) - positives_before
    assert 0 < delay <= DOCUMENTED_DELAY_P95 + 60  # a night's positives land at once: up to a night late

    result = CliRunner().invoke(app, ["monitor", "--output-root", str(root), "--fail-on-drift"])
    assert result.exit_code == ExitCode.ALERT and "ALERT: sensitivity fell" in result.output


def test_twelve_unchanged_months_stay_within_the_false_alarm_budget(scored_test_split):
    """The shipped model's own misses on the test split, resampled into 12 months of labelled pneumonias."""
    positives = scored_test_split[scored_test_split["label"] == 1]
    missed = ~positives["pred_screening"].astype(bool).to_numpy()
    rng = np.random.default_rng(12)
    outcomes = missed[rng.integers(0, len(missed), 12 * POSITIVES_PER_MONTH)]
    path = metrics.bernoulli_cusum(outcomes, 1 - RULES.sensitivity_in_control, 1 - RULES.sensitivity_out_of_control)
    above = path >= RULES.cusum_threshold
    crossings = int(above[0]) + int((above[1:] & ~above[:-1]).sum())
    assert crossings <= 1


@pytest.mark.slow
def test_the_alert_joins_the_verdict_and_exit_4(tmp_path, scored_test_split, shipped_default_model):
    root = tmp_path / "root"
    rows = write_resampled_nights(root, scored_test_split, n_nights=6, size=150, seed=5)
    rows = rows.assign(label=fall_labels(rows, 0.15, seed=2))
    tmp_path.joinpath("reads.csv").write_text(rows[["image_id", "label"]].to_csv(index=False))
    add_labels(tmp_path / "reads.csv", root)
    night = root / "predictions" / "date=2026-11-06" / "predictions.parquet"
    result = CliRunner().invoke(app, ["monitor", str(night), "--out", str(tmp_path / "report"), "--output-root", str(root),
                                      "--model", str(shipped_default_model), "--no-workspace", "--fail-on-drift"])
    assert result.exit_code == ExitCode.ALERT, result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["sensitivity_alert"] is True and summary["alert"] is True
    assert any(line.startswith("sensitivity fell") for line in summary["alerts"])
    assert "sensitivity has fallen" in summary["verdict"]
    assert summary["realized_performance"]["sensitivity_test"]["alert"] is True
    assert summary["realized_performance"]["windows"][0]["chunk"] == "7d"


@pytest.mark.parametrize(("p", "expected"), [(0.02, False), (0.2, True)])
def test_cusum_path_on_seeded_bernoulli_outcomes(p, expected):
    outcomes = np.random.default_rng(0).random(500) < p
    path = metrics.bernoulli_cusum(outcomes, 0.02, 0.10)
    assert (path >= 0).all() and bool(path.max() >= RULES.cusum_threshold) is expected
