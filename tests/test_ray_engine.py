"""The Ray engine (issue 6): the same rows as the local engine, row by row, from a local Ray with 2 CPUs.

Every test that starts Ray is marked ``ray`` (``pytest -m "not ray"`` skips
them) and shares one local instance per module. Real images and the tiny
real ``.tflite`` compare the engines; a fake scorer that kills its worker
checks that Ray's retry neither drops nor doubles a row.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import fake_scores, make_fake_scorer
from typer.testing import CliRunner

from pneumo_batch import predictions as columns
from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.errors import InputError, MissingDependencyError, ModelError
from pneumo_batch.monitoring import read_predictions
from pneumo_batch.scoring import Engine, read_predictions_folder, read_run_metadata, score_batch

TESTS_DIR = Path(__file__).resolve().parent
#: Rows per block: small, so that a few hundred rows make several blocks on both actors.
BATCH = 64
#: Columns that name the run, not the row: they differ between two runs by design.
RUN_COLUMNS = {columns.RUN_ID, columns.SCORED_AT}


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray with 2 CPUs for the module; its workers can import the tests' fakes."""
    if importlib.util.find_spec("ray") is None:
        pytest.fail("Ray is not installed (pip install 'pneumo-batch[ray]'; make test installs it)")
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": str(TESTS_DIR)}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed_manifest(exported_test_split: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 real test images with broken rows spread through them, and pass-through columns."""
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copytree(exported_test_split.parent / "images", folder / "images")
    good = pd.read_parquet(exported_test_split)
    png = (folder / "images" / "test_00000.png").read_bytes()
    broken = {
        "empty.png": b"",
        "truncated.png": png[: len(png) // 2],
        "not_an_image.png": b"this is a text file, not a PNG",
    }
    for name, content in broken.items():
        (folder / "images" / name).write_bytes(content)
    outside = folder.parent / f"{folder.name}-outside.png"
    outside.write_bytes(png)
    bad_rows = [
        {"image_id": "empty", "path": "images/empty.png"},
        {"image_id": "truncated", "path": "images/truncated.png"},
        {"image_id": "text", "path": "images/not_an_image.png"},
        {"image_id": "missing", "path": "images/no_such_file.png"},
        {"image_id": "folder", "path": "images"},
        {"image_id": "outside", "path": f"../{outside.name}"},
        {"image_id": None, "path": None},  # no id and no path: the id is row-N
        {"image_id": None, "path": "images/test_00003.png"},  # no id: the path is the id
    ]
    rows = good.to_dict("records")
    for position, bad in zip((0, 63, 64, 100, 129, 150, 199, 205), bad_rows):
        rows.insert(position, {**{key: None for key in good.columns}, **bad, "split": "broken"})
    frame = pd.DataFrame(rows, columns=good.columns).astype({"label": "Int8", "index": "Int64"})
    manifest = folder / "manifest.parquet"
    frame.to_parquet(manifest, index=False)
    return manifest


def score_batch_on_ray(input_path, out, **options):
    return score_batch(input_path, out, engine=Engine.RAY, **options)


def _local(input_path: Path, out: Path, **options) -> pd.DataFrame:
    score_batch(input_path, out, workers=1, batch_size=BATCH, **options)
    return pq.read_table(out).to_pandas()


def _ray(input_path: Path, out: Path, **options) -> pd.DataFrame:
    summary = score_batch_on_ray(input_path, out, batch_size=BATCH, **options)
    assert summary.out == out and out.is_dir()
    return read_predictions_folder(out).to_pandas()


def _assert_same_rows(ray_rows: pd.DataFrame, local_rows: pd.DataFrame) -> None:
    """Every column but the run's id and time, row by row; scores and features to 1e-6."""
    assert list(ray_rows.columns) == list(local_rows.columns)
    assert len(ray_rows) == len(local_rows)
    for name in local_rows.columns:
        if name in RUN_COLUMNS:
            continue
        ours, theirs = ray_rows[name], local_rows[name]
        if pd.api.types.is_float_dtype(theirs):
            np.testing.assert_allclose(ours.to_numpy(float), theirs.to_numpy(float), rtol=0, atol=1e-6, err_msg=name)
        else:
            assert ours.tolist() == theirs.tolist(), name


@pytest.mark.ray
@pytest.mark.slow
def test_manifest_with_broken_rows_matches_the_local_engine_row_by_row(ray_instance, mixed_manifest, tiny_tflite_model, tmp_path):
    root = mixed_manifest.parent
    local = _local(mixed_manifest, tmp_path / "local.parquet", model=tiny_tflite_model, root=root)
    ray_rows = _ray(mixed_manifest, tmp_path / "ray", model=tiny_tflite_model, root=root)

    _assert_same_rows(ray_rows, local)
    assert len(ray_rows) == 208 and (ray_rows[columns.STATUS] == columns.STATUS_OK).sum() == 201
    by_id = ray_rows.set_index(columns.IMAGE_ID)
    for image_id, reason in {
        "empty": "empty file", "truncated": "", "text": "", "missing": "file not found",
        "folder": "directory", "outside": "outside --root", "row-199": "path is null",
    }.items():
        assert by_id.loc[image_id, columns.STATUS] == columns.STATUS_ERROR, image_id
        assert reason in by_id.loc[image_id, columns.ERROR], by_id.loc[image_id, columns.ERROR]
    assert by_id.loc["images/test_00003.png", columns.STATUS] == columns.STATUS_OK
    assert ray_rows[columns.SCORE].notna().sum() == 201
    assert ray_rows["label"].dtype == local["label"].dtype  # pass-through columns keep their types

    parts = sorted((tmp_path / "ray").iterdir())
    assert [part.name for part in parts] == ["part-00000000.parquet"]
    local_schema = pq.read_schema(tmp_path / "local.parquet")
    assert pq.read_schema(parts[0]).remove_metadata() == local_schema.remove_metadata()
    ours, theirs = read_run_metadata(parts[0]), read_run_metadata(tmp_path / "local.parquet")
    assert ours["thresholds"] == theirs["thresholds"] and ours["model"] == theirs["model"]
    assert ours["run"]["engine"] == "ray" and ours["run"]["ray_cpus"] == 2
    assert ours["run_id"] == ray_rows[columns.RUN_ID].iloc[0]


@pytest.mark.ray
@pytest.mark.slow
def test_directory_and_image_bytes_inputs_match_the_local_engine(ray_instance, exported_test_split, tiny_tflite_model, tmp_path):
    folder = tmp_path / "incoming"
    shutil.copytree(exported_test_split.parent / "images", folder / "a")
    (folder / "b").mkdir()
    (folder / "b" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    local = _local(folder, tmp_path / "local.parquet", model=tiny_tflite_model)
    _assert_same_rows(_ray(folder, tmp_path / "ray", model=tiny_tflite_model), local)
    assert local[columns.IMAGE_ID].iloc[-1] == "b/zz_broken.png"

    files = sorted((folder / "a").glob("*.png"))[:40]
    images = pd.DataFrame({"image": [file.read_bytes() for file in files] + [b"", None], "site": ["x"] * 42})
    manifest = tmp_path / "bytes.parquet"
    images.to_parquet(manifest, index=False)
    local = _local(manifest, tmp_path / "local-bytes.parquet", model=tiny_tflite_model)
    _assert_same_rows(_ray(manifest, tmp_path / "ray-bytes", model=tiny_tflite_model), local)
    assert local[columns.STATUS].tolist()[-2:] == [columns.STATUS_ERROR] * 2


@pytest.mark.ray
@pytest.mark.slow
def test_a_dicom_folder_matches_the_local_engine(ray_instance, xray_jpegs_dir, tiny_tflite_model, tmp_path):
    import dicom_corpus

    film = sorted((xray_jpegs_dir / "NORMAL").glob("*.jpeg"))[0]
    folder = tmp_path / "export"
    for name in ("implicit_vr", "jpeg_baseline", "jpeg2000_lossless_12bit_window", "monochrome1", "adult", "ct",
                 "multi_frame", "no_pixel_data", "truncated", "jpeg_extended_12bit"):
        dicom_corpus.build(film, folder, name)
    (folder / "1.2.826.0.1.3680043.8.498.9").write_bytes((folder / "implicit_vr.dcm").read_bytes())
    rules = tmp_path / "rules.toml"
    rules.write_text('[header]\nmodalities = ["CR", "DX", "CT"]\n')
    local = _local(folder, tmp_path / "local.parquet", model=tiny_tflite_model, scope_rules=rules)
    ray_rows = _ray(folder, tmp_path / "ray", model=tiny_tflite_model, scope_rules=rules)
    _assert_same_rows(ray_rows, local)
    assert len(ray_rows) == 11 and (ray_rows[columns.STATUS] == columns.STATUS_ERROR).sum() == 3
    by_id = ray_rows.set_index(columns.IMAGE_ID)
    assert by_id.loc["ct.dcm", columns.IN_SCOPE] and by_id.loc["adult.dcm", columns.SCOPE_REASON] == "header: adult: age 51 y"
    assert by_id.loc["1.2.826.0.1.3680043.8.498.9", "modality"] == "CR"
    ours = read_run_metadata(sorted((tmp_path / "ray").iterdir())[0])
    assert ours["scope_rules"] == read_run_metadata(tmp_path / "local.parquet")["scope_rules"]


@dataclasses.dataclass(frozen=True)
class KillFirstWorker:
    """A scorer factory whose scorer kills its whole worker process the first time any of them predicts."""

    marker: str

    def __call__(self) -> KillFirstWorkerScorer:
        return KillFirstWorkerScorer(self.marker)


class KillFirstWorkerScorer:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def predict(self, model_input: np.ndarray) -> np.ndarray:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return fake_scores(model_input)
        os._exit(1)  # like the OOM killer: no exception, no clean-up


@pytest.mark.ray
@pytest.mark.slow
def test_a_worker_that_dies_is_retried_and_no_row_is_lost_or_doubled(ray_instance, mixed_manifest, score_fake_model, tmp_path):
    marker = tmp_path / "killed"
    local = _local(mixed_manifest, tmp_path / "local.parquet", model=score_fake_model, scorer_factory=make_fake_scorer)
    ray_rows = _ray(mixed_manifest, tmp_path / "ray", model=score_fake_model, scorer_factory=KillFirstWorker(str(marker)))

    assert marker.exists(), "no worker was killed: the test tested nothing"
    _assert_same_rows(ray_rows, local)
    assert ray_rows[columns.IMAGE_ID].is_unique


@pytest.mark.ray
@pytest.mark.slow
def test_cli_score_writes_a_folder_that_monitoring_reads_and_a_rerun_replaces(ray_instance, mixed_manifest, tiny_tflite_model, tmp_path):
    out = tmp_path / "predictions"
    args = ["score", str(mixed_manifest), "--out", str(out), "--model", str(tiny_tflite_model), "--engine", "ray",
            "--batch-size", "100", "--root", str(mixed_manifest.parent)]
    for _ in range(2):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == ExitCode.ROWS_FAILED, result.output
        assert result.stderr.strip().splitlines()[-1].startswith("scored 208 rows, 7 errors, ")
    assert sorted(path.name for path in out.iterdir()) == ["part-00000000.parquet"]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging left behind
    assert len(read_predictions([out])) == 208
    assert ds.dataset(out).to_table().num_rows == 208


@pytest.mark.ray
@pytest.mark.slow
def test_nightly_on_ray_publishes_a_folder_partition(ray_instance, exported_test_split, shipped_default_model, tmp_path):
    result = CliRunner().invoke(app, ["nightly", "--input", str(exported_test_split), "--output-root", str(tmp_path),
                                      "--date", "2026-11-20", "--engine", "ray"])
    assert result.exit_code in (ExitCode.OK, ExitCode.ALERT), result.output
    partition = tmp_path / "predictions" / "date=2026-11-20"
    assert [path.name for path in partition.iterdir()] == ["part-00000000.parquet"]
    history = ds.dataset(tmp_path / "predictions", format="parquet", partitioning="hive").to_table()
    assert history.num_rows == 200
    summary = json.loads((tmp_path / "reports" / "date=2026-11-20" / "summary.json").read_text())
    assert summary["n_scored"] == 200


@pytest.mark.ray
@pytest.mark.slow
def test_an_empty_input_writes_one_empty_part_with_the_schema(ray_instance, tiny_tflite_model, tmp_path):
    (tmp_path / "empty").mkdir()
    summary = score_batch_on_ray(tmp_path / "empty", tmp_path / "out", model=tiny_tflite_model)
    assert (summary.rows, summary.parts) == (0, 1)
    table = read_predictions_folder(tmp_path / "out")
    assert table.num_rows == 0 and columns.SCORE in table.column_names


def test_unusable_options_fail_before_ray_starts(tiny_tflite_model, exported_test_split, tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    for out, options, message in [
        (tmp_path / "file", {}, "not a folder"),
        (tmp_path / "other", {}, "not an earlier run's part files"),
        (tmp_path / "new", {"ray_address": "auto", "workers": 2}, "--workers"),
        (tmp_path / "new", {"batch_size": 0}, "batch size"),
    ]:
        with pytest.raises(InputError, match=message):
            score_batch_on_ray(exported_test_split, out, model=tiny_tflite_model, **options)
    result = CliRunner().invoke(app, ["score", str(exported_test_split), "--out", str(tmp_path / "x"), "--ray-address", "auto"])
    assert result.exit_code == ExitCode.USAGE and "--ray-address needs --engine ray" in result.stderr


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, exported_test_split, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real_find_spec(name, *a))

    with pytest.raises(MissingDependencyError):
        score_batch_on_ray(exported_test_split, tmp_path / "out")
    result = CliRunner().invoke(app, ["score", str(exported_test_split), "--out", str(tmp_path / "out"), "--engine", "ray"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.strip().splitlines() == ["Error: ray is not installed; install it with: pip install 'pneumo-batch[ray]'"]
    assert not (tmp_path / "out").exists()


class WrongCountScorer:
    """Returns one score too few: the engine must stop with a ModelError, as the local engine does."""

    def predict(self, model_input: np.ndarray) -> np.ndarray:
        return fake_scores(model_input)[1:]


@pytest.mark.ray
@pytest.mark.slow
def test_a_model_error_in_an_actor_reaches_the_caller_as_itself(ray_instance, mixed_manifest, score_fake_model, tmp_path):
    with pytest.raises(ModelError, match=r"^the model returned (\d+) scores for \d+ images$"):
        score_batch_on_ray(mixed_manifest, tmp_path / "out", model=score_fake_model, scorer_factory=WrongCountScorer,
                        batch_size=BATCH, root=mixed_manifest.parent)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone too


@pytest.mark.ray
@pytest.mark.slow
def test_scope_columns_match_the_local_engine_with_the_shipped_gate(ray_instance, shipped_default_model, xray_jpegs_dir, tmp_path):
    """The pixel scope gate runs in the shared per-chunk function: Ray's rows carry the same verdicts."""
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    films = sorted(xray_jpegs_dir.rglob("*.jpeg"))[::12]
    for path in films:
        (folder / path.name).symlink_to(path)
    film = Image.open(films[0]).convert("L")
    Image.eval(film, lambda v: 255 - v).save(folder / "inverted.png")
    colour = film.convert("RGB")
    colour.paste((200, 40, 40), (0, 0, colour.width // 2, colour.height))
    colour.save(folder / "colour.png")
    (folder / "empty.png").write_bytes(b"")
    local = _local(folder, tmp_path / "local.parquet", model=shipped_default_model)
    ray_rows = _ray(folder, tmp_path / "ray", model=shipped_default_model)
    _assert_same_rows(ray_rows, local)
    by_id = ray_rows.set_index(columns.IMAGE_ID)
    assert by_id.loc["inverted.png", columns.IN_SCOPE] == False  # noqa: E712 (a numpy bool)
    assert by_id.loc["colour.png", columns.SCOPE_REASON] == "pixels: unlike training images: colour image"
    assert pd.isna(by_id.loc["empty.png", columns.IN_SCOPE]) and by_id[columns.SCOPE_SCORE].notna().sum() == len(films) + 2
    ours = read_run_metadata(next((tmp_path / "ray").iterdir()))["scope_gate"]
    assert ours == read_run_metadata(tmp_path / "local.parquet")["scope_gate"] and ours["applied"] is True
