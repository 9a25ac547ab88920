"""A rerun from a PACS fetches only what its output lacks (real Orthanc, shipped model, retrieves counted in our client)."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pydicom
import pytest
from orthanc import OrthancServer
from pacs.pacs_corpus import FAST, Film, synthetic_film

from pneumo_batch.errors import PacsUnavailableError
from pneumo_batch.inputs.pacs import PacsOptions
from pneumo_batch.model import ModelArtifact, load_model
from pneumo_batch.pacs import InstanceRef, PacsSource, RetrievedInstance, parse_study_date
from pneumo_batch.predictions import output_schema
from pneumo_batch.scoring import Engine, ReusedRows, read_predictions_folder, score_batch


@pytest.fixture
def retrieved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """SOP Instance UIDs of every WADO-RS retrieve of this process (the runs score in it: workers=0)."""
    fetched: list[str] = []
    retrieve = PacsSource.retrieve

    def counting(self: PacsSource, ref: InstanceRef) -> RetrievedInstance:
        fetched.append(ref.sop_uid)
        return retrieve(self, ref)

    monkeypatch.setattr(PacsSource, "retrieve", counting)
    return fetched


def upload(orthanc: OrthancServer, films: list[Film]) -> list[str]:
    for film in films:
        orthanc.upload(film.part10)
    return [film.sop_uid for film in films]


def without_pixels(film: Film) -> Film:
    del film.dataset.PixelData
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, film.dataset, enforce_file_format=True)
    return Film(film.dataset, buffer.getvalue())


def test_a_finished_run_fetches_nothing_again_and_new_films_are_fetched_alone(
    orthanc: OrthancServer, pacs_auth: None, retrieved: list[str], tmp_path: Path
) -> None:
    night = "20261118"
    first_films = upload(orthanc, [synthetic_film("CR" if i % 2 else "DX", night, seed=100 + i) for i in range(6)])
    options = PacsOptions(parse_study_date(night), settings=FAST)
    out = tmp_path / "night.parquet"

    def run() -> tuple[pa.Table, int]:
        retrieved.clear()
        summary = score_batch(orthanc.dicomweb_url, out, workers=0, batch_size=4, pacs=options)
        assert summary.rows_scored == len(retrieved)
        return pq.read_table(out), summary.rows_reused

    first, _ = run()
    assert sorted(retrieved) == sorted(first_films)
    again, reused = run()
    assert retrieved == [] and reused == 6
    assert again.equals(first)  # the very rows, run ids and times included

    new_films = upload(orthanc, [synthetic_film("DX", night, seed=110 + i) for i in range(3)])
    grown, reused = run()
    assert sorted(retrieved) == sorted(new_films) and reused == 6
    ids = grown.column("image_id").to_pylist()
    assert ids == sorted(first_films + new_films)  # every instance once, in SOP Instance UID order
    kept = grown.filter(pc.is_in(grown.column("image_id"), pa.array(first_films)))
    assert kept.equals(first)
    assert len(set(grown.column("run_id").to_pylist())) == 2


def test_error_rows_and_rows_of_another_model_are_fetched_again_and_overwrite_fetches_all(
    orthanc: OrthancServer, pacs_auth: None, retrieved: list[str], tmp_path: Path
) -> None:
    night = "20261117"
    films = [synthetic_film("DX", night, seed=120 + i) for i in range(2)]
    broken = without_pixels(synthetic_film("CR", night, seed=122))
    uids = upload(orthanc, [*films, broken])
    options = PacsOptions(parse_study_date(night), settings=FAST)
    out = tmp_path / "night.parquet"
    shipped = load_model()

    def run(model: ModelArtifact = shipped, **extra: bool) -> pa.Table:
        retrieved.clear()
        score_batch(orthanc.dicomweb_url, out, workers=0, model=model, pacs=options, **extra)
        return pq.read_table(out)

    first = run()
    errors = dict(zip(first.column("image_id").to_pylist(), first.column("error").to_pylist()))
    assert errors[broken.sop_uid] == "no pixel data"
    run()
    assert retrieved == [broken.sop_uid]  # a failed row may work now: it is retried

    retrained = ModelArtifact(shipped.directory, {**shipped.metadata, "version": "retrained-test"})
    table = run(retrained)
    assert sorted(retrieved) == sorted(uids)  # rows of another model version are never reused
    assert set(table.column("model_version").to_pylist()) == {"retrained-test"}
    assert table.column("image_id").to_pylist() == sorted(uids)
    run(retrained, overwrite=True)
    assert sorted(retrieved) == sorted(uids)


def test_a_ray_rerun_with_nothing_new_starts_no_ray_and_fetches_nothing(
    orthanc: OrthancServer, pacs_auth: None, retrieved: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    night = "20261116"
    upload(orthanc, [synthetic_film("DX", night, seed=130 + i) for i in range(3)])
    options = PacsOptions(parse_study_date(night), settings=FAST)
    local = score_batch(orthanc.dicomweb_url, tmp_path / "local.parquet", workers=0, pacs=options)

    def no_ray(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started for a run with nothing to score")

    monkeypatch.setattr(ray, "init", no_ray)
    retrieved.clear()
    summary = score_batch(orthanc.dicomweb_url, tmp_path / "ray", engine=Engine.RAY, pacs=options, reuse_from=local.out)
    assert retrieved == [] and (summary.rows, summary.rows_reused) == (3, 3)
    assert read_predictions_folder(tmp_path / "ray").equals(pq.read_table(local.out))


def test_reused_rows_are_merged_into_new_chunks_in_id_order_each_once() -> None:
    schema = output_schema(["screening"], pa.schema([]))

    def rows(ids: str) -> pa.Table:
        return pa.Table.from_pylist([{"image_id": uid, "status": "ok"} for uid in ids], schema=schema)

    reused = ReusedRows(rows("bdfh"), list("bdfh"))
    merged = [reused.merge(chunk) for chunk in (rows("ac"), rows("e"), rows("g"))] + [reused.rest()]
    assert ["".join(table.column("image_id").to_pylist()) for table in merged] == ["abc", "de", "fg", "h"]
    assert all(table.schema == schema for table in merged)


def test_a_rerun_stopped_by_an_outage_leaves_out_alone_and_the_next_one_fetches_only_the_rest(
    orthanc: OrthancServer, pacs_auth: None, retrieved: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = "20261115"
    old = upload(orthanc, [synthetic_film("DX", night, seed=140 + i) for i in range(4)])
    options = PacsOptions(parse_study_date(night), settings=FAST)
    out = tmp_path / "night.parquet"
    score_batch(orthanc.dicomweb_url, out, workers=0, batch_size=2, pacs=options)
    before = pq.read_table(out)
    new = upload(orthanc, [synthetic_film("CR", night, seed=150 + i) for i in range(4)])

    counting = PacsSource.retrieve

    def outage_after_two(self: PacsSource, ref: InstanceRef) -> RetrievedInstance:
        if len(retrieved) >= 2:  # the second chunk of new films meets a PACS that stopped answering
            raise PacsUnavailableError("PACS unavailable at the test's Orthanc: simulated")
        return counting(self, ref)

    retrieved.clear()
    with monkeypatch.context() as outage:
        outage.setattr(PacsSource, "retrieve", outage_after_two)
        with pytest.raises(PacsUnavailableError, match="run the same command again to resume"):
            score_batch(orthanc.dicomweb_url, out, workers=0, batch_size=2, pacs=options)
    assert pq.read_table(out).equals(before) and len(retrieved) == 2

    first_chunk = list(retrieved)
    retrieved.clear()
    summary = score_batch(orthanc.dicomweb_url, out, workers=0, batch_size=2, pacs=options)
    assert sorted(retrieved + first_chunk) == sorted(new)  # nothing fetched twice, the old films not at all
    assert (summary.rows, summary.rows_reused, summary.rows_scored) == (8, 4, 2)
    assert pq.read_table(out).column("image_id").to_pylist() == sorted(old + new)
