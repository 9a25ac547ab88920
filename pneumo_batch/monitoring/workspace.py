"""The Evidently workspace that collects the nights: one snapshot per night, one project, a dashboard over nights.

Each snapshot is the night's Evidently report plus the night's figures
(:func:`night_figures`: rows scored, error share, out-of-scope count,
prevalence estimate with its interval and the training share, drift share,
screening positives, and from the label store the realized sensitivity,
specificity and label coverage of the last 30 days), recorded as Evidently ``MeanValue`` metrics of a
one-row table so that stock dashboard panels can plot them: the workspace
opens in a plain ``evidently ui`` without importing pneumo-batch.
A snapshot of a night (metadata ``night``) replaces that night's earlier one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date as Date
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pneumo_batch import storage
from pneumo_batch.monitoring.realized import window_gauges

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

    from pneumo_batch.monitoring.summary import MonitoringSummary


WORKSPACE_ENV = "PNEUMO_BATCH_WORKSPACE"
"""Environment variable naming the Evidently workspace (the CLI's ``--workspace`` default)."""
DEFAULT_PROJECT = "pneumo-batch"
"""Name of the Evidently project that collects the runs."""
NIGHT_KEY = "night"
"""Snapshot metadata key holding the night (YYYY-MM-DD) of a nightly run."""

#: The dashboard: (panel title, kind, [(figure, legend)]). Each figure is a column of the night's one-row table.
PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("Rows scored", "bar", (("rows_scored", "rows scored"),)),
    ("Error share", "line", (("error_share", "error rows / all rows"),)),
    ("Out of scope", "bar", (("out_of_scope", "images not in scope"),)),
    ("Prevalence estimate against training", "line", (
        ("prevalence_estimate", "estimate"), ("prevalence_low", "95 % low"), ("prevalence_high", "95 % high"),
        ("training_prevalence", "training"),
    )),
    ("Drift share", "line", (("drift_share", "drifted columns / columns"),)),
    ("Screening positives", "bar", (("screening_positives", "flagged at the screening point"),)),
    ("Realized sensitivity and specificity (last 30 days, by the reads)", "line", (
        ("realized_sensitivity", "sensitivity"), ("realized_specificity", "specificity"),
    )),
    ("Label coverage (last 30 days)", "line", (("label_coverage", "films read / films in scope"),)),
)


def night_figures(summary: MonitoringSummary) -> dict[str, float]:
    """The figures of a night that the dashboard plots; a figure the summary lacks is left out."""
    figures: dict[str, Any] = {
        "rows_scored": summary.n_scored,
        "error_share": summary.error_share,
        "out_of_scope": getattr(summary, "n_out_of_scope", None),
        "drift_share": sum(d.drifted for d in summary.drift) / len(summary.drift) if summary.drift else None,
        "screening_positives": next((c.count for c in summary.class_balance if c.name == "screening"), None),
    }
    prevalence = getattr(summary, "prevalence_estimate", None)  # issue 15: {value, low, high, training}
    for figure, key in (("prevalence_estimate", "value"), ("prevalence_low", "low"), ("prevalence_high", "high"),
                        ("training_prevalence", "training")):
        figures[figure] = prevalence.get(key) if isinstance(prevalence, dict) else getattr(prevalence, key, None)
    gauges = window_gauges(getattr(summary, "realized_performance", None))
    for figure in ("realized_sensitivity", "realized_specificity", "label_coverage"):
        figures[figure] = gauges[figure]
    return {name: float(value) for name, value in figures.items() if value is not None}


def add_to_workspace(
    snapshot: Snapshot,
    workspace: Path,
    project: str = DEFAULT_PROJECT,
    *,
    figures: Mapping[str, float] | None = None,
    night: Date | None = None,
) -> dict[str, str]:
    """Add ``snapshot`` (with ``figures``) to the Evidently workspace at ``workspace`` (created if needed).

    With ``night`` the snapshot is dated that night and replaces the night's
    earlier snapshot, so a rerun never doubles a night on the dashboard.
    """
    from evidently.ui.workspace import Workspace

    storage.make_folder(workspace)
    with storage.private_new_entries(workspace):  # Evidently writes its files itself, with the process's umask
        return _add_run(Workspace(str(workspace)), snapshot, workspace, project, figures, night)


def _add_run(
    store: Any, snapshot: Snapshot, workspace: Path, project: str, figures: Mapping[str, float] | None, night: Date | None
) -> dict[str, str]:
    from evidently.core.report import Snapshot

    found = store.search_project(project)
    target = found[0] if found else store.create_project(
        project, description="Nightly pneumo-batch runs: drift and class balance against the training profile"
    )
    if not target.dashboard.model().panels:
        store.save_dashboard(target.id, _dashboard())
    model = snapshot.to_snapshot_model()
    if figures:
        extra = _figures_snapshot(figures, model.timestamp).to_snapshot_model()
        model.metric_results = {**extra.metric_results, **model.metric_results}
        model.top_level_metrics = [*extra.top_level_metrics, *model.top_level_metrics]
        model.widgets = [*extra.widgets, *model.widgets]
    if night is not None:
        model.timestamp = datetime.combine(night, datetime.min.time())
        model.metadata = {**model.metadata, NIGHT_KEY: night.isoformat()}
        for earlier in store.list_runs(target.id):
            run = store.get_run(target.id, earlier)
            if run is not None and run.metadata.get(NIGHT_KEY) == night.isoformat():
                store.delete_run(target.id, earlier)
    ref = store.add_run(target.id, Snapshot.load_model(model), include_data=False)
    return {"path": str(workspace), "project": project, "project_id": str(target.id), "snapshot_id": str(ref.id)}


def serve_workspace(workspace: Path, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run Evidently's UI on ``host:port`` over ``workspace`` until interrupted (what ``evidently ui`` does)."""
    from evidently.ui.service.app import get_config, run

    run(get_config(host=host, port=port, workspace=str(workspace)))


def _figures_snapshot(figures: Mapping[str, float], timestamp: datetime) -> Snapshot:
    """A one-row table of the figures, each read back as a ``MeanValue`` metric the dashboard can plot."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    table = pd.DataFrame({name: [value] for name, value in figures.items()})
    dataset = Dataset.from_pandas(table, data_definition=DataDefinition(numerical_columns=list(figures)))
    return Report([MeanValue(column=name) for name in figures]).run(dataset, None, timestamp=timestamp)


def _dashboard() -> Any:
    """The project's dashboard: one tab, a panel per entry of :data:`PANELS`.

    Saved whole: ``ProjectDashboard.add_panel`` with a named tab lists each
    panel twice in that tab (evidently 0.7.23).
    """
    from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    panels = []
    for title, kind, series in PANELS:
        values = [PanelMetric(metric="MeanValue", metric_labels={"column": figure}, legend=legend)
                  for figure, legend in series]
        make = bar_plot_panel if kind == "bar" else line_plot_panel
        panels.append(make(title=title, values=values, size="half"))
    return DashboardModel(tabs=[DashboardTabModel(title="Nights", panels=[p.id for p in panels])], panels=panels)
