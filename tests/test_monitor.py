"""Monitoring on real PneumoniaMNIST images: the issue's targets, summary.json field by field, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.imaging.features import NUMERIC_IMAGE_FEATURES
from pneumo_batch.monitoring import (
    MonitoringRules,
    build_monitoring_report,
    categorical_drift,
    discover_predictions,
    top_error_reasons,
    validated_figures,
)

SEED = 20240611


def train_sample(pneumoniamnist, size: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.random.default_rng(SEED).choice(len(pneumoniamnist.train), size, replace=False)
    return pneumoniamnist.train.images[rows], pneumoniamnist.train.labels[rows]


@pytest.fixture(scope="module")
def run_report(tmp_path_factory, reference_profile, fake_model_metadata):
    """``run(name, frame)`` builds the report once per scenario and returns (summary, out_dir, summary.json)."""
    cache: dict[str, tuple] = {}

    def run(name: str, frame: pd.DataFrame, **options):
        if name not in cache:
            out = tmp_path_factory.mktemp(f"report-{name}")
            summary = build_monitoring_report(
                frame, reference_profile, out, model_metadata=fake_model_metadata, **options
            )
            cache[name] = (summary, out, json.loads((out / "summary.json").read_text()))
        return cache[name]

    return run


@pytest.fixture(scope="module")
def train600(pneumoniamnist, make_predictions, run_report):
    images, labels = train_sample(pneumoniamnist, 600)
    return run_report("train600", make_predictions(images, labels))


@pytest.fixture(scope="module")
def test_split(pneumoniamnist, make_predictions, run_report):
    return run_report("test", make_predictions(pneumoniamnist.test.images, pneumoniamnist.test.labels))


@pytest.fixture(scope="module")
def changed(pneumoniamnist, make_predictions, run_report, change_acquisition):
    return run_report("changed", make_predictions(change_acquisition(pneumoniamnist.test.images)))


# ---------------------------------------------------------------- the targets


def test_600_training_images_raise_no_alert(train600):
    summary, _, data = train600
    assert data["drift_detected"] is False
    assert data["class_balance_alert"] is False
    assert data["alert"] is False and data["alerts"] == []
    assert data["drifted_features"] == []
    assert data["n_scored"] == 600 and data["n_errors"] == 0


def test_20_training_images_raise_no_alert_although_distances_are_large(pneumoniamnist, make_predictions, run_report):
    images, labels = train_sample(pneumoniamnist, 20)
    summary, _, data = run_report("train20", make_predictions(images, labels))
    assert data["alert"] is False
    assert data["drift_detected"] is False and data["class_balance_alert"] is False
    assert data["batch_size_rule"]["applied"] == "tests"
    # The point of the rule: 20 images sit far from the reference by chance
    # alone (effect sizes above the threshold), but the test is not significant.
    by_column = {d["column"]: d for d in data["drift"]}
    assert max(d["score"] for d in by_column.values()) > MonitoringRules().numeric_effect
    assert all(d["p_value"] >= d["alpha"] for d in by_column.values())


def test_test_split_with_labels_raises_class_balance_alert_on_the_labelled_share(test_split):
    """The test split (62.5 % pneumonia) read by a weak model, labels on every row.

    The labelled share decides: its alert interval (98.7 %) lies below the expected
    69-79 %. The label-free estimate is reported beside it, corrected for
    the model's errors: the fake model flags 441 of 624 films (71 %), the
    estimate says 69 % (95 % 63-73 %), whose alert interval alone would
    still reach the expected range. The images did not change: no drift.
    """
    summary, _, data = test_split
    estimate = data["prevalence_estimate"]
    assert estimate["basis"] == "labels" and estimate["realized"] == pytest.approx(0.625)
    assert estimate["alert_high"] < estimate["expected_low"]
    assert estimate["alert"] is True and data["class_balance_alert"] is True
    assert estimate["low"] <= estimate["value"] <= estimate["high"]
    assert estimate["value"] < 441 / 624  # the false positives are taken out
    assert estimate["training"] == pytest.approx(3494 / 4708)
    assert (estimate["expected_low"], estimate["expected_high"]) == pytest.approx((3494 / 4708 - 0.05, 3494 / 4708 + 0.05))
    assert data["drift_detected"] is False
    assert "class balance: labelled pneumonia share 62 %, expected 69-79 %" in data["alerts"]
    assert data["verdict"].startswith("More healthy children tonight: pneumonia share 62 % by the labels")
    balance = {c["name"]: c for c in data["class_balance"]}
    assert set(balance) == {"screening", "balanced", "prevalence"}
    prevalence = balance["prevalence"]
    assert prevalence["moved"] is True
    assert prevalence["count"] == 390 and prevalence["n"] == 624
    assert prevalence["share"]["estimate"] == pytest.approx(0.625)
    assert prevalence["reference_share"]["estimate"] == pytest.approx(3494 / 4708)
    assert prevalence["difference"] == pytest.approx(0.625 - 3494 / 4708)


def test_test_split_reports_performance_with_intervals_against_validated_figures(test_split, fake_model_metadata):
    _, _, data = test_split
    figures = {f["name"]: f for f in data["performance"]}
    assert set(figures) == {
        "auc",
        "screening.sensitivity",
        "screening.specificity",
        "balanced.sensitivity",
        "balanced.specificity",
    }
    validated = fake_model_metadata["metrics"]["validation"]
    assert figures["auc"]["validated"] == pytest.approx(validated["auc"])
    assert figures["screening.sensitivity"]["n"] == 390 and figures["screening.specificity"]["n"] == 234
    for figure in figures.values():
        assert figure["value"]["low"] <= figure["value"]["estimate"] <= figure["value"]["high"]
    # this dataset's test AUC runs well below its validation AUC (see the data README)
    assert figures["auc"]["value"]["estimate"] < validated["auc"]


def test_changed_acquisition_is_detected_and_names_the_features_that_moved(changed):
    summary, _, data = changed
    assert data["drift_detected"] is True
    moved = {d["column"]: d for d in data["drifted_features"]}
    # gamma moves the intensities, blur the sharpness
    assert {"img_mean", "img_p50", "img_sharpness"} <= set(moved)
    for feature in moved.values():
        assert feature["score"] >= feature["threshold"]
        assert feature["p_value"] < feature["alpha"]
        assert "Wasserstein" in feature["method"] and "Kolmogorov-Smirnov" in feature["method"]
    assert moved["img_sharpness"]["current_mean"] < moved["img_sharpness"]["reference_mean"]
    assert moved["img_mean"]["current_mean"] > moved["img_mean"]["reference_mean"]
    assert any(alert.startswith("drift: ") and "img_sharpness" in alert for alert in data["alerts"])


# ---------------------------------------------------------------- summary.json


def test_summary_json_fields(train600, fake_model_metadata, pneumoniamnist):
    summary, out, data = train600
    assert data["format_version"] == 4
    for key in ("drift_detected", "class_balance_alert", "out_of_scope_alert", "performance_alert", "alert",
                "sensitivity_alert", "subgroup_alert"):
        assert data[key] is False
    assert data["realized_performance"] is None and data["subgroups"] is None  # no output root, no label store
    assert data["verdict"] == f"Quiet night: 600 films, {data['n_flagged']} flagged for urgent review, nothing unusual."
    assert 300 < data["n_flagged"] < 600
    assert (data["n_in_scope"], data["n_out_of_scope"], data["out_of_scope_share"]) == (600, 0, 0.0)
    assert data["top_out_of_scope_reasons"] == []
    assert data["out_of_scope_test"]["false_flag_rate"] == MonitoringRules().default_false_flag_rate
    assert data["out_of_scope_test"]["false_flag_rate_source"].startswith("default")
    estimate = data["prevalence_estimate"]
    assert estimate["low"] <= estimate["value"] <= estimate["high"] and estimate["method"] == "bbse"
    assert estimate["expected_low"] <= estimate["training"] <= estimate["expected_high"]
    assert estimate["realized"] == pytest.approx(float(np.mean(train_sample(pneumoniamnist, 600)[1])))
    performance = data["estimated_performance"]
    assert performance["valid"] is True and performance["n"] == 600
    for name in ("sensitivity", "specificity", "ppv", "npv", "expected_flagged", "expected_caught", "expected_missed"):
        assert performance[name]["low"] <= performance[name]["value"] <= performance[name]["high"], name
    assert set(performance["realized"]) >= {"sensitivity", "specificity", "ppv", "npv", "flagged", "caught", "missed"}
    # the reference was resampled per class to the night's estimated prevalence
    assert data["reference"]["resampled_to_prevalence"] == pytest.approx(estimate["value"])
    assert isinstance(data["drift_detected"], bool) and isinstance(data["class_balance_alert"], bool)
    assert (data["n_rows"], data["n_scored"], data["n_errors"], data["error_share"]) == (600, 600, 0, 0.0)
    assert data["top_errors"] == []
    drift = {d["column"]: d for d in data["drift"]}
    # image features, the score and the file facts (the training profile has none)
    assert set(drift) == {*NUMERIC_IMAGE_FEATURES, "p_pneumonia"}
    rules = MonitoringRules()
    alpha = rules.test_alpha / len(drift)
    for entry in drift.values():
        assert set(entry) == {
            "column", "kind", "method", "score", "threshold", "p_value", "alpha", "drifted",
            "reference_mean", "current_mean",
        }
        assert entry["kind"] == "numeric" and entry["threshold"] == rules.numeric_effect
        assert entry["alpha"] == pytest.approx(alpha)
        assert 0 <= entry["p_value"] <= 1 and entry["score"] >= 0
    points = fake_model_metadata["operating_points"]
    for comparison in data["class_balance"]:
        assert set(comparison) == {
            "name", "column", "threshold", "count", "n", "share", "reference_count", "reference_n",
            "reference_share", "difference", "p_value", "alpha", "min_difference", "moved",
        }
        assert comparison["reference_n"] == 4708
        if comparison["name"] in points:
            assert comparison["threshold"] == pytest.approx(points[comparison["name"]]["threshold"])
            assert comparison["column"] == f"pred_{comparison['name']}"
        assert set(comparison["share"]) == {"estimate", "low", "high"}
    assert data["batch_size_rule"] == {
        "min_rows": rules.min_rows,
        "n_scored": 600,
        "applied": "tests",
        "text": data["batch_size_rule"]["text"],
    }
    # one false-alarm budget of 2 %, a third each for scope, class balance and drift (drift's split over columns)
    assert data["rules"]["false_alarm_rate"] == rules.false_alarm_rate == 0.02
    assert rules.test_alpha == pytest.approx(0.02 / 3)
    assert data["out_of_scope_test"]["alpha"] == pytest.approx(rules.test_alpha)
    assert data["files"] == {
        "html": "report.html",
        "json": "report.json",
        "class_balance": "class_balance.csv",
        "summary": "summary.json",
    }
    assert data["models"] == [{"model_sha256": "0" * 64, "model_version": "0.0.1-test", "rows": 600}]
    assert data["run_ids"] == ["run-test"]
    assert data["reference"]["n_scored"] == 4708
    assert data["workspace"] is None
    assert data == summary.as_dict()


def test_report_files_are_written(changed):
    _, out, data = changed
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and len(html) > 10_000
    report = json.loads((out / "report.json").read_text())
    assert {"metrics", "tests"} <= set(report)
    failed = {t["metric_config"]["params"].get("column") for t in report["tests"] if t["status"] == "FAIL"}
    assert {d["column"] for d in data["drifted_features"]} <= failed
    balance = pd.read_csv(out / "class_balance.csv")
    assert list(balance["name"]) == ["screening", "balanced"]
    assert {"share", "share_low", "share_high", "reference_share", "p_value", "moved"} <= set(balance.columns)


def test_error_rows_are_counted_and_grouped_by_reason(pneumoniamnist, make_predictions, run_report):
    images, labels = train_sample(pneumoniamnist, 200)
    frame = make_predictions(images, labels)
    reasons = ["file not found: a.png", "file not found: b/c.png", "not a recognised image file", "file not found: d.png"]
    for row, reason in enumerate(reasons):
        frame.loc[row, ["status", "error"]] = ["error", reason]
        frame.loc[row, ["p_pneumonia", *NUMERIC_IMAGE_FEATURES]] = np.nan
    _, _, data = run_report("errors", frame)
    assert (data["n_rows"], data["n_scored"], data["n_errors"]) == (200, 196, 4)
    assert data["error_share"] == pytest.approx(0.02)
    assert data["top_errors"][0] == {
        "reason": "file not found",
        "count": 3,
        "share_of_errors": 0.75,
        "example": "file not found: a.png",
    }
    assert data["top_errors"][1]["reason"] == "not a recognised image file"


def test_error_reasons_mask_numbers():
    errors = pd.DataFrame(
        {"error": ["image of 9000x9000 pixels exceeds the limit", "image of 20000x100 pixels exceeds the limit", None]}
    )
    reasons = top_error_reasons(errors)
    assert reasons[0]["reason"] == "image of N pixels exceeds the limit" and reasons[0]["count"] == 2
    assert reasons[1]["reason"] == "(no reason given)"


def test_too_few_rows_never_alert_even_when_far_off(
    pneumoniamnist, make_predictions, tmp_path, reference_profile, change_acquisition
):
    frame = make_predictions(change_acquisition(pneumoniamnist.test.images[:5], gamma=0.3, blur_radius=1.5))
    summary = build_monitoring_report(frame, reference_profile, tmp_path)
    assert summary.batch_size_rule["applied"] == "too_few_rows"
    assert summary.alert is False and summary.drift_detected is False


def test_all_rows_failed_gives_a_summary_without_report(make_predictions, pneumoniamnist, tmp_path, reference_profile):
    frame = make_predictions(pneumoniamnist.test.images[:3])
    frame["status"], frame["error"] = "error", "cannot decode image: truncated"
    summary = build_monitoring_report(frame, reference_profile, tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["n_scored"] == 0 and data["n_errors"] == 3 and data["alert"] is False
    assert not (tmp_path / "report.html").exists()
    assert summary.top_errors[0]["reason"] == "cannot decode image"


def test_reference_predictions_file_compares_file_facts(pneumoniamnist, make_predictions, tmp_path):
    """With a reference of real predictions the file facts are compared too, new categories included."""
    reference = make_predictions(pneumoniamnist.val.images, pneumoniamnist.val.labels)
    reference.to_parquet(tmp_path / "reference.parquet")
    batch = make_predictions(pneumoniamnist.test.images[:300])
    batch.loc[:149, "img_mode"] = "RGB"
    batch.loc[:149, "img_format"] = "JPEG"
    batch.loc[:149, "img_width"] = 1024
    summary = build_monitoring_report(batch, tmp_path / "reference.parquet", tmp_path / "out")
    drift = {d.column: d for d in summary.drift}
    assert {"img_width", "img_height", "img_aspect_ratio", "img_mode", "img_format"} <= set(drift)
    assert drift["img_mode"].kind == "categorical"
    assert drift["img_mode"].drifted and drift["img_format"].drifted and drift["img_width"].drifted
    assert drift["img_mode"].score == pytest.approx(0.5)
    assert not drift["img_height"].drifted


def test_categorical_drift_uses_an_exact_test_for_two_categories():
    reference = pd.Series(["flagged"] * 70 + ["not flagged"] * 30)
    same = pd.Series(["flagged"] * 7 + ["not flagged"] * 3)
    effect, p_value = categorical_drift(reference, same)
    assert effect == pytest.approx(0.0) and p_value == pytest.approx(1.0)
    effect, p_value = categorical_drift(reference, pd.Series(["not flagged"] * 10))
    assert effect == pytest.approx(0.7) and p_value < 1e-4


def test_thresholds_come_from_the_predictions(make_predictions, pneumoniamnist, tmp_path, reference_profile, fake_model_metadata):
    frame = make_predictions(pneumoniamnist.test.images[:100])
    frame["threshold_screening"] = 0.5
    summary = build_monitoring_report(frame, reference_profile, tmp_path, model_metadata=fake_model_metadata)
    screening = next(c for c in summary.class_balance if c.name == "screening")
    assert screening.threshold == 0.5
    # the reference's decisions are re-derived at the threshold the batch used
    expected = int((reference_profile["p_pneumonia"] >= 0.5).sum())
    assert screening.reference_count == expected
    assert any("threshold 0.5" in warning for warning in summary.warnings)


def test_validated_figures_from_metadata(fake_model_metadata):
    figures = validated_figures(fake_model_metadata)
    assert figures["auc"] == fake_model_metadata["metrics"]["validation"]["auc"]
    assert set(figures["operating_points"]) == {"screening", "balanced"}
    assert validated_figures({"operating_points": {"screening": {"threshold": 0.2, "rule": "x"}}}) is None


def test_workspace_collects_each_run(make_predictions, pneumoniamnist, tmp_path, reference_profile):
    workspace = tmp_path / "workspace"
    frame = make_predictions(pneumoniamnist.test.images[:50])
    first = build_monitoring_report(frame, reference_profile, tmp_path / "a", workspace=workspace)
    second = build_monitoring_report(frame, reference_profile, tmp_path / "b", workspace=workspace)
    assert first.workspace["project_id"] == second.workspace["project_id"]
    assert first.workspace["snapshot_id"] != second.workspace["snapshot_id"]
    from evidently.ui.workspace import Workspace

    store = Workspace(str(workspace))
    assert len(store.list_runs(first.workspace["project_id"])) == 2


def test_discover_predictions_sorts_folders_and_rejects_missing(tmp_path):
    from pneumo_batch.errors import InputError

    (tmp_path / "b.parquet").write_bytes(b"x")
    (tmp_path / "a.parquet").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in discover_predictions([tmp_path])] == ["a.parquet", "b.parquet"]
    with pytest.raises(InputError, match="not found"):
        discover_predictions([tmp_path / "missing.parquet"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .parquet files"):
        discover_predictions([tmp_path / "empty"])


def test_importing_monitoring_does_not_import_evidently():
    code = "import sys, pneumo_batch.monitoring, pneumo_batch.cli.app; sys.exit('evidently' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fake_model_metadata, reference_profile) -> Path:
    """A model directory as monitoring reads it: metadata.json and reference_profile.parquet (no .tflite)."""
    from pneumo_batch.model import write_metadata

    directory = tmp_path_factory.mktemp("model")
    write_metadata(
        directory,
        {
            **fake_model_metadata,
            "default_variant": "float32",
            "variants": {"float32": {"file": "model.tflite", "sha256": "0" * 64}},
            "input": {"size": 28},
        },
    )
    reference_profile.to_parquet(directory / "reference_profile.parquet")
    return directory


@pytest.fixture(scope="module")
def prediction_files(tmp_path_factory, pneumoniamnist, make_predictions, change_acquisition) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("predictions")
    images, labels = train_sample(pneumoniamnist, 600)
    files = {
        "clean_a": make_predictions(images[:300], labels[:300]),
        "clean_b": make_predictions(images[300:], labels[300:]),
        "changed": make_predictions(change_acquisition(pneumoniamnist.test.images)),
    }
    paths = {}
    for name, frame in files.items():
        (folder / name).mkdir()
        paths[name] = folder / name / f"{name}.parquet"
        frame.to_parquet(paths[name])
    return paths


def invoke(*args: str):
    return CliRunner().invoke(app, ["monitor", *args])


def test_cli_drift_exits_0_without_flag_and_4_with_it(model_dir, prediction_files, tmp_path):
    changed = str(prediction_files["changed"])
    result = invoke(changed, "--out", str(tmp_path / "a"), "--model", str(model_dir))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ALERT") and "img_sharpness" in result.output
    result = invoke(changed, "--out", str(tmp_path / "b"), "--model", str(model_dir), "--fail-on-drift")
    assert result.exit_code == ExitCode.ALERT == 4
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["drift_detected"] is True


def test_cli_clean_batch_exits_0_with_flag_from_files_and_folders(model_dir, prediction_files, tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMO_BATCH_MODEL", str(model_dir))
    workspace = tmp_path / "ws"
    result = invoke(
        str(prediction_files["clean_a"]),
        str(prediction_files["clean_b"].parent),
        "--out", str(tmp_path / "out"),
        "--fail-on-drift",
        "--workspace", str(workspace),
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK (600 in scope, 0 out of scope, 0 errors)")
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert data["n_scored"] == 600 and len(data["inputs"]) == 2 and data["alert"] is False
    assert data["workspace"]["path"] == str(workspace)
    assert any(workspace.rglob("snapshots/*.json"))


def test_cli_workspace_default_comes_from_the_environment(model_dir, prediction_files, tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMO_BATCH_WORKSPACE", str(tmp_path / "env-ws"))
    result = invoke(str(prediction_files["clean_a"]), "--out", str(tmp_path / "out"), "--model", str(model_dir))
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "env-ws").rglob("snapshots/*.json"))
    result = invoke(
        str(prediction_files["clean_a"]), "--out", str(tmp_path / "out2"), "--model", str(model_dir), "--no-workspace"
    )
    assert json.loads((tmp_path / "out2" / "summary.json").read_text())["workspace"] is None


def test_cli_reference_file_replaces_the_training_profile(prediction_files, tmp_path):
    result = invoke(
        str(prediction_files["changed"]),
        "--out", str(tmp_path / "out"),
        "--reference", str(prediction_files["clean_a"]),
        "--fail-on-drift",
        "--no-workspace",
    )
    assert result.exit_code == ExitCode.ALERT, result.output
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert data["reference"]["source"] == str(prediction_files["clean_a"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.parquet"], "predictions not found"),
        (["{bad}", "--reference", "{clean}"], "cannot read"),
        (["{clean}", "--model", "{nomodel}"], "not a model directory"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(args, message, prediction_files, tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    values = {"bad": bad, "clean": prediction_files["clean_a"], "nomodel": tmp_path}
    filled = [a.format(**values) for a in args]
    result = CliRunner().invoke(
        app, ["monitor", *filled, "--out", str(tmp_path / "out"), "--no-workspace"]
    )
    assert result.exit_code == ExitCode.USAGE == 2, result.output
    assert message in result.output and result.output.count("\n") == 1


def test_cli_without_default_model_says_so(prediction_files, tmp_path, monkeypatch):
    monkeypatch.setattr("pneumo_batch.model.shipped_models_dirs", lambda: [tmp_path])
    result = invoke(str(prediction_files["clean_a"]), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "no default model found" in result.output


def test_cli_help_documents_the_options():
    result = CliRunner().invoke(app, ["monitor", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--model", "--reference", "--fail-on-drift", "--workspace", "PNEUMO_BATCH_WORKSPACE"):
        assert option in result.output


def test_validated_figures_read_the_training_pipelines_layout():
    """pneumo_batch.training writes bootstrap intervals: {estimate, low, high} under metrics.validation."""
    interval = lambda value: {"estimate": value, "low": value - 0.02, "high": value + 0.02}  # noqa: E731
    metadata = {
        "operating_points": {"screening": {"threshold": 0.3, "rule": "x"}, "balanced": {"threshold": 0.6, "rule": "y"}},
        "metrics": {
            "validation": {
                "n": 524,
                "prevalence": 0.742,
                "auc": interval(0.97),
                "operating_points": {
                    "screening": {"threshold": 0.3, "sensitivity": interval(0.98), "specificity": interval(0.7)},
                    "balanced": {"threshold": 0.6, "sensitivity": interval(0.93), "specificity": interval(0.9)},
                },
            }
        },
    }
    assert validated_figures(metadata) == {
        "auc": 0.97,
        "operating_points": {
            "screening": {"sensitivity": 0.98, "specificity": 0.7},
            "balanced": {"sensitivity": 0.93, "specificity": 0.9},
        },
    }
