"""The monitoring report is a web page people open: load it in headless Chromium.

Needs Debian's ``chromium`` (``.ci/install-chromium`` installs it, and
``make test`` runs that where it can); fails, never skips, when no Chromium
is found. ``PNEUMO_BATCH_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pneumo_batch.monitoring import build_monitoring_report

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium() -> str:
    candidates = [os.environ.get("PNEUMO_BATCH_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    # The line make test prints when it cannot install it (.ci/install-system-tools).
    pytest.fail("Chromium is missing and cannot be installed here: run 'sudo apt-get install -y chromium', "
                "or the tests that need it fail")


def render(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and the console messages that report errors."""
    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    errors = [line for line in console if "Uncaught" in line or "Error" in line]
    return result.stdout, errors


def test_report_renders_the_drift_table_without_script_errors(
    pneumoniamnist, make_predictions, reference_profile, fake_model_metadata, change_acquisition, tmp_path
):
    frame = make_predictions(change_acquisition(pneumoniamnist.test.images))
    summary = build_monitoring_report(frame, reference_profile, tmp_path / "report", model_metadata=fake_model_metadata)
    assert summary.drift_detected

    dom, errors = render(tmp_path / "report" / "report.html", tmp_path / "chromium-profile")

    assert errors == []
    # What the scripts drew, not the JSON they were given: drop every <script>.
    drawn = re.sub(r"<script\b.*?</script>", "", dom, flags=re.S | re.I)
    assert "<table" in drawn
    drifted, columns = len(summary.drifted_features), len(summary.drift)
    assert f"Drift is detected for {round(100 * drifted / columns, 3)}% of columns ({drifted} out of {columns})." in drawn
    cells = set(re.findall(r'<td[^>]*value="([^"]+)"', drawn))
    assert {d.column for d in summary.drift} <= cells
    assert "Wasserstein distance (normed), drift only if K-S p" in drawn
    assert drawn.count(">Detected<") >= len(summary.drifted_features)


def test_chromium_console_errors_are_caught(tmp_path):
    """The check above would see a broken page: a script error shows up in the console lines."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p>x</p><script>throw new TypeError('broken page');</script></body></html>")
    _, errors = render(page, tmp_path / "profile")
    assert any("broken page" in line for line in errors)
