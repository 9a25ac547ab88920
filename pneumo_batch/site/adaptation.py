"""Adapting a model to a site: the hold-out split, the re-chosen operating point, and the new model directory.

``adapt --threshold-only`` keeps the network and re-chooses the screening
threshold on the site's adaptation films (:mod:`pneumo_batch.site.thresholds`).
The new directory is a copy of the parent's (same weights, scope gate and
reference profile: the network did not change) with new metadata: its own
name and version, the site's operating point and figures, and ``lineage``
(the parent, the site data's fingerprint, the recipe, the seed, the figures).

``adapt`` without ``--threshold-only`` fine-tunes the network
(:mod:`pneumo_batch.training.finetune`: cross-fitted epochs and screening
point, a new int8 file, scope gate and reference profile) and writes a new
directory with the same kind of lineage.

The hold-out is set aside first, seeded and grouped by study
(StudyInstanceUID where the film has one) so that no study is on both
sides, and written as a manifest for ``compare``; nothing about the model is
ever chosen on it.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics, storage
from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.model import ModelArtifact, load_model, write_metadata
from pneumo_batch.dataset import PneumoniaMNIST
from pneumo_batch.site.labelled import LabelledFilms, check_classes, fingerprint, model_pixels, score_labelled
from pneumo_batch.site.thresholds import choose_screening_threshold
from pneumo_batch.site.validation import SCREENING, in_scope

if TYPE_CHECKING:
    from pneumo_batch.training.finetune import FineTuneConfig
    from pneumo_batch.training.fit import Progress

STUDY = "study_instance_uid"


@dataclass(frozen=True)
class Adapted:
    model: ModelArtifact
    holdout_manifest: Path | None
    lineage: dict[str, Any]


def study_of(films: pd.DataFrame) -> pd.Series:
    """Each film's study (StudyInstanceUID), or its own id when it has none."""
    groups = films[STUDY].fillna(films[cols.IMAGE_ID]) if STUDY in films else films[cols.IMAGE_ID]
    return groups.astype(str)


