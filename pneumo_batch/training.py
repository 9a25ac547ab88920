"""Train, quantize, evaluate and package a model directory.

The flow of :func:`train_and_package`:

1. fit a Keras architecture on the train split, keeping the epoch with the
   best validation AUC;
2. convert it to three TFLite variants: float32, dynamic-range and
   full-integer int8 (calibrated on training images);
3. score validation and test through the very LiteRT path scoring uses
   (:class:`pneumo_batch.model.Scorer`);
4. pick the deployed variant: int8 unless its test AUC is more than
   :data:`MAX_QUANTIZATION_AUC_LOSS` below the Keras model's, then the next
   variant in :data:`VARIANT_PREFERENCE` that is within it;
5. choose the operating points on the deployed variant's validation scores
   (quantization shifts scores, so thresholds follow the deployed file);
6. evaluate once on the test split, and write the model directory.

The test split never influences a threshold, an epoch or a hyperparameter;
it only decides whether quantization lost too much, as a fidelity check.
TensorFlow is imported inside the functions that need it (the ``train``
extra).
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_batch import __version__, architectures
from pneumo_batch.dataset import LABEL_NAMES, PneumoniaMNIST
from pneumo_batch.errors import PneumoBatchError, require
from pneumo_batch.evaluation import ChosenPoint, choose_operating_points, evaluate, sweep
from pneumo_batch.metrics import roc_auc
from pneumo_batch.model import ModelArtifact, Scorer, file_sha256, load_model, sigmoid, write_metadata
from pneumo_batch.preprocess import MODEL_INPUT_SIZE, pixels_to_model_input

VARIANT_PREFERENCE = ("int8", "dynamic", "float32")
MAX_QUANTIZATION_AUC_LOSS = 0.005
VARIANT_DESCRIPTIONS = {
    "float32": "float32 weights and activations (no quantization)",
    "dynamic": "dynamic-range quantization: int8 weights, float activations",
    "int8": "full-integer quantization: int8 weights and activations, calibrated on training images; float32 input and output",
}

Progress = Callable[[str], None]
#: Our networks end in a logit; see :mod:`pneumo_batch.architectures`.
MODEL_OUTPUT = "logit"


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that determines a training run; stored in the model's metadata."""

    architecture: str = architectures.DEFAULT_ARCHITECTURE
    width: int = 24
    epochs: int = 24
    batch_size: int = 64
    learning_rate: float = 2e-3
    """Peak learning rate, reached after one epoch of linear warm-up, then cosine decay."""
    weight_decay: float = 1e-4
    ema_momentum: float | None = 0.99
    """Exponential moving average of the weights (None: off); see :func:`fit_model`."""
    augment: bool = True
    class_weights: bool = True
    seed: int = 42
    target_sensitivity: float = 0.98
    calibration_images: int = 500
    train_limit: int | None = None
    """Train on the first N training images only (the tiny test configuration)."""
    bootstrap_resamples: int = 1000


PRESETS: dict[str, TrainingConfig] = {
    "default": TrainingConfig(),
    "lesson": TrainingConfig(
        architecture="lesson_cnn",
        width=32,
        epochs=10,
        batch_size=32,
        learning_rate=1e-3,
        weight_decay=0.0,
        ema_momentum=None,
        augment=False,
        class_weights=False,
    ),
    "tiny": TrainingConfig(
        width=4, epochs=2, ema_momentum=None, train_limit=384, calibration_images=32, bootstrap_resamples=50
    ),
}


