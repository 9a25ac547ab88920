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


#: Extra files beside the corpus: what a PACS export folder also holds. name -> (made from, expected row)
EXTENSIONLESS = {"1.2.826.0.1.3680043.8.498.77": "implicit_vr", "IMG0002": "no_preamble"}
UPPER_CASE = {"SHOUTED.DICOM": "jpeg_baseline"}
NOT_DICOM = "garbage.DCM"
SKIPPED = ("README.txt", "DICOMDIR")


@pytest.fixture(scope="module")
def dicom_folder(xray_jpegs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a folder holding the whole corpus made from one film, and a PACS export's odd names; that film's JPEG)."""
    film = sorted((xray_jpegs_dir / "PNEUMONIA").glob("*.jpeg"))[0]
    directory = tmp_path_factory.mktemp("dicom-folder")
    for name in corpus.CORPUS:
        corpus.build(film, directory, name)
    for target, name in {**EXTENSIONLESS, **UPPER_CASE}.items():
        (directory / target).write_bytes((directory / f"{name}.dcm").read_bytes())
    (directory / NOT_DICOM).write_bytes(b"this is not a DICOM file at all\n" * 10)
    (directory / "README.txt").write_text("exported by the PACS\n")
    (directory / "DICOMDIR").write_bytes((directory / "no_pixel_data.dcm").read_bytes())  # an index, not an image
    return directory, film


def _corpus_name(image_id: str) -> str | None:
    """The corpus file a row of the folder was made from (None for the non-DICOM file)."""
    extras = {**EXTENSIONLESS, **UPPER_CASE}
    return extras.get(image_id) or (image_id[: -len(".dcm")] if image_id.endswith(".dcm") else None)


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


def test_folder_of_mixed_dicom_one_row_per_file_with_status_and_scope(dicom_folder, score_fake_model, tmp_path):
    directory, _ = dicom_folder
    out = tmp_path / "out.parquet"
    summary = score_batch(directory, out, model=score_fake_model, workers=0, scorer_factory=make_fake_scorer)
    frame = _read(out)
    expected_ids = sorted([f"{name}.dcm" for name in corpus.CORPUS] + [*EXTENSIONLESS, *UPPER_CASE, NOT_DICOM])
    assert list(frame[columns.IMAGE_ID]) == expected_ids
    assert summary.rows == len(expected_ids)
    assert summary.errors == sum(corpus.CORPUS[_corpus_name(i) or "truncated"].error is not None for i in expected_ids)
    for _, row in frame.iterrows():
        name = _corpus_name(row[columns.IMAGE_ID])
        if name is None:
            assert row[columns.STATUS] == columns.STATUS_ERROR and row[columns.ERROR] == "not a DICOM file"
            assert pd.isna(row[columns.IN_SCOPE])
        else:
            _assert_row_matches_corpus(row, name)


def test_manifest_image_bytes_may_hold_dicom(dicom_folder, score_fake_model, tmp_path):
    directory, film = dicom_folder
    names = ["implicit_vr", "no_preamble", "adult", "jpeg2000_lossless_12bit_window", "truncated"]
    manifest = tmp_path / "bytes.parquet"
    images = [(directory / f"{name}.dcm").read_bytes() for name in names] + [film.read_bytes()]
    pd.DataFrame({"image_id": [*names, "jpeg"], "image": images}).to_parquet(manifest)
    out = tmp_path / "out.parquet"
    score_batch(manifest, out, model=score_fake_model, workers=0, scorer_factory=make_fake_scorer)
    frame = _read(out)
    for (_, row), name in zip(frame.iterrows(), names, strict=False):
        _assert_row_matches_corpus(row, name)
    assert frame.iloc[-1][columns.STATUS] == columns.STATUS_OK and frame.iloc[-1]["img_format"] == "JPEG"


def test_same_film_as_jpeg_and_as_every_encoding_gets_the_same_decision(dicom_folder, shipped_default_model, tmp_path):
    """The shipped model, through score_batch: each DICOM copy scores within 0.02 of the JPEG, with its decisions."""
    directory, film = dicom_folder
    names = [name for name, expected in corpus.CORPUS.items() if expected.like_jpeg]
    manifest = tmp_path / "films.parquet"
    pd.DataFrame({"path": [str(film)] + [str(directory / f"{name}.dcm") for name in names]}).to_parquet(manifest)
    out = tmp_path / "out.parquet"
    score_batch(manifest, out, model=shipped_default_model, workers=0)
    frame = _read(out)
    jpeg, copies = frame.iloc[0], frame.iloc[1:]
    points = [name[len(columns.PREDICTION_PREFIX):] for name in frame.columns if name.startswith(columns.PREDICTION_PREFIX)]
    assert points and jpeg[columns.STATUS] == columns.STATUS_OK
    for (_, row), name in zip(copies.iterrows(), names, strict=True):
        _assert_row_matches_corpus(row, name)
        assert abs(row[columns.SCORE] - jpeg[columns.SCORE]) <= 0.02, (name, row[columns.SCORE], jpeg[columns.SCORE])
        if row[columns.IN_SCOPE]:
            for point in points:
                assert row[columns.prediction_column(point)] == jpeg[columns.prediction_column(point)], (name, point)


def test_scope_rules_file_changes_the_verdicts_and_is_recorded(dicom_folder, score_fake_model, tmp_path):
    from pneumo_batch.scoring import read_run_metadata

    directory, _ = dicom_folder
    names = ["adult", "ct", "implicit_vr"]
    manifest = tmp_path / "manifest.parquet"
    pd.DataFrame({"path": [str(directory / f"{name}.dcm") for name in names]}).to_parquet(manifest)
    rules = tmp_path / "rules.toml"
    rules.write_text('[header]\nmodalities = ["CR", "DX", "ct"]\nmax_age_years = false\n')
    out = tmp_path / "out.parquet"
    score_batch(manifest, out, model=score_fake_model, workers=0, scorer_factory=make_fake_scorer, scope_rules=rules)
    frame = _read(out)
    assert list(frame[columns.IN_SCOPE]) == [True, True, True]
    assert frame[columns.prediction_column(POINTS[0])].notna().all()
    recorded = read_run_metadata(out)["scope_rules"]["header"]
    assert recorded["modalities"] == ["CR", "CT", "DX"] and recorded["max_age_years"] is False
    default = tmp_path / "default.parquet"
    score_batch(manifest, default, model=score_fake_model, workers=0, scorer_factory=make_fake_scorer)
    assert read_run_metadata(default)["scope_rules"]["header"] == {
        "modalities": ["CR", "DX"], "dx_for_presentation_only": True, "body_parts": ["", "CHEST"],
        "view_positions": ["", "AP", "PA"], "max_age_years": 18.0, "max_frames": 1,
    }
    assert list(_read(default)[columns.SCOPE_REASON]) == ["header: adult: age 51 y", "header: modality CT", None]


def test_the_example_rules_file_holds_the_defaults():
    from pneumo_batch.scope.header import DEFAULT_HEADER_RULES, load_header_rules

    example = Path(__file__).resolve().parents[1] / "jobs" / "scope-rules.example.toml"
    assert load_header_rules(example) == DEFAULT_HEADER_RULES


@pytest.mark.parametrize(
    ("text", "message"),
    [('[header]\nmodality = ["CR"]\n', "unknown key 'modality'"), ("[header]\nmax_age_years = -1\n", "max_age_years"),
     ('[header]\nbody_parts = "CHEST"\n', "body_parts must be a list"), ("[pixels]\n", "unknown table"),
     ("[header\n", "not valid TOML")],
)
def test_bad_scope_rules_are_one_line_input_errors(tmp_path, text, message):
    from pneumo_batch.errors import InputError
    from pneumo_batch.scope.header import load_header_rules

    rules = tmp_path / "rules.toml"
    rules.write_text(text)
    with pytest.raises(InputError, match=message) as error:
        load_header_rules(rules)
    assert "\n" not in str(error.value)
