"""`pneumo-batch score` and `nightly` with a PACS as INPUT, end to end on a real Orthanc with the shipped model."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from orthanc import OrthancServer, free_loopback_port
from pacs.pacs_corpus import E2E_NIGHT, FAST, PATIENT_ID, NightFilm, night_corpus, rows_of, score_cli, synthetic_film
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.errors import PacsConfigError, PacsUnavailableError
from pneumo_batch.inputs.pacs import PacsOptions, pacs_options
from pneumo_batch.pacs import AUTH_ENV, parse_study_date
from pneumo_batch.scoring import Progress, score_batch


def test_orthanc_killed_mid_run_stops_cleanly_and_the_rerun_completes_every_film_once(
    own_orthanc: OrthancServer, xray_jpegs_dir: Path, tmp_path: Path
) -> None:
    films = rows_of(night_corpus(xray_jpegs_dir))
    for film in films:
        own_orthanc.upload(film.part10)
    os.environ[AUTH_ENV] = f"{own_orthanc.user}:{own_orthanc.password}"
    try:
        options = PacsOptions(parse_study_date(E2E_NIGHT), settings=replace(FAST, workers=2, max_in_flight=2))
        out = tmp_path / "p.parquet"

        def kill_after_the_first_chunk(progress: Progress) -> None:
            if progress.rows_done:
                own_orthanc.kill()

        with pytest.raises(PacsUnavailableError, match="run the same command again to resume"):
            score_batch(own_orthanc.dicomweb_url, out, workers=0, batch_size=3, pacs=options,
                        progress=kill_after_the_first_chunk)
        assert not out.exists()
        own_orthanc.start()
        summary = score_batch(own_orthanc.dicomweb_url, out, workers=0, batch_size=3, pacs=options)
    finally:
        del os.environ[AUTH_ENV]
    assert summary.rows == len(films) and 0 < summary.rows_resumed < len(films)
    ids = pq.read_table(out).column("image_id").to_pylist()
    assert ids == sorted(film.sop_uid for film in films)


def test_an_unreachable_pacs_exits_6_with_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTH_ENV, "someone:pw-Never-Shown")
    out = tmp_path / "out" / "p.parquet"
    url = f"dicomweb+http://127.0.0.1:{free_loopback_port()}/dicom-web"
    result = score_cli(url, "--study-date", E2E_NIGHT, "--out", str(out), "--pacs-timeout", "1", "--pacs-retries", "1")
    assert result.exit_code == ExitCode.PACS_UNAVAILABLE, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: PACS unavailable at http://127.0.0.1:")
    assert "pw-Never-Shown" not in result.output and "someone" not in result.output
    assert not (tmp_path / "out").exists()


def test_refused_credentials_exit_2_with_one_line_without_the_password(
    orthanc: OrthancServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTH_ENV, f"{orthanc.user}:Wrong-pw-42")
    result = score_cli(orthanc.dicomweb_url, "--study-date", E2E_NIGHT, "--out", str(tmp_path / "p.parquet"))
    assert result.exit_code == ExitCode.USAGE, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: PACS refused the credentials (HTTP 401)")
    assert "Wrong-pw-42" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_pacs_input_needs_a_study_date_and_a_folder_takes_none(orthanc: OrthancServer, tmp_path: Path) -> None:
    needs = score_cli(orthanc.dicomweb_url, "--out", str(tmp_path / "p.parquet"))
    assert needs.exit_code == ExitCode.USAGE and "needs --study-date" in needs.stderr
    refused = score_cli(str(tmp_path), "--study-date", E2E_NIGHT, "--out", str(tmp_path / "p.parquet"))
    assert refused.exit_code == ExitCode.USAGE and "dicomweb" in refused.stderr


@pytest.mark.slow  # monitoring (Evidently) on top of scoring: about 15 s
def test_nightly_reads_the_pacs_section_with_an_owner_only_credentials_file(
    orthanc: OrthancServer, night: list[NightFilm], tmp_path: Path
) -> None:
    auth = tmp_path / "pacs-auth"
    auth.write_text(f"{orthanc.user}:{orthanc.password}\n")
    auth.chmod(0o600)
    config = tmp_path / "nightly.toml"
    config.write_text(
        f'output_root = "out"\nworkers = 1\nbatch_size = 8\n\n[pacs]\nurl = "{orthanc.dicomweb_url}"\n'
        f'auth_file = "pacs-auth"\nread_timeout_s = 30\nretries = 2\nsend_results = true\n'
    )
    date = f"{E2E_NIGHT[:4]}-{E2E_NIGHT[4:6]}-{E2E_NIGHT[6:]}"  # the study date defaults to the night's
    result = CliRunner().invoke(app, ["nightly", "--config", str(config), "--date", date])
    assert result.exit_code in (ExitCode.ROWS_FAILED, ExitCode.ALERT), result.output
    table = pq.read_table(tmp_path / "out" / "predictions" / f"date={date}" / "predictions.parquet")
    assert table.column("image_id").to_pylist() == sorted(film.sop_uid for film in rows_of(night))
    log = (tmp_path / "out" / "logs" / f"nightly-{date}.log").read_text()
    assert orthanc.password not in log and PATIENT_ID not in log
    assert " reports sent to the PACS" in log  # none, if another test filed them first: the same UIDs
    in_scope = sum(kind == "child" for kind in (film.kind for film in night))
    assert len(orthanc.find_instances(Modality="SR", StudyDate=E2E_NIGHT)) == in_scope

    again = CliRunner().invoke(app, ["nightly", "--config", str(config), "--date", date])  # the same night, rerun
    assert again.exit_code == result.exit_code, again.output
    rerun = pq.read_table(tmp_path / "out" / "predictions" / f"date={date}" / "predictions.parquet")
    ok = pc.equal(table.column("status"), "ok")
    assert rerun.filter(ok).equals(table.filter(ok))  # taken from the published partition, not fetched again
    log = (tmp_path / "out" / "logs" / f"nightly-{date}.log").read_text()
    assert f"{len(table.filter(ok))} of them already in the partition" in log
    assert len(orthanc.find_instances(Modality="SR", StudyDate=E2E_NIGHT)) == in_scope


def test_nightly_with_the_pacs_down_exits_6(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTH_ENV, "someone:pw-Never-Shown")
    config = tmp_path / "nightly.toml"
    config.write_text(f'[pacs]\nurl = "dicomweb+http://127.0.0.1:{free_loopback_port()}/dicom-web"\nretries = 0\n')
    result = CliRunner().invoke(app, ["nightly", "--config", str(config), "--output-root", str(tmp_path / "out")])
    assert result.exit_code == ExitCode.PACS_UNAVAILABLE, result.output
    assert "PACS unavailable at http://127.0.0.1:" in result.output and "pw-Never-Shown" not in result.output
    assert not (tmp_path / "out" / "predictions").exists()


def test_an_instance_deleted_after_the_query_is_an_error_row(
    orthanc: OrthancServer, pacs_auth: None, tmp_path: Path
) -> None:
    films = [synthetic_film("DX", "20261120", seed=80 + i) for i in range(3)]
    ids = {film.sop_uid: orthanc.upload(film.part10) for film in films}
    gone = sorted(ids)[1]

    def delete_once_queried(progress: Progress) -> None:  # called after the query, before any chunk
        if orthanc.find_instances(SOPInstanceUID=gone):
            orthanc.delete_instance(ids[gone])

    options = PacsOptions(parse_study_date("20261120"), settings=FAST)
    summary = score_batch(orthanc.dicomweb_url, tmp_path / "p.parquet", workers=0, pacs=options,
                          progress=delete_once_queried)
    table = pq.read_table(summary.out)
    assert table.column("image_id").to_pylist() == sorted(ids)
    errors = dict(zip(table.column("image_id").to_pylist(), table.column("error").to_pylist()))
    assert errors[gone] == "instance gone from PACS"


def test_the_pacs_section_is_checked(tmp_path: Path) -> None:
    with pytest.raises(PacsConfigError, match="unknown key"):
        pacs_options({"passwd": "x"}, study_date=E2E_NIGHT)
    with pytest.raises(PacsConfigError, match="timeouts must be positive"):
        pacs_options({"read_timeout_s": 0}, study_date=E2E_NIGHT)
    chosen = pacs_options({"study_date": "20261101", "retries": 1, "auth_file": tmp_path / "a"},
                          study_date="20261102-20261103", default_study_date="20261130")
    assert chosen.study_dates.qido_value == "20261102-20261103"  # the command line wins
    assert (chosen.settings.retries, chosen.credentials_file) == (1, tmp_path / "a")
    assert pacs_options({}, default_study_date="20261130").study_dates.qido_value == "20261130"
    config = tmp_path / "n.toml"
    config.write_text('input = "films"\noutput_root = "out"\n[pacs]\nsend_results = true\n')
    result = CliRunner().invoke(app, ["nightly", "--config", str(config)])
    assert result.exit_code == ExitCode.USAGE and "need a dicomweb" in result.stderr