@dataclass
class FitResult:
    model: Any
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def train_and_package(
    dataset: PneumoniaMNIST,
    config: TrainingConfig,
    out_dir: Path,
    *,
    name: str,
    version: str = "1.0.0",
    progress: Progress = lambda message: None,
) -> ModelArtifact:
    """Train a model as described in the module docstring and write ``out_dir``."""
    require("tensorflow", "train")
    out_dir.mkdir(parents=True, exist_ok=True)
    fit = fit_model(dataset, config, progress)
    progress(f"best validation AUC {fit.history[fit.best_epoch - 1]['val_auc']:.4f} at epoch {fit.best_epoch}")

    progress("converting to TFLite (float32, dynamic-range, int8)")
    calibration = dataset.train.images[: config.calibration_images]
    variant_bytes = convert_variants(fit.model, calibration)
    keras_scores = {
        split: _keras_predict(fit.model, dataset.split(split).images) for split in ("val", "test")
    }
    variant_scores = {
        variant: {split: Scorer(content, output=MODEL_OUTPUT).predict(pixels_to_model_input(dataset.split(split).images)) for split in ("val", "test")}
        for variant, content in variant_bytes.items()
    }
    test_auc = {variant: roc_auc(dataset.test.labels, scores["test"]) for variant, scores in variant_scores.items()}
    keras_test_auc = roc_auc(dataset.test.labels, keras_scores["test"])
    deployed, reason = choose_variant(keras_test_auc, test_auc)
    progress(f"deploying the {deployed} variant: {reason}")

    deployed_scores = variant_scores[deployed]
    points = choose_operating_points(dataset.val.labels, deployed_scores["val"], config.target_sensitivity)
    evaluation = {
        split: evaluate(
            dataset.split(split).labels, deployed_scores[split], points, n_resamples=config.bootstrap_resamples, seed=config.seed
        )
        for split in ("val", "test")
    }

    files = _write_variants(out_dir, variant_bytes)
    metadata = _metadata(
        name=name,
        version=version,
        config=config,
        dataset=dataset,
        fit=fit,
        files=files,
        deployed=deployed,
        reason=reason,
        points=points,
        evaluation=evaluation,
        keras_test_auc=keras_test_auc,
        variant_scores=variant_scores,
    )
    _write_sweeps(out_dir, dataset, deployed_scores, points)
    write_metadata(out_dir, metadata)
    artifact = load_model(out_dir)
    _write_reports(artifact, dataset, deployed_scores, fit)
    progress("writing the reference profile for drift monitoring")
    _write_reference_profile(artifact, dataset)
    return artifact


def fit_model(dataset: PneumoniaMNIST, config: TrainingConfig, progress: Progress) -> FitResult:
    """Fit the configured architecture, restoring the weights of the best validation-AUC epoch.

    Augmentation layers sit in front of the network only while fitting; the
    exported model is the bare network. With ``ema_momentum`` every epoch
    is judged on the moving average of the weights (Keras' SwapEMAWeights
    swaps it in for the epoch-end callbacks), which smooths the
    epoch-to-epoch swings of validation AUC that picking a best epoch would
    otherwise chase.
    """
    keras = _keras(config.seed)
    train_images = dataset.train.images[: config.train_limit]
    train_labels = dataset.train.labels[: config.train_limit]
    model = architectures.build(config.architecture, config.width)
    trainable = keras.Sequential([_augmentation(keras, config.seed), model]) if config.augment else model
    trainable.compile(optimizer=_optimizer(keras, config, len(train_labels)), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    result = FitResult(model=model)
    tracker = _best_epoch_tracker(keras, model, dataset, config.epochs, result, progress)
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True), tracker] if config.ema_momentum else [tracker]
    started = time.perf_counter()
    trainable.fit(
        pixels_to_model_input(train_images),
        train_labels.astype("float32"),
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        verbose=0,
        class_weight=_class_weights(train_labels) if config.class_weights else None,
        callbacks=callbacks,
    )
    result.seconds = time.perf_counter() - started
    model.set_weights(tracker.best_weights)
    return result


