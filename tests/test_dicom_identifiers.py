"""Nothing patient-identifying leaves pneumo-batch: score and monitor a folder with a DICOM stuffed with identifiers.

The folder holds tests/dicom_corpus.py's "identifiers" file, a copy cut
inside its header, a copy cut inside its pixels, and two plain films. Both
commands run as a user runs them (subprocesses, logs on stderr); then every
file they wrote (the Parquet as bytes and as decoded text, the reports, the
Evidently workspace) and their output is searched for every identifying
value and for each ``^``-separated part of the person names.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

import dicom_corpus as corpus


def _needles() -> list[str]:
    values = set(corpus.IDENTIFIERS.values())
    values |= {part for value in corpus.IDENTIFIERS.values() for part in value.split("^")}
    return sorted(values)


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pneumo_batch.cli", *arguments], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow  # score and monitor as subprocesses: make test-all (and CI) runs it
def test_no_identifier_reaches_predictions_reports_workspace_logs_or_errors(xray_jpegs_dir, shipped_default_model, tmp_path):
    films = sorted((xray_jpegs_dir / "PNEUMONIA").glob("*.jpeg"))[:2]
    folder = tmp_path / "export"
    stuffed = corpus.build(films[0], folder, "identifiers")
    data = stuffed.read_bytes()
    (folder / "cut_in_header.dcm").write_bytes(data[:700])
    (folder / "cut_in_pixels.dcm").write_bytes(data[: len(data) * 3 // 5])
    for film in films:
        corpus.build(film, folder / film.stem, "implicit_vr")
    out, reports, workspace = tmp_path / "predictions.parquet", tmp_path / "reports", tmp_path / "workspace"

    scored = _run("score", str(folder), "--out", str(out), "--model", str(shipped_default_model), "--workers", "1")
    assert scored.returncode == 3, scored.stderr  # the two cut copies are error rows
    monitored = _run("monitor", str(out), "--out", str(reports), "--model", str(shipped_default_model),
                     "--workspace", str(workspace))
    assert monitored.returncode == 0, monitored.stderr

    table = pq.read_table(out)
    rows = table.to_pylist()
    assert len(rows) == 5
    by_id = {row["image_id"]: row for row in rows}
    assert by_id["identifiers.dcm"]["status"] == "ok" and by_id["identifiers.dcm"]["in_scope"]
    assert by_id["cut_in_pixels.dcm"]["study_instance_uid"] == corpus.STUDY_UID  # kept to match results back
    written = [path for path in tmp_path.rglob("*") if path.is_file() and folder not in path.parents]
    assert {path.suffix for path in written} >= {".parquet", ".html", ".json"}
    texts = {
        "score stdout+stderr": scored.stdout + scored.stderr,
        "monitor stdout+stderr": monitored.stdout + monitored.stderr,
        "predictions as text": repr(rows) + repr(table.schema.metadata),
    }
    raw = {str(path.relative_to(tmp_path)): path.read_bytes() for path in written}
    found = []
    for needle in _needles():
        found += [(needle, name) for name, text in texts.items() if needle.lower() in text.lower()]
        found += [(needle, name) for name, content in raw.items() if needle.lower().encode() in content.lower()]
    assert found == []
    # The search would find them: the input itself holds every one.
    assert all(needle.encode() in data for needle in _needles())
