"""Fixtures for the PACS tests: a real Orthanc (tests/orthanc.py) and the corpus loaded into it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from orthanc import OrthancServer
from pacs.pacs_corpus import NIGHT, NIGHT_BEFORE, Corpus, NightFilm, jpeg_film, night_corpus, source_for, synthetic_film
from pydicom.uid import generate_uid

from pneumo_batch.pacs import AUTH_ENV, PacsSource


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """One Orthanc for the session's read-mostly tests; fault tests start their own."""
    with OrthancServer(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture
def own_orthanc(tmp_path: Path) -> Iterator[OrthancServer]:
    """An Orthanc a test may kill and restart."""
    server = OrthancServer(tmp_path / "orthanc")
    try:
        server.start()
        yield server
    finally:
        server.kill()  # its storage is thrown away: no need to wait for a clean stop


@pytest.fixture(scope="session")
def corpus(orthanc: OrthancServer, xray_jpegs_dir: Path) -> Corpus:
    shared_study = generate_uid()  # two films of one study, as a PA and a lateral would be
    night = [synthetic_film("CR" if i % 2 else "DX", NIGHT, seed=i) for i in range(4)]
    night += [synthetic_film("CR", NIGHT, seed=10 + i, study_uid=shared_study) for i in range(2)]
    jpegs = (jpeg_film(path, NIGHT) for path in sorted(xray_jpegs_dir.glob("*/*.jpeg")))
    night += [film for film in jpegs if film is not None][:2]
    assert len(night) == 8
    before = [synthetic_film("DX", NIGHT_BEFORE, seed=20 + i) for i in range(2)]
    excluded = [synthetic_film("CT", NIGHT, seed=30), synthetic_film("CR", "20261201", seed=31)]
    for film in night + before + excluded:
        orthanc.upload(film.part10)
    return Corpus(night, before, excluded)


@pytest.fixture
def pacs(orthanc: OrthancServer) -> PacsSource:
    return source_for(orthanc)


@pytest.fixture(scope="session")
def night(orthanc: OrthancServer, xray_jpegs_dir: Path) -> list[NightFilm]:
    """The end-to-end night (pacs_corpus.night_corpus) in the session's Orthanc."""
    films = night_corpus(xray_jpegs_dir)
    for film in films:
        orthanc.upload(film.part10)
    return films


@pytest.fixture
def pacs_auth(orthanc: OrthancServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session Orthanc's credentials in PNEUMO_BATCH_PACS_AUTH, as a cron job would set them."""
    monkeypatch.setenv(AUTH_ENV, f"{orthanc.user}:{orthanc.password}")
