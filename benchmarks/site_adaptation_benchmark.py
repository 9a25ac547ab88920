"""Site adaptation on real data (issue 24): shipped, threshold-only and fine-tuned, on seeded half splits.

    PNEUMO_BATCH_DATA=/path/to/pneumoniamnist.npz .venv/bin/python benchmarks/site_adaptation_benchmark.py \\
        --model models/NAME [--splits 5] [--seed 0] [--poor-challenger]

Two sites from the PneumoniaMNIST **test** split, each written as a labelled
folder of PNGs (``NORMAL/``, ``PNEUMONIA/``): "as-is", and "gamma-blur"
(``(v/255)**0.6*255``, then Pillow's ``GaussianBlur(1.2)``, on each 28 px
film: another scanner's processing). For each of ``--splits`` half splits
(seeds ``seed, seed+1, ...``, fixed before anything is looked at), the
library's threshold-only and fine-tune adaptations run on the adaptation half
(the library sets the other half aside, by the same seeded rule for both);
on the hold-out half it prints, for the shipped model (at its validated
point), threshold-only and fine-tuned: AUC, sensitivity and specificity at
the screening point, and the best possible specificity (the highest of any
threshold with hold-out sensitivity >= 0.98) for reference; the compare
verdict (fine-tuned against shipped), and the adapt wall seconds. Then the
mean of the splits and the lowest sensitivity.

``--poor-challenger`` trains a network for one epoch from scratch, compares
it with the parent on one hold-out and shows that ``promote`` refuses it
(in a temporary models folder).

Goals (issue 24), as the mean of 5 splits: gamma-blur fine-tuned AUC >= 0.980,
sensitivity >= 0.98 with no split below 0.96, specificity >= 0.80; as-is
(any adaptation) sensitivity >= 0.98 with no split below 0.96, specificity >= 0.83.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_description  # noqa: E402

from pneumo_batch import metrics  # noqa: E402
from pneumo_batch import predictions as cols  # noqa: E402
from pneumo_batch.dataset import PneumoniaMNIST, load_pneumoniamnist  # noqa: E402
from pneumo_batch.model import ModelArtifact, load_model  # noqa: E402
from pneumo_batch.site.adaptation import adapt_fine_tune, adapt_threshold_only  # noqa: E402
from pneumo_batch.site.comparison import compare  # noqa: E402
from pneumo_batch.site.labelled import LabelledFilms, read_labelled, score_labelled  # noqa: E402

HOLDOUT_SHARE = 0.5
TARGET = 0.98
KINDS = ("shipped", "threshold-only", "fine-tuned")
SITES = ("as-is", "gamma-blur")


def gamma_blur(images: np.ndarray) -> np.ndarray:
    """Another scanner's processing: a gamma of 0.6, then a Gaussian blur of radius 1.2 (Pillow)."""
    from PIL import Image, ImageFilter

    brightened = np.round((images.astype(np.float64) / 255) ** 0.6 * 255).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.2))) for image in brightened])


def write_site(images: np.ndarray, labels: np.ndarray, root: Path) -> Path:
    from PIL import Image

    for name in ("NORMAL", "PNEUMONIA"):
        (root / name).mkdir(parents=True)
    for index, (image, label) in enumerate(zip(images, labels.reshape(-1))):
        Image.fromarray(image).save(root / ("PNEUMONIA" if label else "NORMAL") / f"test-{index:04d}.png")
    return root


def screening(model: ModelArtifact) -> float:
    return next(point.threshold for point in model.operating_points if point.name == "screening")


def figures(model: ModelArtifact, scored) -> dict[str, float]:
    labels = scored[cols.LABEL].to_numpy(dtype=np.int8)
    scores = scored[cols.SCORE].to_numpy(dtype=np.float64)
    confusion = metrics.confusion_at(labels, scores, screening(model))
    return {"auc": metrics.roc_auc(labels, scores), "sensitivity": confusion.sensitivity,
            "specificity": confusion.specificity, "best_specificity": best_specificity(labels, scores)}


def best_specificity(labels: np.ndarray, scores: np.ndarray) -> float:
    """The highest specificity of any threshold whose sensitivity on these films is at least the target."""
    positives = np.sort(scores[labels == 1])[::-1]
    threshold = positives[int(np.ceil(TARGET * len(positives))) - 1]
    return float(np.mean(scores[labels == 0] < threshold))


def run_split(parent: ModelArtifact, dataset: PneumoniaMNIST, site: Path, seed: int, work: Path) -> dict:
    films = read_labelled(site)
    started = time.perf_counter()
    threshold_only = adapt_threshold_only(parent, films, work / "threshold-only", holdout_share=HOLDOUT_SHARE, seed=seed)
    threshold_seconds = time.perf_counter() - started
    started = time.perf_counter()
    tuned = adapt_fine_tune(parent, films, work / "fine-tuned", dataset, holdout_share=HOLDOUT_SHARE, seed=seed)
    tune_seconds = time.perf_counter() - started
    held = read_labelled(tuned.holdout_manifest)
    same = read_labelled(threshold_only.holdout_manifest)
    assert sorted(held.table[cols.IMAGE_ID]) == sorted(same.table[cols.IMAGE_ID]), "the two adaptations held out different films"
    models = {"shipped": parent, "threshold-only": threshold_only.model, "fine-tuned": tuned.model}
    scored = {kind: score_labelled(held, model) for kind, model in models.items()}
    verdict = compare(parent, scored["shipped"], tuned.model, scored["fine-tuned"])
    return {
        "figures": {kind: figures(models[kind], scored[kind]) for kind in KINDS},
        "seconds": {"threshold-only": threshold_seconds, "fine-tuned": tune_seconds},
        "epochs": tuned.lineage["figures"]["epochs_chosen"],
        "rule": tuned.lineage["figures"]["chosen"]["rule"],
        "verdict": verdict["verdict"],
        "holdout": f"{len(held.table)} films, {held.positives} pneumonia",
    }


