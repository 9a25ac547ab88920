"""The Evidently workspace over nights: one snapshot per night, a dashboard whose panels plot the nights.

The dashboard test serves the workspace with ``pneumo-batch ui`` and reads
what headless Chromium drew (needs Debian's ``chromium``; fails, never skips).
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from test_monitor_browser import CHROMIUM_FLAGS, chromium
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.export import export_split
from pneumo_batch.monitoring import build_monitoring_report
from pneumo_batch.monitoring.workspace import PANELS, night_figures

NIGHTS = [date(2026, 11, day) for day in range(1, 6)]
ROWS = [30, 45, 60, 75, 90]


def runs_in(workspace: Path) -> list[dict]:
    from evidently.ui.workspace import Workspace

    store = Workspace(str(workspace))
    project = store.search_project("pneumo-batch")[0]
    return [store.get_run(project.id, run).metadata for run in store.list_runs(project.id)]


@pytest.mark.slow  # two monitored nights: make test-all (and CI) runs it
def test_a_rerun_of_a_night_replaces_its_snapshot(pneumoniamnist, shipped_default_model, tmp_path):
    images = export_split(pneumoniamnist, "val", tmp_path / "in", limit=20)
    for day in ("2026-11-01", "2026-11-01", "2026-11-02"):
        result = CliRunner().invoke(app, ["nightly", "--input", str(images), "--output-root", str(tmp_path / "out"),
                                          "--date", day])
        assert result.exit_code == 0, result.output

    assert sorted(run["night"] for run in runs_in(tmp_path / "out" / "workspace")) == ["2026-11-01", "2026-11-02"]


def test_monitor_without_a_workspace_writes_none_in_the_working_directory(
    make_predictions, pneumoniamnist, fake_model_metadata, tmp_path, monkeypatch
):
    monkeypatch.delenv("PNEUMO_BATCH_WORKSPACE")
    monkeypatch.chdir(tmp_path)
    predictions = tmp_path / "p.parquet"
    make_predictions(pneumoniamnist.val.images[:30]).to_parquet(predictions)

    result = CliRunner().invoke(app, ["monitor", str(predictions), "--out", "report"])

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet", "report"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_ui(port: int, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-2000:]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/api/version")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
        finally:
            connection.close()
    pytest.fail("the Evidently UI did not start")


def panel_svgs(dom: str) -> dict[str, str]:
    """Each dashboard panel's title and the SVG drawn under it."""
    titles = [title for title, _, _ in PANELS]
    found = {}
    for match in re.finditer(r">([^<>]+)</h5>", dom):
        if match.group(1) in titles:
            end = dom.find("</svg>", match.end())
            found[match.group(1)] = dom[match.end() : end]
    return found


@pytest.mark.browser
@pytest.mark.slow  # about 100 s on 2 busy cores: five Evidently runs, the UI server's start, Chromium
def test_the_dashboard_plots_five_nights(make_predictions, pneumoniamnist, fake_model_metadata, reference_profile,
                                         tmp_path):
    workspace = tmp_path / "workspace"
    figures = []
    for night, rows in zip(NIGHTS, ROWS):
        images, labels = pneumoniamnist.val.images[:rows], pneumoniamnist.val.labels[:rows]
        summary = build_monitoring_report(make_predictions(images, labels), reference_profile, tmp_path / str(night),
                                          model_metadata=fake_model_metadata, workspace=workspace, night=night)
        figures.append(night_figures(summary))
    project_id = summary.workspace["project_id"]
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "pneumo_batch.cli", "ui", "--workspace", str(workspace), "--port", str(port)],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_ui(port, server, log)
        page = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--force-prefers-reduced-motion",
             "--window-size=1400,2400", "--virtual-time-budget=30000", "--dump-dom",
             f"http://127.0.0.1:{port}/projects/{project_id}"],
            capture_output=True, text=True, timeout=180, check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert page.returncode == 0, page.stderr[-2000:]

    panels = panel_svgs(page.stdout)
    assert set(panels) == {title for title, _, _ in PANELS}
    for title, kind, series in PANELS:
        if kind != "bar" or series[0][0] not in figures[0]:
            continue
        # bars rise from zero: their heights are in proportion to the nights' figures
        heights = [float(h) for h in re.findall(r'<rect[^>]*height="([\d.]+)"[^>]*MuiBarElement', panels[title])]
        values = [night[series[0][0]] for night in figures]
        assert len(heights) == len(NIGHTS), title
        if max(values) == 0:
            assert heights == [0] * len(NIGHTS), title
        else:
            assert [h / max(heights) for h in heights] == pytest.approx([v / max(values) for v in values], abs=0.02), title
    for title in ("Error share", "Drift share"):
        dates = re.findall(r">(2026-11-0\d) 00:00:00<", panels[title])
        assert dates and set(dates) <= {night.isoformat() for night in NIGHTS}, title
    assert [f["rows_scored"] for f in figures] == ROWS
