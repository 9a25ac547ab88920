"""Plots and the model card of a model directory (matplotlib, from the ``train`` extra).

Uses matplotlib's object API (``Figure``), never ``pyplot``: no global
state, no backend selection, nothing shown on a screen.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_batch import metrics, storage
from pneumo_batch.dataset import PneumoniaMNIST
from pneumo_batch.model import ModelArtifact

PLOTS_DIR = "plots"
MODEL_CARD = "MODEL_CARD.md"


def write_plots(
    artifact: ModelArtifact, dataset: PneumoniaMNIST, scores: dict[str, np.ndarray], history: list[dict[str, float]]
) -> list[Path]:
    """Training curves, ROC, confusion matrices and the sensitivity/specificity trade-off as PNGs."""
    out = artifact.directory / PLOTS_DIR
    storage.make_folder(out)
    points = {p.name: p.threshold for p in artifact.operating_points}
    return [
        _training_curves(out / "training_curves.png", history, artifact.metadata["training"]["best_epoch"]),
        _roc(out / "roc.png", dataset, scores, points),
        _confusion_matrices(out / "confusion_matrix.png", dataset.test.labels, scores["test"], points),
        _tradeoff(out / "sensitivity_specificity.png", dataset.val.labels, scores["val"], points),
    ]


def _figure(width: float = 6.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure: Any, path: Path) -> None:
    """Render ``figure`` as a PNG and write it atomically."""
    image = io.BytesIO()
    figure.savefig(image, format="png")
    storage.write_bytes(path, image.getvalue())


def _training_curves(path: Path, history: list[dict[str, float]], best_epoch: int) -> Path:
    figure = _figure(9, 4)
    loss_axes, auc_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    loss_axes.plot(epochs, [row["loss"] for row in history], label="train loss (augmented, weighted)")
    loss_axes.plot(epochs, [row["val_loss"] for row in history], label="validation loss")
    loss_axes.set(xlabel="epoch", ylabel="binary cross-entropy", title="Loss")
    loss_axes.legend()
    auc_axes.plot(epochs, [row["val_auc"] for row in history], color="tab:green")
    auc_axes.axvline(best_epoch, color="grey", linestyle="--", label=f"kept: epoch {best_epoch}")
    auc_axes.set(xlabel="epoch", ylabel="AUC", title="Validation AUC")
    auc_axes.legend()
    _save(figure, path)
    return path


def _roc(path: Path, dataset: PneumoniaMNIST, scores: dict[str, np.ndarray], points: dict[str, float]) -> Path:
    figure = _figure(5.5, 5)
    axes = figure.subplots()
    for split, label in (("val", "validation"), ("test", "test")):
        labels = dataset.split(split).labels
        fpr, tpr, _ = metrics.roc_curve(labels, scores[split])
        axes.plot(fpr, tpr, label=f"{label} (AUC {metrics.roc_auc(labels, scores[split]):.3f})")
        for name, threshold in points.items():
            confusion = metrics.confusion_at(labels, scores[split], threshold)
            axes.plot(1 - confusion.specificity, confusion.sensitivity, "o", label=f"{name} on {label}")
    axes.plot([0, 1], [0, 1], color="lightgrey", linestyle=":")
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (deployed model)")
    axes.legend(loc="lower right", fontsize="small")
    _save(figure, path)
    return path


def _confusion_matrices(path: Path, labels: np.ndarray, scores: np.ndarray, points: dict[str, float]) -> Path:
    figure = _figure(4.2 * len(points), 4)
    for axes, (name, threshold) in zip(np.atleast_1d(figure.subplots(1, len(points))), points.items(), strict=True):
        confusion = metrics.confusion_at(labels, scores, threshold)
        matrix = np.array([[confusion.tn, confusion.fp], [confusion.fn, confusion.tp]])
        axes.imshow(matrix, cmap="Blues")
        for (row, col), value in np.ndenumerate(matrix):
            axes.text(col, row, str(value), ha="center", va="center", color="black", fontsize=14)
        axes.set_xticks([0, 1], ["normal", "pneumonia"])
        axes.set_yticks([0, 1], ["normal", "pneumonia"])
        axes.set(xlabel="predicted", ylabel="true", title=f"test, {name} (t={threshold:.3f})")
    _save(figure, path)
    return path


def _tradeoff(path: Path, labels: np.ndarray, scores: np.ndarray, points: dict[str, float]) -> Path:
    thresholds = np.linspace(0, 1, 201)
    rows = [metrics.confusion_at(labels, scores, t) for t in thresholds]
    figure = _figure()
    axes = figure.subplots()
    axes.plot(thresholds, [r.sensitivity for r in rows], label="sensitivity")
    axes.plot(thresholds, [r.specificity for r in rows], label="specificity")
    for name, threshold in points.items():
        axes.axvline(threshold, linestyle="--", color="grey")
        axes.text(threshold, 0.02, f" {name}", rotation=90, va="bottom")
    axes.set(xlabel="threshold", ylabel="rate", title="Validation sensitivity and specificity", ylim=(0, 1.02))
    axes.legend(loc="center left")
    _save(figure, path)
    return path


def write_model_card(artifact: ModelArtifact) -> Path:
    meta = artifact.metadata
    test, val = meta["metrics"]["test"], meta["metrics"]["validation"]
    lines = [
        f"# Model card: {meta['name']} {meta['version']}",
        "",
        "## Intended use",
        "A **screening aid** for pediatric chest X-rays (ages 1 to 5): it decides which studies a radiologist",
        "reads first. It is **not a diagnosis**, and a study it does not flag still needs a reader.",
        "Not for adults, other projections, or other findings than pneumonia.",
        "",
        "## Model",
        f"- Architecture `{meta['training']['config']['architecture']}`, deployed file "
        f"`{meta['variants'][meta['default_variant']]['file']}` ({meta['variants'][meta['default_variant']]['quantization']}).",
        f"- Why this variant: {meta['default_variant_reason']}.",
        f"- Input: {meta['input']['preprocessing']}.",
        f"- Training: {meta['training']['seconds']} s, best epoch {meta['training']['best_epoch']} of "
        f"{meta['training']['config']['epochs']} by validation AUC; configuration in `metadata.json`.",
        "",
        "## Data",
        f"{meta['dataset']['name']} (sha256 `{meta['dataset']['sha256'][:16]}...`): 28x28 grayscale images from",
        "Kermany et al. 2018 (Guangzhou Women and Children's Medical Center), CC BY 4.0.",
        "",
        "| split | images | pneumonia share |",
        "|---|---|---|",
        *[f"| {s} | {v['n']} | {v['prevalence']:.1%} |" for s, v in meta["dataset"]["splits"].items()],
        "",
        "## Metrics (deployed model, read through LiteRT; 95% bootstrap intervals)",
        "",
        "| split | AUC | operating point | threshold | sensitivity | specificity | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for split_name, split in (("validation", val), ("test", test)):
        for name, point in split["operating_points"].items():
            lines.append(
                f"| {split_name} | {_ci(split['auc'])} | {name} | {point['threshold']:.4f} | "
                f"{_ci(point['sensitivity'])} | {_ci(point['specificity'])} | {_ci(point['accuracy'])} |"
            )
    lines += [
        "",
        "Variants: "
        + "; ".join(f"{v}: test AUC {info['test_auc']:.4f}, {info['bytes']:,} bytes" for v, info in meta["variants"].items())
        + f"; Keras before conversion: {meta['metrics']['keras_test_auc']:.4f}.",
        "",
        "## Operating points",
        "Chosen on the validation split only, from the deployed file's scores; the test split was scored once, at the end.",
        "",
        *[f"- `{name}` (t = {p['threshold']:.4f}): {p['rule']}." for name, p in meta["operating_points"].items()],
        "",
        "Use `screening` for the nightly worklist (sensitivity first: a missed pneumonia costs more than a",
        "false alarm); `balanced` is for reporting overall accuracy.",
        "",
        "## Limitations",
        "- 28x28 input: fine findings are invisible at this resolution.",
        "- Pediatric patients from one hospital; other sites, scanners and ages may shift scores (watch the drift report).",
        "- The training data's pneumonia share (74%) is higher than most clinical populations; the flagged share",
        "  of a batch depends on its prevalence.",
        "- Validation figures run above test figures on this dataset; trust the test intervals.",
        "",
        "Plots: `plots/`. Threshold sweeps: `threshold_sweep_val.csv`, `threshold_sweep_test.csv`.",
        "",
    ]
    path = artifact.directory / MODEL_CARD
    storage.write_text(path, "\n".join(lines))
    return path


def _ci(interval: dict[str, float]) -> str:
    return f"{interval['estimate']:.3f} ({interval['low']:.3f}-{interval['high']:.3f})"
