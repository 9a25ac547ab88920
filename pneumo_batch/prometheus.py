"""Prometheus metrics of a nightly run, as a node_exporter textfile-collector file.

Each nightly run (successful or not) rewrites one file, by default
``OUTPUT_ROOT/metrics/pneumo_batch.prom``; point node_exporter's
``--collector.textfile.directory`` at that folder, or set ``metrics_dir``
in the nightly config (``--metrics-dir``) to the collector's own folder.
prometheus-client renders the exposition text; :mod:`pneumo_batch.storage`
writes it atomically (a temporary file beside it, renamed), so the collector
never reads half a file (the temporary name does not end in ``.prom``).

A failed run keeps the time of the last success from the previous file, so
an alert on "no success for a day" (``jobs/pneumo-batch.rules.yml``) sees
through a string of failures. Metric names are stable; they are listed in
:data:`METRIC_NAMES` and in the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pneumo_batch import storage
from pneumo_batch.errors import InputError

METRICS_FILE = "pneumo_batch.prom"
#: The one exception to private outputs (see :mod:`pneumo_batch.storage`): node_exporter runs as
#: another account, so the textfile is world-readable (0644) and a metrics folder made here is 0755.
#: It holds counts and rates of a night, nothing about a patient.
PUBLIC_FOLDER_MODE = 0o755
PREFIX = "pneumo_batch_"
#: The alert flags of a run, as the ``kind`` label of ``pneumo_batch_alert``; ``any`` is their union.
ALERT_KINDS = ("drift", "class_balance", "out_of_scope", "performance", "sensitivity", "subgroup")


@dataclass(frozen=True)
class RunMetrics:
    """What one nightly run reports to Prometheus. Figures a failed run never reached stay ``None``."""

    finished_at: float
    """Unix time at which the run ended."""
    success: bool
    """The run finished (scored and monitored), whatever the monitoring verdict."""
    duration_seconds: float
    rows_by_status: Mapping[str, int] = field(default_factory=dict)
    out_of_scope: int | None = None
    screening_positives: int | None = None
    prevalence_estimate: float | None = None
    prevalence_low: float | None = None
    prevalence_high: float | None = None
    training_prevalence: float | None = None
    alerts: Mapping[str, bool] = field(default_factory=dict)
    """Keys from :data:`ALERT_KINDS`."""
    realized_sensitivity: float | None = None
    """Of the labelled films of the last 30 days, at the screening point (issue 23)."""
    realized_specificity: float | None = None
    label_coverage: float | None = None
    """Labelled share of the last 30 days' in-scope films."""
    sensitivity_cusum: float | None = None
    sensitivity_cusum_threshold: float | None = None


METRIC_NAMES = {
    "last_run_timestamp_seconds": "Unix time the last nightly run ended.",
    "last_run_success": "1 if the last nightly run finished, 0 if it failed.",
    "last_success_timestamp_seconds": "Unix time the last successful nightly run ended.",
    "run_duration_seconds": "Wall time of the last nightly run.",
    "rows": "Rows of the last night's predictions, by status.",
    "rows_out_of_scope": "Images of the last night that are not pediatric frontal chest films.",
    "screening_positives": "In-scope images flagged at the screening operating point.",
    "prevalence_estimate": "Estimated share of pneumonia among the night's in-scope images.",
    "prevalence_estimate_low": "Lower end of the prevalence estimate's 95 % interval.",
    "prevalence_estimate_high": "Upper end of the prevalence estimate's 95 % interval.",
    "training_prevalence": "Share of pneumonia in the model's training data.",
    "realized_sensitivity": "Sensitivity at the screening point by the radiologists' reads of the last 30 days' films.",
    "realized_specificity": "Specificity at the screening point by the radiologists' reads of the last 30 days' films.",
    "label_coverage": "Share of the last 30 days' in-scope films that have a radiologist's read.",
    "sensitivity_cusum": "Bernoulli CUSUM on missed labelled pneumonias; the sensitivity alert fires at its threshold.",
    "sensitivity_cusum_threshold": "Level at which the sensitivity CUSUM signals a fall in sensitivity.",
    "alert": "1 if the last run raised this kind of monitoring alert (kind=any: any of them).",
}


def metrics_path(output_root: Path, metrics_dir: Path | None = None) -> Path:
    """Where a nightly run writes its metrics: ``metrics_dir`` if given, else ``OUTPUT_ROOT/metrics``."""
    return (metrics_dir if metrics_dir is not None else output_root / "metrics") / METRICS_FILE


def write_run_metrics(path: Path, run: RunMetrics) -> Path:
    """Write ``run`` to the textfile ``path`` atomically, keeping the last success time of a failed run.

    Raises :class:`InputError` when the folder cannot be created or written.
    """
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()

    def gauge(name: str, value: float | None, labels: Mapping[str, str] | None = None) -> None:
        if value is None:
            return
        metric = Gauge(PREFIX + name, METRIC_NAMES[name], list(labels or {}), registry=registry)
        (metric.labels(**labels) if labels else metric).set(float(value))

    last_success = run.finished_at if run.success else previous_success_time(path)
    gauge("last_run_timestamp_seconds", run.finished_at)
    gauge("last_run_success", 1.0 if run.success else 0.0)
    gauge("last_success_timestamp_seconds", last_success)
    gauge("run_duration_seconds", run.duration_seconds)
    if run.rows_by_status:
        rows = Gauge(PREFIX + "rows", METRIC_NAMES["rows"], ["status"], registry=registry)
        for status, count in sorted(run.rows_by_status.items()):
            rows.labels(status=status).set(count)
    gauge("rows_out_of_scope", run.out_of_scope)
    gauge("screening_positives", run.screening_positives)
    gauge("prevalence_estimate", run.prevalence_estimate)
    gauge("prevalence_estimate_low", run.prevalence_low)
    gauge("prevalence_estimate_high", run.prevalence_high)
    gauge("training_prevalence", run.training_prevalence)
    gauge("realized_sensitivity", run.realized_sensitivity)
    gauge("realized_specificity", run.realized_specificity)
    gauge("label_coverage", run.label_coverage)
    gauge("sensitivity_cusum", run.sensitivity_cusum)
    gauge("sensitivity_cusum_threshold", run.sensitivity_cusum_threshold)
    if run.success:
        alert = Gauge(PREFIX + "alert", METRIC_NAMES["alert"], ["kind"], registry=registry)
        for kind in ALERT_KINDS:
            alert.labels(kind=kind).set(1.0 if run.alerts.get(kind) else 0.0)
        alert.labels(kind="any").set(1.0 if any(run.alerts.get(kind) for kind in ALERT_KINDS) else 0.0)
    try:
        if not path.parent.exists():
            storage.make_folder(path.parent)
            storage.make_private(path.parent, PUBLIC_FOLDER_MODE)
        storage.write_bytes(path, generate_latest(registry), mode=storage.PUBLIC_FILE_MODE)
    except OSError as error:
        raise InputError(f"cannot write the metrics file: {error.strerror or error}") from None
    return path


def previous_success_time(path: Path) -> float | None:
    """The last success time recorded in an earlier metrics file at ``path``, if there is a readable one."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        for family in text_string_to_metric_families(text):
            if family.name == PREFIX + "last_success_timestamp_seconds":
                return float(family.samples[0].value)
    except (ValueError, IndexError):
        return None
    return None
