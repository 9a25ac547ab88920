"""The verdict of a monitoring run: its rules, its findings, and what ``summary.json`` holds."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols

#: 4: ``sample`` (monitoring at archive scale, issue 27) and ``rules.sample_rows``.
#: 3: ``sensitivity_alert``, ``subgroup_alert``, ``realized_performance``, ``subgroups`` and ``estimate_basis`` (issue 23).
#: 2: out-of-scope rows, the prevalence estimate, the label-free performance estimate and
#: the verdict sentence; class balance entries say ``moved`` (informational) instead of ``alert``.
SUMMARY_FORMAT_VERSION = 4


_TOP_ERRORS = 5
#: The tests that can alert on a night without labels: out of scope, class balance, drift.
LABEL_FREE_TESTS = 3


@dataclass(frozen=True)
class MonitoringRules:
    """The thresholds of the verdict (see the module docstring)."""

    false_alarm_rate: float = 0.02
    """Family-wise error budget: how often, at most, a night like the training data raises any label-free alert.

    Split evenly (Bonferroni) across the :data:`LABEL_FREE_TESTS` tests, each
    at :attr:`test_alpha`: out of scope, class balance, drift; drift splits its
    share again across its columns (a night drifts when any column does).
    """
    numeric_effect: float = 0.2
    """Smallest move of a numeric column that counts: Wasserstein distance / reference standard deviation."""
    categorical_effect: float = 0.05
    """Smallest move of a categorical column that counts: total variation distance (for a share, its difference)."""
    min_rows: int = 10
    """Fewer scored rows than this raise no alert at all."""
    confidence: float = 0.95
    """Level of the reported intervals."""
    performance_margin: float = 0.05
    """A performance figure alerts when its interval lies wholly below the validated figure minus this."""
    bootstrap_resamples: int = 500
    prevalence_point: str = "screening"
    """Operating point whose validation confusion corrects the prevalence estimate (BBSE)."""
    expected_prevalence: tuple[float, float] | None = None
    """Pneumonia share a night may show without a class-balance alert; default: training prevalence +/- tolerance."""
    prevalence_tolerance: float = 0.05
    default_false_flag_rate: float = 0.01
    """Out-of-scope share expected by chance when neither the run nor the model states its gate's validated rate."""
    site_min_per_class: int = 50
    """Labelled in-scope films of each class (from other nights) the site needs before its own confusion
    matrix replaces the validation one in the label-free estimates."""
    seed: int = 0
    """Seed of the run's bootstrap draws, reference resampling and sample: the same input gives the same summary."""
    sample_rows: int = 20_000
    """Largest batch read whole. A larger one takes its counts, errors, scope, prevalence and class balance
    from every row and its drift, Evidently report, measured performance and thumbnails from a sample of
    this many rows drawn with :attr:`seed` (:mod:`~pneumo_batch.monitoring.sampling`)."""

    @property
    def test_alpha(self) -> float:
        """Significance level of each label-free test: its even share of :attr:`false_alarm_rate`."""
        return self.false_alarm_rate / LABEL_FREE_TESTS


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    """``numeric`` or ``categorical``."""
    method: str
    score: float
    """The effect size: normed Wasserstein distance, or total variation distance."""
    threshold: float
    p_value: float
    alpha: float
    drifted: bool
    reference_mean: float | None = None
    current_mean: float | None = None


@dataclass(frozen=True)
class ShareComparison:
    """A share of the batch (flagged at an operating point, or with pneumonia) against the reference."""

    name: str
    column: str
    threshold: float | None
    count: int
    n: int
    share: metrics.Interval
    reference_count: int
    reference_n: int
    reference_share: metrics.Interval
    difference: float
    p_value: float
    alpha: float
    min_difference: float
    moved: bool
    """Moved by the categorical rule. Informational: under label shift this share moves by design;
    the class-balance alert comes from the error-corrected prevalence estimate."""


@dataclass(frozen=True)
class PerformanceFigure:
    name: str
    """``auc``, or ``<point>.sensitivity`` / ``<point>.specificity``."""
    value: metrics.Interval
    n: int
    validated: float | None
    below_validated: bool


