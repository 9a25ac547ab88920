"""The training pipeline on a tiny configuration and a slice of the real data.

The full training run is in benchmarks/train_benchmark.py; here a few
epochs of a narrow network check that everything is written, consistent
and chosen on validation data.
"""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from pneumo_batch import metrics
from pneumo_batch.cli.app import app
from pneumo_batch.errors import ModelError
from pneumo_batch.model import Scorer, file_sha256, load_model
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.training import MAX_QUANTIZATION_AUC_LOSS, PRESETS, choose_variant, convert_variants, fit_model
from pneumo_batch.training.fit import _class_weights, keras_predict

#: Every test here trains (a tiny network, but TensorFlow's start-up and a few epochs take a while).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(dataset_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    result = CliRunner().invoke(app, ["train", "--data", str(dataset_path), "--out", str(out), "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    return load_model(out)


def test_model_directory_is_complete_and_self_describing(tiny_model):
    directory = tiny_model.directory
    for name in ("metadata.json", "MODEL_CARD.md", "reference_profile.parquet", "threshold_sweep_val.csv",
                 "threshold_sweep_test.csv", "plots/roc.png", "plots/training_curves.png",
                 "plots/confusion_matrix.png", "plots/sensitivity_specificity.png"):
        assert (directory / name).is_file(), name
    meta = tiny_model.metadata
    for variant, info in meta["variants"].items():
        assert file_sha256(directory / info["file"]) == info["sha256"], variant
    assert set(meta["variants"]) == {"float32", "dynamic", "int8"}
    assert meta["input"]["size"] == 28
    assert meta["labels"] == ["normal", "pneumonia"]
    assert len(meta["dataset"]["sha256"]) == 64
    assert meta["training"]["config"]["train_limit"] == 384
    assert 1 <= meta["training"]["best_epoch"] <= meta["training"]["config"]["epochs"]
    test = meta["metrics"]["test"]
    assert test["auc"]["low"] <= test["auc"]["estimate"] <= test["auc"]["high"]
    assert {"screening", "balanced"} <= set(meta["operating_points"])
    assert "not a diagnosis" in (directory / "MODEL_CARD.md").read_text()
    # the shared full-size films sit beside the dataset, so train fitted the scope gate for the deployed file
    gate = meta["scope_gate"]
    assert file_sha256(directory / gate["file"]) == gate["sha256"]
    assert gate["features_model"]["of_sha256"] == tiny_model.variant_sha256()
    assert tiny_model.scope_gate() is not None and 0.0 <= gate["false_flag_rate"] <= 1.0


def test_the_float_network_is_kept_verified_and_scores_like_the_float32_variant(tiny_model, pneumoniamnist, tmp_path):
    import keras

    entry = tiny_model.metadata["keras"]
    assert tiny_model.keras_path == tiny_model.directory / "model.keras"
    assert file_sha256(tiny_model.keras_path) == entry["sha256"] and entry["bytes"] == tiny_model.keras_path.stat().st_size
    assert tiny_model.keras_path.stat().st_mode & 0o777 == tiny_model.variant_path().stat().st_mode & 0o777  # private
    assert not tiny_model.keras_path.stat().st_mode & 0o007
    network = keras.models.load_model(tiny_model.keras_path)
    assert not any(layer.name == "augmentation" for layer in network.layers)  # the bare network
    images = pixels_to_model_input(pneumoniamnist.val.images[:64])
    float32 = tiny_model.scorer("float32").predict(images)
    np.testing.assert_allclose(keras_predict(network, pneumoniamnist.val.images[:64]), float32, atol=1e-4)
    copy = tmp_path / "tampered"
    shutil.copytree(tiny_model.directory, copy)
    (copy / "model.keras").write_bytes(b"not a network")
    tampered = load_model(copy)  # scoring never reads the float network
    with pytest.raises(ModelError, match="sha256"):
        tampered.keras_path


