"""Champion against challenger on the same hold-out films: better, not worse, or worse.

Each model is judged at its own screening point (its metadata's threshold),
on the films both put in scope. The figures: the AUC difference with
DeLong's test, sensitivity and specificity of each with McNemar's exact
test of the paired decisions, and a non-inferiority test on sensitivity:
the 95 % interval of (challenger - champion) must lie above
``-SENSITIVITY_MARGIN`` (:mod:`pneumo_batch.paired_tests`).

The verdict:

- **worse**: the challenger's sensitivity or AUC is significantly lower
  (McNemar or DeLong, two-sided p < 0.05), or its sensitivity interval
  lies wholly below ``-SENSITIVITY_MARGIN``;
- **better**: non-inferior, and the AUC or the specificity significantly
  higher;
- **not worse**: non-inferior, and nothing significantly lower;
- **inconclusive**: neither shown: too few pneumonias to tell (two
  identical models on 60 pneumonias: the interval is +-0.032, wider than
  the margin). A fourth verdict rather than calling it worse, so that a
  reader is told to label more films; ``promote`` refuses it like worse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols
from pneumo_batch.model import ModelArtifact
from pneumo_batch.paired_tests import SENSITIVITY_MARGIN, delong, mcnemar_p, non_inferior, paired_difference
from pneumo_batch.site.validation import SCREENING, in_scope

ALPHA = 0.05


def compare(champion: ModelArtifact, champion_scored: pd.DataFrame, challenger: ModelArtifact,
            challenger_scored: pd.DataFrame) -> dict[str, Any]:
    """The comparison of two models' scores of the same labelled films (rows matched by ``image_id``)."""
    films = champion_scored[in_scope(champion_scored)].merge(
        challenger_scored[in_scope(challenger_scored)], on=cols.IMAGE_ID, suffixes=("_champion", "_challenger"))
    labels = films[f"{cols.LABEL}_champion"].to_numpy(dtype=np.int8)
    old = films[f"{cols.SCORE}_champion"].to_numpy(dtype=np.float64)
    new = films[f"{cols.SCORE}_challenger"].to_numpy(dtype=np.float64)
    old_flag = old >= _screening(champion)
    new_flag = new >= _screening(challenger)
    positive = labels == 1
    auc = delong(labels, old, new)
    auc_difference, auc_p = auc.difference()
    sensitivity_difference = paired_difference(old_flag[positive], new_flag[positive])
    specificity_difference = paired_difference(~old_flag[~positive], ~new_flag[~positive])
    sensitivity_p = mcnemar_p(old_flag[positive], new_flag[positive])
    specificity_p = mcnemar_p(~old_flag[~positive], ~new_flag[~positive])
    holds = non_inferior(sensitivity_difference)
    lower = (sensitivity_difference.estimate < 0 and sensitivity_p < ALPHA) or sensitivity_difference.high < -SENSITIVITY_MARGIN
    verdict, reason = _verdict(holds, lower, auc_difference.estimate, auc_p, specificity_difference.estimate,
                               specificity_p)
    return {
        "champion": {"name": champion.name, "version": champion.version, **_figures(labels, old, _screening(champion), auc, 0)},
        "challenger": {"name": challenger.name, "version": challenger.version,
                       **_figures(labels, new, _screening(challenger), auc, 1)},
        "films": int(len(films)),
        "pneumonia": int(positive.sum()),
        "auc_difference": {**auc_difference.as_dict(), "p_value": auc_p, "test": "DeLong"},
        "sensitivity_difference": {**sensitivity_difference.as_dict(), "p_value": sensitivity_p, "test": "McNemar exact"},
        "specificity_difference": {**specificity_difference.as_dict(), "p_value": specificity_p, "test": "McNemar exact"},
        "non_inferiority": {"margin": SENSITIVITY_MARGIN, "holds": holds,
                            "interval": "Agresti-Min paired, 95 %"},
        "verdict": verdict,
        "reason": reason,
    }


def _verdict(holds: bool, sensitivity_lower: bool, auc_delta: float, auc_p: float, spec_delta: float,
             spec_p: float) -> tuple[str, str]:
    if sensitivity_lower:
        return "worse", "screening sensitivity lower than the champion's"
    if auc_delta < 0 and auc_p < ALPHA:
        return "worse", f"AUC significantly lower (DeLong p = {auc_p:.3g})"
    if not holds:
        return "inconclusive", (f"screening sensitivity not shown within {SENSITIVITY_MARGIN} of the champion's: "
                                "too few labelled pneumonias to tell")
    if (auc_delta > 0 and auc_p < ALPHA) or (spec_delta > 0 and spec_p < ALPHA):
        return "better", "sensitivity non-inferior, and AUC or specificity significantly higher"
    return "not worse", "sensitivity non-inferior, nothing significantly lower"


def _screening(model: ModelArtifact) -> float:
    return next(point.threshold for point in model.operating_points if point.name == SCREENING)


def _figures(labels: np.ndarray, scores: np.ndarray, threshold: float, auc: Any, index: int) -> dict[str, Any]:
    confusion = metrics.confusion_at(labels, scores, threshold)
    return {
        "threshold": threshold,
        "auc": auc.interval(index).as_dict(),
        "sensitivity": metrics.wilson_interval(confusion.tp, confusion.tp + confusion.fn).as_dict(),
        "specificity": metrics.wilson_interval(confusion.tn, confusion.tn + confusion.fp).as_dict(),
    }
