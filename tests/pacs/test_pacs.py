"""The PACS link against a real Orthanc: search, retrieve, faults, credentials, SR out."""

from __future__ import annotations

import io
import os
import threading
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
import requests
from pacs.pacs_corpus import FAST, NIGHT, NIGHT_BEFORE, PATIENT_ID, PATIENT_NAME, Corpus, source_for, synthetic_film
from orthanc import OrthancServer, free_loopback_port

from pneumo_batch.errors import PneumoBatchError
from pneumo_batch.pacs import (
    AUTH_ENV,
    GONE_REASON,
    InstanceRef,
    PacsAuthError,
    PacsConfigError,
    PacsCredentials,
    PacsSource,
    PacsUnavailableError,
    is_pacs_url,
    load_credentials,
    parse_pacs_url,
    parse_study_date,
)
from pneumo_batch.pacs.report import (
    DISCLAIMER,
    NOT_SUSPECTED_MEANING,
    SUSPECTED_MEANING,
    ModelIdentity,
    ValidatedOperatingPoint,
    build_screening_report,
    read_finding,
)

MODEL = ModelIdentity(name="pneumo-cnn", version="2026.11.1")
SCREENING = ValidatedOperatingPoint(name="screening", threshold=0.31, sensitivity=0.981, specificity=0.612)


def refs_of(films) -> list[InstanceRef]:
    return sorted(
        InstanceRef(str(f.dataset.StudyInstanceUID), str(f.dataset.SeriesInstanceUID), f.sop_uid) for f in films
    )


# -- URLs, dates, credentials (no server) ---------------------------------------


def test_pacs_url_spellings() -> None:
    assert parse_pacs_url("dicomweb+http://127.0.0.1:8042/dicom-web/").base_url == "http://127.0.0.1:8042/dicom-web"
    assert parse_pacs_url("dicomweb+https://pacs.example/dicomweb").base_url == "https://pacs.example/dicomweb"
    assert is_pacs_url("dicomweb+https://pacs.example/x") and not is_pacs_url("/data/films")
    with pytest.raises(PacsConfigError, match="must start with"):
        parse_pacs_url("http://pacs.example/dicom-web")


def test_credentials_in_a_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(PacsConfigError) as refused:
        parse_pacs_url("dicomweb+https://alice:hunter2pw@pacs.example/dicom-web")
    assert "hunter2pw" not in str(refused.value) and "alice" not in str(refused.value)


def test_study_dates() -> None:
    assert parse_study_date("20261130").qido_value == "20261130"
    assert parse_study_date("20261101-20261130").qido_value == "20261101-20261130"
    for bad in ("2026-11-30", "20261131", "20261130-20261101", ""):
        with pytest.raises(PacsConfigError):
            parse_study_date(bad)


def test_credentials_from_env_win_over_the_file_and_never_print(tmp_path: Path) -> None:
    file = tmp_path / "pacs-auth"
    file.write_text("fileuser:filepw\n")
    file.chmod(0o600)
    from_env = load_credentials(file, environ={AUTH_ENV: "Bearer tok-3xYz"})
    assert from_env is not None and from_env.kind == "bearer"
    assert "tok-3xYz" not in repr(from_env) and "tok-3xYz" not in str(from_env)
    from_file = load_credentials(file, environ={})
    assert from_file == PacsCredentials(kind="basic", user="fileuser", secret="filepw")
    assert load_credentials(None, environ={}) is None


def test_bearer_token_goes_in_the_authorization_header() -> None:
    request = requests.Request("GET", "https://pacs.example/dicom-web/studies").prepare()
    PacsCredentials(kind="bearer", secret="tok-3xYz")(request)
    assert request.headers["Authorization"] == "Bearer tok-3xYz"


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "pacs-auth"
    file.write_text("user:pw-in-file")
    file.chmod(0o640)
    with pytest.raises(PacsConfigError, match="chmod 600") as refused:
        load_credentials(file, environ={})
    assert "pw-in-file" not in str(refused.value)


# -- QIDO-RS and WADO-RS against Orthanc ---------------------------------------