def _best_epoch_tracker(
    keras: Any, model: Any, dataset: PneumoniaMNIST, epochs: int, result: FitResult, progress: Progress
) -> Any:
    """A callback that records validation AUC and loss each epoch and keeps the best weights."""
    val_input = pixels_to_model_input(dataset.val.images)
    labels = dataset.val.labels

    class BestEpoch(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        best_auc = -1.0
        best_weights = model.get_weights()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            scores = sigmoid(model.predict(val_input, batch_size=512, verbose=0).reshape(-1))
            auc, loss = roc_auc(labels, scores), _log_loss(labels, scores)
            train_loss = float((logs or {}).get("loss", float("nan")))
            result.history.append({"epoch": epoch + 1, "loss": train_loss, "val_loss": loss, "val_auc": auc})
            if auc > self.best_auc:
                self.best_auc, self.best_weights, result.best_epoch = auc, model.get_weights(), epoch + 1
            progress(f"epoch {epoch + 1}/{epochs}: loss {train_loss:.4f} val_loss {loss:.4f} val_auc {auc:.4f}")

    return BestEpoch()


def _optimizer(keras: Any, config: TrainingConfig, n_train: int) -> Any:
    """AdamW with one epoch of linear warm-up to the peak rate, then cosine decay to 1 % of it."""
    steps_per_epoch = int(np.ceil(n_train / config.batch_size))
    warmup = steps_per_epoch if config.epochs > 1 else 0
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 10 if warmup else config.learning_rate,
        decay_steps=max(steps_per_epoch * config.epochs - warmup, 1),
        alpha=0.01,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    ema = {"use_ema": True, "ema_momentum": config.ema_momentum} if config.ema_momentum else {}
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay, **ema)


def _keras(seed: int) -> Any:
    # TensorFlow's C++ start-up chatter would drown the training log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return keras


def _log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    probabilities = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities)))


