"""Every user error is one line on stderr, without a traceback, with exit code 2 (usage) or 1 (job failed),
and nothing appears or changes at the final path.

Most cases run the real CLI in-process (typer's runner); the ones about a
filesystem (read-only, full) mount a small tmpfs, which needs root, as the
tests run in CI.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pneumo_batch import storage
from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode

runner = CliRunner()


def _invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def assert_one_line_error(result, code: ExitCode, phrase: str, *, mid_run: bool = False) -> None:
    """Exit ``code``; stderr is one ``Error:`` line holding ``phrase`` (after the run's start line, ``mid_run``)."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    if mid_run:
        assert lines[0].startswith("scoring "), result.stderr
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert phrase in lines[0], result.stderr


@pytest.fixture()
def images(tmp_path, pneumoniamnist) -> Path:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(6):
        Image.fromarray(pneumoniamnist.test.images[index]).save(folder / f"img{index}.png")
    return folder


def _score(images: Path, out: Path, model: Path, *extra: str):
    return _invoke("score", str(images), "--out", str(out), "--model", str(model), "--workers", "1", *extra)


def test_out_that_is_a_folder(images, tiny_tflite_model, tmp_path):
    (tmp_path / "out").mkdir()
    result = _score(images, tmp_path / "out", tiny_tflite_model)
    assert_one_line_error(result, ExitCode.USAGE, "--out is a directory")
    assert list((tmp_path / "out").iterdir()) == []


def test_out_that_is_neither_file_nor_folder(images, tiny_tflite_model, tmp_path):
    os.mkfifo(tmp_path / "fifo.parquet")
    result = _score(images, tmp_path / "fifo.parquet", tiny_tflite_model)
    assert_one_line_error(result, ExitCode.USAGE, "--out exists and is not a regular file")
    assert (tmp_path / "fifo.parquet").is_fifo()


def test_out_that_is_someone_elses_file_is_refused_unless_overwrite(images, tiny_tflite_model, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    result = _score(images, notes, tiny_tflite_model)
    assert_one_line_error(result, ExitCode.USAGE, "is not a pneumo-batch predictions file; pass --overwrite")
    assert notes.read_text() == "my notes\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images", "notes.txt"]  # no work folder either

    replaced = _score(images, notes, tiny_tflite_model, "--overwrite")
    assert replaced.exit_code == ExitCode.OK, replaced.output
    assert pq.read_table(notes).num_rows == 6


def test_out_that_is_an_earlier_output_is_replaced_without_overwrite(images, tiny_tflite_model, tmp_path):
    out = tmp_path / "p.parquet"
    assert _score(images, out, tiny_tflite_model).exit_code == ExitCode.OK
    assert _score(images, out, tiny_tflite_model).exit_code == ExitCode.OK


def test_out_under_a_pseudo_filesystem(images, tiny_tflite_model):
    result = _score(images, Path("/proc/pneumo-batch-out.parquet"), tiny_tflite_model)
    assert_one_line_error(result, ExitCode.USAGE, "cannot write in the folder of --out")
    assert not Path("/proc/pneumo-batch-out.parquet").exists()


def test_out_under_a_file(images, tiny_tflite_model, tmp_path):
    (tmp_path / "afile").write_text("x")
    result = _score(images, tmp_path / "afile" / "sub" / "p.parquet", tiny_tflite_model)
    assert_one_line_error(result, ExitCode.USAGE, "cannot create the folder of --out")
    assert (tmp_path / "afile").read_text() == "x"


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_out_on_a_read_only_filesystem(images, tiny_tflite_model, tmp_path):
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        result = _score(images, folder / "p.parquet", tiny_tflite_model)
        assert_one_line_error(result, ExitCode.USAGE, "Read-only file system")
        assert list(folder.iterdir()) == []


def test_disk_full_mid_run_on_a_small_tmpfs(exported_test_split, tiny_tflite_model, tmp_path):
    with _tmpfs(tmp_path / "small", "size=48k") as folder:
        out = folder / "p.parquet"
        result = _invoke("score", str(exported_test_split), "--out", str(out), "--model", str(tiny_tflite_model),
                         "--workers", "1", "--batch-size", "10")
        assert_one_line_error(result, ExitCode.JOB_FAILED, "Error: No space left on device", mid_run=True)
        assert not out.exists()


def test_disk_full_when_the_output_is_flushed(images, tiny_tflite_model, tmp_path, monkeypatch):
    out = tmp_path / "p.parquet"

    def full(path: Path) -> None:
        if path.name.endswith(".parquet.tmp"):  # the output the run builds, in its work folder
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(storage, "fault_injector", full)
    result = _score(images, out, tiny_tflite_model)
    assert_one_line_error(result, ExitCode.JOB_FAILED, "Error: No space left on device", mid_run=True)
    assert not out.exists()

    monkeypatch.setattr(storage, "fault_injector", None)
    rerun = _score(images, out, tiny_tflite_model)
    assert rerun.exit_code == ExitCode.OK and "6 resumed from an earlier run" in rerun.stderr


def test_report_folder_that_is_a_file(tmp_path):
    (tmp_path / "report").write_text("x")
    (tmp_path / "p.parquet").write_text("x")
    result = _invoke("monitor", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "report"), "--no-workspace")
    assert_one_line_error(result, ExitCode.USAGE, "--out exists and is not a folder")
    assert (tmp_path / "report").read_text() == "x"


