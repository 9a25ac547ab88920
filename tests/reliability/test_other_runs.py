"""The same promises for `nightly`, `monitor` and the Ray engine: nothing of a killed run survives it,
a stopped run says so in one line and the rerun completes; `monitor` reads only complete predictions.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time

import pandas as pd
import pytest

import runs
from pneumo_batch.monitoring import discover_predictions, read_predictions


def _wait_for(condition, process, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the run ended too early: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def _stopped(process, stop: signal.Signals, *, group: bool = False) -> tuple[int, str]:
    (os.killpg if group else os.kill)(process.pid, stop)
    code = process.wait(timeout=120)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert runs.wait_for_no_processes(process.pid, 5.0) == [], "processes of the run outlived it"
    return code, stderr


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_nightly_killed_or_stopped_leaves_nothing_running_and_the_rerun_completes(
        xray_jpegs_dir, shipped_default_model, tmp_path, stop):
    root = tmp_path / "nightly"
    args = ["nightly", "--input", str(xray_jpegs_dir), "--output-root", str(root), "--model", str(shipped_default_model),
            "--date", "2026-01-02", "--workers", "2", "--batch-size", "8"]
    staging = root / "predictions" / ".staging-date=2026-01-02" / "predictions.parquet.partial" / "parts"
    process = runs.start(args)
    _wait_for(lambda: runs.count_files(staging, "part-*.arrow") >= random.Random(int(stop)).randint(1, 10), process)

    code, stderr = _stopped(process, stop)

    assert not runs.lock_is_held(root / ".nightly.lock")
    assert not (root / "predictions" / "date=2026-01-02").exists()
    if stop is signal.SIGTERM:
        assert code == 143 and "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1].endswith("run the same command again to resume")
        assert not (root / ".nightly.lock").exists()
    rerun = runs.run(args)
    assert rerun.returncode in (0, 3, 4), rerun.stderr  # 4: these films' class balance is not the training data's
    frame = pd.read_parquet(root / "predictions" / "date=2026-01-02" / "predictions.parquet")
    assert len(frame) == len(list(xray_jpegs_dir.rglob("*.jpeg"))) and frame["image_id"].is_unique


@pytest.mark.slow
def test_monitor_killed_leaves_nothing_running(xray_jpegs_dir, shipped_default_model, tmp_path):
    predictions = tmp_path / "p.parquet"
    assert runs.run(["score", str(xray_jpegs_dir), "--out", str(predictions), "--model", str(shipped_default_model),
                     "--workers", "2"]).returncode == 0
    process = runs.start(["monitor", str(predictions), "--out", str(tmp_path / "report"), "--no-workspace",
                          "--model", str(shipped_default_model)])
    time.sleep(random.Random(7).uniform(1.0, 4.0))
    assert process.poll() is None, "monitor ended before the signal"
    code, _ = _stopped(process, signal.SIGKILL)
    assert code == -signal.SIGKILL


@pytest.mark.slow
def test_monitor_reads_only_the_complete_predictions_of_a_folder_a_run_is_writing(
        xray_jpegs_dir, shipped_default_model, tmp_path):
    folder = tmp_path / "predictions"
    folder.mkdir()
    few = tmp_path / "few"
    few.mkdir()
    for source in sorted(xray_jpegs_dir.rglob("*.jpeg"))[:10]:
        shutil.copy(source, few / source.name)
    assert runs.run(["score", str(few), "--out", str(folder / "earlier.parquet"), "--model",
                     str(shipped_default_model), "--workers", "1"]).returncode == 0
    process = runs.start(["score", str(xray_jpegs_dir), "--out", str(folder / "tonight.parquet"), "--model",
                          str(shipped_default_model), "--workers", "1", "--batch-size", "4"])
    _wait_for(lambda: runs.count_files(folder / "tonight.parquet.partial" / "parts", "part-*.arrow") >= 3, process)

    found = discover_predictions([folder])
    frame = read_predictions([folder])
    monitored_file = runs.run(["monitor", str(folder / "tonight.parquet"), "--out", str(tmp_path / "r"), "--no-workspace"])
    still_writing = process.poll() is None
    _stopped(process, signal.SIGKILL)

    assert still_writing, "the run finished before monitoring looked: nothing was tested"
    assert found == [(folder / "earlier.parquet").resolve()]
    assert len(frame) == 10
    assert monitored_file.returncode == 2 and "predictions not found" in monitored_file.stderr


def _wait_for_line(process, start: str) -> None:
    """Read the run's stderr up to a line that begins with ``start`` (the lines read are dropped)."""
    while not (line := process.stderr.readline().decode()).startswith(start):
        assert line, f"the run ended before printing {start!r}"


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize(("stop", "when"), [(signal.SIGKILL, "scoring"), (signal.SIGTERM, "starting"),
                                            (signal.SIGTERM, "scoring")],
                         ids=["SIGKILL", "SIGTERM-while-Ray-starts", "SIGTERM-while-scoring"])
def test_a_local_ray_instance_goes_with_its_run(xray_jpegs_dir, shipped_default_model, tmp_path, stop, when):
    out = tmp_path / "ray-out"
    args = ["score", str(xray_jpegs_dir), "--out", str(out), "--engine", "ray", "--workers", "2", "--batch-size", "8",
            "--model", str(shipped_default_model)]
    process = runs.start(args)
    if when == "starting":  # Ray's agents are up, ray.init has not returned
        _wait_for(lambda: sum("ray::" in line for line in runs.session_processes(process.pid)) >= 2, process)
    else:  # Ray is up and the run has begun; in the next seconds Ray Data plans, starts its actors and scores
        _wait_for_line(process, "scoring ")
        time.sleep(random.Random(int(stop)).uniform(0.0, 3.0))

    code, stderr = _stopped(process, stop)

    assert not out.exists()
    if stop is signal.SIGTERM:
        assert code == 143, stderr
        assert stderr.strip().splitlines()[-1] == "interrupted; run the same command again"
    rerun = runs.start(args)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()[-2000:]
    rerun.stderr.close()
    assert runs.wait_for_no_processes(rerun.pid, 5.0) == [], "a finished Ray run left processes"
    assert sum(len(pd.read_parquet(part)) for part in out.glob("part-*.parquet")) == len(list(xray_jpegs_dir.rglob("*.jpeg")))