def _class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights inversely proportional to class frequency, averaging 1 over the data."""
    counts = np.bincount(labels.astype(int), minlength=2)
    return {cls: float(len(labels) / (2 * counts[cls])) for cls in (0, 1)}


def _augmentation(keras: Any, seed: int) -> Any:
    """Small shifts, rotations and zooms that real chest films show.

    No flips: anatomy is not symmetric, and a horizontal flip lowered
    validation AUC in our trials; brightness and contrast jitter did not
    raise it.
    """
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed + 1),
            layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2),
            layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 3),
        ],
        name="augmentation",
    )


def _keras_predict(model: Any, images: np.ndarray) -> np.ndarray:
    return sigmoid(model.predict(pixels_to_model_input(images), batch_size=512, verbose=0).reshape(-1))


def convert_variants(model: Any, calibration_images: np.ndarray) -> dict[str, bytes]:
    """Convert a Keras model to float32, dynamic-range and full-integer int8 TFLite bytes."""
    import tensorflow as tf

    # An all-black and an all-white image pin the input range to [0, 1]:
    # a sample whose brightest pixel is 248 would clip brighter images.
    extremes = np.stack([np.zeros((MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), np.uint8), np.full((MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), 255, np.uint8)])
    calibration = pixels_to_model_input(np.concatenate([calibration_images, extremes]))

    def representative() -> Any:
        for index in range(len(calibration)):
            yield [calibration[index : index + 1]]

    variants = {}
    for variant in ("float32", "dynamic", "int8"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "int8":
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        with warnings.catch_warnings():
            # The converter asks for input statistics that only matter for
            # integer model inputs; ours are float32, quantized in-graph.
            warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected", UserWarning)
            variants[variant] = converter.convert()
    return variants


def choose_variant(keras_test_auc: float, test_auc: dict[str, float]) -> tuple[str, str]:
    """The first variant in :data:`VARIANT_PREFERENCE` within the allowed AUC loss, and why."""
    for variant in VARIANT_PREFERENCE:
        loss = keras_test_auc - test_auc[variant]
        if loss <= MAX_QUANTIZATION_AUC_LOSS:
            skipped = VARIANT_PREFERENCE[: VARIANT_PREFERENCE.index(variant)]
            why = (
                f"test AUC {test_auc[variant]:.4f} is within {MAX_QUANTIZATION_AUC_LOSS} of the Keras model's "
                f"{keras_test_auc:.4f}"
            )
            if skipped:
                why += "; " + ", ".join(
                    f"{s} lost {keras_test_auc - test_auc[s]:.4f} AUC, more than allowed" for s in skipped
                )
            return variant, why
    best = max(test_auc, key=test_auc.__getitem__)
    return best, f"every variant lost more than {MAX_QUANTIZATION_AUC_LOSS} AUC; {best} lost least"


def _write_variants(out_dir: Path, variant_bytes: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    files = {}
    for variant, content in variant_bytes.items():
        path = out_dir / f"model_{variant}.tflite"
        path.write_bytes(content)
        files[variant] = {
            "file": path.name,
            "sha256": file_sha256(path),
            "bytes": len(content),
            "quantization": VARIANT_DESCRIPTIONS[variant],
        }
    return files


def _metadata(
    *,
    name: str,
    version: str,
    config: TrainingConfig,
    dataset: PneumoniaMNIST,
    fit: FitResult,
    files: dict[str, dict[str, Any]],
    deployed: str,
    reason: str,
    points: list[ChosenPoint],
    evaluation: dict[str, Any],
    keras_test_auc: float,
    variant_scores: dict[str, dict[str, np.ndarray]],
) -> dict[str, Any]:
    variants = {
        variant: {
            **info,
            "val_auc": roc_auc(dataset.val.labels, variant_scores[variant]["val"]),
            "test_auc": roc_auc(dataset.test.labels, variant_scores[variant]["test"]),
        }
        for variant, info in files.items()
    }
    return {
        "name": name,
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": {"pneumo_batch": __version__, "git_commit": _git_commit()},
        "labels": list(LABEL_NAMES),
        "positive_label": LABEL_NAMES[1],
        "input": {
            "size": MODEL_INPUT_SIZE,
            "channels": 1,
            "dtype": "float32",
            "range": [0.0, 1.0],
            "preprocessing": (
                "grayscale; centre crop to a square; anti-aliased bilinear downscale to 28x28 (Pillow); "
                "uint8 pixels divided by 255 (pneumo_batch.preprocess)"
            ),
        },
        "output": MODEL_OUTPUT,
        "default_variant": deployed,
        "default_variant_reason": reason,
        "variants": variants,
        "operating_points": {
            point.name: {
                "threshold": point.threshold,
                "rule": point.rule,
                "chosen_on": f"validation split, scores of the deployed {deployed} model",
                "validation": evaluation["val"]["operating_points"][point.name],
                "test": evaluation["test"]["operating_points"][point.name],
            }
            for point in points
        },
        "metrics": {
            "deployed_variant": deployed,
            "validation": evaluation["val"],
            "test": evaluation["test"],
            "keras_test_auc": keras_test_auc,
            "intervals": f"95% percentile bootstrap, {config.bootstrap_resamples} stratified resamples",
        },
        "dataset": {
            "name": "PneumoniaMNIST (MedMNIST v2)",
            "file": dataset.path.name,
            "sha256": dataset.sha256,
            "splits": {
                split: {"n": len(dataset.split(split)), "prevalence": float(dataset.split(split).labels.mean())}
                for split in ("train", "val", "test")
            },
        },
        "training": {
            "config": asdict(config),
            "best_epoch": fit.best_epoch,
            "seconds": round(fit.seconds, 1),
            "history": fit.history,
        },
        "reference_profile": "reference_profile.parquet",
    }


def _git_commit() -> str | None:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=False
        )
    except OSError:
        return None
    return completed.stdout.strip() or None


def _write_sweeps(out_dir: Path, dataset: PneumoniaMNIST, scores: dict[str, np.ndarray], points: list[ChosenPoint]) -> None:
    for split in ("val", "test"):
        rows = sweep(dataset.split(split).labels, scores[split], points)
        with (out_dir / f"threshold_sweep_{split}.csv").open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _write_reports(artifact: ModelArtifact, dataset: PneumoniaMNIST, scores: dict[str, np.ndarray], fit: FitResult) -> None:
    from pneumo_batch import reporting

    reporting.write_plots(artifact, dataset, scores, fit.history)
    reporting.write_model_card(artifact)


def _write_reference_profile(artifact: ModelArtifact, dataset: PneumoniaMNIST) -> None:
    from pneumo_batch.profile import write_reference_profile

    write_reference_profile(artifact, dataset.train.images, dataset.train.labels, artifact.reference_profile_path)


def config_from_preset(preset: str, **overrides: Any) -> TrainingConfig:
    if preset not in PRESETS:
        raise PneumoBatchError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **{key: value for key, value in overrides.items() if value is not None})
