"""Fault injection: `pneumo-batch score` on real X-rays, killed or stopped at seeded random points, then resumed.

Each case starts a real run in its own session, signals it once its work
folder exists and a random number of chunks are done, and then checks what a
careful operator would: the process table holds nothing of the run within
5 s, no lock is held (and after SIGTERM/SIGINT none is left), the exit code
and the one line for a stop, nothing at ``--out``. The same command then
resumes, and its output must equal an uninterrupted run's row for row:
every input row exactly once, the same scores.
"""

from __future__ import annotations

import math
import os
import random
import re
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

import runs

BATCH = 8
#: Columns that legitimately differ between two runs of the same input.
PER_RUN = ["run_id", "scored_at"]
STOP_LINE = re.compile(r"interrupted after (\d+) of (\d+) rows; run the same command again to resume")


def _args(images: Path, out: Path, model: Path) -> list[str]:
    return ["score", str(images), "--out", str(out), "--model", str(model), "--workers", "2", "--batch-size", str(BATCH)]


def _uninterrupted(images: Path, model: Path, out: Path) -> pd.DataFrame:
    completed = runs.run(_args(images, out, model))
    assert completed.returncode == 0, completed.stderr
    return pd.read_parquet(out)


@pytest.fixture(scope="module")
def all_reference(xray_jpegs_dir, shipped_default_model, tmp_path_factory) -> pd.DataFrame:
    return _uninterrupted(xray_jpegs_dir, shipped_default_model, tmp_path_factory.mktemp("ref") / "p.parquet")


def interrupt_then_resume(images: Path, model: Path, out: Path, reference: pd.DataFrame, *, stop: signal.Signals,
                          seed: int, whole_group: bool = False) -> None:
    rng = random.Random(seed)
    work = out.with_name(out.name + ".partial")
    chunks = math.ceil(len(reference) / BATCH)
    # Signal within the first quarter of the chunks and at most 50 ms after the last part seen: on an idle
    # fast machine the 240 films take well over a second, so the run is still working when the signal lands.
    wait_for_parts = rng.randint(0, chunks // 4)

    process = runs.start(_args(images, out, model))
    deadline = time.monotonic() + 120
    while not (work / "state.json").exists() or runs.count_files(work / "parts", "part-*.arrow") < wait_for_parts:
        assert process.poll() is None, f"the run ended before the signal: {process.stderr.read().decode()}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 0.05))
    if whole_group:  # as Ctrl-C on a terminal or `systemctl stop` do
        os.killpg(process.pid, stop)
    else:
        os.kill(process.pid, stop)
    code = process.wait(timeout=120)
    stderr = process.stderr.read().decode()
    process.stderr.close()

    assert runs.wait_for_no_processes(process.pid, 5.0) == [], "processes of the run outlived it"
    assert not runs.lock_is_held(work / "lock")
    assert not out.exists(), "the run finished before the signal: choose an earlier point"
    kept = sum(pd.read_feather(part).shape[0] for part in (work / "parts").glob("part-*.arrow"))
    if stop is signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 128 + stop, stderr
        assert "Traceback" not in stderr
        match = STOP_LINE.fullmatch(stderr.strip().splitlines()[-1])
        assert match, stderr
        assert (int(match[1]), int(match[2])) == (kept, len(reference))
        assert not (work / "lock").exists(), "a stopped run removes its lock"

    resumed = runs.start(_args(images, out, model))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    summary = resumed.stderr.read().decode().strip().splitlines()[-1]
    resumed.stderr.close()
    assert runs.wait_for_no_processes(resumed.pid, 5.0) == []
    if kept:
        assert f"{kept:,} resumed from an earlier run" in summary
    assert not work.exists()

    frame = pd.read_parquet(out)
    assert frame["image_id"].is_unique
    pd.testing.assert_frame_equal(frame.drop(columns=PER_RUN), reference.drop(columns=PER_RUN))
    assert frame["run_id"].nunique() == 1


def test_sigterm_stops_cleanly_and_the_rerun_resumes(xray_jpegs_dir, shipped_default_model, all_reference, tmp_path):
    interrupt_then_resume(xray_jpegs_dir, shipped_default_model, tmp_path / "p.parquet", all_reference,
                          stop=signal.SIGTERM, seed=1)


@pytest.mark.slow  # the ten cases below include SIGKILL; tests/test_score.py has a quick one
def test_sigkill_leaves_no_process_and_the_rerun_resumes(xray_jpegs_dir, shipped_default_model, all_reference,
                                                         tmp_path):
    interrupt_then_resume(xray_jpegs_dir, shipped_default_model, tmp_path / "p.parquet", all_reference,
                          stop=signal.SIGKILL, seed=2)


#: Ten runs: which signal, and whether it reaches the whole process group (Ctrl-C, systemctl stop) or the main process.
CASES = [
    (signal.SIGKILL, False), (signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGKILL, False),
    (signal.SIGTERM, True), (signal.SIGKILL, True), (signal.SIGINT, False), (signal.SIGTERM, False),
    (signal.SIGKILL, False), (signal.SIGTERM, True),
]


def _case(seed: int, stop: signal.Signals, whole_group: bool):
    return pytest.param(seed, stop, whole_group, id=f"{seed}-{stop.name}{'-group' if whole_group else ''}")


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "stop", "whole_group"), [_case(seed, *case) for seed, case in enumerate(CASES)])
def test_interrupted_at_a_random_point_then_resumed(xray_jpegs_dir, shipped_default_model, all_reference, tmp_path,
                                                     seed, stop, whole_group):
    interrupt_then_resume(xray_jpegs_dir, shipped_default_model, tmp_path / "p.parquet", all_reference,
                          stop=stop, seed=seed, whole_group=whole_group)
