"""adapt (fine-tune) on a tiny parent and real full-size films: the directory, its lineage, the hold-out, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from site_films import link_labelled_films, with_a_broken_film
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.model import file_sha256, load_model
from pneumo_batch.site.labelled import LabelledFilms, fingerprint, read_labelled
from pneumo_batch.training import config_from_preset, train_and_package

#: Training a tiny parent and fine-tuning it twice takes a few minutes.
pytestmark = pytest.mark.slow

PER_CLASS = 50


@pytest.fixture(scope="module")
def parent(pneumoniamnist, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parent") / "tiny"
    train_and_package(pneumoniamnist, config_from_preset("tiny"), out, name="tiny")
    return out


@pytest.fixture(scope="module")
def site(xray_jpegs_dir: Path, tmp_path_factory) -> Path:
    return link_labelled_films(xray_jpegs_dir, tmp_path_factory.mktemp("site"), PER_CLASS)


def adapt(parent: Path, site: Path, out: Path, dataset_path: Path):
    result = CliRunner().invoke(app, ["adapt", "--model", str(parent), "--labelled", str(site), "--out", str(out),
                                      "--data", str(dataset_path), "--max-epochs", "2", "--folds", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return load_model(out)


@pytest.fixture(scope="module")
def tuned(parent, site, dataset_path, tmp_path_factory):
    return adapt(parent, site, tmp_path_factory.mktemp("models") / "site-ft", dataset_path)


def test_the_fine_tuned_directory_loads_scores_and_records_its_lineage(tuned, parent, site, tmp_path):
    meta = tuned.metadata
    assert tuned.default_variant == "int8" and file_sha256(tuned.keras_path) == meta["keras"]["sha256"]
    assert meta["scope_gate"]["features_model"]["of_sha256"] == tuned.variant_sha256()  # the gate is the new network's
    assert tuned.variant_sha256() != load_model(parent).variant_sha256()
    lineage = meta["lineage"]
    assert lineage["parent"]["sha256"] == load_model(parent).variant_sha256()
    assert lineage["recipe"]["kind"] == "fine-tune" and lineage["recipe"]["folds"] == 2
    assert len(lineage["figures"]["out_of_fold_auc_by_epoch"]) == 3 and 0 <= lineage["figures"]["epochs_chosen"] <= 2
    assert meta["operating_points"]["screening"]["threshold"] == lineage["figures"]["chosen"]["threshold"]
    text = (tuned.directory / "metadata.json").read_text()
    assert not any(film.name in text or film.stem in text for film in site.glob("*/*.jpeg"))  # hashes, never ids

    result = CliRunner().invoke(app, ["score", str(site / "NORMAL"), "--out", str(tmp_path / "s.parquet"),
                                      "--model", str(tuned.directory)])
    assert result.exit_code == 0, result.output
    scored = pq.read_table(tmp_path / "s.parquet").to_pandas()
    assert len(scored) == PER_CLASS and (scored["model_sha256"] == tuned.variant_sha256()).all()


def test_the_hold_out_is_disjoint_and_never_used(tuned, site):
    lineage = tuned.metadata["lineage"]
    manifest = tuned.directory.with_name(f"{tuned.directory.name}-holdout.parquet")
    held = read_labelled(manifest)
    everything = read_labelled(site)
    held_hashes = {_content(path) for path in held.table["path"]}
    adaptation = everything.table[[_content(path) not in held_hashes for path in everything.table["path"]]]
    assert len(held.table) + len(adaptation) == 2 * PER_CLASS
    # the lineage's adaptation fingerprint is exactly the films not held out, and the hold-out's is the manifest's
    assert lineage["site_data"]["adaptation"] == fingerprint(LabelledFilms(adaptation))
    assert lineage["site_data"]["holdout"] == fingerprint(held)
    # the reference profile was built from the adaptation films only
    assert len(pq.read_table(tuned.reference_profile_path)) == len(adaptation)


def test_the_same_seed_gives_the_same_epochs_and_threshold(tuned, parent, site, dataset_path, tmp_path):
    again = adapt(parent, site, tmp_path / "again", dataset_path)
    first, second = tuned.metadata["lineage"]["figures"], again.metadata["lineage"]["figures"]
    assert second["epochs_chosen"] == first["epochs_chosen"]
    assert second["chosen"]["threshold"] == first["chosen"]["threshold"]
    np.testing.assert_allclose(second["out_of_fold_auc_by_epoch"], first["out_of_fold_auc_by_epoch"])
    assert again.variant_sha256() == tuned.variant_sha256()


def _content(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_an_undecodable_adaptation_film_is_left_out_and_said(parent, site, dataset_path, tmp_path):
    films = with_a_broken_film(site, tmp_path / "site")
    out = tmp_path / "models" / "site-ft"
    result = CliRunner().invoke(app, ["adapt", "--model", str(parent), "--labelled", str(films), "--out", str(out),
                                      "--data", str(dataset_path), "--max-epochs", "1", "--folds", "2",
                                      "--holdout-share", "0"])
    assert result.exit_code == 0, result.output
    assert "1 not decodable (left out)" in result.output
    assert len(pq.read_table(load_model(out).reference_profile_path)) == 2 * PER_CLASS
