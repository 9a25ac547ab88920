"""DICOM through score_batch: one row per file, header columns, scope, no decision out of scope.

The corpus (tests/dicom_corpus.py) is built at test time from one shared
JPEG; the Parquet output is read back and checked row by row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import SCORE_FAKE_OPERATING_POINTS, make_fake_scorer

import dicom_corpus as corpus
from pneumo_batch import predictions as columns
from pneumo_batch.imaging.dicom_header import HEADER_COLUMNS
from pneumo_batch.scoring import score_batch

POINTS = list(SCORE_FAKE_OPERATING_POINTS)


@pytest.fixture(scope="module")
def dicom_folder(xray_jpegs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a folder holding the whole corpus made from one film, that film's JPEG)."""
    film = sorted((xray_jpegs_dir / "PNEUMONIA").glob("*.jpeg"))[0]
    directory = tmp_path_factory.mktemp("dicom-folder")
    for name in corpus.CORPUS:
        corpus.build(film, directory, name)
    return directory, film


def _read(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def _assert_row_matches_corpus(row: pd.Series, name: str) -> None:
    expected = corpus.CORPUS[name]
    decisions = [row[columns.prediction_column(point)] for point in POINTS]
    if expected.error is not None:
        assert row[columns.STATUS] == columns.STATUS_ERROR, name
        assert expected.error in row[columns.ERROR], (name, row[columns.ERROR])
        assert pd.isna(row[columns.IN_SCOPE]) and row[columns.SCOPE_REASON] is None, name
        assert all(pd.isna(value) for value in decisions), name
        return
    assert row[columns.STATUS] == columns.STATUS_OK, (name, row[columns.ERROR])
    assert not pd.isna(row[columns.SCORE]), name
    assert row[columns.IN_SCOPE] == expected.in_scope, name
    assert row[columns.SCOPE_REASON] == (None if expected.reason is None else f"header: {expected.reason}"), name
    assert pd.isna(row[columns.SCOPE_SCORE]), name
    assert row["img_format"] == "DICOM", name
    if expected.in_scope:
        for point, value in zip(POINTS, decisions, strict=True):
            assert value == (row[columns.SCORE] >= row[columns.threshold_column(point)]), (name, point)
    else:
        assert all(pd.isna(value) for value in decisions), name


def test_manifest_of_dicom_paths_one_row_per_file_with_header_and_scope(dicom_folder, score_fake_model, tmp_path):
    directory, film = dicom_folder
    names = list(corpus.CORPUS)
    manifest = tmp_path / "manifest.parquet"
    pd.DataFrame({"path": [str(directory / f"{name}.dcm") for name in names] + [str(film)]}).to_parquet(manifest)
    out = tmp_path / "out.parquet"
    score_batch(manifest, out, model=score_fake_model, workers=0, scorer_factory=make_fake_scorer)
    frame = _read(out)
    assert len(frame) == len(names) + 1
    for (_, row), name in zip(frame.iterrows(), names, strict=False):
        _assert_row_matches_corpus(row, name)
        if name not in ("truncated",):
            assert row["study_instance_uid"] == corpus.STUDY_UID, name
            assert row["modality"] in {"CR", "DX", "CT", "MR"}, name
    jpeg = frame.iloc[-1]
    assert jpeg[columns.STATUS] == columns.STATUS_OK and bool(jpeg[columns.IN_SCOPE])
    assert jpeg[columns.SCOPE_REASON] is None
    assert all(jpeg[name] is None or pd.isna(jpeg[name]) for name in HEADER_COLUMNS)
    schema = pq.read_schema(out)
    assert schema.field(columns.PATIENT_AGE_YEARS).type == "double"
    assert schema.field(columns.IN_SCOPE).type == "bool" and schema.field(columns.SCOPE_SCORE).type == "double"
    adult = frame.iloc[names.index("adult")]
    assert adult[columns.PATIENT_AGE_YEARS] == 51.0 and adult["patient_sex"] == "F"
    assert frame.iloc[names.index("no_pixel_data")]["transfer_syntax"] == "1.2.840.10008.1.2.1"
