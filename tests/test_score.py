"""The scoring library: every input kind, every bad row, determinism, resuming, metadata.

Plumbing tests use ``conftest.MeanPixelScorer`` (a deterministic function of
the pixels); tests about the interpreter use a tiny real ``.tflite``; the
decision test on real JPEGs uses the trained default model once it exists.
Every test reads the Parquet file back and checks it row by row.
"""

import functools
import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SCORE_FAKE_OPERATING_POINTS, MeanPixelScorer, fake_scores, make_fake_scorer
from PIL import Image

from pneumo_batch import predictions as columns
from pneumo_batch.errors import InputError, JobLockedError
from pneumo_batch.imaging.features import FILE_FEATURES, NUMERIC_IMAGE_FEATURES, intensity_features
from pneumo_batch.model import load_model
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.imaging.raster import MAX_IMAGE_PIXELS, decode_image
from pneumo_batch.scoring import chunk_rows, read_run_metadata, score_batch, work_dir_for

TESTS_DIR = Path(__file__).resolve().parent
POINTS = {name: point["threshold"] for name, point in SCORE_FAKE_OPERATING_POINTS.items()}


def _read(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb_png() -> bytes:
    """A PNG whose header claims more pixels than the limit (the data is never decoded)."""
    data = bytearray(_png(np.zeros((4, 4), dtype=np.uint8)))
    side = int(MAX_IMAGE_PIXELS**0.5) + 1000
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", side, side)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(data)


def _assert_ok_row(row: pd.Series, pixels: np.ndarray, expected_score: float | None = None) -> None:
    score = float(fake_scores(pixels_to_model_input(pixels))[0]) if expected_score is None else expected_score
    assert row[columns.STATUS] == columns.STATUS_OK, row[columns.ERROR]
    assert row[columns.ERROR] is None
    assert row[columns.SCORE] == pytest.approx(score, abs=1e-6)
    for name, threshold in POINTS.items():
        assert row[columns.threshold_column(name)] == threshold
        assert row[columns.prediction_column(name)] == (row[columns.SCORE] >= threshold)
    features = intensity_features(pixels[np.newaxis])
    for name in NUMERIC_IMAGE_FEATURES:
        assert row[name] == pytest.approx(float(features[name][0]), rel=1e-5, abs=1e-5), name


def _assert_error_row(row: pd.Series, reason: str) -> None:
    assert row[columns.STATUS] == columns.STATUS_ERROR
    assert reason in row[columns.ERROR], row[columns.ERROR]
    assert "\n" not in row[columns.ERROR]
    assert pd.isna(row[columns.SCORE])
    for name in POINTS:
        assert pd.isna(row[columns.prediction_column(name)])
        assert row[columns.threshold_column(name)] == POINTS[name]
    for name in NUMERIC_IMAGE_FEATURES + FILE_FEATURES:
        assert pd.isna(row[name]), name


# --------------------------------------------------------------------------- input kinds


@pytest.mark.parametrize("workers", [0, 2])
def test_manifest_of_pngs_scores_every_row_in_order(exported_test_split, pneumoniamnist, score_fake_model, tmp_path,
                                                     workers):
    out = tmp_path / "predictions.parquet"
    seen = []

    summary = score_batch(exported_test_split, out, model=score_fake_model, workers=workers, batch_size=64,
                          scorer_factory=make_fake_scorer, progress=seen.append)

    frame = _read(out)
    manifest = pd.read_parquet(exported_test_split)
    assert (summary.rows, summary.errors, summary.rows_resumed) == (200, 0, 0)
    assert summary.images_per_second > 0
    assert list(frame[columns.IMAGE_ID]) == list(manifest["image_id"])
    assert frame[columns.RUN_ID].nunique() == 1 and frame[columns.RUN_ID].iloc[0] == summary.run_id
    assert (frame[columns.MODEL_VERSION] == "0.0.0-test").all()
    assert (frame[columns.MODEL_SHA256] == "0" * 64).all()
    assert frame[columns.SCORED_AT].notna().all()
    for (_, row), (_, source) in zip(frame.iterrows(), manifest.iterrows(), strict=True):
        _assert_ok_row(row, pneumoniamnist.test.images[source["index"]])
        assert row[columns.PATH] == str(exported_test_split.parent / source["path"])
        assert (row["img_width"], row["img_height"], row["img_aspect_ratio"]) == (28, 28, 1.0)
        assert (row["img_mode"], row["img_format"]) == ("L", "PNG")
        for passed in ("label", "label_name", "split", "index"):
            assert row[passed] == source[passed]
    assert not work_dir_for(out).exists()
    assert [p.rows_done for p in seen] == [0, 64, 128, 192, 200]
    assert seen[-1].rows_total == 200


def test_a_small_input_is_spread_over_the_workers_in_chunks_of_at_least_one_block(exported_test_split,
                                                                                 score_fake_model, tmp_path):
    seen = []
    score_batch(exported_test_split, tmp_path / "p.parquet", model=score_fake_model, workers=2, batch_size=1024,
                scorer_factory=make_fake_scorer, progress=seen.append)
    # 200 rows, 2 workers: chunks of 64 rows (the interpreter's block), not one chunk of 200 for one worker
    assert [p.rows_done for p in seen] == [0, 64, 128, 192, 200]
    assert chunk_rows(1024, 960, 2) == 120 and chunk_rows(1024, 100_000, 2) == 1024
    assert chunk_rows(1024, 10, 2) == 64 and chunk_rows(16, 960, 2) == 16  # never over the batch size


def test_manifest_of_image_bytes_with_ids_and_pass_through(pneumoniamnist, score_fake_model, tmp_path):
    images = pneumoniamnist.test.images[:5]
    manifest = tmp_path / "bytes.parquet"
    pq.write_table(
        pa.table(
            {
                "image_id": ["a", None, "c", "d", "e"],
                "image": [_png(images[0]), _png(images[1]), None, b"garbage", _png(images[4])],
                "patient": ["p1", "p2", "p3", "p4", "p5"],
            }
        ),
        manifest,
    )
    out = tmp_path / "out.parquet"

    summary = score_batch(manifest, out, model=score_fake_model, workers=0, scorer_factory=make_fake_scorer)

    frame = _read(out)
    assert (summary.rows, summary.errors) == (5, 2)
    assert list(frame[columns.IMAGE_ID]) == ["a", "row-1", "c", "d", "e"]
    assert list(frame["patient"]) == ["p1", "p2", "p3", "p4", "p5"]
    assert frame[columns.PATH].isna().all()
    assert "image" not in frame.columns
    _assert_ok_row(frame.iloc[0], images[0])
    _assert_ok_row(frame.iloc[1], images[1])
    _assert_error_row(frame.iloc[2], "image is null")
    _assert_error_row(frame.iloc[3], "not a recognised image file")
    _assert_ok_row(frame.iloc[4], images[4])


def test_every_kind_of_bad_row_becomes_an_error_row_and_none_is_lost(pneumoniamnist, score_fake_model, tmp_path):
    root = tmp_path / "root"
    images = root / "images"
    images.mkdir(parents=True)
    good = pneumoniamnist.test.images[:2]
    (images / "good0.png").write_bytes(_png(good[0]))
    (images / "good1.png").write_bytes(_png(good[1]))
    (images / "empty.png").write_bytes(b"")
    (images / "truncated.png").write_bytes(_png(np.asarray(Image.fromarray(good[0]).resize((300, 300))))[:400])
    (images / "text.png").write_text("this is not an image\n")
    (images / "a-directory.png").mkdir()
    (images / "bomb.png").write_bytes(_bomb_png())
    (tmp_path / "outside.png").write_bytes(_png(good[0]))
    os.symlink(tmp_path / "outside.png", images / "escape.png")
    cases = [
        ("images/good0.png", None),
        ("images/empty.png", "empty file"),
        ("images/truncated.png", "cannot decode image"),
        ("images/text.png", "not a recognised image file"),
        ("images/missing.png", "file not found"),
        ("images/a-directory.png", "is a directory"),
        ("images/bomb.png", "possible decompression bomb"),
        ("../outside.png", "outside --root"),
        (str(tmp_path / "outside.png"), "outside --root"),
        ("images/escape.png", "outside --root"),
        (None, "path is null"),
        ("", "empty path"),
        ("images/good1.png", None),
    ]
    manifest = root / "manifest.parquet"
    pq.write_table(pa.table({"path": pa.array([path for path, _ in cases], pa.string()),
                             "case": list(range(len(cases)))}), manifest)
    out = tmp_path / "out" / "predictions.parquet"  # the folder is created

    summary = score_batch(manifest, out, model=score_fake_model, workers=0, batch_size=4, root=root,
                          scorer_factory=make_fake_scorer)

    frame = _read(out)
    assert (summary.rows, summary.errors) == (len(cases), len(cases) - 2)
    assert list(frame["case"]) == list(range(len(cases)))
    for (_, row), (path, reason) in zip(frame.iterrows(), cases, strict=True):
        if reason is None:
            _assert_ok_row(row, good[0] if path.endswith("good0.png") else good[1])
        else:
            _assert_error_row(row, reason)
        if path:
            assert row[columns.IMAGE_ID] == path  # no image_id column: the manifest's path is the id
    assert frame.iloc[10][columns.IMAGE_ID] == "row-10"


def test_without_root_paths_are_not_confined(pneumoniamnist, score_fake_model, tmp_path):
    (tmp_path / "outside.png").write_bytes(_png(pneumoniamnist.test.images[0]))
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "sub" / "m.parquet"
    pq.write_table(pa.table({"path": ["../outside.png", str(tmp_path / "outside.png")]}), manifest)
    summary = score_batch(manifest, tmp_path / "o.parquet", model=score_fake_model, workers=0,
                          scorer_factory=make_fake_scorer)
    assert summary.errors == 0


def test_directory_of_real_jpegs_with_a_real_tflite_model(xray_jpegs_dir, xray_jpegs_catalogue, tiny_tflite_model,
                                                          tmp_path):
    out = tmp_path / "jpegs.parquet"

    summary = score_batch(xray_jpegs_dir, out, model=tiny_tflite_model, workers=2, batch_size=16)

    frame = _read(out)
    expected_ids = sorted(str(p.relative_to(xray_jpegs_dir)) for p in xray_jpegs_dir.rglob("*.jpeg"))
    assert (summary.rows, summary.errors) == (len(xray_jpegs_catalogue), 0)
    assert list(frame[columns.IMAGE_ID]) == expected_ids == sorted(xray_jpegs_catalogue["image_id"])
    catalogue = pd.read_csv(xray_jpegs_dir / "MANIFEST.csv")
    scorer = load_model(tiny_tflite_model).scorer()
    for _, row in frame.iterrows():
        decoded = decode_image(xray_jpegs_dir / row[columns.IMAGE_ID])
        assert row[columns.PATH] == str(xray_jpegs_dir / row[columns.IMAGE_ID])
        assert row[columns.SCORE] == scorer.predict(pixels_to_model_input(decoded.pixels))[0]
        assert (row["img_width"], row["img_height"], row["img_mode"], row["img_format"]) == (
            decoded.width, decoded.height, decoded.mode, "JPEG")
        assert row["img_aspect_ratio"] == pytest.approx(decoded.width / decoded.height, rel=1e-6)
    catalogue.index = catalogue["cls"] + "/" + catalogue["file"]
    listed = catalogue.loc[frame[columns.IMAGE_ID]]
    assert list(frame["img_width"]) == list(listed["width"])
    assert list(frame["img_height"]) == list(listed["height"])
    assert list(frame["img_mode"]) == list(listed["mode"])


def test_scores_do_not_depend_on_workers_or_batch_size(exported_test_split, tiny_tflite_model, tmp_path):
    runs = {}
    for workers, batch_size in [(0, 1000), (1, 7), (2, 64), (2, 1)]:
        out = tmp_path / f"w{workers}-b{batch_size}.parquet"
        score_batch(exported_test_split, out, model=tiny_tflite_model, workers=workers, batch_size=batch_size)
        runs[(workers, batch_size)] = pq.read_table(out).drop_columns([columns.RUN_ID, columns.SCORED_AT])
    first, *others = runs.values()
    for other in others:
        assert other.equals(first)
    scores = first.column(columns.SCORE).to_numpy()
    assert len(np.unique(scores)) > 100  # real, varied scores, not a constant


def test_parquet_metadata_carries_thresholds_model_and_run_parameters(exported_test_split, tiny_tflite_model,
                                                                      tmp_path):
    out = tmp_path / "p.parquet"
    summary = score_batch(exported_test_split, out, model=tiny_tflite_model, workers=1, batch_size=128,
                          root=exported_test_split.parent)

    metadata = read_run_metadata(out)
    model = load_model(tiny_tflite_model)
    assert metadata["run_id"] == summary.run_id
    assert metadata["thresholds"] == POINTS
    assert metadata["operating_points"]["screening"]["rule"] == "fake: fixed for tests"
    assert metadata["model"]["sha256"] == model.variant_sha256()
    assert metadata["model"]["version"] == model.version
    assert metadata["model"]["metadata"]["input"]["size"] == 28
    assert metadata["run"] == {
        "input": str(exported_test_split), "input_kind": "manifest", "input_rows": 200,
        "root": os.path.realpath(exported_test_split.parent), "batch_size": 128, "workers": 1,
    }
    raw = pq.ParquetFile(out).metadata.metadata[columns.PARQUET_METADATA_KEY]
    assert json.loads(raw) == metadata


def test_empty_directory_gives_an_empty_file(score_fake_model, tmp_path):
    (tmp_path / "in").mkdir()
    summary = score_batch(tmp_path / "in", tmp_path / "o.parquet", model=score_fake_model, workers=0,
                          scorer_factory=make_fake_scorer)
    assert (summary.rows, summary.errors) == (0, 0)
    assert pq.read_table(tmp_path / "o.parquet").num_rows == 0


def test_manifest_column_clashing_with_an_output_column_is_an_input_error(score_fake_model, tmp_path):
    pq.write_table(pa.table({"path": ["a.png"], "status": ["x"]}), tmp_path / "m.parquet")
    with pytest.raises(InputError, match="status"):
        score_batch(tmp_path / "m.parquet", tmp_path / "o.parquet", model=score_fake_model, workers=0,
                    scorer_factory=make_fake_scorer)


@pytest.mark.parametrize(("options", "message"), [
    ({"batch_size": 0}, "batch size"),
    ({"workers": -1}, "workers"),
    ({"root": "/definitely/not/here"}, "--root is not a directory"),
])
def test_bad_options_are_input_errors(exported_test_split, score_fake_model, tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        score_batch(exported_test_split, tmp_path / "o.parquet", model=score_fake_model,
                    scorer_factory=make_fake_scorer, **{"workers": 0, **options})


# --------------------------------------------------------------------------- crashes and resuming


def test_a_failed_run_leaves_no_output_and_the_rerun_resumes(exported_test_split, score_fake_model, tmp_path):
    out = tmp_path / "p.parquet"
    failing = MeanPixelScorer(fail_after=3)
    with pytest.raises(RuntimeError, match="fail after 3"):
        score_batch(exported_test_split, out, model=score_fake_model, workers=0, batch_size=32,
                    scorer_factory=lambda: failing)
    assert not out.exists()
    assert len(list((work_dir_for(out) / "parts").glob("part-*.arrow"))) == 3

    rerun = MeanPixelScorer()
    summary = score_batch(exported_test_split, out, model=score_fake_model, workers=0, batch_size=32,
                          scorer_factory=lambda: rerun)

    assert (summary.rows, summary.rows_resumed) == (200, 96)
    assert rerun.calls == 4  # the 4 chunks left of 7, not all 7
    frame = _read(out)
    assert list(frame[columns.IMAGE_ID]) == list(pd.read_parquet(exported_test_split)["image_id"])
    assert frame[columns.RUN_ID].nunique() == 1
    assert not work_dir_for(out).exists()


def test_a_damaged_part_is_scored_again(exported_test_split, score_fake_model, tmp_path):
    out = tmp_path / "p.parquet"
    with pytest.raises(RuntimeError):
        score_batch(exported_test_split, out, model=score_fake_model, workers=0, batch_size=32,
                    scorer_factory=lambda: MeanPixelScorer(fail_after=3))
    damaged = sorted((work_dir_for(out) / "parts").glob("part-*.arrow"))[1]
    damaged.write_bytes(damaged.read_bytes()[:100])  # as a power cut might leave it

    rerun = MeanPixelScorer()
    summary = score_batch(exported_test_split, out, model=score_fake_model, workers=0, batch_size=32,
                          scorer_factory=lambda: rerun)

    assert (summary.rows, summary.rows_resumed, rerun.calls) == (200, 64, 5)
    frame = _read(out)
    assert list(frame[columns.IMAGE_ID]) == list(pd.read_parquet(exported_test_split)["image_id"])


def test_changed_options_start_over_instead_of_mixing_parts(exported_test_split, score_fake_model, tmp_path):
    out = tmp_path / "p.parquet"
    with pytest.raises(RuntimeError):
        score_batch(exported_test_split, out, model=score_fake_model, workers=0, batch_size=32,
                    scorer_factory=lambda: MeanPixelScorer(fail_after=2))
    summary = score_batch(exported_test_split, out, model=score_fake_model, workers=0, batch_size=50,
                          scorer_factory=lambda: MeanPixelScorer())
    assert (summary.rows, summary.rows_resumed) == (200, 0)


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_the_lock(exported_test_split,
                                                                                   score_fake_model, tmp_path):
    import fcntl

    out = tmp_path / "p.parquet"
    work = work_dir_for(out)
    work.mkdir()
    with open(work / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(JobLockedError, match="another pneumo-batch run"):
            score_batch(exported_test_split, out, model=score_fake_model, workers=0,
                        scorer_factory=make_fake_scorer)
    assert not out.exists()


def test_sigkill_then_rerun_finishes_with_every_row_exactly_once(exported_test_split, score_fake_model, tmp_path):
    out = tmp_path / "p.parquet"
    parts = work_dir_for(out) / "parts"
    script = textwrap.dedent(
        f"""
        import functools, sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from conftest import make_fake_scorer, score_fake_metadata
        from pneumo_batch.model import ModelArtifact
        from pneumo_batch.scoring import score_batch

        if __name__ == "__main__":
            model = ModelArtifact(directory={str(tmp_path)!r}, metadata=score_fake_metadata())
            score_batch({str(exported_test_split)!r}, {str(out)!r}, model=model, workers=1, batch_size=8,
                        scorer_factory=functools.partial(make_fake_scorer, delay=0.1))
        """
    )
    (tmp_path / "run.py").write_text(script)
    process = subprocess.Popen([sys.executable, str(tmp_path / "run.py")], start_new_session=True,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(parts.glob("part-*.arrow"))) < 4:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert not out.exists()
    done = len(list(parts.glob("part-*.arrow")))
    assert 4 <= done < 25

    rerun_started = pd.Timestamp.now(tz="UTC")
    summary = score_batch(exported_test_split, out, model=score_fake_model, workers=0, batch_size=8,
                          scorer_factory=functools.partial(make_fake_scorer))

    frame = _read(out)
    assert summary.rows == 200 and summary.rows_resumed == 8 * done
    assert (frame[columns.SCORED_AT].iloc[: 8 * done] < rerun_started).all()  # taken from parts, not redone
    assert (frame[columns.SCORED_AT].iloc[8 * done :] >= rerun_started).all()
    assert list(frame[columns.IMAGE_ID]) == list(pd.read_parquet(exported_test_split)["image_id"])
    assert frame[columns.IMAGE_ID].is_unique
    assert (frame[columns.STATUS] == columns.STATUS_OK).all()
    assert frame[columns.RUN_ID].nunique() == 1
    assert not work_dir_for(out).exists()


# --------------------------------------------------------------------------- the trained model


def test_real_jpegs_get_the_expected_decisions_with_the_default_model(shipped_default_model, xray_jpegs_dir,
                                                                      xray_jpegs_catalogue, tmp_path):
    out = tmp_path / "jpegs.parquet"
    summary = score_batch(xray_jpegs_dir, out, model=shipped_default_model, workers=2)

    frame = _read(out)
    assert (summary.rows, summary.errors) == (len(xray_jpegs_catalogue), 0)
    truth = frame[columns.IMAGE_ID].str.startswith("PNEUMONIA/")
    balanced = frame[columns.prediction_column("balanced")]
    agree = (balanced == truth).mean()
    assert agree >= 0.75, f"balanced: only {agree:.0%} of the JPEGs get the decision of their folder"
    # screening trades specificity for sensitivity: it must catch nearly every pneumonia
    caught = frame.loc[truth, columns.prediction_column("screening")].mean()
    assert caught >= 0.9, f"screening flags only {caught:.0%} of the pneumonia JPEGs"


def test_feature_percentiles_are_exactly_numpys(pneumoniamnist):
    """Scoring computes the features of every image, so they take a fast path that must not change them."""
    rng = np.random.default_rng(1)
    stacks = [pneumoniamnist.test.images, rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
              np.full((3, 28, 28), 7, dtype=np.uint8)]
    for stack in stacks:
        features = intensity_features(stack)
        expected = np.percentile(stack.reshape(len(stack), -1).astype(np.float32), [5, 50, 95], axis=1)
        for name, values in zip(("img_p05", "img_p50", "img_p95"), expected, strict=True):
            np.testing.assert_array_equal(features[name], values.astype(np.float32))
        np.testing.assert_array_equal(features["img_contrast"], (expected[2] - expected[0]).astype(np.float32))


def test_a_teacher_is_found_by_path_or_by_the_name_of_a_shipped_model(shipped_default_model, tmp_path):
    from pneumo_batch.errors import ModelError
    from pneumo_batch.model import model_dir_named

    assert model_dir_named(str(shipped_default_model)) == shipped_default_model
    assert model_dir_named("pneumo-cnn-v1").name == "pneumo-cnn-v1"
    with pytest.raises(ModelError, match="no model directory 'no-such-model'"):
        model_dir_named("no-such-model")


def test_scoring_in_process_keeps_numpy_to_one_blas_thread_and_gives_the_caller_its_threads_back(
        exported_test_split, score_fake_model, tmp_path):
    import threadpoolctl

    seen: list[int] = []

    def blas_threads() -> int:
        return max(pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas")

    def scorer_factory():
        scorer = make_fake_scorer()
        predict = scorer.predict

        def predict_and_look(model_input):
            seen.append(blas_threads())
            return predict(model_input)

        scorer.predict = predict_and_look
        return scorer

    before = blas_threads()
    score_batch(exported_test_split, tmp_path / "out.parquet", model=score_fake_model, workers=0,
                scorer_factory=scorer_factory)
    assert seen and set(seen) == {1}  # OpenBLAS's idle threads spin: about 1 ms of CPU a film
    assert blas_threads() == before
