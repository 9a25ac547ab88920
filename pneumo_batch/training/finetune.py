"""Fine-tuning a model's float network on a site's labelled films: the recipe behind ``pneumo-batch adapt``.

The recipe, all seeded and deterministic (:func:`pneumo_batch.training.fit._keras`):

- start from the parent's ``model.keras`` (a parent without it cannot be fine-tuned);
- every epoch shows the site's adaptation films and an equal-size seeded draw
  of PneumoniaMNIST training films, redrawn each epoch, half and half, against
  forgetting; with the parent's training augmentation (its recipe's zoom) and
  class weights; AdamW at a constant 1e-4 (a few hundred films give too few
  steps for a schedule to matter), up to :attr:`FineTuneConfig.max_epochs`;
- the number of epochs is chosen on site films kept out of each fit:
  k-fold cross-fitting, folds grouped by study (the caller's ``fold_of``),
  each fold model fitted on the other folds and its held-out films scored
  after every epoch; the count with the best pooled out-of-fold AUC wins
  (0 is a candidate: the parent's network itself, when fine-tuning does not help);
- the final network is fitted on all adaptation films for that many epochs;
- the screening threshold follows the deployed file: each fold model at the
  chosen epoch is quantized to int8 and scores its held-out films through
  LiteRT (:class:`pneumo_batch.model.Scorer`), and the pooled out-of-fold
  scores go through the site's confidence-bound rule
  (:func:`pneumo_batch.site.thresholds.choose_screening_threshold`). The
  "validated" point that rule keeps when the site cannot prove a change is
  the final int8 model's screening threshold chosen on PneumoniaMNIST
  validation the way training chooses it
  (:func:`pneumo_batch.training.evaluation.choose_operating_points`);
- the other operating points (``balanced``) are chosen on PneumoniaMNIST
  validation exactly as training chooses them: the site rule is a screening
  rule (a sensitivity bound), and the balanced point has no site promise to
  keep, so it stays a validation-split choice, said so in its metadata;
- the deployed variant is int8 always: training's fidelity check reads the
  PneumoniaMNIST test split, which at a site may be where its films came
  from, so here the int8 and Keras validation AUCs are recorded instead.

Budget: under 5 minutes on 2 cores for 300 to 1,000 site films with the
16 M multiply-add ``pneumo_cnn`` of pneumo-cnn-v1.1: ``adapt`` on 1,000 films (28 px PNGs),
k = 3 and up to 30 epochs took 258 s end to end on 2 cores (AMD EPYC), so
nothing is cut for time (docs/site.md).

TensorFlow is imported inside the functions that need it (the ``train`` extra).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_batch import __version__, storage
from pneumo_batch.dataset import PneumoniaMNIST
from pneumo_batch.errors import InputError
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.metrics import roc_auc
from pneumo_batch.model import KERAS_KEY, SCOPE_GATE_KEY, ModelArtifact, Scorer, load_model, write_metadata
from pneumo_batch.monitoring.reference import write_reference_profile
from pneumo_batch.scope.fit import default_sources, fit_scope_gate
from pneumo_batch.site.adaptation import site_figures
from pneumo_batch.site.thresholds import ChosenThreshold, choose_screening_threshold
from pneumo_batch.training.evaluation import ChosenPoint, choose_operating_points, evaluate
from pneumo_batch.training.fit import (
    MODEL_OUTPUT, Progress, TrainingConfig, _augmentation, _class_weights, _keras, keras_file_io, keras_predict)
from pneumo_batch.training.package import git_commit, write_keras, write_variants
from pneumo_batch.training.quantize import convert_variants

DEPLOYED = "int8"
SCREENING = "screening"


@dataclass(frozen=True)
class FineTuneConfig:
    learning_rate: float = 1e-4
    max_epochs: int = 30
    folds: int = 3
    seed: int = 0
    """Seeds the fits (weights' dropout, augmentation, shuffling) and the training-film draws."""
    target_sensitivity: float = 0.98
    calibration_images: int = 500
    """PneumoniaMNIST training images calibrating the int8 conversion (as training does)."""


@dataclass(frozen=True)
class SiteFilms:
    """The site's adaptation films as the model sees them, with their cross-fitting folds."""

    pixels: np.ndarray
    """uint8 (N, 28, 28): the one preprocessing's model input before scaling."""
    labels: np.ndarray
    fold_of: np.ndarray
    """The fold of each film (0..k-1), whole studies in one fold."""


@dataclass(frozen=True)
class FineTuned:
    network: Any
    variants: dict[str, bytes]
    epochs: int
    out_of_fold_auc: list[float]
    """Pooled out-of-fold AUC (float network) after 0, 1, ... max_epochs epochs."""
    out_of_fold_scores: np.ndarray
    """Each site film's score by the int8 fold model that never saw it, at the chosen epoch."""
    screening: ChosenThreshold
    points: list[ChosenPoint]
    """Every operating point: screening by the site rule, the others chosen on PneumoniaMNIST validation."""
    val_scores: np.ndarray
    """The final int8 model's PneumoniaMNIST validation scores."""
    fidelity: dict[str, float]
    seconds: float


def parent_recipe(parent: ModelArtifact) -> TrainingConfig:
    """The parent's training configuration from its metadata (defaults for what it does not record)."""
    recorded = dict(parent.metadata.get("training", {}).get("config", {}))
    known = {field.name for field in fields(TrainingConfig)}
    values = {key: value for key, value in recorded.items() if key in known}
    if "zoom" in values:
        values["zoom"] = tuple(values["zoom"])
    return TrainingConfig(**values)


def require_float_weights(parent: ModelArtifact) -> Path:
    if parent.keras_path is None:
        raise InputError(f"{parent.directory.name} has no float weights (model.keras): retrain it with "
                         "pneumo-batch train, or pass --threshold-only")
    return parent.keras_path


def fine_tune(parent: ModelArtifact, dataset: PneumoniaMNIST, site: SiteFilms, config: FineTuneConfig,
              progress: Progress = lambda message: None) -> FineTuned:
    """Cross-fit, choose the epoch count and the operating points, fit the final network (module docstring)."""
    weights = require_float_weights(parent)
    recipe = parent_recipe(parent)
    started = time.perf_counter()
    folds = int(site.fold_of.max()) + 1
    out_of_fold = np.zeros((config.max_epochs + 1, len(site.labels)), dtype=np.float32)
    fold_weights: list[list[Any]] = []
    for fold in range(folds):
        held = site.fold_of == fold
        progress(f"fold {fold + 1}/{folds}: fitting on {int((~held).sum())} site films, {int(held.sum())} kept out")

        kept: list[Any] = []

        def record(epoch: int, network: Any, held: np.ndarray = held, kept: list[Any] = kept) -> None:
            out_of_fold[epoch, held] = keras_predict(network, site.pixels[held])
            kept.append(network.get_weights())

        _fit(weights, recipe, dataset, site.pixels[~held], site.labels[~held], config, config.max_epochs,
             stream=fold + 1, on_epoch=record)
        fold_weights.append(kept)
    auc = [roc_auc(site.labels, scores) for scores in out_of_fold]
    epochs = int(np.argmax(auc))
    progress("out-of-fold AUC by epoch: " + " ".join(f"{e}:{a:.4f}" for e, a in enumerate(auc)) + f"; chose {epochs}")

    progress(f"final fit on all {len(site.labels)} adaptation films for {epochs} epochs")
    network = _fit(weights, recipe, dataset, site.pixels, site.labels, config, epochs, stream=0)
    calibration = dataset.train.images[: config.calibration_images]
    progress("quantizing the fold models and the final network")
    deployed_oof = _deployed_out_of_fold(weights, fold_weights, epochs, site, calibration)
    variants = convert_variants(network, calibration)
    val_scores = Scorer(variants[DEPLOYED], output=MODEL_OUTPUT).predict(pixels_to_model_input(dataset.val.images))
    validated = choose_operating_points(dataset.val.labels, val_scores, config.target_sensitivity)
    anchor = next(point.threshold for point in validated if point.name == SCREENING)
    screening = choose_screening_threshold(site.labels, deployed_oof, anchor, config.target_sensitivity)
    points = [ChosenPoint(SCREENING, screening.threshold, screening.rule)] + [p for p in validated if p.name != SCREENING]
    fidelity = {"keras_val_auc": roc_auc(dataset.val.labels, keras_predict(network, dataset.val.images)),
                "int8_val_auc": roc_auc(dataset.val.labels, val_scores),
                "int8_out_of_fold_auc": roc_auc(site.labels, deployed_oof)}
    return FineTuned(network=network, variants=variants, epochs=epochs, out_of_fold_auc=auc,
                     out_of_fold_scores=deployed_oof, screening=screening, points=points, val_scores=val_scores,
                     fidelity=fidelity, seconds=time.perf_counter() - started)


def recipe_record(config: FineTuneConfig, parent: ModelArtifact, tuned: FineTuned) -> dict[str, Any]:
    """What lineage records of the recipe."""
    recipe = parent_recipe(parent)
    return {
        "kind": "fine-tune", **asdict(config), "optimizer": "AdamW, constant learning rate",
        "weight_decay": recipe.weight_decay, "epochs_chosen": tuned.epochs,
        "epoch_choice": "best pooled out-of-fold AUC of the float fold models (0: the parent's network)",
        "folds_grouped_by": "study", "batch_size": recipe.batch_size,
        "mix": "each epoch: the site's adaptation films + an equal-size seeded draw of PneumoniaMNIST training films",
        "augmentation": {"on": recipe.augment, "zoom": list(recipe.zoom), "from": "the parent's training recipe"},
        "class_weights": recipe.class_weights, "deployed_variant": DEPLOYED,
    }


def _fit(weights: Path, recipe: TrainingConfig, dataset: PneumoniaMNIST, pixels: np.ndarray, labels: np.ndarray,
         config: FineTuneConfig, epochs: int, *, stream: int, on_epoch: Any = None) -> Any:
    """The parent network fine-tuned for ``epochs`` epochs; ``on_epoch(epoch, network)`` after 0, 1, ... epochs."""
    keras = _keras(config.seed + stream)
    network = _load(keras, weights)
    trainable = keras.Sequential([_augmentation(keras, config.seed + stream, recipe.zoom), network]) if recipe.augment else network
    trainable.compile(optimizer=keras.optimizers.AdamW(learning_rate=config.learning_rate, weight_decay=recipe.weight_decay),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True))
    draws = np.random.default_rng([config.seed, stream])
    train = dataset.train
    if on_epoch is not None:
        on_epoch(0, network)
    for epoch in range(1, epochs + 1):
        drawn = draws.choice(len(train.labels), size=len(labels), replace=len(labels) > len(train.labels))
        images = np.concatenate([pixels, train.images[drawn]])
        mixed = np.concatenate([labels, train.labels.reshape(-1)[drawn]]).astype("float32")
        trainable.fit(pixels_to_model_input(images), mixed, batch_size=recipe.batch_size, epochs=1, shuffle=True,
                      verbose=0, class_weight=_class_weights(mixed) if recipe.class_weights else None)
        if on_epoch is not None:
            on_epoch(epoch, network)
    return network


