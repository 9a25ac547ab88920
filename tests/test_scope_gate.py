"""The pixel scope gate on real images, both sides of it.

The shipped model's gate (models/pneumo-cnn-v1/scope_gate.npz) is judged on
PneumoniaMNIST test (never used to fit it), on films and outliers, and on
synthetic images no component has seen. Held-out-source figures take
minutes and live in benchmarks/scope_benchmark.py.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.errors import ModelError
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.model import SCOPE_GATE_KEY, Scorer, file_sha256, load_model, read_metadata, write_metadata
from pneumo_batch.scope.fit import upper_bound_threshold
from pneumo_batch.scope.gate import FEATURES_MODEL_FILE, GATE_FILE, ScopeGate
from pneumo_batch.scope.image_stats import decode_with_thumbnail, thumbnail_statistics
from pneumo_batch.scope.network import add_feature_outputs, weight_buffers

#: The benchmark measures 0.6 % on PneumoniaMNIST test; the goal is 1 %.
IN_DISTRIBUTION_BOUND = 0.01


@pytest.fixture(scope="module")
def shipped(shipped_default_model: Path) -> tuple[ScopeGate, Scorer]:
    artifact = load_model(shipped_default_model)
    gate = artifact.scope_gate()
    if gate is None:
        pytest.fail(f"the shipped model has no scope gate: {shipped_default_model / GATE_FILE}")
    return gate, artifact.scorer()


@pytest.fixture(scope="module")
def outliers_dir(dataset_path: Path) -> Path:
    directory = dataset_path.parent / "outliers"
    if not directory.is_dir():
        pytest.skip(f"no shared outliers beside the dataset: {directory}")
    return directory


def _judge(gate: ScopeGate, scorer: Scorer, sources: list[Path] | list[bytes]):
    decoded = [decode_with_thumbnail(source) for source in sources]
    features = scorer.predict_with_features(pixels_to_model_input(np.stack([image.pixels for image, _ in decoded]))).features
    return gate.assess(features, thumbnail_statistics([thumbnail for _, thumbnail in decoded]))


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
    assert output.features.shape == (128, 336) and (output.features >= 0).all()


def test_a_features_model_that_does_not_match_its_metadata_is_refused(shipped_default_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(shipped_default_model, copy)
    (copy / FEATURES_MODEL_FILE).write_bytes((copy / FEATURES_MODEL_FILE).read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="sha256"):
        load_model(copy)


def test_pneumoniamnist_test_images_are_in_scope(shipped, pneumoniamnist):
    gate, scorer = shipped
    verdict = gate.assess(scorer.predict_with_features(pixels_to_model_input(pneumoniamnist.test.images)).features)
    flagged = 1.0 - verdict.in_scope.mean()
    assert flagged <= IN_DISTRIBUTION_BOUND, f"{flagged:.1%} of PneumoniaMNIST test flagged out of scope"
    assert all(reason is None for reason, ok in zip(verdict.scope_reason, verdict.in_scope) if ok)


def test_full_size_pediatric_films_are_in_scope(shipped, xray_jpegs_dir):
    gate, scorer = shipped
    films = sorted(xray_jpegs_dir.rglob("*.jpeg"))[::6]
    verdict = _judge(gate, scorer, films)
    assert (~verdict.in_scope).sum() <= 1, [r for r in verdict.scope_reason if r]


@pytest.mark.parametrize("category", ["photos", "ct_mri", "other_xray", "adult_cxr"])
def test_outlier_categories_are_flagged(shipped, outliers_dir, category):
    gate, scorer = shipped
    sample = sorted((outliers_dir / category).iterdir())[::8]
    verdict = _judge(gate, scorer, sample)
    # the benchmark's held-out-source figures are lower for adult films (65 %) than for the rest (89-100 %)
    assert verdict.in_scope.mean() <= (0.4 if category == "adult_cxr" else 0.1)
    assert all(reason.startswith("unlike training images") for reason in verdict.scope_reason if reason)


def test_images_no_component_has_seen_are_flagged_with_a_reason(shipped, xray_jpegs_dir):
    gate, scorer = shipped
    film = Image.open(sorted(xray_jpegs_dir.rglob("*.jpeg"))[0]).convert("L")
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (400, 400), dtype=np.uint8))
    colour = Image.fromarray(np.dstack([np.asarray(film)] * 3).astype(np.uint8)).convert("RGB")
    colour.paste((200, 40, 40), (0, 0, colour.width // 2, colour.height))
    images = [Image.eval(film, lambda v: 255 - v), film.transpose(Image.Transpose.ROTATE_90), noise, colour]
    verdict = _judge(gate, scorer, [_png(image) for image in images])
    assert not verdict.in_scope.any()
    assert verdict.scope_reason[3] == "unlike training images: colour image"
    assert (verdict.scope_score[:3] > 1.0).all()


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
