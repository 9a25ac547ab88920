"""Does the screening promise hold on a site's labelled films? The figures and the one sentence that says so.

On the films in scope (the model decides nothing else): AUC with DeLong's
interval, sensitivity and specificity at each operating point with Wilson
intervals, calibration (reliability table and ECE), the subgroup table, and
the out-of-scope share. The verdict on the screening point is a confidence
statement, not a point estimate: the validated sensitivity *holds* when the
site's one-sided 95 % lower bound reaches it, *does not hold* when the upper
bound falls below it, and otherwise the site needs more labelled pneumonias,
as many as it would take, at the miss rate seen, for the bound to decide.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols
from pneumo_batch.labels import in_scope_rows
from pneumo_batch.model import ModelArtifact
from pneumo_batch.monitoring.realized_summary import RealizedRules
from pneumo_batch.monitoring.subgroups import subgroup_figures
from pneumo_batch.paired_tests import delong
from pneumo_batch.site.thresholds import positives_needed

SCREENING = "screening"
#: Intervals are two-sided 95 %, so each bound is one-sided 97.5 %.
CONFIDENCE = 0.95


def in_scope(scored: pd.DataFrame) -> np.ndarray:
    """Which scored rows the model decides on (:func:`pneumo_batch.labels.in_scope_rows`)."""
    return in_scope_rows(scored).to_numpy(dtype=bool)


def validate(scored: pd.DataFrame, model: ModelArtifact) -> dict[str, Any]:
    """The site validation report of ``model`` on ``scored`` (its own scores of the site's labelled films)."""
    keep = in_scope(scored)
    readable = (scored[cols.STATUS] == cols.STATUS_OK).to_numpy(dtype=bool)
    films = scored[keep]
    labels = films[cols.LABEL].to_numpy(dtype=np.int8)
    scores = films[cols.SCORE].to_numpy(dtype=np.float64)
    points = {point.name: point.threshold for point in model.operating_points}
    figures = {name: point_figures(labels, scores, threshold, model, name) for name, threshold in points.items()}
    validated = figures[SCREENING]["validated_sensitivity"] if SCREENING in figures else None
    report = {
        "model": {"name": model.name, "version": model.version},
        "films": int(len(scored)),
        "not_decodable": int((~readable).sum()),
        "out_of_scope": {"films": int((readable & ~keep).sum()),
                         "share": float((readable & ~keep).sum() / readable.sum()) if readable.any() else float("nan")},
        "in_scope": {"films": int(len(films)), "pneumonia": int(labels.sum()), "normal": int((labels == 0).sum())},
        "auc": delong(labels, scores).interval(0, CONFIDENCE).as_dict(),
        "operating_points": figures,
        "calibration": {
            "reliability": metrics.reliability_table(labels, scores),
            "ece": metrics.expected_calibration_error(labels, scores).as_dict(),
        },
        "subgroups": subgroup_figures(_labelled(scored), keep, list(points), RealizedRules()),
    }
    report["verdict"] = sensitivity_verdict(figures.get(SCREENING), validated)
    return report


def point_figures(labels: np.ndarray, scores: np.ndarray, threshold: float, model: ModelArtifact,
                  name: str) -> dict[str, Any]:
    confusion = metrics.confusion_at(labels, scores, threshold)
    validation = model.metadata["operating_points"][name].get("validation", {})
    return {
        "threshold": threshold,
        "confusion": {"tp": confusion.tp, "fp": confusion.fp, "tn": confusion.tn, "fn": confusion.fn},
        "sensitivity": metrics.wilson_interval(confusion.tp, confusion.tp + confusion.fn, CONFIDENCE).as_dict(),
        "specificity": metrics.wilson_interval(confusion.tn, confusion.tn + confusion.fp, CONFIDENCE).as_dict(),
        "validated_sensitivity": validation.get("sensitivity", {}).get("estimate"),
        "validated_specificity": validation.get("specificity", {}).get("estimate"),
    }


def sensitivity_verdict(screening: dict[str, Any] | None, validated: float | None) -> str:
    """One sentence: holds, does not hold, or how many more labelled pneumonias it would take to know."""
    if screening is None or validated is None:
        return "The model has no validated screening point to check."
    site = screening["sensitivity"]
    positives = screening["confusion"]["tp"] + screening["confusion"]["fn"]
    said = f"site sensitivity {site['estimate']:.3f} (95 % CI {site['low']:.3f}-{site['high']:.3f}, {positives} pneumonias)"
    if site["low"] >= validated:
        return f"The validated screening sensitivity {validated:.3f} holds here: {said}."
    if site["high"] < validated:
        return f"The validated screening sensitivity {validated:.3f} does not hold here: {said}."
    needed = positives_needed(site["estimate"], validated,
                              lambda flagged, total: metrics.wilson_interval(flagged, total, CONFIDENCE).low)
    if needed is None:
        return (f"Not yet known whether the validated screening sensitivity {validated:.3f} holds here: {said}; "
                "at the miss rate seen, no number of further films would show that it does.")
    return (f"Not yet known whether the validated screening sensitivity {validated:.3f} holds here: {said}; "
            f"about {max(needed - positives, 1)} more labelled pneumonias would tell, at the miss rate seen.")


def _labelled(scored: pd.DataFrame) -> pd.DataFrame:
    from pneumo_batch.labels import LABELLED

    frame = scored.copy()
    frame[LABELLED] = True
    return frame