@dataclass(frozen=True)
class Estimate:
    """A figure with its interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class PrevalenceFinding:
    """The night's pneumonia share corrected for the model's errors, against the expected range."""

    value: float
    low: float
    high: float
    """``low``-``high``: the 95 % bootstrap interval (reported)."""
    training: float
    expected_low: float
    expected_high: float
    alert_low: float
    alert_high: float
    """The ``1 - 2 test_alpha`` interval: the alert fires when it lies wholly outside the expected range
    (one side can miss the range, so the test's level is ``test_alpha``)."""
    alert: bool
    basis: str
    """``estimate`` (the interval above is the estimate's), or ``labels`` when every row is labelled
    (``alert_low``-``alert_high`` is then the labelled share's Wilson interval)."""
    method: str
    operating_point: str
    threshold: float
    n: int
    realized: float | None = None
    """The labelled share of pneumonia, when the batch has labels."""


@dataclass(frozen=True)
class EstimatedPerformance:
    """Screening figures expected tonight without labels, valid while only the prevalence moved."""

    valid: bool
    reason: str
    operating_point: str
    threshold: float
    prevalence: Estimate
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    expected_flagged: Estimate
    expected_caught: Estimate
    """Pneumonias flagged (true positives)."""
    expected_missed: Estimate
    """Pneumonias not flagged (false negatives): the figure that matters most."""
    n: int
    realized: dict[str, float | int | None] | None = None
    """With labels: the same figures counted on the night (sensitivity, specificity, ppv, npv, flagged, caught, missed)."""


@dataclass(frozen=True)
class ScopeTest:
    """Are there more out-of-scope rows than the gate's validated false-flag rate explains?"""

    n_out_of_scope: int
    n: int
    share: float
    false_flag_rate: float
    false_flag_rate_source: str
    expected: float
    p_value: float
    alpha: float
    alert: bool


@dataclass(frozen=True)
class MonitoringSummary:
    """What ``summary.json`` holds (:meth:`as_dict`)."""

    verdict: str
    """One sentence in words."""
    drift_detected: bool
    class_balance_alert: bool
    out_of_scope_alert: bool
    performance_alert: bool
    alert: bool
    alerts: list[str]
    n_rows: int
    n_scored: int
    """Rows with status ``ok`` (in scope or not)."""
    n_in_scope: int
    """Scored rows in scope: the rows drift, class balance and the estimates use."""
    n_flagged: int
    """In-scope rows flagged at :attr:`MonitoringRules.prevalence_point`."""
    n_out_of_scope: int
    out_of_scope_share: float
    """Of the scored rows."""
    top_out_of_scope_reasons: list[dict[str, Any]]
    out_of_scope_test: ScopeTest
    n_errors: int
    error_share: float
    top_errors: list[dict[str, Any]]
    prevalence_estimate: PrevalenceFinding | None
    estimated_performance: EstimatedPerformance | None
    drifted_features: list[ColumnDrift]
    drift: list[ColumnDrift]
    class_balance: list[ShareComparison]
    performance: list[PerformanceFigure]
    batch_size_rule: dict[str, Any]
    rules: MonitoringRules
    inputs: list[str]
    reference: dict[str, Any]
    models: list[dict[str, Any]]
    run_ids: list[str]
    files: dict[str, str]
    workspace: dict[str, str] | None
    warnings: list[str] = field(default_factory=list)
    created_at: str = ""
    sensitivity_alert: bool = False
    """The labelled history's Bernoulli CUSUM on missed pneumonias signals a fall in sensitivity."""
    subgroup_alert: bool = False
    """A subgroup misses pneumonia more often than the other films (Holm-corrected)."""
    realized_performance: dict[str, Any] | None = None
    """With an output root's label store: the realized figures (windows, latest labelled night, the
    sensitivity test); the whole history is in ``OUTPUT_ROOT/realized/realized_performance.json``."""
    estimate_basis: str | None = None
    """Whose confusion matrix corrects the label-free estimates: ``validation``, or
    ``site labels, n=...`` (the site's labelled films of other nights); null without an estimate."""
    subgroups: dict[str, Any] | None = None
    """Realized figures and scope by age band, sex, view, input kind and scanner (with labels)."""
    sample: dict[str, Any] | None = None
    """The rows drift, the Evidently report, measured performance and thumbnails saw: ``n_rows``, ``size``,
    ``seed``, ``max_rows``, ``sampled`` (false: every row), ``used_for``."""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format_version": SUMMARY_FORMAT_VERSION, **_finite(data)}


def top_error_reasons(errors: pd.DataFrame, limit: int = _TOP_ERRORS) -> list[dict[str, Any]]:
    """The most common error reasons, with one example message each.

    Messages are grouped by their text before the first ``": "`` with digits
    masked, so ``file not found: a.png`` and ``file not found: b.png`` count
    as one reason.
    """
    return top_reasons(errors, cols.ERROR, "share_of_errors", limit)


def top_reasons(rows: pd.DataFrame, column: str, share_key: str, limit: int = _TOP_ERRORS) -> list[dict[str, Any]]:
    """The most common reasons in ``column`` (grouped as :func:`top_error_reasons` says), one example each."""
    if column not in rows or rows.empty:
        return []
    messages = rows[column].fillna("(no reason given)").astype(str)
    reasons = messages.map(_reason)
    counts = reasons.value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    examples: dict[str, str] = {}
    for reason, message in zip(reasons, messages):
        examples.setdefault(reason, message)  # the first message of each reason
    total = len(rows)
    return [
        {"reason": reason, "count": int(count), share_key: count / total, "example": examples[reason]}
        for reason, count in ordered
    ]


#: Scope reasons name their rule first ("header: ...", "pixels: ..."); the rule alone is too coarse a group.
_RULE_PREFIXES = ("header", "pixels")


def _reason(message: str) -> str:
    parts = message.split(": ", 2)
    head = ": ".join(parts[:2]) if parts[0].strip() in _RULE_PREFIXES and len(parts) > 1 else parts[0]
    head = head.strip()
    return re.sub(r"\d[\d,.x]*", "N", head)[:120] or "(no reason given)"


def models_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if cols.MODEL_SHA256 not in frame:
        return []
    keys = [c for c in (cols.MODEL_SHA256, cols.MODEL_VERSION) if c in frame]
    grouped = frame[keys].astype("string").fillna("").value_counts().sort_index()
    return [{**dict(zip(keys, index if isinstance(index, tuple) else (index,))), "rows": int(n)}
            for index, n in grouped.items()]


def batch_size_rule(n_scored: int, rules: MonitoringRules) -> dict[str, Any]:
    applied = "tests" if n_scored >= rules.min_rows else "too_few_rows"
    return {
        "min_rows": rules.min_rows,
        "n_scored": n_scored,
        "applied": applied,
        "text": (
            f"A column alerts only when it moved by at least the effect threshold and the move is significant "
            f"at the drift test's level {rules.test_alpha:.3g} (its share of the {rules.false_alarm_rate:g} false-alarm "
            f"budget, Bonferroni-split across columns); the tests' p-values "
            f"account for the batch size, so small batches need larger moves. Below {rules.min_rows} scored rows "
            f"no alert is raised."
        ),
    }


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
