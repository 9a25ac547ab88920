"""Shared fixtures.

Real PneumoniaMNIST comes from ``PNEUMO_BATCH_DATA`` (CI sets it to the
shared copy). Every test runs with that variable and the model variable
unset, the cache in a temp dir and downloads refused, so nothing depends
on the network or on the developer's home directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pneumo_batch.dataset import PneumoniaMNIST, read_npz

_DATA_PATH = os.environ.get("PNEUMO_BATCH_DATA")


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PNEUMO_BATCH_DATA", raising=False)
    monkeypatch.delenv("PNEUMO_BATCH_MODEL", raising=False)
    monkeypatch.setenv("PNEUMO_BATCH_CACHE", str(tmp_path_factory.mktemp("cache")))

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("tests never download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    """The real PneumoniaMNIST file; skipped when PNEUMO_BATCH_DATA is unset, failing when it is wrong."""
    if not _DATA_PATH:
        pytest.skip("set PNEUMO_BATCH_DATA to a PneumoniaMNIST .npz to run tests on real data")
    path = Path(_DATA_PATH)
    assert path.is_file(), f"PNEUMO_BATCH_DATA points at a missing file: {path}"
    return path


@pytest.fixture(scope="session")
def pneumoniamnist(dataset_path: Path) -> PneumoniaMNIST:
    return read_npz(dataset_path)


@pytest.fixture()
def synthetic_npz(tmp_path: Path) -> Path:
    """A small structurally valid PneumoniaMNIST-like file (for structure checks only)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 8), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2).astype(np.uint8).reshape(-1, 1)
    path = tmp_path / "small.npz"
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------
# Scoring fixtures (issue 3: `pneumo-batch score`).
#
# The fake scorer lives here, at module level, so that it pickles by name
# into the spawned worker processes of pneumo_batch.scoring (they inherit
# this process's sys.path, which holds the tests folder).
# --------------------------------------------------------------------------

SCORE_FAKE_OPERATING_POINTS = {
    "screening": {"threshold": 0.45, "rule": "fake: fixed for tests"},
    "balanced": {"threshold": 0.55, "rule": "fake: fixed for tests"},
}


class MeanPixelScorer:
    """A deterministic stand-in for the model: the mean pixel of each image, optionally slowed or failing."""

    def __init__(self, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.delay = delay
        self.fail_after = fail_after
        self.calls = 0

    def predict(self, model_input: np.ndarray) -> np.ndarray:
        import time

        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError(f"fake scorer told to fail after {self.fail_after} chunks")
        if self.delay:
            time.sleep(self.delay)
        return fake_scores(model_input)


def fake_scores(model_input: np.ndarray) -> np.ndarray:
    """What :class:`MeanPixelScorer` returns for float model input (N, 28, 28, 1)."""
    return model_input.reshape(len(model_input), -1).mean(axis=1).astype(np.float32)


def make_fake_scorer(delay: float = 0.0) -> MeanPixelScorer:
    """A picklable scorer factory (use ``functools.partial`` for a delay)."""
    return MeanPixelScorer(delay=delay)


def score_fake_metadata() -> dict:
    return {
        "name": "fake-mean-pixel",
        "version": "0.0.0-test",
        "default_variant": "float32",
        "variants": {"float32": {"file": "model.tflite", "sha256": "0" * 64}},
        "operating_points": SCORE_FAKE_OPERATING_POINTS,
        "input": {"size": 28},
    }


@pytest.fixture()
def score_fake_model(tmp_path: Path):
    """A model artifact with thresholds and metadata but no weights: pair it with ``make_fake_scorer``."""
    from pneumo_batch.model import ModelArtifact

    return ModelArtifact(directory=tmp_path / "fake-model", metadata=score_fake_metadata())


@pytest.fixture(scope="session")
def tiny_tflite_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model directory with a float32 .tflite: logistic regression on the mean pixel.

    Built with TensorFlow (the ``train`` extra) once per session; skipped without it.
    """
    pytest.importorskip("tensorflow", reason="building a .tflite for tests needs the train extra (TensorFlow)")
    import tensorflow as tf

    from pneumo_batch.model import file_sha256, write_metadata

    inputs = tf.keras.Input((28, 28, 1))
    mean = tf.keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = tf.keras.layers.Dense(1, activation="sigmoid")(mean)
    keras_model = tf.keras.Model(inputs, outputs)
    keras_model.layers[-1].set_weights([np.array([[8.0]], dtype=np.float32), np.array([-4.0], dtype=np.float32)])
    content = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
    directory = tmp_path_factory.mktemp("tiny-model")
    (directory / "model_float32.tflite").write_bytes(content)
    write_metadata(
        directory,
        {
            "name": "tiny-mean-pixel",
            "version": "0.0.1-test",
            "default_variant": "float32",
            "variants": {
                "float32": {"file": "model_float32.tflite", "sha256": file_sha256(directory / "model_float32.tflite")}
            },
            "operating_points": SCORE_FAKE_OPERATING_POINTS,
            "input": {"size": 28, "normalisation": "pixels / 255"},
        },
    )
    return directory


@pytest.fixture(scope="session")
def shipped_default_model() -> Path:
    """The trained default model shipped in models/; skipped until it exists."""
    from pneumo_batch.errors import ModelError
    from pneumo_batch.model import DEFAULT_POINTER_FILE, default_model_dir as locate, shipped_models_dirs

    if not any((models / DEFAULT_POINTER_FILE).is_file() for models in shipped_models_dirs()):
        pytest.skip("no trained default model yet (models/DEFAULT does not exist)")
    try:
        return locate()
    except ModelError as error:
        pytest.fail(f"models/DEFAULT exists but names no usable model: {error}")


@pytest.fixture(scope="session")
def exported_test_split(pneumoniamnist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 200 test images as PNG files plus their manifest (returns the manifest's path)."""
    from pneumo_batch.export import export_split

    return export_split(pneumoniamnist, "test", tmp_path_factory.mktemp("exported"), limit=200)


@pytest.fixture(scope="session")
def xray_jpegs_dir(dataset_path: Path) -> Path:
    """The 40 full-size JPEGs that sit beside the PneumoniaMNIST file."""
    directory = dataset_path.parent / "xray_jpegs"
    assert directory.is_dir(), f"expected the shared JPEGs beside the dataset: {directory}"
    return directory
