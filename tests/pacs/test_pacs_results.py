"""PACS rows decode like folder rows, and --send-results files one SR per in-scope film (real Orthanc, shipped model)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pydicom
import pytest
from orthanc import OrthancServer
from pacs.pacs_corpus import E2E_NIGHT, PATIENT_ID, PATIENT_NAME, NightFilm, rows_of, score_cli
from typer.testing import Result

from pneumo_batch.cli.common import ExitCode
from pneumo_batch.inputs.pacs import PacsOptions
from pneumo_batch.model import load_model
from pneumo_batch.pacs import AUTH_ENV, parse_study_date
from pneumo_batch.pacs.report import read_finding
from pneumo_batch.pacs.results import ReportsSent
from pneumo_batch.scoring.results import send_run_results

#: Columns that must not depend on where the film came from (a folder or the PACS).
#: Besides the run's own columns, ``report``: only a PACS film gets a report.
RUN_COLUMNS = {"image_id", "path", "run_id", "scored_at", "report"}


@dataclass(frozen=True)
class FirstRun:
    out: Path
    result: Result


@pytest.fixture(scope="module")
def first_run(orthanc: OrthancServer, night: list[NightFilm], tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """``score PACS --send-results`` once, for the tests of its rows and of its reports."""
    out = tmp_path_factory.mktemp("first") / "pacs.parquet"
    with pytest.MonkeyPatch.context() as env:
        env.setenv(AUTH_ENV, f"{orthanc.user}:{orthanc.password}")
        result = score_cli(orthanc.dicomweb_url, "--study-date", E2E_NIGHT, "--out", str(out), "--send-results")
    assert result.exit_code == ExitCode.ROWS_FAILED, result.output  # the film without pixel data
    return FirstRun(out, result)


def test_a_nights_films_score_exactly_like_the_same_files_in_a_folder(
    orthanc: OrthancServer, night: list[NightFilm], first_run: FirstRun, tmp_path: Path
) -> None:
    out, result = first_run.out, first_run.result
    films = rows_of(night)
    table = pq.read_table(out)
    assert table.num_rows == len(films) == 30
    assert table.column("image_id").to_pylist() == sorted(film.sop_uid for film in films)
    assert all(path.startswith(orthanc.http_url) for path in table.column("path").to_pylist())

    folder = tmp_path / "films"
    folder.mkdir()
    for film in films:
        (folder / f"{film.sop_uid}.dcm").write_bytes(film.part10)
    from_folder = tmp_path / "folder.parquet"
    assert score_cli(str(folder), "--out", str(from_folder)).exit_code == ExitCode.ROWS_FAILED
    folder_table = pq.read_table(from_folder)
    position = {name.removesuffix(".dcm"): row for row, name in enumerate(folder_table.column("image_id").to_pylist())}
    folder_table = folder_table.take([position[uid] for uid in table.column("image_id").to_pylist()])
    compared = [name for name in table.column_names if name not in RUN_COLUMNS]
    assert table.select(compared).equals(folder_table.select(compared))

    kinds = {film.sop_uid: film.kind for film in films}
    status = dict(zip(table.column("image_id").to_pylist(), table.column("status").to_pylist()))
    assert {uid for uid, value in status.items() if value == "error"} == {
        uid for uid, kind in kinds.items() if kind == "no pixels"
    }
    in_scope = dict(zip(table.column("image_id").to_pylist(), table.column("in_scope").to_pylist()))
    assert {uid for uid, value in in_scope.items() if value is False} == {
        uid for uid, kind in kinds.items() if kind in ("adult", "lateral")
    }
    for text in (out.read_bytes(), result.output.encode()):
        assert PATIENT_ID.encode() not in text and PATIENT_NAME.split("^")[0].encode() not in text


def stored_reports(orthanc: OrthancServer) -> list[pydicom.Dataset]:
    import io

    import requests

    found = orthanc.find_instances(Modality="SR", StudyDate=E2E_NIGHT)
    files = [
        requests.get(f"{orthanc.http_url}/instances/{oid}/file", auth=orthanc.auth, timeout=10).content for oid in found
    ]
    return [pydicom.dcmread(io.BytesIO(data)) for data in files]


def test_send_results_files_one_report_per_in_scope_film_and_a_rerun_adds_none(
    orthanc: OrthancServer, night: list[NightFilm], first_run: FirstRun, pacs_auth: None, tmp_path: Path
) -> None:
    out, result = first_run.out, first_run.result
    table = pq.read_table(out)
    chosen = table.filter(pc.and_(pc.equal(table.column("status"), "ok"), pc.fill_null(table.column("in_scope"), False)))
    expected = dict(zip(chosen.column("image_id").to_pylist(), chosen.column("pred_screening").to_pylist()))
    assert len(expected) == 27
    counted = re.search(r", (\d+) reports sent to the PACS(?: \((\d+) already there\))?", result.stderr)
    assert counted is not None and int(counted[1]) + int(counted[2] or 0) == len(expected)  # the nightly test may be first
    outcomes = dict(zip(table.column("image_id").to_pylist(), table.column("report").to_pylist()))
    assert {uid for uid, outcome in outcomes.items() if outcome in ("stored", "already in the PACS")} == set(expected)
    assert all(outcome is None for uid, outcome in outcomes.items() if uid not in expected)  # out of scope, errors

    reports = stored_reports(orthanc)
    read = [(report, *read_finding(report)) for report in reports]  # each parses with highdicom
    findings = {referenced: finding for _, finding, referenced in read}
    assert findings == {uid: "pneumonia suspected" if pred else "pneumonia not suspected" for uid, pred in expected.items()}
    sources = {film.sop_uid: film.dataset for film in night}
    for report, _, referenced in read:
        assert report.StudyInstanceUID == sources[referenced].StudyInstanceUID  # filed in the film's study
    # The validated figures, the same in every report: one is enough.
    validation = load_model().metadata["operating_points"]["screening"]["validation"]
    group = hd.sr.ComprehensiveSR.from_dataset(reports[0]).content.get_image_measurement_groups()[0]
    figures = {item.name.value: item.value for item in group.get_measurements()}
    assert figures["PNVALSENS"] == pytest.approx(validation["sensitivity"]["estimate"])
    assert figures["PNVALSPEC"] == pytest.approx(validation["specificity"]["estimate"])

    before = orthanc.instance_count()
    again = score_cli(orthanc.dicomweb_url, "--study-date", E2E_NIGHT, "--out", str(tmp_path / "again.parquet"),
                  "--send-results")
    assert again.exit_code == ExitCode.ROWS_FAILED, again.output
    assert f", 0 reports sent to the PACS ({len(expected)} already there)" in again.stderr.splitlines()[-1]
    assert orthanc.instance_count() == before
    assert len(stored_reports(orthanc)) == len(expected)

    same = score_cli(orthanc.dicomweb_url, "--study-date", E2E_NIGHT, "--out", str(out), "--send-results")
    assert same.exit_code == ExitCode.ROWS_FAILED, same.output  # the film without pixels is fetched and fails again
    line = same.stderr.splitlines()[-1]
    assert f", {len(table) - 1} already in OUT (not fetched again), 0 reports sent to the PACS ({len(expected)} already there)" in line
    rerun = pq.read_table(out)
    ok = pc.equal(table.column("status"), "ok")
    assert rerun.filter(ok).equals(table.filter(ok))  # the very rows, run ids included
    kept = [name for name in table.column_names if name not in ("run_id", "scored_at")]
    assert rerun.select(kept).equals(table.select(kept))
    assert orthanc.instance_count() == before

    lost = orthanc.find_instances(Modality="SR", StudyDate=E2E_NIGHT)[0]  # a report the PACS lost is sent again
    orthanc.delete_instance(lost)
    options = PacsOptions(parse_study_date(E2E_NIGHT))
    assert send_run_results(out, orthanc.dicomweb_url, options) == ReportsSent(stored=1, present=len(expected) - 1)
    assert len(stored_reports(orthanc)) == len(expected)


