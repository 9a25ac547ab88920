"""Realized performance from late labels: equal to a direct computation from the Parquet read back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from labels_nights import reads_csv, write_nights
from typer.testing import CliRunner

from pneumo_batch import metrics
from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.labels import add_labels
from pneumo_batch.monitoring import RealizedRules, realized_path, refresh_realized

RealizedRulesDefault = RealizedRules()


@pytest.fixture()
def root(tmp_path, scored_test_split):
    write_nights(tmp_path / "root", scored_test_split, [200, 200, 224])
    return tmp_path / "root"


def deliver(root, scored, tmp_path):
    """Reads of films 0-299 in two pieces (the first twice), film 7 corrected, two ids of another root."""
    ids, truth = scored["image_id"].tolist(), scored["label"].astype(int).to_numpy()
    add_labels(reads_csv(tmp_path / "a.csv", ids[:120], truth[:120], read_at="2026-11-04"), root)
    add_labels(reads_csv(tmp_path / "a.csv", ids[:120], truth[:120], read_at="2026-11-04"), root)
    b_ids = [*ids[120:300], ids[7], "elsewhere-1", "elsewhere-2"]
    add_labels(reads_csv(tmp_path / "b.csv", b_ids, [*truth[120:300], 1 - truth[7], 0, 1], read_at="2026-11-06"), root)
    labels = dict(zip(ids[:300], truth[:300])) | {ids[7]: 1 - truth[7]}
    return labels


def direct(root, night, labels):
    """The night's labelled in-scope rows straight from its Parquet, with the labels that count."""
    frame = pq.read_table(root / "predictions" / f"date={night}" / "predictions.parquet").to_pandas()
    frame = frame[(frame["status"] == "ok") & frame["in_scope"].fillna(True)]
    frame = frame[frame["image_id"].isin(labels)]
    return frame.assign(label=frame["image_id"].map(labels).astype(int))


def test_realized_figures_equal_a_direct_computation(root, scored_test_split, tmp_path):
    labels = deliver(root, scored_test_split, tmp_path)
    result = CliRunner().invoke(app, ["monitor", "--output-root", str(root)])
    assert result.exit_code == 0, result.output
    assert "elsewhere" not in result.output and "2 match no scored film" in result.output
    realized = json.loads(realized_path(root).read_text())
    assert [n["chunk"] for n in realized["nights"]] == ["2026-11-01", "2026-11-02"]  # night 3 has no reads
    assert (realized["n_unmatched"], realized["n_relabelled"]) == (2, 1)
    for night in realized["nights"]:
        rows = direct(root, night["chunk"], labels)
        assert night["n_labelled"] == len(rows) and night["n_pneumonia"] == int(rows["label"].sum())
        assert night["models"][0]["model_version"] == rows["model_version"].iloc[0]
        for point, figures in night["operating_points"].items():
            confusion = metrics.confusion_at(rows["label"], rows["p_pneumonia"], rows[f"threshold_{point}"].iloc[0])
            flagged = rows[f"pred_{point}"].astype(bool)
            assert (figures["tp"], figures["fn"]) == (int((flagged & (rows.label == 1)).sum()), int((~flagged & (rows.label == 1)).sum()))
            assert (figures["tp"], figures["fp"], figures["tn"], figures["fn"]) == (confusion.tp, confusion.fp, confusion.tn, confusion.fn)
            for name in ("sensitivity", "specificity", "ppv", "npv"):
                assert figures[name]["estimate"] == pytest.approx(getattr(confusion, name))
                assert figures[name]["low"] <= figures[name]["estimate"] <= figures[name]["high"]
        assert night["auc"]["estimate"] == pytest.approx(metrics.roc_auc(rows["label"], rows["p_pneumonia"]))
    first = direct(root, "2026-11-01", labels)
    assert realized["nights"][0]["n_relabelled"] == 1
    window = {w["chunk"]: w for w in realized["windows"]}["7d"]
    both = pd.concat([direct(root, "2026-11-01", labels), direct(root, "2026-11-02", labels)])
    assert window["n_labelled"] == len(both) and window["end"] == "2026-11-03"
    in_scope = sum(len(pq.read_table(p).to_pandas().query("status == 'ok' and in_scope != False"))
                   for p in sorted((root / "predictions").glob("date=*/predictions.parquet")))
    assert window["n_in_scope"] == in_scope and window["coverage"] == pytest.approx(len(both) / in_scope)
    ece = metrics.expected_calibration_error(both["label"].to_numpy(), both["p_pneumonia"].to_numpy(), n_resamples=10)
    assert window["calibration"]["ece"]["estimate"] == pytest.approx(ece.estimate)
    assert sum(b["n"] for b in window["calibration"]["table"]) == len(both)
    assert len(first) > 0


