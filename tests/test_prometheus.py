"""The nightly metrics file parses with prometheus-client and promtool; the example alert rules pass promtool."""

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.export import export_split
from pneumo_batch.prometheus import RunMetrics, metrics_path, write_run_metrics

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, (  # the line make test prints when it cannot install it (.ci/install-system-tools)
        "promtool is missing and cannot be installed here: run 'sudo apt-get install -y prometheus', "
        "or the tests that need it fail"
    )
    return found


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


def _night(**changes) -> RunMetrics:
    values = dict(
        finished_at=1_790_000_000.0, success=True, duration_seconds=42.5,
        rows_by_status={"ok": 98, "error": 2}, out_of_scope=3, screening_positives=61,
        prevalence_estimate=0.71, prevalence_low=0.62, prevalence_high=0.79, training_prevalence=0.742,
        alerts={"drift": False, "class_balance": False, "out_of_scope": True, "performance": False},
    )
    values.update(changes)
    return RunMetrics(**values)


def test_a_night_writes_every_figure_that_parses_back(tmp_path):
    path = write_run_metrics(metrics_path(tmp_path), _night())

    assert path == tmp_path / "metrics" / "pneumo_batch.prom"
    samples = _samples(path)
    assert samples[("pneumo_batch_last_run_success", ())] == 1
    assert samples[("pneumo_batch_last_success_timestamp_seconds", ())] == 1_790_000_000
    assert samples[("pneumo_batch_rows", (("status", "error"),))] == 2
    assert samples[("pneumo_batch_rows", (("status", "ok"),))] == 98
    assert samples[("pneumo_batch_rows_out_of_scope", ())] == 3
    assert samples[("pneumo_batch_screening_positives", ())] == 61
    assert samples[("pneumo_batch_prevalence_estimate_low", ())] == pytest.approx(0.62)
    assert samples[("pneumo_batch_alert", (("kind", "out_of_scope"),))] == 1
    assert samples[("pneumo_batch_alert", (("kind", "drift"),))] == 0
    assert samples[("pneumo_batch_alert", (("kind", "any"),))] == 1
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it
    lint = subprocess.run([_promtool(), "check", "metrics"], input=path.read_bytes(), capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_failed_night_keeps_the_last_success_time_and_drops_the_verdict(tmp_path):
    path = metrics_path(tmp_path, tmp_path / "collector")
    write_run_metrics(path, _night())

    write_run_metrics(path, RunMetrics(finished_at=1_790_086_400.0, success=False, duration_seconds=3.0))

    samples = _samples(path)
    assert samples[("pneumo_batch_last_run_success", ())] == 0
    assert samples[("pneumo_batch_last_run_timestamp_seconds", ())] == 1_790_086_400
    assert samples[("pneumo_batch_last_success_timestamp_seconds", ())] == 1_790_000_000
    assert not any(name == "pneumo_batch_alert" for name, _ in samples)


def test_the_example_alert_rules_pass_promtool():
    check = subprocess.run([_promtool(), "check", "rules", "pneumo-batch.rules.yml"], cwd=JOBS,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([_promtool(), "test", "rules", "pneumo-batch.rules.test.yml"], cwd=JOBS,
                          capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_nightly_run_rewrites_the_metrics_file(pneumoniamnist, shipped_default_model, tmp_path):
    export_split(pneumoniamnist, "train", tmp_path / "incoming", limit=40)
    (tmp_path / "incoming" / "images" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    night = ["nightly", "--input", str(tmp_path / "incoming" / "images"), "--output-root", str(tmp_path / "out"),
             "--date", "2026-11-20"]

    result = CliRunner().invoke(app, night)

    assert result.exit_code == ExitCode.ROWS_FAILED, result.output
    default = tmp_path / "out" / "metrics" / "pneumo_batch.prom"
    samples = _samples(default)
    assert samples[("pneumo_batch_last_run_success", ())] == 1
    assert samples[("pneumo_batch_rows", (("status", "ok"),))] == 40
    assert samples[("pneumo_batch_rows", (("status", "error"),))] == 1
    assert 0 < samples[("pneumo_batch_screening_positives", ())] <= 40
    assert samples[("pneumo_batch_alert", (("kind", "any"),))] == 0
    assert samples[("pneumo_batch_run_duration_seconds", ())] > 0
    lint = subprocess.run([_promtool(), "check", "metrics"], input=default.read_bytes(), capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # a night that fails after taking the lock (here: no model there) is written too, to --metrics-dir
    failed = CliRunner().invoke(app, [*night, "--model", str(tmp_path), "--metrics-dir", str(tmp_path / "collector")])

    assert failed.exit_code == ExitCode.USAGE, failed.output
    samples = _samples(tmp_path / "collector" / "pneumo_batch.prom")
    assert samples[("pneumo_batch_last_run_success", ())] == 0
    assert not any(name == "pneumo_batch_rows" for name, _ in samples)


def test_realized_performance_gauges_and_the_sensitivity_alert(tmp_path):
    night = _night(alerts={"sensitivity": True}, realized_sensitivity=0.91, realized_specificity=0.8,
                   label_coverage=0.35, sensitivity_cusum=6.2, sensitivity_cusum_threshold=5.5)
    path = write_run_metrics(metrics_path(tmp_path), night)
    samples = _samples(path)
    assert samples[("pneumo_batch_realized_sensitivity", ())] == pytest.approx(0.91)
    assert samples[("pneumo_batch_label_coverage", ())] == pytest.approx(0.35)
    assert samples[("pneumo_batch_sensitivity_cusum", ())] == pytest.approx(6.2)
    assert samples[("pneumo_batch_alert", (("kind", "sensitivity"),))] == 1
    assert samples[("pneumo_batch_alert", (("kind", "subgroup"),))] == 0
    assert samples[("pneumo_batch_alert", (("kind", "any"),))] == 1
    lint = subprocess.run([_promtool(), "check", "metrics"], input=path.read_bytes(), capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