def test_search_returns_the_nights_cr_and_dx_films_only(
    orthanc: OrthancServer, pacs: PacsSource, corpus: Corpus
) -> None:
    assert orthanc.find_instances(Modality="CT", StudyDate=NIGHT)  # the PACS holds a CT of the night
    assert pacs.search_films(parse_study_date(NIGHT)) == refs_of(corpus.night_films)
    both_nights = pacs.search_films(parse_study_date(f"{NIGHT_BEFORE}-{NIGHT}"))
    assert both_nights == refs_of(corpus.night_films + corpus.night_before_films)


def test_search_pages_through_every_result(orthanc: OrthancServer, corpus: Corpus) -> None:
    paged = source_for(orthanc, settings=replace(FAST, page_size=3))
    assert paged.search_films(parse_study_date(NIGHT)) == refs_of(corpus.night_films)


def test_retrieve_all_gives_each_film_back_unchanged_in_order(pacs: PacsSource, corpus: Corpus) -> None:
    refs = pacs.search_films(parse_study_date(NIGHT))
    sent = {film.sop_uid: film.dataset for film in corpus.night_films}
    results = list(replace_settings(pacs, max_in_flight=3).retrieve_all(refs))
    assert [result.ref for result in results] == refs
    for result in results:
        assert result.error is None and result.part10 is not None
        got = pydicom.dcmread(io.BytesIO(result.part10))
        original = sent[got.SOPInstanceUID]
        assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert got.PixelData == original.PixelData
    syntaxes = {pydicom.dcmread(io.BytesIO(r.part10)).file_meta.TransferSyntaxUID.name for r in results}
    assert syntaxes == {"Explicit VR Little Endian", "JPEG Baseline (Process 1)"}


def replace_settings(source: PacsSource, **changes: object) -> PacsSource:
    return PacsSource(source.location, source.credentials, replace(source.settings, **changes))


def test_an_instance_deleted_after_the_query_is_an_error_result(orthanc: OrthancServer, pacs: PacsSource) -> None:
    film = synthetic_film("CR", "20261128", seed=40)
    orthanc_id = orthanc.upload(film.part10)
    (ref,) = pacs.search_films(parse_study_date("20261128"))
    orthanc.delete_instance(orthanc_id)
    (result,) = list(pacs.retrieve_all([ref]))
    assert result.ref == ref and result.part10 is None and result.error == GONE_REASON


# -- faults ---------------------------------------------------------------------


def test_refused_credentials_raise_pacs_auth_error_without_the_password(orthanc: OrthancServer) -> None:
    wrong = source_for(orthanc, password="not-the-Right-pw")
    for attempt in (wrong.check, lambda: wrong.search_films(parse_study_date(NIGHT))):
        with pytest.raises(PacsAuthError) as refused:
            attempt()
        message = str(refused.value)
        assert isinstance(refused.value, PneumoBatchError) and "\n" not in message
        assert "not-the-Right-pw" not in message and orthanc.user not in message


def test_an_unreachable_pacs_is_one_line_without_credentials() -> None:
    nobody = PacsSource(
        parse_pacs_url(f"dicomweb+http://127.0.0.1:{free_loopback_port()}/dicom-web"),
        PacsCredentials(kind="basic", user="someuser", secret="pw-Unreachable"),
        FAST,
    )
    with pytest.raises(PacsUnavailableError) as unavailable:
        nobody.check()
    message = str(unavailable.value)
    assert message.startswith("PACS unavailable at http://127.0.0.1:") and "\n" not in message
    assert "pw-Unreachable" not in message and "someuser" not in message


def test_killed_mid_run_stops_cleanly_and_the_rest_comes_after_a_restart(own_orthanc: OrthancServer) -> None:
    films = [synthetic_film("DX", NIGHT, seed=50 + i) for i in range(6)]
    for film in films:
        own_orthanc.upload(film.part10)
    pacs = source_for(own_orthanc, settings=replace(FAST, workers=1, max_in_flight=1))
    refs = pacs.search_films(parse_study_date(NIGHT))
    done: list[InstanceRef] = []
    with pytest.raises(PacsUnavailableError):
        for result in pacs.retrieve_all(refs):
            assert result.error is None
            done.append(result.ref)
            if len(done) == 2:
                own_orthanc.kill()
    assert done == refs[:2]
    own_orthanc.start()
    rest = [result for result in pacs.retrieve_all(refs[2:]) if result.error is None]
    assert sorted(done + [result.ref for result in rest]) == refs


