"""Monitoring: each batch of predictions against the model's training profile.

One module per job: :mod:`~.reference` (the training profile, and which
reference a run compares with), :mod:`~.loading` (reading predictions),
:mod:`~.sampling` (every row's light columns, a seeded sample for the rest), :mod:`~.scope` (out-of-scope rows), :mod:`~.prevalence` (label-shift estimators),
:mod:`~.drift`, :mod:`~.balance` (class balance), :mod:`~.performance`,
:mod:`~.evidently_report` (the Evidently run), :mod:`~.workspace`,
:mod:`~.realized` (performance by the late labels, per night and window), :mod:`~.sensitivity`
(the alert when realized sensitivity falls), :mod:`~.subgroups`, :mod:`~.summary` (what summary.json holds), :mod:`~.verdict` (the sentence) and :mod:`~.report`, which runs them all
(:func:`build_monitoring_report`). A new monitor is a module here whose
findings :mod:`~.report` adds to the summary.
"""

from pneumo_batch.monitoring.drift import categorical_drift, numeric_drift
from pneumo_batch.monitoring.loading import discover_predictions, read_predictions, read_reference
from pneumo_batch.monitoring.performance import estimate_performance, validated_figures
from pneumo_batch.monitoring.prevalence import (
    ValidationProfile,
    class_balance_alert,
    estimate_prevalence,
    expected_range,
)
from pneumo_batch.monitoring.reference import (
    REFERENCE_RUN_ID,
    reference_profile_frame,
    resolve_reference,
    reweighted_reference,
    write_predictions_parquet,
    write_reference_profile,
)
from pneumo_batch.monitoring.report import (
    CLASS_BALANCE_CSV,
    REPORT_HTML,
    REPORT_JSON,
    SUMMARY_FILE,
    build_monitoring_report,
)
from pneumo_batch.monitoring.realized import compact as compact_realized
from pneumo_batch.monitoring.realized import realized_path, refresh_realized, window_gauges
from pneumo_batch.monitoring.realized_summary import RealizedRules
from pneumo_batch.monitoring.sampling import read_sample
from pneumo_batch.monitoring.scope import out_of_scope_test, split_by_scope
from pneumo_batch.monitoring.summary import SUMMARY_FORMAT_VERSION, MonitoringRules, MonitoringSummary, top_error_reasons
from pneumo_batch.monitoring.verdict_page import INDEX_HTML, write_verdict_page
from pneumo_batch.monitoring.workspace import DEFAULT_PROJECT, WORKSPACE_ENV, add_to_workspace, serve_workspace

__all__ = [
    "CLASS_BALANCE_CSV",
    "INDEX_HTML",
    "DEFAULT_PROJECT",
    "REFERENCE_RUN_ID",
    "REPORT_HTML",
    "REPORT_JSON",
    "SUMMARY_FILE",
    "SUMMARY_FORMAT_VERSION",
    "WORKSPACE_ENV",
    "MonitoringRules",
    "RealizedRules",
    "MonitoringSummary",
    "ValidationProfile",
    "add_to_workspace",
    "build_monitoring_report",
    "categorical_drift",
    "compact_realized",
    "class_balance_alert",
    "discover_predictions",
    "estimate_performance",
    "estimate_prevalence",
    "expected_range",
    "numeric_drift",
    "out_of_scope_test",
    "read_predictions",
    "read_reference",
    "read_sample",
    "realized_path",
    "refresh_realized",
    "reference_profile_frame",
    "resolve_reference",
    "reweighted_reference",
    "serve_workspace",
    "split_by_scope",
    "top_error_reasons",
    "validated_figures",
    "window_gauges",
    "write_verdict_page",
    "write_predictions_parquet",
    "write_reference_profile",
]
