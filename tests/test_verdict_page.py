"""The verdict page (index.html), the report's first screen, looked at in headless Chromium.

Needs Debian's ``chromium`` (fails, never skips). The page is opened from
``file://`` with networking off in Chromium, so it must carry everything.
"""

from __future__ import annotations

import html
import re
import subprocess

import pytest
from test_monitor_browser import CHROMIUM_FLAGS, chromium, render

from pneumo_batch import predictions as cols
from pneumo_batch.export import export_split
from pneumo_batch.monitoring import build_monitoring_report, write_verdict_page
from pneumo_batch.monitoring.verdict_page import verdict_sentence

pytestmark = pytest.mark.browser


def night(make_predictions, images, labels, folder, **frame_changes):
    """A scored night whose rows point at real PNGs in ``folder`` (for the thumbnails)."""
    frame = make_predictions(images, labels)
    frame[cols.PATH] = [str(folder / f"img_{i:05d}.png") for i in range(len(frame))]
    for column, values in frame_changes.items():
        frame[column] = values
    return frame


@pytest.mark.parametrize("alerting", [False, True])
def test_the_verdict_page_says_in_words_how_the_night_went(
    pneumoniamnist, make_predictions, reference_profile, fake_model_metadata, change_acquisition, tmp_path, alerting
):
    export_split(pneumoniamnist, "val", tmp_path / "night", limit=120)
    folder = tmp_path / "night" / "images"
    for i, png in enumerate(sorted(folder.glob("*.png"))):
        png.rename(folder / f"img_{i:05d}.png")
    images, labels = pneumoniamnist.val.images[:120], pneumoniamnist.val.labels[:120]
    if alerting:
        images = change_acquisition(images)
    frame = night(make_predictions, images, labels, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    frame.loc[:2, [cols.STATUS, cols.ERROR, cols.SCORE, cols.PATH]] = [
        "error", "not a recognised image file: truncated", None, str(folder / "broken.png")]
    summary = build_monitoring_report(frame, reference_profile, tmp_path / "report", model_metadata=fake_model_metadata)
    assert summary.alert is alerting
    # the scope columns, as the pixel gate writes them: three films out of scope, a score for every scored one
    frame[cols.IN_SCOPE] = [None] * 3 + [False] * 3 + [True] * 114
    frame[cols.SCOPE_REASON] = [None] * 3 + ["pixels: not like a pediatric chest film"] * 3 + [None] * 114
    frame[cols.SCOPE_SCORE] = [None] * 3 + [float(i) for i in range(117)]

    page = write_verdict_page(tmp_path / "report", summary.as_dict(), frame)

    dom, errors = render(page, tmp_path / "profile")
    assert errors == []
    title = re.search(r'<h1 id="verdict"[^>]*>([^<]+)</h1>', dom).group(1)
    # a short headline, the detail below (the changed images also fail the labelled performance check)
    assert title == ("Needs a look: the images changed, measured performance fell" if alerting else "Quiet night")
    verdict = re.search(r'<p id="detail">([^<]+)</p>', dom).group(1)
    assert verdict.startswith("Needs a look: the images themselves changed" if alerting else "Quiet night: 117 films, ")
    assert "flagged for urgent review" in verdict and verdict == html.escape(verdict_sentence(summary.as_dict()))
    assert '<table id="numbers">' in dom and ">Could not be read</th><td>3 (2.5 %)<" in dom
    assert ("Estimated performance tonight</th><td>not valid" in dom) is alerting  # drift voids the estimate
    # three out-of-scope films and the eight most unusual, drawn; the unreadable ones show their reason only
    assert dom.count('src="data:image/png;base64,') == 3 + 8
    assert dom.count("<figcaption>pixels: not like a pediatric chest film</figcaption>") == 3
    assert dom.count("<figcaption>not a recognised image file</figcaption>") == 3
    assert ">Most unusual: least like the training images (8 shown of 117)<" in dom  # says how many it shows
    assert "<figcaption>116.00</figcaption>" in dom
    if alerting:  # features named in words, the column beside
        assert "sharpness (edge strength) <code>img_sharpness</code>" in dom
    assert ('id="drift"' in dom) and (f"{len(summary.drifted_features)} of {len(summary.drift)} features drifted"
                                      in dom if alerting else "No feature drifted" in dom)
    assert 'href="report.html"' in dom and "http" not in re.sub(r"<script\b.*?</script>", "", dom, flags=re.S)

    shot = tmp_path / f"verdict-{'alert' if alerting else 'quiet'}.png"
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,900",
                    f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True, timeout=180, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
