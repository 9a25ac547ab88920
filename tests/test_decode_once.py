"""Each image is decoded once: the model's 28 px input and the scope gate's thumbnail come from the same decode."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFile

import dicom_corpus as corpus
from pneumo_batch.scoring import score_batch


@pytest.fixture()
def decodes(monkeypatch):
    """Counts of real decodes: Pillow loads that had compressed data to decode, and pydicom's pixel_array."""
    import pydicom.dataset

    counts = {"pillow": 0, "pydicom": 0}
    pillow_load = ImageFile.ImageFile.load
    pixel_array = pydicom.dataset.Dataset.pixel_array

    def counting_load(self):  # noqa: ANN001, ANN202
        if self.tile:  # data still to decode; a loaded image's load() returns at once
            counts["pillow"] += 1
        return pillow_load(self)

    def counting_pixel_array(self):  # noqa: ANN001, ANN202
        counts["pydicom"] += 1
        return pixel_array.fget(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(counting_pixel_array))
    return counts


@pytest.mark.parametrize(
    ("kind", "pillow", "pydicom"),
    [("png28", 1, 0), ("jpeg", 1, 0), ("explicit_vr_dx", 0, 1), ("jpeg_baseline", 1, 0)],
)
def test_each_image_is_decoded_once_with_the_gate_on(
    kind, pillow, pydicom, decodes, pneumoniamnist, xray_jpegs_dir, shipped_default_model, tmp_path
):
    folder = tmp_path / "in"
    folder.mkdir()
    film = sorted(xray_jpegs_dir.rglob("*.jpeg"))[0]
    if kind == "png28":
        Image.fromarray(pneumoniamnist.test.images[0]).save(folder / "small.png")
    elif kind == "jpeg":
        (folder / "film.jpeg").write_bytes(film.read_bytes())
    else:
        corpus.build(film, folder, kind)
    decodes.update(pillow=0, pydicom=0)
    out = tmp_path / "out.parquet"
    score_batch(folder, out, model=shipped_default_model, workers=0)
    table = pq.read_table(out)
    assert table.column("status").to_pylist() == ["ok"]
    assert table.column("scope_score").to_pylist()[0] is not None  # the gate ran, thumbnail and all
    assert decodes == {"pillow": pillow, "pydicom": pydicom}
