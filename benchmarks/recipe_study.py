"""Compare training recipes blind to test: validation figures per seed; test only when asked, for one recipe.

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz .venv/bin/python benchmarks/recipe_study.py \\
        --preset default --width 10 --epochs 48 --seeds 42 43 44 [--teachers pneumo-cnn-v1 pneumo-cnn-v1.1] \\
        [--reveal-test]

How the shipped recipe (`pneumo-cnn-v2`) was chosen (docs/training.md): each
candidate is fitted and quantized to int8 as `train` does, its screening
point chosen on validation (the highest threshold keeping validation
sensitivity at the target); the study prints, per seed and as means, the
validation AUC and the validation specificity at that point, which is the
choosing figure. Test scores are computed but not printed unless
``--reveal-test`` is given: reveal them for the one recipe chosen, after
choosing, or the test split stops being a test. ``--teachers`` distils
from the mean logit of several teachers (an ensemble of model directories
or shipped names); the product's `train` takes one teacher.
Each seed takes 1-3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pneumo_batch.dataset import load_pneumoniamnist
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.metrics import confusion_at, roc_auc, screening_threshold
from pneumo_batch.model import Scorer
from pneumo_batch.training import PRESETS, config_from_preset
from pneumo_batch.training.architectures import multiply_adds
from pneumo_batch.training.distillation import load_teacher, teacher_scores
from pneumo_batch.training.fit import MODEL_OUTPUT, fit_model
from pneumo_batch.training.quantize import convert_variants
from machine import cpu_description  # benchmarks/machine.py


def ensemble_scores(teachers: list[str], images: np.ndarray) -> np.ndarray | None:
    """The teachers' mean logit as a probability, or None without teachers."""
    if not teachers:
        return None
    logits = []
    for name in teachers:
        probability = np.clip(teacher_scores(load_teacher(name), images).astype(np.float64), 1e-6, 1 - 1e-6)
        logits.append(np.log(probability / (1 - probability)))
    return (1 / (1 + np.exp(-np.mean(logits, axis=0)))).astype(np.float32)  # in float64, as the teachers' logits


def run_seed(dataset, config, soft: np.ndarray | None) -> dict:
    fit = fit_model(dataset, config, lambda message: None, teacher_scores=soft)
    int8 = Scorer(convert_variants(fit.model, dataset.train.images[: config.calibration_images], ("int8",))["int8"],
                  output=MODEL_OUTPUT)
    val = int8.predict(pixels_to_model_input(dataset.val.images))
    test = int8.predict(pixels_to_model_input(dataset.test.images))
    threshold = screening_threshold(dataset.val.labels, val, config.target_sensitivity)
    return {"seed": config.seed, "multiply_adds": multiply_adds(fit.model), "best_epoch": fit.best_epoch,
            "fit_s": round(fit.seconds), "val_auc": roc_auc(dataset.val.labels, val),
            **{f"val_{name}": value for name, value in rates(dataset.val.labels, val, threshold).items()},
            "test": {"auc": roc_auc(dataset.test.labels, test), **rates(dataset.test.labels, test, threshold)}}


def rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    confusion = confusion_at(labels, scores, threshold)
    return {"sensitivity": confusion.sensitivity, "specificity": confusion.specificity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--architecture", default=None, help="override the preset's (pneumo_cnn, pneumo_dsnet, ...)")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--teachers", nargs="*", default=[], help="model directories or shipped names to distil from")
    parser.add_argument("--distillation", type=float, default=None, help="the teachers' share of each target")
    parser.add_argument("--train-limit", type=int, default=None, help="the first N training images only (a smoke run)")
    parser.add_argument("--reveal-test", action="store_true", help="print test figures (for the chosen recipe only)")
    args = parser.parse_args()
    print(cpu_description(), flush=True)
    dataset = load_pneumoniamnist(args.data)
    preset_teacher = PRESETS[args.preset].teacher
    soft = ensemble_scores(args.teachers or ([preset_teacher] if preset_teacher else []), dataset.train.images)
    results = []
    for seed in args.seeds:
        config = config_from_preset(args.preset, seed=seed, architecture=args.architecture, width=args.width,
                                    epochs=args.epochs, distillation=args.distillation, train_limit=args.train_limit)
        result = run_seed(dataset, config, soft)
        if not args.reveal_test:
            del result["test"]
        results.append(result)
        print(json.dumps(result), flush=True)
    means = {key: [r[key] for r in results] for key in ("val_auc", "val_specificity")}
    if args.reveal_test:
        means.update({f"test_{name}": [r["test"][name] for r in results] for name in ("auc", "sensitivity", "specificity")})
    for key, values in means.items():
        print(f"mean {key}: {np.mean(values):.4f}")


if __name__ == "__main__":
    main()
