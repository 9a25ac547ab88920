"""Drift of each column: effect size and significance, and the Evidently drift methods that apply the rule.

A column has drifted when its distribution moved by at least an effect-size
threshold (numeric: Wasserstein distance over the reference's standard
deviation; categorical: total variation distance) and the move is
significant (two-sample Kolmogorov-Smirnov; Fisher's exact or chi-square).
Both rules are registered as Evidently drift methods, so the report's drift
tables show exactly the verdict of ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import predictions as cols
from pneumo_batch.imaging.features import NUMERIC_IMAGE_FEATURES
from pneumo_batch.monitoring.summary import ColumnDrift, MonitoringRules


#: Numeric file facts; compared only when the reference has them.
_NUMERIC_FILE_FEATURES = ("img_width", "img_height", "img_aspect_ratio")
_CATEGORICAL_FILE_FEATURES = ("img_mode", "img_format")
_EXACT_KS_MAX_ROWS = 1000


def numeric_drift(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Normed Wasserstein distance and two-sample K-S p-value of two samples (NaNs dropped)."""
    from scipy import stats

    reference = _finite_values(reference)
    current = _finite_values(current)
    if len(reference) == 0 or len(current) == 0:
        return float("nan"), 1.0
    norm = max(float(np.std(reference)), 1e-3)
    effect = float(stats.wasserstein_distance(reference, current)) / norm
    # The exact distribution matters for small batches; past a thousand rows
    # the asymptotic one is as good and a hundred times faster.
    method = "asymp" if min(len(reference), len(current)) > _EXACT_KS_MAX_ROWS else "auto"
    p_value = float(stats.ks_2samp(reference, current, method=method).pvalue)
    return effect, p_value


def categorical_drift(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Total variation distance and the p-value of a two-sample test of two categorical samples.

    Fisher's exact test for two categories (exact at any batch size), the
    chi-square test of the 2 x k table otherwise. A category absent from one
    sample is a real difference, not an error.
    """
    from scipy import stats

    reference, current = reference.dropna(), current.dropna()
    if len(reference) == 0 or len(current) == 0:
        return float("nan"), 1.0
    ref_counts = reference.astype(str).value_counts()
    cur_counts = current.astype(str).value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index))
    if len(categories) < 2:
        return 0.0, 1.0
    table = np.array([[ref_counts.get(c, 0) for c in categories], [cur_counts.get(c, 0) for c in categories]])
    effect = 0.5 * float(np.abs(table[0] / table[0].sum() - table[1] / table[1].sum()).sum())
    if len(categories) == 2:
        p_value = float(stats.fisher_exact(table).pvalue)
    else:
        p_value = float(stats.chi2_contingency(table).pvalue)
    return effect, p_value


def _finite_values(values: Any) -> np.ndarray:
    array = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return array[np.isfinite(array)]


_REGISTERED: set[str] = set()


def numeric_method(alpha: float) -> str:
    """Register (once) and name the Evidently drift method of numeric columns at level ``alpha``."""
    return _gated_method(
        f"pneumo_wasserstein_ks_{alpha:.3g}",
        f"Wasserstein distance (normed), drift only if K-S p < {alpha:.2g}",
        "Numerical",
        MonitoringRules.numeric_effect,
        lambda reference, current: numeric_drift(reference.to_numpy(), current.to_numpy()),
        alpha,
    )


def categorical_method(alpha: float) -> str:
    """Register (once) and name the Evidently drift method of categorical columns at level ``alpha``."""
    return _gated_method(
        f"pneumo_tvd_exact_{alpha:.3g}",
        f"total variation distance, drift only if Fisher/chi-square p < {alpha:.2g}",
        "Categorical",
        MonitoringRules.categorical_effect,
        categorical_drift,
        alpha,
    )


def _gated_method(
    name: str,
    display_name: str,
    column_type: str,
    default_threshold: float,
    drift: Callable[[pd.Series, pd.Series], tuple[float, float]],
    alpha: float,
) -> str:
    """Register an Evidently drift method: drift when the effect reaches the threshold and ``p < alpha``."""
    if name not in _REGISTERED:
        from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
        from evidently.legacy.core import ColumnType

        def gated(reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float) -> tuple[float, bool]:
            effect, p_value = drift(reference, current)
            return effect, bool(effect >= threshold and p_value < alpha)

        register_stattest(
            StatTest(
                name=name,
                display_name=display_name,
                allowed_feature_types=[getattr(ColumnType, column_type)],
                default_threshold=default_threshold,
            ),
            gated,
        )
        _REGISTERED.add(name)
    return name


def _method_text(kind: str, rules: MonitoringRules, alpha: float) -> str:
    if kind == "numeric":
        return (
            f"normed Wasserstein distance >= {rules.numeric_effect:g} "
            f"and two-sample Kolmogorov-Smirnov p < {alpha:.3g}"
        )
    return f"total variation distance >= {rules.categorical_effect:g} and Fisher/chi-square p < {alpha:.3g}"


def drift_columns_of(
    ok: pd.DataFrame, ref_ok: pd.DataFrame, warnings: list[str]
) -> tuple[list[str], list[str]]:
    """Numeric and categorical columns to test: those with values in both frames."""

    def usable(column: str) -> bool:
        return column in ok and column in ref_ok and ok[column].notna().any() and ref_ok[column].notna().any()

    numeric = [c for c in (*NUMERIC_IMAGE_FEATURES, cols.SCORE, *_NUMERIC_FILE_FEATURES) if usable(c)]
    categorical = [c for c in _CATEGORICAL_FILE_FEATURES if usable(c)]
    missing = [c for c in NUMERIC_IMAGE_FEATURES if c not in ok.columns or c not in ref_ok.columns]
    if missing:
        warnings.append(f"feature column(s) missing, not monitored: {', '.join(missing)}")
    return numeric, categorical


def column_drifts(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    drift_columns: tuple[list[str], list[str]],
    statuses: Mapping[str, bool],
    alpha: float,
    rules: MonitoringRules,
) -> list[ColumnDrift]:
    numeric, categorical = drift_columns
    result = []
    for column in numeric:
        effect, p_value = numeric_drift(reference[column].to_numpy(), current[column].to_numpy())
        result.append(
            ColumnDrift(
                column=column,
                kind="numeric",
                method=_method_text("numeric", rules, alpha),
                score=effect,
                threshold=rules.numeric_effect,
                p_value=p_value,
                alpha=alpha,
                drifted=statuses.get(column, False),
                reference_mean=float(np.nanmean(reference[column])) if len(reference) else None,
                current_mean=float(np.nanmean(current[column])) if current[column].notna().any() else None,
            )
        )
    for column in categorical:
        effect, p_value = categorical_drift(reference[column], current[column])
        result.append(
            ColumnDrift(
                column=column,
                kind="categorical",
                method=_method_text("categorical", rules, alpha),
                score=effect,
                threshold=rules.categorical_effect,
                p_value=p_value,
                alpha=alpha,
                drifted=statuses.get(column, False),
            )
        )
    return result
