"""The nightly job end to end with the shipped model on real PneumoniaMNIST images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.export import export_split
from pneumo_batch.locking import LOCK_FILE, exclusive_run

DATE = "2026-11-20"


@pytest.fixture(scope="module")
def train_images(pneumoniamnist, tmp_path_factory) -> Path:
    """100 real training images as PNGs plus one broken file, in a folder."""
    folder = tmp_path_factory.mktemp("incoming")
    export_split(pneumoniamnist, "train", folder, limit=100)
    (folder / "images" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder / "images"


def nightly(*args: str) -> "CliRunner.Result":
    return CliRunner().invoke(app, ["nightly", *args])


def test_nightly_writes_partitions_reports_and_logs(train_images, shipped_default_model, tmp_path):
    result = nightly("--input", str(train_images), "--output-root", str(tmp_path), "--date", DATE)
    assert result.exit_code == ExitCode.ROWS_FAILED, result.output
    predictions = pq.read_table(tmp_path / "predictions" / f"date={DATE}" / "predictions.parquet").to_pandas()
    assert len(predictions) == 101
    assert (predictions["status"] == "error").sum() == 1
    assert predictions.loc[predictions["status"] == "error", "image_id"].tolist() == ["zz_broken.png"]
    summary = json.loads((tmp_path / "reports" / f"date={DATE}" / "summary.json").read_text())
    assert (summary["n_scored"], summary["n_errors"]) == (100, 1)
    assert summary["drift_detected"] is False and summary["class_balance_alert"] is False
    assert (tmp_path / "reports" / f"date={DATE}" / "report.html").is_file()
    assert any((tmp_path / "workspace").iterdir())
    log_lines = (tmp_path / "logs" / f"nightly-{DATE}.log").read_text().strip().splitlines()
    assert f"nightly {DATE}: 101 rows, 1 errors, no alert" in log_lines[-1]
    assert result.output.strip().splitlines()[-1].endswith(log_lines[-1].split(": ", 1)[1])


def test_rerun_replaces_the_partition_and_history_reads_as_one_dataset(train_images, shipped_default_model, tmp_path):
    for day in (DATE, DATE, "2026-11-21"):
        assert nightly("--input", str(train_images), "--output-root", str(tmp_path), "--date", day).exit_code == 3
    history = ds.dataset(tmp_path / "predictions", format="parquet", partitioning="hive").to_table()
    assert history.num_rows == 2 * 101
    assert sorted(set(history.column("date").to_pylist())) == [DATE, "2026-11-21"]
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == [f"date={DATE}", "date=2026-11-21"]


def test_a_step_after_scoring_that_fails_keeps_the_published_predictions(
    train_images, shipped_default_model, tmp_path, monkeypatch
):
    def broken(*args, **kwargs):
        raise ValueError("Unable to convert '19850312c0ffee' to 'DA' object")  # a value: never quoted

    with monkeypatch.context() as patched:
        patched.setattr("pneumo_batch.nightly.build_monitoring_report", broken)
        result = nightly("--input", str(train_images), "--output-root", str(tmp_path), "--date", DATE)
    assert result.exit_code == ExitCode.JOB_FAILED, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: monitoring failed: unexpected ValueError; the predictions are published")
    assert "19850312" not in result.output and "19850312" not in (tmp_path / "logs" / f"nightly-{DATE}.log").read_text()
    published = pq.read_table(tmp_path / "predictions" / f"date={DATE}" / "predictions.parquet")
    assert published.num_rows == 101
    assert not (tmp_path / "reports" / f"date={DATE}").exists()

    again = nightly("--input", str(train_images), "--output-root", str(tmp_path), "--date", DATE)
    assert again.exit_code == ExitCode.ROWS_FAILED, again.output  # the rerun finishes what was missing
    assert (tmp_path / "reports" / f"date={DATE}" / "summary.json").is_file()


def test_empty_input_writes_an_empty_partition(shipped_default_model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = nightly("--input", str(empty), "--output-root", str(tmp_path / "out"), "--date", DATE, "--verbose")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "out" / "predictions" / f"date={DATE}" / "predictions.parquet").num_rows == 0
    assert "0 rows (empty input)" in result.output


def test_a_held_lock_refuses_at_once_and_touches_nothing(train_images, shipped_default_model, tmp_path):
    with exclusive_run(tmp_path):
        started = time.perf_counter()
        result = nightly("--input", str(train_images), "--output-root", str(tmp_path), "--date", DATE)
        assert time.perf_counter() - started < 5
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE]  # the holder's lock only
    assert result.exit_code == ExitCode.LOCKED
    assert "another run holds" in result.output and f"pid {os.getpid()}" in result.output
    assert list(tmp_path.iterdir()) == []  # the holder removed its lock when it ended


def test_two_concurrent_runs_one_runs_one_refuses(train_images, shipped_default_model, tmp_path):
    command = [sys.executable, "-m", "pneumo_batch.cli", "nightly", "--input", str(train_images),
               "--output-root", str(tmp_path), "--date", DATE]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lock_holder(tmp_path / LOCK_FILE, first)
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == ExitCode.LOCKED, second.stderr
    _, first_stderr = first.communicate(timeout=300)
    assert first.returncode == ExitCode.ROWS_FAILED, first_stderr


def test_a_lock_left_by_a_killed_run_does_not_block(train_images, shipped_default_model, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from pneumo_batch.locking import exclusive_run\n"
         "with exclusive_run(Path(sys.argv[1])): time.sleep(600)", str(tmp_path)],
    )
    _wait_for_lock_holder(tmp_path / LOCK_FILE, holder)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert (tmp_path / LOCK_FILE).read_text()  # the dead holder's note is still there
    result = nightly("--input", str(train_images), "--output-root", str(tmp_path), "--date", DATE)
    assert result.exit_code == ExitCode.ROWS_FAILED, result.output


def test_config_file_supplies_options_and_the_command_line_wins(train_images, shipped_default_model, tmp_path):
    config = tmp_path / "nightly.toml"
    config.write_text(f'input = "{train_images}"\noutput_root = "out"\ndate = "2026-01-01"\nworkers = 1\n')
    result = nightly("--config", str(config), "--date", DATE)
    assert result.exit_code == ExitCode.ROWS_FAILED, result.output
    assert (tmp_path / "out" / "predictions" / f"date={DATE}" / "predictions.parquet").is_file()
    assert not (tmp_path / "out" / "predictions" / "date=2026-01-01").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output-root", "x"], "--input is required"),
        (["--input", "x", "--output-root", "y", "--date", "20-11-2026"], "YYYY-MM-DD"),
    ],
)
def test_usage_errors(args, message, tmp_path):
    result = nightly(*args)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.output


def test_unknown_config_key_is_a_usage_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('inputs = "x"\n')
    result = nightly("--config", str(config))
    assert result.exit_code == ExitCode.USAGE and "unknown key(s) inputs" in result.output


def _wait_for_lock_holder(lock: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock.is_file() and lock.read_text().strip():
            return
        assert process.poll() is None, "the lock holder ended before taking the lock"
        time.sleep(0.05)
    pytest.fail("the lock was never taken")