def test_a_short_outage_is_bridged_by_retries(own_orthanc: OrthancServer) -> None:
    film = synthetic_film("CR", NIGHT, seed=60)
    own_orthanc.upload(film.part10)
    patient = source_for(own_orthanc, settings=replace(FAST, retries=12, backoff_s=0.1, backoff_max_s=0.4))
    (ref,) = patient.search_films(parse_study_date(NIGHT))
    own_orthanc.kill()
    restart = threading.Timer(0.3, own_orthanc.start)
    restart.start()
    try:
        result = patient.retrieve(ref)
    finally:
        restart.join()
    assert result.error is None and pydicom.dcmread(io.BytesIO(result.part10)).SOPInstanceUID == ref.sop_uid


# -- SR out -----------------------------------------------------------------------


def stored_reports(orthanc: OrthancServer, pacs: PacsSource, study_uid: str) -> list[pydicom.Dataset]:
    client = pacs._client()
    found = client.search_for_instances(study_instance_uid=study_uid, search_filters={"Modality": "SR"})
    refs = [
        (r["0020000D"]["Value"][0], r["0020000E"]["Value"][0], r["00080018"]["Value"][0]) for r in found
    ]
    return [client.retrieve_instance(*ref) for ref in refs]


def test_reports_are_filed_in_the_source_study_and_a_rerun_adds_none(
    orthanc: OrthancServer, pacs: PacsSource, corpus: Corpus
) -> None:
    jpeg_source, plain_source = corpus.night_films[-1].dataset, corpus.night_films[0].dataset
    scores = {jpeg_source.SOPInstanceUID: 0.83, plain_source.SOPInstanceUID: 0.05}
    reports = [build_screening_report(s, scores[s.SOPInstanceUID], MODEL, SCREENING) for s in (jpeg_source, plain_source)]
    before = orthanc.instance_count()
    pacs.store(reports)
    assert orthanc.instance_count() == before + 2

    for source, expected in ((jpeg_source, SUSPECTED_MEANING), (plain_source, NOT_SUSPECTED_MEANING)):
        (stored,) = stored_reports(orthanc, pacs, source.StudyInstanceUID)
        assert read_finding(stored) == (expected, source.SOPInstanceUID)
        sr = hd.sr.ComprehensiveSR.from_dataset(stored)
        group = sr.content.get_image_measurement_groups()[0]
        assert group.source_images[0].referenced_sop_class_uid == source.SOPClassUID
        assert DISCLAIMER in stored.SeriesDescription
        assert (stored.PatientID, str(stored.PatientName)) == (PATIENT_ID, PATIENT_NAME)  # filed with its patient

    rebuilt = [build_screening_report(s, scores[s.SOPInstanceUID], MODEL, SCREENING) for s in (jpeg_source, plain_source)]
    assert [r.SOPInstanceUID for r in rebuilt] == [r.SOPInstanceUID for r in reports]
    pacs.store(rebuilt)
    assert orthanc.instance_count() == before + 2


def test_a_new_model_version_files_a_new_report() -> None:
    source = synthetic_film("CR", NIGHT, seed=70).dataset
    first = build_screening_report(source, 0.5, MODEL, SCREENING)
    again = build_screening_report(source, 0.5, MODEL, SCREENING)
    newer = build_screening_report(source, 0.5, replace(MODEL, version="2026.12.0"), SCREENING)
    assert first.SOPInstanceUID == again.SOPInstanceUID != newer.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID != newer.SeriesInstanceUID
    assert first.SOPInstanceUID.startswith("2.25.") and len(first.SOPInstanceUID) <= 64


def test_orthanc_is_gone_after_the_fixture(tmp_path: Path) -> None:
    server = OrthancServer(tmp_path / "o")
    with server:
        pid = server.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