def test_operating_points_come_from_the_deployed_variants_validation_scores(tiny_model, pneumoniamnist):
    scores = tiny_model.scorer().predict(pixels_to_model_input(pneumoniamnist.val.images))
    labels = pneumoniamnist.val.labels
    target = tiny_model.metadata["training"]["config"]["target_sensitivity"]
    points = {p.name: p.threshold for p in tiny_model.operating_points}
    assert points["screening"] == pytest.approx(metrics.screening_threshold(labels, scores, target))
    assert points["balanced"] == pytest.approx(metrics.youden_threshold(labels, scores))
    assert metrics.confusion_at(labels, scores, points["screening"]).sensitivity >= target


def test_quantized_variants_reproduce_keras_through_litert(pneumoniamnist):
    fit = fit_model(pneumoniamnist, PRESETS["tiny"], progress=lambda message: None)
    variants = convert_variants(fit.model, pneumoniamnist.train.images[:32])
    images = pixels_to_model_input(pneumoniamnist.val.images[:200])
    keras_scores = fit.model.predict(images, verbose=0).ravel()
    tolerance = {"float32": 1e-5, "dynamic": 0.02, "int8": 0.05}
    for variant, content in variants.items():
        litert_scores = Scorer(content).predict(images)
        assert np.abs(litert_scores - keras_scores).max() <= tolerance[variant], variant


def test_variant_choice_prefers_int8_within_tolerance():
    assert choose_variant(0.98, {"int8": 0.977, "dynamic": 0.979, "float32": 0.98})[0] == "int8"
    variant, reason = choose_variant(0.98, {"int8": 0.97, "dynamic": 0.979, "float32": 0.98})
    assert variant == "dynamic" and "int8 lost 0.0100" in reason
    assert choose_variant(0.98, {"int8": 0.9, "dynamic": 0.9, "float32": 0.96})[0] == "float32"
    assert MAX_QUANTIZATION_AUC_LOSS == 0.005


def test_class_weights_balance_the_classes():
    weights = _class_weights(np.array([1, 1, 1, 0]))
    assert weights[0] == pytest.approx(2.0) and weights[1] == pytest.approx(2 / 3)
    assert weights[0] * 1 + weights[1] * 3 == pytest.approx(4)


def test_unknown_preset_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "m"), "--preset", "huge"])
    assert result.exit_code == 2
    assert "huge" in result.output or "preset" in result.output


def test_metadata_is_plain_json(tiny_model):
    json.loads((tiny_model.directory / "metadata.json").read_text())


def test_distillation_targets_follow_the_teacher_and_the_metadata_names_it(tiny_model, pneumoniamnist, tmp_path):
    from dataclasses import replace

    from pneumo_batch.training import train_and_package
    from pneumo_batch.training.distillation import teacher_record

    labels = pneumoniamnist.train.labels.astype(np.float32)
    config = replace(PRESETS["tiny"], distillation=1.0)
    val_auc = lambda fit: metrics.roc_auc(pneumoniamnist.val.labels, keras_predict(fit.model, pneumoniamnist.val.images))  # noqa: E731
    plain = fit_model(pneumoniamnist, config, progress=lambda message: None)
    agreeing = fit_model(pneumoniamnist, config, progress=lambda message: None, teacher_scores=labels)
    contrary = fit_model(pneumoniamnist, config, progress=lambda message: None, teacher_scores=1 - labels)
    for mine, theirs in zip(plain.model.get_weights(), agreeing.model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)  # a teacher that agrees with the labels changes nothing
    assert val_auc(plain) > 0.8 and val_auc(contrary) < 0.5  # the targets are the teacher's when its share is 1

    student = train_and_package(pneumoniamnist, replace(PRESETS["tiny"], teacher=str(tiny_model.directory)),
                                tmp_path / "student", name="student")
    assert student.metadata["training"]["teacher"] == teacher_record(tiny_model)
    assert student.metadata["training"]["teacher"]["variant"] == "float32"