def test_the_estimate_beside_the_realized_figures(root, scored_test_split, tmp_path):
    labels = deliver(root, scored_test_split, tmp_path)
    report = root / "reports" / "date=2026-11-01"
    report.mkdir(parents=True)
    estimated = {"operating_point": "screening", "prevalence": {"value": 0.6, "low": 0.55, "high": 0.65},
                 "sensitivity": {"value": 0.99, "low": 0.0, "high": 1.0}, "specificity": {"value": 0.9, "low": 0.95, "high": 0.99},
                 "ppv": {"value": 0.9, "low": 0.0, "high": 1.0}, "npv": {"value": 0.9, "low": 0.0, "high": 1.0}}
    (report / "summary.json").write_text(json.dumps({"estimated_performance": estimated}))
    night = refresh_realized(root)["nights"][0]
    rows = direct(root, "2026-11-01", labels)
    check = night["estimate"]
    assert check["figures"]["prevalence"]["realized"] == pytest.approx(rows["label"].mean())
    assert check["figures"]["prevalence"]["held"] == bool(0.55 <= rows["label"].mean() <= 0.65)
    assert check["figures"]["sensitivity"]["held"] is True
    specificity = night["operating_points"]["screening"]["specificity"]["estimate"]
    assert check["figures"]["specificity"]["held"] == bool(0.95 <= specificity <= 0.99)
    assert check["held"] == all(f["held"] for f in check["figures"].values())


def test_recomputed_only_when_labels_or_nights_change(root, scored_test_split, tmp_path):
    first = refresh_realized(root)
    assert first["nights"] == [] and first["sensitivity_test"] is None
    assert refresh_realized(root)["computed_at"] == first["computed_at"]
    deliver(root, scored_test_split, tmp_path)
    assert len(refresh_realized(root)["nights"]) == 2


def test_monitor_output_root_usage_errors(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["monitor"]).exit_code == ExitCode.USAGE
    missing = runner.invoke(app, ["monitor", "--output-root", str(tmp_path)])
    assert missing.exit_code == ExitCode.USAGE and "no predictions/" in missing.output


def test_hanley_mcneil_interval_brackets_the_auc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = labels * 0.8 + rng.random(400)
    interval = metrics.auc_interval(labels, scores)
    assert interval.low < interval.estimate < interval.high
    assert interval.estimate == pytest.approx(metrics.roc_auc(labels, scores))


@pytest.mark.slow
def test_nightly_recomputes_when_labels_arrived(pneumoniamnist, shipped_default_model, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from pneumo_batch.export import export_split

    manifest = export_split(pneumoniamnist, "test", tmp_path / "films", limit=80)
    root = tmp_path / "root"
    run = ["nightly", "--input", str(manifest.parent / "images"), "--output-root", str(root), "--model", str(shipped_default_model)]
    assert CliRunner().invoke(app, [*run, "--date", "2026-11-01"]).exit_code == 0
    first = json.loads((root / "reports" / "date=2026-11-01" / "summary.json").read_text())
    assert first["realized_performance"]["n_nights_labelled"] == 0

    frame = pd.read_parquet(manifest)
    ids = [f"{name}.png" for name in frame["image_id"]]  # a folder's image ids are the file names
    add_labels(reads_csv(tmp_path / "reads.csv", ids, frame["label"].to_numpy()), root)
    assert CliRunner().invoke(app, [*run, "--date", "2026-11-02"]).exit_code == 0
    second = json.loads((root / "reports" / "date=2026-11-02" / "summary.json").read_text())
    realized = second["realized_performance"]
    assert realized["n_films_read"] == 80 and realized["latest_labelled_night"]["chunk"] == "2026-11-02"
    night_one = json.loads(realized_path(root).read_text())["nights"][0]
    assert night_one["estimate"]["operating_point"] == "screening"  # the first night's estimate beside its reads
    prom = (root / "metrics" / "pneumo_batch.prom").read_text()
    gauges = {s.name: s.value for f in text_string_to_metric_families(prom) for s in f.samples}
    assert gauges["pneumo_batch_label_coverage"] == pytest.approx(realized["windows"][1]["coverage"])
    assert gauges["pneumo_batch_sensitivity_cusum_threshold"] == RealizedRulesDefault.cusum_threshold


def test_the_verdict_page_shows_what_the_reads_say(root, scored_test_split, tmp_path):
    from pneumo_batch.monitoring import compact_realized, window_gauges, write_verdict_page

    deliver(root, scored_test_split, tmp_path)
    realized = refresh_realized(root)
    compact = compact_realized(realized)
    summary = {"verdict": "Quiet night: 224 films, 150 flagged for urgent review, nothing unusual.", "alert": False,
               "n_rows": 224, "realized_performance": compact, "subgroups": realized["subgroups"]}
    page = write_verdict_page(tmp_path, summary).read_text()
    assert '<h1 id="verdict" class="quiet">Quiet night</h1>' in page
    assert 'id="realized-history"' in page and page.count('class="sensitivity"') == 2  # one dot per night with reads
    window = compact["windows"][0]
    sensitivity = window["operating_points"]["screening"]["sensitivity"]["estimate"]
    assert "<th>last 7 days</th>" in page and f"{100 * sensitivity:.1f} %" in page
    assert "input kind: PNG" in page and "test_0" not in page and "elsewhere" not in page  # no film is named
    gauges = window_gauges(compact)
    assert gauges["label_coverage"] == pytest.approx(compact["windows"][1]["coverage"])
    assert gauges["sensitivity_cusum"] == realized["sensitivity_test"]["statistic"]
