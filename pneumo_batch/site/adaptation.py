"""Adapting a model to a site: the hold-out split, the re-chosen operating point, and the new model directory.

``adapt --threshold-only`` keeps the network and re-chooses the screening
threshold on the site's adaptation films (:mod:`pneumo_batch.site.thresholds`).
The new directory is a copy of the parent's (same weights, scope gate and
reference profile: the network did not change) with new metadata: its own
name and version, the site's operating point and figures, and ``lineage``
(the parent, the site data's fingerprint, the recipe, the seed, the figures).

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
from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics, storage
from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.model import ModelArtifact, load_model, write_metadata
from pneumo_batch.site.labelled import LabelledFilms, check_classes, fingerprint, score_labelled
from pneumo_batch.site.thresholds import choose_screening_threshold
from pneumo_batch.site.validation import SCREENING, in_scope

STUDY = "study_instance_uid"


@dataclass(frozen=True)
class Adapted:
    model: ModelArtifact
    holdout_manifest: Path | None
    lineage: dict[str, Any]


def split_by_study(films: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(adaptation, hold-out): about ``share`` of the films held out, whole studies on one side, seeded."""
    groups = films[STUDY].fillna(films[cols.IMAGE_ID]) if STUDY in films else films[cols.IMAGE_ID]
    names = np.array(sorted(groups.astype(str).unique()))
    order = np.random.default_rng(seed).permutation(len(names))
    sizes = groups.astype(str).value_counts()
    held, count, goal = set(), 0, share * len(films)
    for index in order:
        if count >= goal:
            break
        held.add(names[index])
        count += int(sizes[names[index]])
    out = groups.astype(str).isin(held).to_numpy()
    return films[~out].reset_index(drop=True), films[out].reset_index(drop=True)


def adapt_threshold_only(parent: ModelArtifact, films: LabelledFilms, out: Path, *, holdout_share: float,
                         seed: int, workers: int | None = None, target: float = 0.98) -> Adapted:
    """Write ``out``: ``parent`` with its screening threshold re-chosen on the site's adaptation films."""
    if out.exists():
        raise InputError(f"{out} exists; name a new model directory")
    scored = score_labelled(films, parent, workers=workers)
    adaptation, holdout = split_by_study(scored, holdout_share, seed) if holdout_share > 0 else (scored, scored[:0])
    keep = in_scope(adaptation)
    labels = adaptation[cols.LABEL].to_numpy(dtype=np.int8)[keep]
    check_classes(int(labels.sum()), int((labels == 0).sum()), "the adaptation films in scope")
    scores = adaptation[cols.SCORE].to_numpy(dtype=np.float64)[keep]
    validated = next(p.threshold for p in parent.operating_points if p.name == SCREENING)
    chosen = choose_screening_threshold(labels, scores, validated, target)
    used = films.table[films.table[cols.IMAGE_ID].isin(adaptation[cols.IMAGE_ID])]
    held = films.table[films.table[cols.IMAGE_ID].isin(holdout[cols.IMAGE_ID])]
    lineage = {
        "parent": {"name": parent.name, "version": parent.version, "sha256": parent.variant_sha256()},
        "site_data": {"adaptation": fingerprint(LabelledFilms(used)),
                      "holdout": fingerprint(LabelledFilms(held)) if len(held) else None},
        "recipe": {"kind": "threshold-only", "target_sensitivity": target, "rule": chosen.rule,
                   "holdout_share": holdout_share, "split": "by study, seeded"},
        "seeds": {"split": seed},
        "figures": {"chosen": chosen.as_dict(), "at_validated": _site_figures(labels, scores, validated),
                    "at_chosen": _site_figures(labels, scores, chosen.threshold)},
        "created_at": datetime.now(timezone.utc).isoformat(),
    }
    model = _write_model(parent, out, chosen.threshold, chosen.rule, lineage, labels, scores)
    manifest = None
    if len(held):
        manifest = out.with_name(f"{out.name}-holdout.parquet")
        storage.write_parquet(manifest, _manifest_table(held))
    return Adapted(model=model, holdout_manifest=manifest, lineage=lineage)


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
    point["validation"] = _site_figures(labels, scores, threshold)
    point.pop("test", None)  # the parent's test figures were at another threshold
    metadata["lineage"] = lineage
    write_metadata(staging, metadata)
    storage.replace_folder(staging, out)
    return load_model(out)


def _site_figures(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
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
