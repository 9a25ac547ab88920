"""Train, quantize, evaluate and package a model directory.

The flow of :func:`train_and_package`:

1. fit a Keras architecture (:mod:`~pneumo_batch.training.fit`) on the train split, keeping the epoch with the
   best validation AUC;
2. convert it (:mod:`~pneumo_batch.training.quantize`) to three TFLite variants: float32, dynamic-range and
   full-integer int8 (calibrated on training images);
3. score validation and test through the very LiteRT path scoring uses
   (:class:`pneumo_batch.model.Scorer`);
4. pick the deployed variant: int8 unless its test AUC is more than
   :data:`~pneumo_batch.training.quantize.MAX_QUANTIZATION_AUC_LOSS` below the Keras model's, then the next
   variant in :data:`~pneumo_batch.training.quantize.VARIANT_PREFERENCE` that is within it;
5. choose the operating points on the deployed variant's validation scores
   (quantization shifts scores, so thresholds follow the deployed file);
6. evaluate once on the test split, and write the model directory;
7. when full-size films are given, fit the pixel scope gate for the deployed variant
   (:func:`pneumo_batch.scope.fit.fit_scope_gate`, as ``pneumo-batch fit-scope`` does).

The test split never influences a threshold, an epoch or a hyperparameter;
it only decides whether quantization lost too much, as a fidelity check.
TensorFlow is imported inside the functions that need it (the ``train``
extra).
"""


from __future__ import annotations

import csv
import io
import subprocess
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_batch import __version__, storage
from pneumo_batch.dataset import LABEL_NAMES, PneumoniaMNIST
from pneumo_batch.errors import require
from pneumo_batch.imaging.preprocess import MODEL_INPUT_SIZE, pixels_to_model_input
from pneumo_batch.metrics import roc_auc
from pneumo_batch.model import KERAS_FILE, KERAS_KEY, ModelArtifact, Scorer, file_sha256, load_model, write_metadata
from pneumo_batch.training.distillation import load_teacher, teacher_record, teacher_scores
from pneumo_batch.training.evaluation import ChosenPoint, choose_operating_points, evaluate, sweep
from pneumo_batch.training.fit import (
    MODEL_OUTPUT, FitResult, Progress, TrainingConfig, fit_model, keras_file_io, keras_predict)
from pneumo_batch.training.quantize import VARIANT_DESCRIPTIONS, choose_variant, convert_variants


def train_and_package(
    dataset: PneumoniaMNIST,
    config: TrainingConfig,
    out_dir: Path,
    *,
    name: str,
    version: str = "1.0.0",
    progress: Progress = lambda message: None,
    scope_films: Path | None = None,
    scope_outliers: Path | None = None,
) -> ModelArtifact:
    """Train a model as described in the module docstring and write ``out_dir``.

    ``scope_films`` (full-size pediatric films) and ``scope_outliers`` (known
    out-of-scope images, optional) fit the scope gate; without films the
    directory has no gate, and scoring says so in each run's metadata.
    """
    require("tensorflow", "train")
    storage.make_folder(out_dir)
    teacher = load_teacher(config.teacher) if config.teacher else None
    if teacher:
        progress(f"distilling from {teacher.name} {teacher.version} (its share of each target: {config.distillation})")
    fit = fit_model(dataset, config, progress,
                    teacher_scores=teacher_scores(teacher, dataset.train.images) if teacher else None)
    progress(f"best validation AUC {fit.history[fit.best_epoch - 1]['val_auc']:.4f} at epoch {fit.best_epoch}")

    progress("converting to TFLite (float32, dynamic-range, int8)")
    calibration = dataset.train.images[: config.calibration_images]
    variant_bytes = convert_variants(fit.model, calibration)
    keras_scores = {
        split: keras_predict(fit.model, dataset.split(split).images) for split in ("val", "test")
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

    files = write_variants(out_dir, variant_bytes)
    keras_file = write_keras(out_dir, fit.model)
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
        teacher=teacher_record(teacher) if teacher else None,
    )
    metadata[KERAS_KEY] = keras_file
    _write_sweeps(out_dir, dataset, deployed_scores, points)
    write_metadata(out_dir, metadata)
    artifact = load_model(out_dir)
    _write_reports(artifact, dataset, deployed_scores, fit)
    progress("writing the reference profile for drift monitoring")
    _write_reference_profile(artifact, dataset)
    if scope_films is None:
        progress("no full-size films given: the model directory has no scope gate (pneumo-batch fit-scope adds one)")
        return artifact
    from pneumo_batch.scope.fit import fit_scope_gate

    progress("fitting the scope gate")
    return fit_scope_gate(artifact, dataset, scope_films, scope_outliers, seed=config.seed)


def write_variants(out_dir: Path, variant_bytes: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    files = {}
    for variant, content in variant_bytes.items():
        path = storage.write_bytes(out_dir / f"model_{variant}.tflite", content)
        files[variant] = {
            "file": path.name,
            "sha256": file_sha256(path),
            "bytes": len(content),
            "quantization": VARIANT_DESCRIPTIONS[variant],
        }
    return files


def write_keras(out_dir: Path, network: Any) -> dict[str, Any]:
    """Save the bare float network as ``model.keras`` through storage; its metadata entry (file, sha256, bytes).

    Keras saves only to a path ending in ``.keras``, so it writes into a
    private temporary folder and storage moves the bytes into place.
    """
    with tempfile.TemporaryDirectory(prefix="pneumo-keras-") as work:
        saved = Path(work) / KERAS_FILE
        with keras_file_io():
            network.save(saved)
        content = saved.read_bytes()
    path = storage.write_bytes(out_dir / KERAS_FILE, content)
    return {"file": path.name, "sha256": file_sha256(path), "bytes": len(content),
            "what": "the fitted float Keras network without its augmentation layers (what adapt fine-tunes)"}


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
    teacher: dict[str, Any] | None,
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
        "code_version": {"pneumo_batch": __version__, "git_commit": git_commit()},
        "labels": list(LABEL_NAMES),
        "positive_label": LABEL_NAMES[1],
        "input": {
            "size": MODEL_INPUT_SIZE,
            "channels": 1,
            "dtype": "float32",
            "range": [0.0, 1.0],
            "preprocessing": (
                "grayscale; centre crop to a square; anti-aliased bilinear downscale to 28x28 (Pillow); "
                "uint8 pixels divided by 255 (pneumo_batch.imaging.preprocess)"
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
            "teacher": teacher,
            "best_epoch": fit.best_epoch,
            "seconds": round(fit.seconds, 1),
            "history": fit.history,
        },
        "reference_profile": "reference_profile.parquet",
    }


def git_commit() -> str | None:
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
        stream = io.StringIO(newline="")
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        storage.write_text(out_dir / f"threshold_sweep_{split}.csv", stream.getvalue())


def _write_reports(artifact: ModelArtifact, dataset: PneumoniaMNIST, scores: dict[str, np.ndarray], fit: FitResult) -> None:
    from pneumo_batch.training import reporting

    reporting.write_plots(artifact, dataset, scores, fit.history)
    reporting.write_model_card(artifact)


def _write_reference_profile(artifact: ModelArtifact, dataset: PneumoniaMNIST) -> None:
    from pneumo_batch.monitoring.reference import write_reference_profile

    write_reference_profile(artifact, dataset.train.images, dataset.train.labels, artifact.reference_profile_path)
