"""The Ray engine scores a PACS night like the local engine: each actor fetches its block over WADO-RS (real Orthanc)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from orthanc import OrthancServer
from pacs.pacs_corpus import E2E_NIGHT, FAST, NightFilm, rows_of

from pneumo_batch.inputs.pacs import PacsOptions
from pneumo_batch.pacs import parse_study_date
from pneumo_batch.scoring import Engine, read_predictions_folder, score_batch

RUN_COLUMNS = ("run_id", "scored_at")


@pytest.mark.ray
@pytest.mark.slow  # two local Ray instances: about a minute on the shared 2 cores
def test_ray_scores_a_pacs_night_like_the_local_engine_and_a_rerun_fetches_only_what_failed(
    orthanc: OrthancServer, night: list[NightFilm], pacs_auth: None, tmp_path: Path
) -> None:
    options = PacsOptions(parse_study_date(E2E_NIGHT), settings=FAST)
    local = pq.read_table(score_batch(orthanc.dicomweb_url, tmp_path / "local.parquet", workers=0, pacs=options).out)
    out = tmp_path / "ray"
    first = score_batch(orthanc.dicomweb_url, out, engine=Engine.RAY, workers=2, batch_size=8, pacs=options)
    table = read_predictions_folder(out)
    assert first.rows == table.num_rows == len(rows_of(night)) and first.rows_reused == 0
    compared = [name for name in table.column_names if name not in RUN_COLUMNS]
    assert table.select(compared).equals(local.select(compared))

    sending = PacsOptions(parse_study_date(E2E_NIGHT), settings=FAST, send_results=True)
    again = score_batch(orthanc.dicomweb_url, out, engine=Engine.RAY, workers=2, batch_size=8, pacs=sending)
    ok = pc.equal(table.column("status"), "ok")
    assert (again.rows_reused, again.rows_scored) == (len(table.filter(ok)), 1)  # the film without pixels
    rerun = read_predictions_folder(out)
    kept = [name for name in table.column_names if name != "report"]  # reports were sent this time
    assert rerun.filter(ok).select(kept).equals(table.filter(ok).select(kept))  # the very rows, run ids included
    assert rerun.select([c for c in compared if c in kept]).equals(table.select([c for c in compared if c in kept]))
    in_scope = sum(film.kind == "child" for film in night)
    assert (again.reports_sent or 0) + (again.reports_present or 0) == in_scope
    outcomes = rerun.column("report").to_pylist()  # each part file's report column, filled in place
    assert sum(o in ("stored", "already in the PACS") for o in outcomes) == in_scope