def print_site(name: str, results: list[tuple[int, dict]]) -> None:
    print(f"\n## {name}")
    print("split seed | model | AUC | sensitivity | specificity | best specificity (sens >= 0.98) | adapt s")
    for seed, result in results:
        for kind in KINDS:
            f = result["figures"][kind]
            seconds = result["seconds"].get(kind)
            print(f"{seed} | {kind} | {f['auc']:.4f} | {f['sensitivity']:.3f} | {f['specificity']:.3f} | "
                  f"{f['best_specificity']:.3f} | {'' if seconds is None else f'{seconds:.0f}'}")
        print(f"{seed} | fine-tuned: {result['epochs']} epochs, screening rule: {result['rule']}; "
              f"compare fine-tuned vs shipped: {result['verdict']}; hold-out {result['holdout']}")
    print(f"mean of {len(results)} splits:")
    for kind in KINDS:
        rows = [result["figures"][kind] for _, result in results]
        mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
        print(f"  {kind}: AUC {mean['auc']:.4f}, sensitivity {mean['sensitivity']:.3f} "
              f"(lowest {min(row['sensitivity'] for row in rows):.3f}), specificity {mean['specificity']:.3f}, "
              f"best specificity {mean['best_specificity']:.3f}")
    for kind in ("threshold-only", "fine-tuned"):
        print(f"  {kind} adapt wall seconds: mean {np.mean([r['seconds'][kind] for _, r in results]):.0f}")


def poor_challenger(parent: ModelArtifact, dataset: PneumoniaMNIST, site: Path, seed: int, work: Path) -> None:
    """One epoch from scratch, compared with the parent on one hold-out; promote must refuse it."""
    from pneumo_batch.model import DEFAULT_POINTER_FILE
    from pneumo_batch.registry import PromotionRefusedError, promote, record_comparison
    from pneumo_batch.site.adaptation import split_by_study
    from pneumo_batch.training import config_from_preset, train_and_package

    folder = work / "models"
    folder.mkdir()
    shutil.copytree(parent.directory, folder / parent.directory.name)
    (folder / DEFAULT_POINTER_FILE).write_text(parent.directory.name + "\n")
    poor = train_and_package(dataset, config_from_preset("default", epochs=1, seed=seed), folder / "one-epoch",
                             name="one-epoch")
    _, holdout = split_by_study(read_labelled(site).table, HOLDOUT_SHARE, seed)
    held = LabelledFilms(holdout)
    found = compare(parent, score_labelled(held, parent), poor, score_labelled(held, poor))
    record_comparison(poor.directory, parent.directory.name, found)
    print(f"\n## poor challenger (one epoch from scratch) against {parent.name} on {found['films']} hold-out films")
    print(f"AUC {found['challenger']['auc']['estimate']:.4f} vs {found['champion']['auc']['estimate']:.4f}; "
          f"verdict: {found['verdict']} ({found['reason']})")
    try:
        promote(folder, "one-epoch")
    except PromotionRefusedError as error:
        print(f"promote refused: {error}")
    else:
        print("promote ACCEPTED the poor challenger: this is a failure")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="The parent (shipped) model directory, with model.keras.")
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA).")
    parser.add_argument("--splits", type=int, default=5, help="Half splits per site (0: only --poor-challenger).")
    parser.add_argument("--seed", type=int, default=0, help="The first split seed; the splits use seed, seed+1, ...")
    parser.add_argument("--poor-challenger", action="store_true", help="Also show promote refusing a one-epoch model.")
    parser.add_argument("--sites", nargs="+", choices=SITES, default=list(SITES), help="Which sites to run (default: both).")
    args = parser.parse_args()
    dataset = load_pneumoniamnist(args.data)
    parent = load_model(args.model)
    print(f"# site adaptation benchmark: {parent.name} {parent.version}; {cpu_description()}")
    seeds = [args.seed + index for index in range(args.splits)]
    print(f"split seeds (fixed before looking): {seeds}; hold-out share {HOLDOUT_SHARE}")
    with tempfile.TemporaryDirectory(prefix="site-adaptation-") as temporary:
        work = Path(temporary)
        sites = {"as-is": dataset.test.images, "gamma-blur": gamma_blur(dataset.test.images)}
        for name, images in sites.items():
            site = write_site(images, dataset.test.labels, work / name / "films")
            if not seeds or name not in args.sites:
                continue
            results = []
            for seed in seeds:
                split_work = work / name / f"split-{seed}"
                split_work.mkdir()
                results.append((seed, run_split(parent, dataset, site, seed, split_work)))
            print_site(name, results)
        if args.poor_challenger:
            poor_challenger(parent, dataset, work / "as-is" / "films", args.seed, work)


if __name__ == "__main__":
    main()
