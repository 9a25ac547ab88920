"""Label-free estimates calibrated on the site's own labelled films instead of the training hospital's.

The prevalence estimate (BBSE) and the estimated performance correct the
night's flagged share with a confusion matrix: by default the validation
split's. At a site whose films differ that matrix is wrong (on
PneumoniaMNIST's test films the model's specificity is 0.84 against 0.97 on
validation, so a night at 30 % pneumonia reads 39 %). Once the label store
holds at least :attr:`MonitoringRules.site_min_per_class` labelled in-scope
films of each class, scored by the same model at the same threshold, their
summed confusion counts (:mod:`~.realized`'s per-night figures) replace the
validation ones; :meth:`ValidationProfile.from_confusion` resamples them
binomially, so the site matrix's own uncertainty enters every interval.

The labels of the night being judged are never used for its estimate: its
night (the nightly date, or a ``date=YYYY-MM-DD`` partition among the
inputs) is left out of the counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date as Date
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_batch.errors import InputError
from pneumo_batch.monitoring.prevalence import ValidationProfile

VALIDATION_BASIS = "validation"


def judged_nights(inputs: Iterable[str | Path], night: Date | None) -> set[str]:
    """The nights whose labels must not calibrate this estimate: ``night`` and every input's partition date."""
    found = {night.isoformat()} if night is not None else set()
    for path in inputs:
        for part in Path(path).parts:
            if part.startswith("date="):
                found.add(part[len("date="):])
    return found


def site_counts(
    realized: Mapping[str, Any], point: str, threshold: float, exclude: set[str], models: set[str]
) -> dict[str, int] | None:
    """Summed confusion counts at ``point`` over the labelled nights not in ``exclude``, scored at ``threshold``
    by one of ``models`` (SHA-256; empty: any)."""
    totals = {"tp": 0, "fn": 0, "tn": 0, "fp": 0, "nights": 0}
    for night in realized.get("nights") or []:
        figures = (night.get("operating_points") or {}).get(point) or {}
        night_models = {m.get("model_sha256") for m in night.get("models") or []}
        if night.get("chunk") in exclude or not figures or (models and not night_models <= models):
            continue
        if figures.get("threshold") is None or not math.isclose(figures["threshold"], threshold, abs_tol=1e-6):
            continue
        for key in ("tp", "fn", "tn", "fp"):
            totals[key] += int(figures.get(key) or 0)
        totals["nights"] += 1
    return totals if totals["nights"] else None


def site_profile(
    realized: Mapping[str, Any] | None,
    validation: ValidationProfile,
    *,
    point: str,
    exclude: set[str],
    models: set[str],
    min_per_class: int,
    rng: np.random.Generator,
    warnings: list[str],
) -> tuple[ValidationProfile, str]:
    """The site's profile and its basis (``site labels, n=...``) when it has enough films, else ``validation``'s."""
    counts = site_counts(realized or {}, point, validation.threshold, exclude, models) if realized else None
    if counts is None:
        return validation, VALIDATION_BASIS
    positives, negatives = counts["tp"] + counts["fn"], counts["tn"] + counts["fp"]
    if min(positives, negatives) < min_per_class:
        warnings.append(f"site labels not used for the estimates yet: {positives} pneumonia and {negatives} normal "
                        f"labelled films, {min_per_class} of each needed")
        return validation, VALIDATION_BASIS
    try:
        site = ValidationProfile.from_confusion(
            tp=counts["tp"], fn=counts["fn"], tn=counts["tn"], fp=counts["fp"],
            threshold=validation.threshold, rng=rng, n_bootstrap=validation.n_bootstrap,
        )
    except InputError as error:
        warnings.append(f"site labels not used for the estimates: {error}")
        return validation, VALIDATION_BASIS
    basis = (f"site labels, n={positives + negatives} ({positives} pneumonia, {negatives} normal, "
             f"{counts['nights']} nights)")
    return site, basis