def split_by_study(films: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(adaptation, hold-out): about ``share`` of the films held out, whole studies on one side, seeded."""
    groups = study_of(films)
    names = np.array(sorted(groups.unique()))
    order = np.random.default_rng(seed).permutation(len(names))
    sizes = groups.value_counts()
    held, count, goal = set(), 0, share * len(films)
    for index in order:
        if count >= goal:
            break
        held.add(names[index])
        count += int(sizes[names[index]])
    out = groups.isin(held).to_numpy()
    return films[~out].reset_index(drop=True), films[out].reset_index(drop=True)


def study_folds(films: pd.DataFrame, folds: int, seed: int) -> np.ndarray:
    """Each film's cross-fitting fold (0..folds-1): studies in seeded order, each to the fold with fewest films."""
    groups = study_of(films)
    names = np.array(sorted(groups.unique()))
    sizes = groups.value_counts()
    fold_of_study, filled = {}, np.zeros(folds, dtype=np.int64)
    for index in np.random.default_rng([seed, 2]).permutation(len(names)):
        fold = int(np.argmin(filled))
        fold_of_study[names[index]] = fold
        filled[fold] += int(sizes[names[index]])
    return groups.map(fold_of_study).to_numpy(dtype=np.int64)


@dataclass(frozen=True)
class SiteSplit:
    """The site's films scored by the parent and split: what both adaptations start from."""

    adaptation: pd.DataFrame
    holdout: pd.DataFrame
    used: LabelledFilms
    """The adaptation films as read (paths or bytes), in the order of ``adaptation``."""
    held: LabelledFilms


def split_site(parent: ModelArtifact, films: LabelledFilms, out: Path, *, holdout_share: float, seed: int,
               workers: int | None) -> SiteSplit:
    """Score the films with the parent (for their studies and scope) and set the hold-out aside, by study."""
    if out.exists():
        raise InputError(f"{out} exists; name a new model directory")
    scored = score_labelled(films, parent, workers=workers)
    adaptation, holdout = split_by_study(scored, holdout_share, seed) if holdout_share > 0 else (scored, scored[:0])
    by_id = films.table.set_index(cols.IMAGE_ID, drop=False)
    used = by_id.loc[adaptation[cols.IMAGE_ID]].reset_index(drop=True)
    held = films.table[films.table[cols.IMAGE_ID].isin(holdout[cols.IMAGE_ID])]
    return SiteSplit(adaptation, holdout, LabelledFilms(used), LabelledFilms(held))


def base_lineage(parent: ModelArtifact, split: SiteSplit, recipe: dict[str, Any], seeds: dict[str, int],
                 figures: dict[str, Any]) -> dict[str, Any]:
    """The lineage block both adaptations write: parent, site data fingerprints (hashes only), recipe, seeds, figures."""
    return {
        "parent": {"name": parent.name, "version": parent.version, "sha256": parent.variant_sha256()},
        "site_data": {"adaptation": fingerprint(split.used),
                      "holdout": fingerprint(split.held) if len(split.held.table) else None,
                      "adaptation_not_decodable": int((split.adaptation[cols.STATUS] != cols.STATUS_OK).sum())},
        "recipe": recipe,
        "seeds": seeds,
        "figures": figures,
        "created_at": datetime.now(timezone.utc).isoformat(),
    }


def write_holdout(out: Path, split: SiteSplit) -> Path | None:
    """``OUT-holdout.parquet``: the hold-out films as a labelled manifest for ``compare`` (None: no hold-out)."""
    if not len(split.held.table):
        return None
    return storage.write_parquet(out.with_name(f"{out.name}-holdout.parquet"), _manifest_table(split.held.table))


def adapt_threshold_only(parent: ModelArtifact, films: LabelledFilms, out: Path, *, holdout_share: float,
                         seed: int, workers: int | None = None, target: float = 0.98) -> Adapted:
    """Write ``out``: ``parent`` with its screening threshold re-chosen on the site's adaptation films."""
    split = split_site(parent, films, out, holdout_share=holdout_share, seed=seed, workers=workers)
    adaptation = split.adaptation
    keep = in_scope(adaptation)
    labels = adaptation[cols.LABEL].to_numpy(dtype=np.int8)[keep]
    check_classes(int(labels.sum()), int((labels == 0).sum()), "the adaptation films in scope")
    scores = adaptation[cols.SCORE].to_numpy(dtype=np.float64)[keep]
    validated = next(p.threshold for p in parent.operating_points if p.name == SCREENING)
    chosen = choose_screening_threshold(labels, scores, validated, target)
    lineage = base_lineage(
        parent, split,
        {"kind": "threshold-only", "target_sensitivity": target, "rule": chosen.rule,
         "holdout_share": holdout_share, "split": "by study, seeded"},
        {"split": seed},
        {"chosen": chosen.as_dict(), "at_validated": site_figures(labels, scores, validated),
         "at_chosen": site_figures(labels, scores, chosen.threshold)},
    )
    model = _write_model(parent, out, chosen.threshold, chosen.rule, lineage, labels, scores)
    return Adapted(model=model, holdout_manifest=write_holdout(out, split), lineage=lineage)


def adapt_fine_tune(parent: ModelArtifact, films: LabelledFilms, out: Path, dataset: PneumoniaMNIST, *,
                    holdout_share: float, seed: int, config: FineTuneConfig | None = None,
                    workers: int | None = None, progress: Progress = lambda message: None) -> Adapted:
    """Write ``out``: ``parent``'s network fine-tuned on the site's adaptation films (:mod:`~.training.finetune`).

    Every decodable adaptation film takes part, in scope under the parent's
    gate or not: the gate judged the parent's features, and the new
    network gets its own gate. The hold-out films are never decoded for it.
    """
    from pneumo_batch.training.finetune import (
        FineTuneConfig, SiteFilms, fine_tune, recipe_record, require_float_weights, write_fine_tuned)

    config = config or FineTuneConfig(seed=seed)
    require_float_weights(parent)
    split = split_site(parent, films, out, holdout_share=holdout_share, seed=seed, workers=workers)
    decodable = (split.adaptation[cols.STATUS] == cols.STATUS_OK).to_numpy()
    fitted = LabelledFilms(split.used.table[decodable].reset_index(drop=True))
    labels = fitted.table[cols.LABEL].to_numpy(dtype=np.int8)
    check_classes(int(labels.sum()), int((labels == 0).sum()), "the decodable adaptation films")
    progress(f"{len(labels)} adaptation films ({int(labels.sum())} pneumonia), {len(split.held.table)} held out"
             + (f", {int((~decodable).sum())} not decodable (left out)" if not decodable.all() else ""))
    site = SiteFilms(pixels=model_pixels(fitted), labels=labels,
                     fold_of=study_folds(split.adaptation[decodable].reset_index(drop=True), config.folds, seed))
    tuned = fine_tune(parent, dataset, site, config, progress)
    lineage = base_lineage(
        parent, split, {**recipe_record(config, parent, tuned), "holdout_share": holdout_share, "split": "by study, seeded"},
        {"split": seed, "fit": config.seed},
        {"out_of_fold_auc_by_epoch": tuned.out_of_fold_auc, "epochs_chosen": tuned.epochs,
         "chosen": tuned.screening.as_dict(), "fidelity": tuned.fidelity, "seconds": round(tuned.seconds, 1),
         "at_chosen": site_figures(labels, tuned.out_of_fold_scores, tuned.screening.threshold)},
    )
    version = f"{parent.version}+site-ft.{lineage['site_data']['adaptation']['sha256'][:8]}"
    model = write_fine_tuned(parent, tuned, dataset, site, out, progress=progress, metadata_update={
        "name": out.name, "version": version, "created_at": lineage["created_at"], "lineage": lineage})
    return Adapted(model=model, holdout_manifest=write_holdout(out, split), lineage=lineage)


def _write_model(parent: ModelArtifact, out: Path, threshold: float, rule: str, lineage: dict[str, Any],
                 labels: np.ndarray, scores: np.ndarray) -> ModelArtifact:
    staging = out.with_name(f".staging-{out.name}")
    shutil.rmtree(staging, ignore_errors=True)
    storage.copy_folder(parent.directory, staging, ignore=shutil.ignore_patterns("comparisons"))
    metadata = copy.deepcopy(parent.metadata)
    metadata["name"] = out.name
    metadata["version"] = f"{parent.version}+site.{lineage['site_data']['adaptation']['sha256'][:8]}"
    metadata["created_at"] = lineage["created_at"]
    point = metadata["operating_points"][SCREENING]
    point.update(threshold=threshold, rule=f"site confidence-bound rule: {rule}",
                 chosen_on=f"site adaptation films ({int(labels.sum())} pneumonias), the parent's int8 scores")
    point["validation"] = site_figures(labels, scores, threshold)
    point.pop("test", None)  # the parent's test figures were at another threshold
    metadata["lineage"] = lineage
    write_metadata(staging, metadata)
    storage.replace_folder(staging, out)
    return load_model(out)


def site_figures(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    confusion = metrics.confusion_at(labels, scores, threshold)
    return {
        "threshold": threshold,
        "confusion": {"tp": confusion.tp, "fp": confusion.fp, "tn": confusion.tn, "fn": confusion.fn},
        "sensitivity": metrics.wilson_interval(confusion.tp, confusion.tp + confusion.fn).as_dict(),
        "specificity": metrics.wilson_interval(confusion.tn, confusion.tn + confusion.fp).as_dict(),
    }


def _manifest_table(films: pd.DataFrame) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(films.reset_index(drop=True), preserve_index=False)
