"""Class balance: the share flagged at each operating point (and, with labels, the prevalence) against the reference.

The same rule as categorical drift: an absolute move of at least
:attr:`~pneumo_batch.monitoring.summary.MonitoringRules.categorical_effect`
that Fisher's exact test finds significant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols
from pneumo_batch.monitoring.drift import categorical_drift
from pneumo_batch.monitoring.summary import MonitoringRules, ShareComparison


def share_comparisons(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    balance_columns: list[tuple[str, str]],
    thresholds: Mapping[str, float],
    statuses: Mapping[str, bool],
    alpha: float,
    rules: MonitoringRules,
) -> list[ShareComparison]:
    positive = {cols.LABEL: "pneumonia"}
    result = []
    for name, column in balance_columns:
        wanted = positive.get(column, "flagged")
        cur, ref = current[column].dropna(), reference[column].dropna()
        count, n = int((cur == wanted).sum()), len(cur)
        ref_count, ref_n = int((ref == wanted).sum()), len(ref)
        _, p_value = categorical_drift(ref, cur) if n and ref_n else (float("nan"), 1.0)
        share = metrics.wilson_interval(count, n, rules.confidence)
        ref_share = metrics.wilson_interval(ref_count, ref_n, rules.confidence)
        result.append(
            ShareComparison(
                name=name,
                column=column,
                threshold=thresholds.get(name),
                count=count,
                n=n,
                share=share,
                reference_count=ref_count,
                reference_n=ref_n,
                reference_share=ref_share,
                difference=share.estimate - ref_share.estimate if n else float("nan"),
                p_value=p_value,
                alpha=alpha,
                min_difference=rules.categorical_effect,
                alert=statuses.get(column, False),
            )
        )
    return result


def flat_share(comparison: ShareComparison) -> dict[str, Any]:
    return {
        "name": comparison.name,
        "threshold": comparison.threshold,
        "count": comparison.count,
        "n": comparison.n,
        "share": comparison.share.estimate,
        "share_low": comparison.share.low,
        "share_high": comparison.share.high,
        "reference_count": comparison.reference_count,
        "reference_n": comparison.reference_n,
        "reference_share": comparison.reference_share.estimate,
        "reference_share_low": comparison.reference_share.low,
        "reference_share_high": comparison.reference_share.high,
        "difference": comparison.difference,
        "p_value": comparison.p_value,
        "alpha": comparison.alpha,
        "alert": comparison.alert,
    }
