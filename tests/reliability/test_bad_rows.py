"""Bad rows stay rows: each odd file becomes one error row with a fixed reason (never its path), the batch goes on.

The cases the scoring tests already cover (empty, truncated, text, missing,
a folder named x.png in a manifest, decompression bomb, outside --root) keep
their tests there; these are the ones a filesystem adds. Tests run as root,
which may read anything, so an unreadable file is simulated where the
library opens it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_fake_scorer
from PIL import Image

from pneumo_batch.inputs import source as input_source
from pneumo_batch.scoring import score_batch


def _png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _score(input_path: Path, out: Path, model) -> pd.DataFrame:
    score_batch(input_path, out, model=model, workers=0, batch_size=3, scorer_factory=make_fake_scorer)
    return pd.read_parquet(out)


def _reasons(frame: pd.DataFrame) -> dict[str, str | None]:
    return {row.image_id: (None if row.status == "ok" else row.error) for row in frame.itertuples()}


def test_odd_names_and_links_in_a_folder(pneumoniamnist, score_fake_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = _png(pneumoniamnist.test.images[0])
    (folder / "good.png").write_bytes(good)
    (folder / "new\nline.png").write_bytes(good)
    os.symlink("loop-b.png", folder / "loop-a.png")
    os.symlink("loop-a.png", folder / "loop-b.png")
    os.symlink("dangling-target.png", folder / "dangling.png")
    os.symlink("..", folder / "up")  # a symlinked folder (a loop back up): skipped, never walked
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as latin1_name:  # not UTF-8
        latin1_name.write(good)
    (folder / "sub.png").mkdir()  # a folder with an image suffix is a folder: walked
    (folder / "sub.png" / "inner.png").write_bytes(good)

    reasons = _reasons(_score(folder, tmp_path / "p.parquet", score_fake_model))

    assert reasons == {
        "caf\ufffd.png": "file name is not valid UTF-8",
        "dangling.png": "file not found",
        "good.png": None,
        "loop-a.png": "cannot open file: Too many levels of symbolic links",
        "loop-b.png": "cannot open file: Too many levels of symbolic links",
        "new\nline.png": None,
        "sub.png/inner.png": None,
    }


def test_a_file_that_vanishes_between_listing_and_reading(pneumoniamnist, score_fake_model, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        (folder / name).write_bytes(_png(pneumoniamnist.test.images[0]))
    listing = input_source.iter_image_files
    walks = []

    def listing_then_removing_b(directory: Path):
        walks.append(directory)  # the first walk counts the rows, the second makes the chunks
        for relative in listing(directory):
            yield relative
            if relative == "b.png" and len(walks) == 2:
                (directory / "b.png").unlink()  # listed in its chunk, gone when the chunk is read

    monkeypatch.setattr(input_source, "iter_image_files", listing_then_removing_b)
    frame = _score(folder, tmp_path / "p.parquet", score_fake_model)

    assert _reasons(frame) == {"a.png": None, "b.png": "file not found", "c.png": None, "d.png": None}


def test_an_unreadable_file(pneumoniamnist, score_fake_model, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("locked.png", "open.png"):
        (folder / name).write_bytes(_png(pneumoniamnist.test.images[0]))
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):  # as chmod 000 would for anyone but root
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    frame = _score(folder, tmp_path / "p.parquet", score_fake_model)

    assert _reasons(frame) == {"locked.png": "cannot open file: Permission denied", "open.png": None}


def test_duplicate_paths_in_a_manifest_each_come_out_once_per_row(pneumoniamnist, score_fake_model, tmp_path):
    (tmp_path / "a.png").write_bytes(_png(pneumoniamnist.test.images[0]))
    (tmp_path / "b.png").write_bytes(_png(pneumoniamnist.test.images[1]))
    paths = ["a.png", "b.png", "a.png", "missing.png", "a.png", "missing.png"]
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": paths, "row": list(range(len(paths)))}), manifest)

    frame = _score(manifest, tmp_path / "p.parquet", score_fake_model)

    assert list(frame["row"]) == list(range(len(paths)))
    assert list(frame["path"].str.rsplit("/", n=1).str[-1]) == paths
    assert list(frame["status"]) == ["ok", "ok", "ok", "error", "ok", "error"]
    assert frame.loc[[0, 2, 4], "p_pneumonia"].nunique() == 1


@pytest.mark.parametrize("reason_source", ["folder", "manifest"])
def test_reasons_never_hold_the_path(pneumoniamnist, score_fake_model, tmp_path, reason_source):
    folder = tmp_path / "secret-patient-folder"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    (folder / "x.png.d.png").mkdir()
    if reason_source == "folder":
        source = folder
    else:
        source = tmp_path / "m.parquet"
        pq.write_table(pa.table({"path": [str(folder / name) for name in ("empty.png", "text.png", "x.png.d.png",
                                                                          "missing.png")]}), source)
    frame = _score(source, tmp_path / "p.parquet", score_fake_model)

    assert (frame["status"] == "error").all()
    assert not frame["error"].dropna().str.contains("secret-patient-folder").any()
    assert not frame["error"].dropna().str.contains("/").any()
