"""From real PNG files through `score` to `monitor`: the predictions contract end to end."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from conftest import MeanPixelScorer, make_fake_scorer
from PIL import Image
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.monitoring.reference import write_reference_profile
from pneumo_batch.scoring import score_batch


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def scored(pneumoniamnist, score_fake_model, change_acquisition, tmp_path):
    """Two nightly batches scored by `score`: the test split's PNGs as they are, and from a changed scanner."""
    from pneumo_batch.model import write_metadata

    score_fake_model.directory.mkdir(parents=True)
    write_metadata(score_fake_model.directory, score_fake_model.metadata)
    write_reference_profile(
        score_fake_model,
        pneumoniamnist.train.images,
        pneumoniamnist.train.labels,
        score_fake_model.reference_profile_path,
        scorer=MeanPixelScorer(),
    )
    images, labels = pneumoniamnist.test.images[:300], pneumoniamnist.test.labels[:300]
    batches = {"clean": images, "changed": change_acquisition(images)}
    outputs = {}
    for name, pixels in batches.items():
        manifest = pd.DataFrame(
            {"image": [_png(p) for p in pixels], "label": labels.astype(np.int8), "site": "ward-3"}
        )
        manifest.loc[len(manifest)] = {"image": b"", "label": 1, "site": "ward-3"}
        manifest.loc[len(manifest)] = {"image": b"not an image", "label": 0, "site": "ward-3"}
        manifest.to_parquet(tmp_path / f"{name}-manifest.parquet")
        outputs[name] = tmp_path / f"{name}.parquet"
        score_batch(tmp_path / f"{name}-manifest.parquet", outputs[name], model=score_fake_model, workers=0,
                    scorer_factory=make_fake_scorer)
    return score_fake_model.directory, outputs


def test_scored_batches_monitor_end_to_end(scored, tmp_path):
    model_dir, outputs = scored
    # score_fake_model has no .tflite: monitoring reads metadata and profile only
    runner = CliRunner()

    clean = runner.invoke(app, ["monitor", str(outputs["clean"]), "--out", str(tmp_path / "clean"),
                                "--model", str(model_dir), "--no-workspace"])
    assert clean.exit_code == 0, clean.output
    summary = json.loads((tmp_path / "clean" / "summary.json").read_text())
    assert (summary["n_rows"], summary["n_scored"], summary["n_errors"]) == (302, 300, 2)
    assert summary["drift_detected"] is False
    assert {e["reason"] for e in summary["top_errors"]} == {"empty image bytes", "not a recognised image file"}
    assert {c["name"] for c in summary["class_balance"]} == {"screening", "balanced", "prevalence"}
    assert summary["run_ids"] and summary["models"][0]["model_version"] == "0.0.0-test"

    changed = runner.invoke(app, ["monitor", str(outputs["changed"]), "--out", str(tmp_path / "changed"),
                                  "--model", str(model_dir), "--no-workspace", "--fail-on-drift"])
    assert changed.exit_code == ExitCode.ALERT, changed.output
    summary = json.loads((tmp_path / "changed" / "summary.json").read_text())
    assert summary["drift_detected"] is True
    assert {"img_mean", "img_sharpness"} <= {d["column"] for d in summary["drifted_features"]}

    both = runner.invoke(app, ["monitor", str(outputs["changed"]), "--reference", str(outputs["clean"]),
                               "--out", str(tmp_path / "both"), "--no-workspace"])
    assert both.exit_code == 0, both.output
    summary = json.loads((tmp_path / "both" / "summary.json").read_text())
    # a reference of real predictions has file facts: they are compared too (and did not move)
    drift = {d["column"]: d for d in summary["drift"]}
    assert {"img_width", "img_height", "img_aspect_ratio", "img_mode", "img_format"} <= set(drift)
    assert not any(drift[c]["drifted"] for c in ("img_width", "img_mode", "img_format"))
    assert drift["img_sharpness"]["drifted"]
