"""A screening threshold re-chosen on a site's films, safely when there are only a few hundred of them.

The naive rule, the highest threshold that flags 98 % of the site's
pneumonias, follows its few hardest films: on one half of the PneumoniaMNIST
test split it cut specificity to 0.64. Ours asks the site data to *prove* a
change, with a one-sided lower confidence bound on sensitivity (Clopper-Pearson,
exact):

1. The highest threshold whose site sensitivity has its 95 % lower bound at
   the target (0.98) or above is safe at the site; take it when it is above
   the validated threshold (fewer false alarms, proven safe). With no miss
   it takes 149 pneumonias for the bound to reach 0.98, with one miss 236:
   a small site keeps the validated point. A proof that only reaches below
   the validated threshold is no reason to lower it: with a few hundred
   films the bound sits near the hardest pneumonias, and lowering there
   trades specificity for nothing (docs/site.md: how this case was found).
2. Otherwise keep the validated threshold, unless the site shows it unsafe
   (the upper bound of its sensitivity there is below the target): then
   lower it to the highest threshold proven safe at the site when there is
   one, else to the highest threshold whose site sensitivity reaches the
   target, and say that this is not yet proven. (The second, the naive
   quantile, let hold-out sensitivity fall to 0.89 on a benchmark split
   where the proven threshold existed: docs/site.md.)
3. Either way, say how many labelled pneumonias the site would need for the
   bound to decide at the validated point, at the miss rate seen.

Every site film counts: the scores are the model's own (threshold-only
adaptation) or cross-fitted ones (each film scored by a fit that never saw it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: One-sided confidence of the bound that must clear the target.
BOUND_CONFIDENCE = 0.95


@dataclass(frozen=True)
class ChosenThreshold:
    threshold: float
    changed: bool
    rule: str
    """Which case of the rule applied, in words."""
    site_sensitivity_low: float
    """The one-sided lower bound of site sensitivity at the chosen threshold."""
    positives: int
    positives_needed: int | None
    """Pneumonias the bound would need at the validated point (None: the miss rate seen can never prove it)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lower_bound(successes: int, total: int, confidence: float = BOUND_CONFIDENCE) -> float:
    """Clopper-Pearson one-sided lower bound of a proportion."""
    from scipy.stats import beta

    if total == 0 or successes == 0:
        return 0.0
    return float(beta.ppf(1 - confidence, successes, total - successes + 1))


def upper_bound(successes: int, total: int, confidence: float = BOUND_CONFIDENCE) -> float:
    from scipy.stats import beta

    if total == 0 or successes == total:
        return 1.0
    return float(beta.ppf(confidence, successes + 1, total - successes))


def choose_screening_threshold(labels: np.ndarray, scores: np.ndarray, validated: float,
                               target: float = 0.98) -> ChosenThreshold:
    """The site's screening threshold by the confidence-bound rule (module docstring)."""
    labels = np.asarray(labels).astype(bool)
    positive_scores = np.sort(np.asarray(scores, dtype=np.float64)[labels])[::-1]
    total = len(positive_scores)
    # At threshold = the k-th highest positive score, k pneumonias are flagged (ties flag more, never fewer).
    bounds = np.array([lower_bound(k, total) for k in range(1, total + 1)])
    proven = np.flatnonzero(bounds >= target)
    flagged_at_validated = int(np.sum(positive_scores >= validated))
    needed = _needed(flagged_at_validated, total, target)
    if len(proven) and positive_scores[proven[0]] >= validated:
        threshold = float(positive_scores[proven[0]])
        return ChosenThreshold(threshold, threshold != validated, "proven at the site: lower bound reaches the target",
                               float(bounds[proven[0]]), total, needed)
    unsafe = upper_bound(flagged_at_validated, total) < target
    if unsafe and len(proven):
        threshold = float(positive_scores[proven[0]])
        return ChosenThreshold(threshold, True, "lowered: the site shows the validated point misses too many; "
                               "proven at the new one", float(bounds[proven[0]]), total, needed)
    if unsafe:
        reach = int(np.ceil(target * total - 1e-9))
        threshold = min(float(positive_scores[max(reach, 1) - 1]), validated)
        return ChosenThreshold(threshold, threshold != validated,
                               "lowered: the site shows the validated point misses too many; not yet proven",
                               lower_bound(int(np.sum(positive_scores >= threshold)), total), total, needed)
    return ChosenThreshold(validated, False, "kept: the site's films cannot yet support a change",
                           lower_bound(flagged_at_validated, total), total, needed)


def _needed(flagged: int, total: int, target: float) -> int | None:
    """Pneumonias at which the observed flag rate's lower bound would reach ``target`` (None: never)."""
    return positives_needed(flagged / total if total else 0.0, target, lower_bound)


def positives_needed(rate: float, target: float, bound: Callable[[int, int], float], *,
                     limit: int = 100_000) -> int | None:
    """The fewest pneumonias at which a sensitivity ``rate`` has ``bound(flagged, total)`` at ``target`` (None: never)."""
    if rate <= target or bound(round(rate * limit), limit) < target:
        return None
    low, high = 1, limit
    while low < high:
        middle = (low + high) // 2
        if bound(round(rate * middle), middle) >= target:
            high = middle
        else:
            low = middle + 1
    return low