@pytest.mark.parametrize("damage", ["metadata-not-json", "metadata-missing", "weights-changed", "weights-missing"])
def test_corrupt_or_missing_model_directory(images, tiny_tflite_model, tmp_path, damage):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_tflite_model, model)
    metadata = model / "metadata.json"
    if damage == "metadata-not-json":
        metadata.write_text(metadata.read_text()[:40])
    elif damage == "metadata-missing":
        metadata.unlink()
    elif damage == "weights-changed":
        weights = model / json.loads(metadata.read_text())["variants"]["float32"]["file"]
        weights.write_bytes(weights.read_bytes()[:-10] + b"0" * 10)
    else:
        (model / json.loads(metadata.read_text())["variants"]["float32"]["file"]).unlink()
    out = tmp_path / "p.parquet"
    result = _score(images, out, model)
    assert_one_line_error(result, ExitCode.USAGE, "")
    assert not out.exists() and not out.with_name("p.parquet.partial").exists()


def test_manifest_that_is_not_parquet(tiny_tflite_model, tmp_path):
    (tmp_path / "m.parquet").write_text("path\na.png\n")
    out = tmp_path / "p.parquet"
    result = _score(tmp_path / "m.parquet", out, tiny_tflite_model)
    assert_one_line_error(result, ExitCode.USAGE, "as a Parquet manifest")
    assert not out.exists()


@pytest.mark.parametrize(
    ("line", "phrase"),
    [("colour = 'blue'", "unknown key(s) colour"), ("workers = 'two'", "workers must be an integer"),
     ("batch_size = true", "batch_size must be an integer"), ("quiet = 1", "quiet must be true or false"),
     ("input = 3", "input must be a string"), ("workers = [", "is not valid TOML")],
    ids=["unknown-key", "string-for-int", "bool-for-int", "int-for-bool", "int-for-path", "bad-toml"],
)
def test_config_with_a_wrong_key_or_type(tmp_path, line, phrase):
    config = tmp_path / "nightly.toml"
    config.write_text(f"input = 'in'\noutput_root = 'out'\n{line}\n" if not line.startswith("input") else
                      f"output_root = 'out'\n{line}\n")
    result = _invoke("nightly", "--config", str(config))
    assert_one_line_error(result, ExitCode.USAGE, phrase)
    assert not (tmp_path / "out").exists()


def test_nightly_output_root_that_is_a_file(tmp_path):
    (tmp_path / "root").write_text("x")
    (tmp_path / "in").mkdir()
    result = _invoke("nightly", "--input", str(tmp_path / "in"), "--output-root", str(tmp_path / "root"))
    assert_one_line_error(result, ExitCode.USAGE, "--output-root exists and is not a folder")
    assert (tmp_path / "root").read_text() == "x"


def test_debug_shows_the_traceback(images, tiny_tflite_model, tmp_path):
    (tmp_path / "out").mkdir()
    for how in ({"env": {"PNEUMO_BATCH_DEBUG": "1"}}, {"flag": True}):
        args = ["score", str(images), "--out", str(tmp_path / "out"), "--model", str(tiny_tflite_model)]
        result = _invoke(*(["--debug", *args] if "flag" in how else args), env=how.get("env"))
        assert result.exit_code == ExitCode.USAGE
        assert "Traceback" in result.stderr and result.stderr.rstrip().splitlines()[-1].startswith("Error: --out is a directory")
    assert "Traceback" not in _invoke(*args).stderr  # --debug does not stick to the next command


def test_an_unexpected_error_is_one_line_that_never_quotes_its_text(images, tiny_tflite_model, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        # What highdicom says of a malformed birth date: the value must not reach the line.
        raise ValueError("Unable to convert '19020304#5f1c' to 'DA' object")

    monkeypatch.setattr("pneumo_batch.cli.score.score_batch", broken)
    result = _score(images, tmp_path / "p.parquet", tiny_tflite_model)
    assert_one_line_error(result, ExitCode.JOB_FAILED, "unexpected ValueError")
    assert "PNEUMO_BATCH_DEBUG=1" in result.stderr
    assert "19020304" not in result.stdout + result.stderr


@pytest.mark.parametrize(("args", "phrase"), [
    (["score", "in"], "Missing option '--out'"),
    (["score", "in", "--out", "p.parquet", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["bogus"], "No such command 'bogus'"),
], ids=["missing-option", "bad-value", "unknown-command"])
def test_a_bad_option_is_one_line_from_the_console_script(tmp_path, args, phrase):
    import runs

    completed = runs.run(args)
    assert completed.returncode == ExitCode.USAGE
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith("Error: ") and phrase in completed.stderr
    assert "--help" in completed.stderr


def test_a_second_run_on_the_same_out_exits_5_and_touches_nothing(images, tiny_tflite_model, tmp_path):
    import fcntl

    out = tmp_path / "p.parquet"
    work = out.with_name("p.parquet.partial")
    work.mkdir()
    with open(work / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write('{"pid": 1, "host": "other", "started_at": "2026-01-01T00:00:00+00:00"}')
        held.flush()
        before = sorted(path.name for path in tmp_path.rglob("*"))
        result = _score(images, out, tiny_tflite_model)
        assert_one_line_error(result, ExitCode.LOCKED, "another pneumo-batch run is writing")
        assert sorted(path.name for path in tmp_path.rglob("*")) == before
        assert (work / "lock").read_text().startswith('{"pid": 1,')
    assert not out.exists()
