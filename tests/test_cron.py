"""Under cron (no terminal, a bare environment) the nightly job prints nothing on a good night, one line otherwise.

cron mails whatever a job prints, so a line on a good night (LiteRT's native
"INFO: Created TensorFlow Lite XNNPACK delegate" included) buries the nights
that need a look. Real runs of the installed console script with the
shipped model, on real PneumoniaMNIST images.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.export import export_split

DATE = "2026-11-20"


def cron_run(*args: str) -> subprocess.CompletedProcess[str]:
    """``pneumo-batch ARGS`` as cron starts it: ``env -i`` with PATH and HOME, no terminal on any stream."""
    script = Path(sys.executable).with_name("pneumo-batch")
    env = {"PATH": f"{script.parent}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    if "PYTHONPATH" in os.environ:  # a worktree's package, when the tests run from one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        ["env", "-i", *(f"{key}={value}" for key, value in env.items()), str(script), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.mark.slow  # three nightly runs as cron would start them: make test-all (and CI) runs it
def test_a_quiet_night_prints_nothing_and_an_alerting_night_one_line(pneumoniamnist, shipped_default_model, tmp_path):
    # in distribution: validation images, at the training data's pneumonia share (74 %)
    val = export_split(pneumoniamnist, "val", tmp_path / "val", limit=150)
    assert 0.70 <= np.mean(pneumoniamnist.val.labels[:150]) <= 0.78
    quiet = cron_run("nightly", "--input", str(val), "--output-root", str(tmp_path / "out"), "--date", DATE)

    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (ExitCode.OK, "", "")
    assert (tmp_path / "out" / "logs" / f"nightly-{DATE}.log").read_text().count("\n") > 3  # the log still has it all

    # the test split has 62.5 % pneumonia: a class-balance alert
    test = export_split(pneumoniamnist, "test", tmp_path / "test")
    alerting = cron_run("nightly", "--input", str(test), "--output-root", str(tmp_path / "out"), "--date", "2026-11-21")

    assert alerting.returncode == ExitCode.ALERT, alerting.stderr
    assert alerting.stdout == ""
    assert len(alerting.stderr.splitlines()) == 1, alerting.stderr
    assert alerting.stderr.startswith("nightly 2026-11-21: 624 rows, 0 errors, ALERT: ")


@pytest.mark.ray
@pytest.mark.slow  # starts a local Ray instance
def test_a_quiet_ray_run_prints_nothing(pneumoniamnist, shipped_default_model, tmp_path):
    # Ray's core worker prints a notice for every actor Ray Data starts (ray-project/ray#53727)
    export_split(pneumoniamnist, "val", tmp_path / "in", limit=20)

    result = cron_run("score", str(tmp_path / "in" / "images"), "--out", str(tmp_path / "p"), "--engine", "ray",
                      "--quiet")

    assert (result.returncode, result.stdout, result.stderr) == (ExitCode.OK, "", "")
    assert (tmp_path / "p").is_dir()


def test_a_failed_night_prints_one_line(tmp_path):
    failed = cron_run("nightly", "--input", str(tmp_path), "--output-root", str(tmp_path / "out"), "--model", str(tmp_path))

    assert failed.returncode == ExitCode.USAGE
    assert (failed.stdout, len(failed.stderr.splitlines())) == ("", 1), failed.stderr
    assert failed.stderr.startswith("Error: ")


def test_verbose_restores_the_log_lines(shipped_default_model, tmp_path):
    (tmp_path / "empty").mkdir()
    args = ["nightly", "--input", str(tmp_path / "empty"), "--output-root", str(tmp_path / "out")]

    assert CliRunner().invoke(app, args).output == ""  # no terminal: quiet by default
    result = CliRunner().invoke(app, [*args, "--verbose"])

    assert result.exit_code == ExitCode.OK, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) > 2 and "0 rows (empty input), 0 errors, no alert" in lines[-1]


@pytest.mark.parametrize(("broken", "lines"), [(False, 0), (True, 1)])
def test_score_quiet_prints_only_a_failure(pneumoniamnist, shipped_default_model, tmp_path, broken, lines):
    export_split(pneumoniamnist, "val", tmp_path / "in", limit=20)
    if broken:
        (tmp_path / "in" / "images" / "zz_broken.png").write_bytes(b"not an image")

    result = cron_run("score", str(tmp_path / "in" / "images"), "--out", str(tmp_path / "p.parquet"), "--quiet")

    assert result.returncode == (ExitCode.ROWS_FAILED if broken else ExitCode.OK), result.stderr
    assert (result.stdout, len(result.stderr.splitlines())) == ("", lines), result.stderr
