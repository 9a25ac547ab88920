"""Shared fixtures.

Real PneumoniaMNIST is found once, at session start, by the library's own
locator (:func:`pneumo_batch.dataset.locate_dataset`): ``PNEUMO_BATCH_DATA``
(CI sets it to the shared copy), else the download cache
(``~/.cache/pneumo-batch``), else one md5-checked download of the official
file. Offline with neither, the session stops with one line saying how to
point at a copy; no test is skipped for want of data. Every test then runs
with that variable and the model variable unset, the cache in a temp dir and
downloads refused, so no test depends on the network or on the developer's
home directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumo_batch.dataset import DATA_ENV, PneumoniaMNIST, locate_dataset, read_npz
from pneumo_batch.errors import DatasetError

_DATA_PATH: Path | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Find the real dataset before any test runs, or stop the session with one line."""
    global _DATA_PATH
    try:
        _DATA_PATH = locate_dataset()
    except DatasetError as error:
        pytest.exit(
            f"no PneumoniaMNIST for the tests ({error}); point at a copy with "
            f"{DATA_ENV}=/path/to/pneumoniamnist.npz, or run once online to fill ~/.cache/pneumo-batch",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


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
    """The real PneumoniaMNIST file found at session start (see :func:`pytest_sessionstart`)."""
    assert _DATA_PATH is not None and _DATA_PATH.is_file(), f"the dataset found at session start is gone: {_DATA_PATH}"
    return _DATA_PATH


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
# Monitoring fixtures (tests/test_monitor*.py): a deterministic fake scorer
# fitted on the real training split, and predictions frames made from real
# PneumoniaMNIST pixels in the shape `pneumo-batch score` writes.
# --------------------------------------------------------------------------


class FakeScorer:
    """Logistic regression on a few pixel statistics, fitted with numpy on the training split.

    Deterministic, fast and with real signal (AUC about 0.85), so the
    monitoring tests exercise real score distributions without TensorFlow.
    Takes the model's float input (N, 28, 28, 1) like the real Scorer.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        stats = self._statistics(images.astype(np.float32) / 255.0)
        self._centre, self._scale = stats.mean(axis=0), stats.std(axis=0)
        design = self._design(stats)
        y = labels.astype(np.float64)
        weights = np.zeros(design.shape[1])
        for _ in range(25):  # Newton-Raphson on the log-likelihood, lightly ridge-regularised
            p = 1 / (1 + np.exp(-design @ weights))
            gradient = design.T @ (y - p) - 1e-3 * weights
            hessian = design.T @ (design * (p * (1 - p))[:, None]) + 1e-3 * np.eye(len(weights))
            weights += np.linalg.solve(hessian, gradient)
        self.weights = weights

    @staticmethod
    def _statistics(images: np.ndarray) -> np.ndarray:
        stack = images.reshape(len(images), 28, 28)
        centre = stack[:, 8:20, 8:20].reshape(len(stack), -1)
        flat = stack.reshape(len(stack), -1)
        return np.column_stack(
            [flat.mean(axis=1), flat.std(axis=1), centre.mean(axis=1), centre.std(axis=1),
             np.abs(np.diff(stack, axis=2)).mean(axis=(1, 2))]
        )

    def _design(self, stats: np.ndarray) -> np.ndarray:
        standard = (stats - self._centre) / self._scale
        return np.column_stack([np.ones(len(standard)), standard])

    def predict(self, model_input: np.ndarray) -> np.ndarray:
        stats = self._statistics(np.asarray(model_input, dtype=np.float32))
        return (1 / (1 + np.exp(-self._design(stats) @ self.weights))).astype(np.float32)


@pytest.fixture(scope="session")
def fake_scorer(pneumoniamnist: PneumoniaMNIST) -> FakeScorer:
    return FakeScorer(pneumoniamnist.train.images, pneumoniamnist.train.labels)


def fake_metadata(scorer: FakeScorer, val_images: np.ndarray, val_labels: np.ndarray) -> dict:
    """Minimal model metadata: operating points chosen on validation, and the validated figures."""
    from pneumo_batch import metrics
    from pneumo_batch.imaging.preprocess import pixels_to_model_input

    scores = scorer.predict(pixels_to_model_input(val_images))
    thresholds = {
        "screening": metrics.screening_threshold(val_labels, scores, 0.95),
        "balanced": metrics.youden_threshold(val_labels, scores),
    }
    points = {}
    for name, threshold in thresholds.items():
        confusion = metrics.confusion_at(val_labels, scores, threshold)
        points[name] = {
            "threshold": threshold,
            "confusion": {"tp": confusion.tp, "fn": confusion.fn, "tn": confusion.tn, "fp": confusion.fp},
            "sensitivity": confusion.sensitivity,
            "specificity": confusion.specificity,
        }
    return {
        "name": "fake-logistic",
        "version": "0.0.1-test",
        "operating_points": {
            "screening": {"threshold": thresholds["screening"], "rule": "sensitivity >= 0.95 on validation"},
            "balanced": {"threshold": thresholds["balanced"], "rule": "Youden's J on validation"},
        },
        "metrics": {"validation": {"auc": metrics.roc_auc(val_labels, scores), "operating_points": points}},
    }


def predictions_frame(
    images: np.ndarray,
    labels: np.ndarray | None,
    scorer: FakeScorer,
    metadata: dict,
    *,
    run_id: str = "run-test",
    file_facts: bool = True,
):
    """A predictions DataFrame, as `pneumo-batch score` writes it, from 28x28 pixels."""
    import pandas as pd

    from pneumo_batch.imaging.preprocess import pixels_to_model_input
    from pneumo_batch.monitoring.reference import reference_profile_frame

    thresholds = {name: p["threshold"] for name, p in metadata["operating_points"].items()}
    frame = reference_profile_frame(
        images,
        labels if labels is not None else np.zeros(len(images), dtype=np.uint8),
        scorer.predict(pixels_to_model_input(images)),
        thresholds,
        model_sha256="0" * 64,
        model_version=metadata["version"],
        image_ids=[f"img_{i:05d}" for i in range(len(images))],
    )
    frame["run_id"] = run_id
    frame["path"] = [f"images/img_{i:05d}.png" for i in range(len(images))]
    if file_facts:
        frame["img_width"] = pd.array([28] * len(images), dtype="Int64")
        frame["img_height"] = pd.array([28] * len(images), dtype="Int64")
        frame["img_aspect_ratio"] = pd.array([1.0] * len(images), dtype="Float64")
        frame["img_mode"] = pd.array(["L"] * len(images), dtype="string")
        frame["img_format"] = pd.array(["PNG"] * len(images), dtype="string")
    if labels is None:
        frame = frame.drop(columns=["label"])
    return frame


@pytest.fixture(scope="session")
def fake_model_metadata(pneumoniamnist: PneumoniaMNIST, fake_scorer: FakeScorer) -> dict:
    return fake_metadata(fake_scorer, pneumoniamnist.val.images, pneumoniamnist.val.labels)


@pytest.fixture(scope="session")
def make_predictions(fake_scorer: FakeScorer, fake_model_metadata: dict):
    """``make(images, labels=None, run_id=...)``: see :func:`predictions_frame`."""

    def make(images: np.ndarray, labels: np.ndarray | None = None, **options: object):
        return predictions_frame(images, labels, fake_scorer, fake_model_metadata, **options)

    return make


@pytest.fixture(scope="session")
def reference_profile(pneumoniamnist: PneumoniaMNIST, fake_scorer: FakeScorer, fake_model_metadata: dict):
    """The training reference profile of the fake model, as a DataFrame (file facts null)."""
    train = pneumoniamnist.train
    frame = predictions_frame(train.images, train.labels, fake_scorer, fake_model_metadata, file_facts=False)
    return frame.assign(run_id="reference")


def changed_acquisition(images: np.ndarray, gamma: float = 0.7, blur_radius: float = 0.6) -> np.ndarray:
    """Real images as a different scanner would give them: another exposure curve (gamma) and a softer blur."""
    from PIL import Image, ImageFilter

    out = np.empty_like(images)
    for i, image in enumerate(images):
        brighter = np.rint(255.0 * (image / 255.0) ** gamma).astype(np.uint8)
        out[i] = np.asarray(Image.fromarray(brighter).filter(ImageFilter.GaussianBlur(blur_radius)))
    return out


@pytest.fixture(scope="session")
def change_acquisition():
    """:func:`changed_acquisition` as a fixture, for test modules."""
    return changed_acquisition


@pytest.fixture(autouse=True)
def _monitoring_workspace(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the CLI's Evidently workspace default at a temp dir, never the repository's monitoring/."""
    monkeypatch.setenv("PNEUMO_BATCH_WORKSPACE", str(tmp_path_factory.mktemp("workspace")))


# --------------------------------------------------------------------------
# Scoring fixtures (issue 3: `pneumo-batch score`).
#
# The fake scorer lives here, at module level, so that it pickles by name
# into the worker processes of the local scoring engine (they inherit
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

    Built with TensorFlow (the ``train`` extra, which ``make test`` installs) once per session.
    """
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
    """The trained default model shipped in models/ (named by models/DEFAULT); failing when it is missing."""
    from pneumo_batch.errors import ModelError
    from pneumo_batch.model import default_model_dir as locate

    try:
        return locate()
    except ModelError as error:
        pytest.fail(f"no usable shipped default model (models/DEFAULT): {error}")


@pytest.fixture(scope="session")
def exported_test_split(pneumoniamnist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 200 test images as PNG files plus their manifest (returns the manifest's path)."""
    from pneumo_batch.export import export_split

    return export_split(pneumoniamnist, "test", tmp_path_factory.mktemp("exported"), limit=200)


@pytest.fixture(scope="session")
def xray_jpegs_dir(dataset_path: Path) -> Path:
    """The full-size JPEGs that sit beside the PneumoniaMNIST file (their count is in its MANIFEST.csv)."""
    directory = dataset_path.parent / "xray_jpegs"
    assert directory.is_dir(), f"expected the shared JPEGs beside the dataset: {directory}"
    return directory


@pytest.fixture(scope="session")
def xray_jpegs_catalogue(xray_jpegs_dir: Path):
    """The shared JPEG folder's MANIFEST.csv (class, file, size, mode): tests take counts from it, never from a literal."""
    import pandas as pd

    catalogue = pd.read_csv(xray_jpegs_dir / "MANIFEST.csv")
    catalogue["image_id"] = catalogue["cls"] + "/" + catalogue["file"]
    return catalogue


@pytest.fixture(scope="session")
def scored_test_split(pneumoniamnist, shipped_default_model, tmp_path_factory: pytest.TempPathFactory):
    """Every PneumoniaMNIST test film scored once by the shipped model (see tests/labels_nights.py)."""
    from labels_nights import score_test_split

    return score_test_split(pneumoniamnist, shipped_default_model, tmp_path_factory.mktemp("scored-test"))