def _load(keras: Any, weights: Path) -> Any:
    with keras_file_io():
        return keras.models.load_model(weights, compile=False)


def _deployed_out_of_fold(weights: Path, fold_weights: list[list[Any]], epochs: int, site: SiteFilms,
                          calibration: np.ndarray) -> np.ndarray:
    """Each film's score by its fold model at ``epochs``, quantized to the deployed int8 and run through LiteRT."""
    import keras

    network = _load(keras, weights)
    scores = np.zeros(len(site.labels), dtype=np.float32)
    for fold, kept in enumerate(fold_weights):
        held = site.fold_of == fold
        network.set_weights(kept[epochs])
        content = convert_variants(network, calibration, variants=(DEPLOYED,))[DEPLOYED]
        scores[held] = Scorer(content, output=MODEL_OUTPUT).predict(pixels_to_model_input(site.pixels[held]))
    return scores


def write_fine_tuned(parent: ModelArtifact, tuned: FineTuned, dataset: PneumoniaMNIST, site: SiteFilms, out: Path, *,
                     metadata_update: dict[str, Any], progress: Progress = lambda message: None) -> ModelArtifact:
    """Write the fine-tuned model directory ``out`` atomically (staging, then :func:`storage.replace_folder`).

    ``metadata_update`` (name, version, created_at, lineage, ...) goes over the
    parent's metadata, whose training recipe and input contract carry over. The
    reference profile is the site's adaptation films scored by the new model:
    what the site's nights will look like, so drift is measured from there,
    not from PneumoniaMNIST. The scope gate is refitted for the new network from
    the sources training uses (the full-size films and outliers beside the
    PneumoniaMNIST file, :func:`pneumo_batch.scope.fit.default_sources`); the
    site's films are not added as in-scope films, because the gate's image
    model is fitted on full-size films and a site's may be 28 px or DICOM
    (without those films the directory has no gate, as after ``train``).
    """
    staging = out.with_name(f".staging-{out.name}")
    shutil.rmtree(staging, ignore_errors=True)
    storage.make_folder(staging)
    files = write_variants(staging, tuned.variants)
    metadata = {key: value for key, value in parent.metadata.items() if key not in (SCOPE_GATE_KEY, "format_version")}
    metadata.update(metadata_update)
    metadata.update({
        "code_version": {"pneumo_batch": __version__, "git_commit": git_commit()},
        KERAS_KEY: write_keras(staging, tuned.network),
        "variants": files,
        "default_variant": DEPLOYED,
        "default_variant_reason": (f"fine-tuned models deploy int8 (validation AUC {tuned.fidelity['int8_val_auc']:.4f}, "
                                   f"Keras {tuned.fidelity['keras_val_auc']:.4f}); the test split is not read at a site"),
        "operating_points": _points_metadata(tuned, dataset, site),
        "metrics": {"deployed_variant": DEPLOYED, "fidelity": tuned.fidelity,
                    "validation": evaluate(site.labels, tuned.out_of_fold_scores, tuned.points, n_resamples=200),
                    "validation_is": "the site's adaptation films, cross-fitted int8 scores (each by a fold model that never saw it)",
                    "pneumoniamnist_validation": evaluate(dataset.val.labels, tuned.val_scores, tuned.points, n_resamples=200)},
        "reference_profile": "reference_profile.parquet",
    })
    write_metadata(staging, metadata)
    artifact = load_model(staging)
    progress("writing the reference profile (the site's adaptation films, scored by the new model)")
    write_reference_profile(artifact, site.pixels, site.labels, artifact.reference_profile_path)
    films, outliers = default_sources(dataset.path)
    if films is not None:
        progress("refitting the scope gate for the new network")
        fit_scope_gate(artifact, dataset, films, outliers, seed=0)
    storage.replace_folder(staging, out)
    return load_model(out)


def _points_metadata(tuned: FineTuned, dataset: PneumoniaMNIST, site: SiteFilms) -> dict[str, Any]:
    points = {}
    for point in tuned.points:
        if point.name == SCREENING:
            points[point.name] = {
                "threshold": point.threshold, "rule": f"site confidence-bound rule: {point.rule}",
                "chosen_on": (f"the site's adaptation films ({int(site.labels.sum())} pneumonias), cross-fitted "
                              "int8 scores; anchor: the screening threshold chosen on PneumoniaMNIST validation"),
                "validation": site_figures(site.labels, tuned.out_of_fold_scores, point.threshold),
            }
        else:
            points[point.name] = {
                "threshold": point.threshold, "rule": point.rule,
                "chosen_on": "PneumoniaMNIST validation split, scores of the deployed int8 model (as training does)",
                "validation": site_figures(dataset.val.labels, tuned.val_scores, point.threshold),
            }
    return points
