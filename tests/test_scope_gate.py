"""The pixel scope gate on real images, both sides of it, through score_batch.

The shipped (default) model's gate (scope_gate.npz) is judged on
PneumoniaMNIST test (never used to fit it), on every shared full-size film,
on a sample of each shared outlier category and on synthetic images no
component has seen, by reading the Parquet that :func:`score_batch` writes.
Held-out-source figures take minutes and live in benchmarks/scope_benchmark.py.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.errors import ModelError
from pneumo_batch.imaging.decoders import decode
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.model import SCOPE_GATE_KEY, file_sha256, load_model, read_metadata, write_metadata
from pneumo_batch.scope.fit import upper_bound_threshold
from pneumo_batch.scope.gate import FEATURES_MODEL_FILE, FORMAT_VERSION, GATE_FILE, gate_file_bytes, read_gate
from pneumo_batch.scope.network import add_feature_outputs, weight_buffers
from pneumo_batch.scoring import read_run_metadata, score_batch

#: The goal is 1 %; pneumo-cnn-v1's gate flagged 0.6 %, pneumo-cnn-v1.1's 1.4 % (9 of 624), the shipped
#: pneumo-cnn-v2's 1.6 % (10 of 624), a miss docs/scope-gate.md records. The bound guards against worse: a gate
#: that drifts further fails here.
IN_DISTRIBUTION_BOUND = 0.02
#: The goal for the full-size pediatric films (the benchmark: 0.8 % held out; these fitted the gate).
FILMS_BOUND = 0.02
OUTLIER_CATEGORIES = ["photos", "ct_mri", "other_xray", "adult_cxr"]


@pytest.fixture(scope="module")
def outliers_dir(dataset_path: Path) -> Path:
    directory = dataset_path.parent / "outliers"
    assert directory.is_dir(), f"expected the shared outliers beside the dataset: {directory}"
    return directory


def synthetic_outliers(film_path: Path) -> dict[str, Image.Image]:
    film = Image.open(film_path).convert("L")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 400), dtype=np.uint8))
    colour = film.convert("RGB")
    colour.paste((200, 40, 40), (0, 0, colour.width // 2, colour.height))
    return {"inverted": Image.eval(film, lambda v: 255 - v), "rotated": film.transpose(Image.Transpose.ROTATE_90),
            "noise": noise, "colour": colour}


def test_features_model_keeps_the_weights_and_the_score_bit_for_bit(shipped_default_model, pneumoniamnist):
    artifact = load_model(shipped_default_model)
    original = artifact.variant_path().read_bytes()
    path, sha256 = artifact.scoring_file()
    assert path.name == FEATURES_MODEL_FILE and file_sha256(path) == sha256
    assert add_feature_outputs(original)[0] == path.read_bytes()
    assert weight_buffers(path.read_bytes()) == weight_buffers(original)
    model_input = pixels_to_model_input(pneumoniamnist.test.images[:128])
    plain = artifact.scorer(artifact.default_variant).predict(model_input)
    output = artifact.scorer().predict_with_features(model_input)
    assert np.array_equal(output.probabilities, plain)
    assert np.array_equal(artifact.scorer().predict(model_input), plain)
    # One channel mean per ReLU: two convolutions in each of three blocks of width, 2 x width, 4 x width channels.
    width = artifact.metadata["training"]["config"]["width"]
    assert output.features.shape == (128, 2 * 7 * width) and (output.features >= 0).all()


def test_a_features_model_that_does_not_match_its_metadata_is_refused(shipped_default_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(shipped_default_model, copy)
    (copy / FEATURES_MODEL_FILE).write_bytes((copy / FEATURES_MODEL_FILE).read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="sha256"):
        load_model(copy)


def test_a_gate_of_an_older_format_is_refused_with_how_to_refit(shipped_default_model, tmp_path):
    gate = load_model(shipped_default_model).scope_gate()
    assert gate is not None
    older = tmp_path / GATE_FILE
    older.write_bytes(gate_file_bytes({**gate.arrays(), "format_version": np.int64(FORMAT_VERSION - 1)}))
    with pytest.raises(ModelError, match="fit-scope"):
        read_gate(older)


def test_decoding_without_the_gate_makes_no_thumbnail_and_the_same_pixels(xray_jpegs_dir):
    film = sorted(xray_jpegs_dir.rglob("*.jpeg"))[0]
    with_gate, without = decode(film.read_bytes(), ".jpeg"), decode(film.read_bytes(), ".jpeg", with_thumbnail=False)
    assert with_gate.thumbnail is not None and with_gate.thumbnail.grey.shape == (64, 64)
    assert without.thumbnail is None
    np.testing.assert_array_equal(without.pixels, with_gate.pixels)



# --------------------------------------------------------------------------- through score_batch


@pytest.fixture(scope="module")
def mixed_folder(xray_jpegs_dir: Path, outliers_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every shared pediatric film, a sample of each outlier category, synthetic outliers and an empty file."""
    folder = tmp_path_factory.mktemp("mixed")
    for path in sorted(xray_jpegs_dir.rglob("*.jpeg")):
        (folder / "films" / path.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / "films" / path.parent.name / path.name).symlink_to(path)
    for category in OUTLIER_CATEGORIES:
        (folder / category).mkdir()
        for path in sorted((outliers_dir / category).iterdir())[::8]:
            (folder / category / path.name).symlink_to(path)
    (folder / "synthetic").mkdir()
    for name, image in synthetic_outliers(sorted(xray_jpegs_dir.rglob("*.jpeg"))[0]).items():
        (folder / "synthetic" / f"{name}.png").write_bytes(_png(image))
    (folder / "broken").mkdir()
    (folder / "broken" / "empty.png").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def mixed_rows(mixed_folder: Path, shipped_default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("scored") / "predictions.parquet"
    score_batch(mixed_folder, out, model=shipped_default_model, workers=0)
    rows = pd.read_parquet(out)
    rows["group"] = rows["image_id"].str.split("/").str[0]
    return rows


def test_shared_pediatric_films_are_in_scope_through_score_batch(mixed_rows):
    films = mixed_rows[mixed_rows["group"] == "films"]
    assert len(films) >= 200 and (films["status"] == "ok").all()
    flagged = 1.0 - films["in_scope"].mean()
    assert flagged <= FILMS_BOUND, films.loc[films["in_scope"].eq(False), "scope_reason"].tolist()
    assert films["scope_score"].notna().all()


@pytest.mark.parametrize("category", OUTLIER_CATEGORIES)
def test_outlier_categories_are_flagged_through_score_batch(mixed_rows, category):
    rows = mixed_rows[mixed_rows["group"] == category]
    assert len(rows) >= 10 and (rows["status"] == "ok").all()
    # held-out-source figures (benchmark): adult films 65 %, other radiographs 89 %, photos and CT/MRI 100 %
    assert rows["in_scope"].mean() <= (0.4 if category == "adult_cxr" else 0.1)
    assert rows.loc[rows["in_scope"].eq(False), "scope_reason"].str.startswith("pixels: unlike training images").all()


def test_synthetic_outliers_are_flagged_with_a_reason(mixed_rows):
    rows = mixed_rows[mixed_rows["group"] == "synthetic"].set_index("image_id")
    assert len(rows) == 4 and not rows["in_scope"].any()
    assert rows.loc["synthetic/colour.png", "scope_reason"] == "pixels: unlike training images: colour image"
    assert (rows.drop(index="synthetic/colour.png")["scope_score"] > 1.0).all()


def test_out_of_scope_rows_keep_their_score_but_get_no_decision(mixed_rows):
    decisions = [name for name in mixed_rows if name.startswith("pred_")]
    ok = mixed_rows[mixed_rows["status"] == "ok"]
    out = ok[~ok["in_scope"].astype(bool)]
    inside = ok[ok["in_scope"].astype(bool)]
    assert len(out) >= 40 and len(inside) >= 200 and decisions
    assert out[decisions].isna().all().all() and out["p_pneumonia"].notna().all()
    assert inside[decisions].notna().all().all() and inside["scope_reason"].isna().all()
    assert (inside["scope_score"] <= 1.0).all()
    errors = mixed_rows[mixed_rows["status"] == "error"]
    assert len(errors) == 1 and errors[["in_scope", "scope_reason", "scope_score"]].isna().all().all()


def test_pneumoniamnist_test_pngs_are_in_scope_through_score_batch(pneumoniamnist, shipped_default_model, tmp_path):
    manifest = tmp_path / "test.parquet"
    images = [_png(Image.fromarray(image)) for image in pneumoniamnist.test.images]
    pq.write_table(pa.table({"image": pa.array(images, pa.binary())}), manifest)
    out = tmp_path / "predictions.parquet"
    score_batch(manifest, out, model=shipped_default_model, workers=0)
    rows = pd.read_parquet(out)
    assert len(rows) == len(images) and (rows["status"] == "ok").all()
    flagged = 1.0 - rows["in_scope"].mean()
    assert flagged <= IN_DISTRIBUTION_BOUND, rows.loc[rows["in_scope"].eq(False), "scope_reason"].tolist()
    gate = read_run_metadata(out)["scope_gate"]
    assert gate["applied"] is True and gate["false_flag_rate"] == load_model(shipped_default_model).scope_gate_entry["false_flag_rate"]


def test_a_model_directory_without_a_gate_scores_and_says_so(shipped_default_model, mixed_folder, tmp_path):
    bare = bare_copy(shipped_default_model, tmp_path / "bare")
    out = tmp_path / "predictions.parquet"
    score_batch(mixed_folder / "synthetic", out, model=bare, workers=0)
    rows = pd.read_parquet(out)
    decisions = [name for name in rows if name.startswith("pred_")]
    assert len(rows) == 4 and rows["in_scope"].all() and rows["scope_score"].isna().all()
    assert rows[decisions].notna().all().all()
    gate = read_run_metadata(out)["scope_gate"]
    assert gate["applied"] is False and gate["note"].startswith("no scope gate") and gate["false_flag_rate"] is None


def test_fit_scope_is_deterministic_for_a_seed(shipped_default_model, pneumoniamnist, xray_jpegs_dir, outliers_dir,
                                             tmp_path, monkeypatch):
    """``pneumo-batch fit-scope`` on a gate-less copy: same seed, same bytes; another seed moves the head's threshold."""
    small = tmp_path / "small.npz"
    np.savez(small, train_images=pneumoniamnist.train.images[:800], train_labels=pneumoniamnist.train.labels[:800],
             val_images=pneumoniamnist.val.images, val_labels=pneumoniamnist.val.labels,
             test_images=pneumoniamnist.test.images[:10], test_labels=pneumoniamnist.test.labels[:10])
    films, outliers = tmp_path / "films", tmp_path / "outliers"
    films.mkdir(), outliers.mkdir()
    for path in sorted(xray_jpegs_dir.rglob("*.jpeg"))[::4]:
        (films / path.name).symlink_to(path)
    for path in sorted(outliers_dir.rglob("*.*g"))[::12]:
        (outliers / path.name).symlink_to(path)
    fitted = []
    for run, seed in enumerate((3, 3, 4)):
        model_dir = bare_copy(shipped_default_model, tmp_path / f"model{run}")
        result = CliRunner().invoke(app, ["fit-scope", str(model_dir), "--data", str(small), "--films", str(films),
                                          "--outliers", str(outliers), "--seed", str(seed)])
        assert result.exit_code == 0, result.output
        assert "false-flag rate" in result.output
        entry = load_model(model_dir).scope_gate_entry
        assert entry is not None and entry["seed"] == seed
        assert entry["validation"]["films"] == 60 and entry["false_flag_rate"] == entry["validation"]["films_flagged"] / 60
        fitted.append((entry["sha256"], file_sha256(model_dir / FEATURES_MODEL_FILE), load_model(model_dir).scope_gate()))
    assert fitted[0][:2] == fitted[1][:2]
    # the features model depends on the network only; the seed orders the films' cross-fitting folds
    assert fitted[2][1] == fitted[0][1] and fitted[2][0] != fitted[0][0]
    assert fitted[2][2].head_threshold != fitted[0][2].head_threshold


def bare_copy(model_dir: Path, target: Path) -> Path:
    """A copy of a model directory without its scope gate: the model file and metadata only."""
    target.mkdir()
    artifact = load_model(model_dir)
    shutil.copy(artifact.variant_path(), target / artifact.variant_path().name)
    metadata = read_metadata(model_dir)
    metadata.pop(SCOPE_GATE_KEY, None)
    write_metadata(target, metadata)
    return target


def test_threshold_is_an_upper_confidence_bound_of_the_quantile():
    scores = np.arange(1, 1001, dtype=float)
    threshold, above = upper_bound_threshold(scores, 0.01, 0.9)
    # Binomial(1000, 0.01) >= j + 1 with probability >= 0.9 for j up to 5
    assert (threshold, above) == (995.0, 5)
    assert upper_bound_threshold(scores[:100], 0.005, 0.9) == (100.0, 0)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
