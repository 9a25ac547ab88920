from pathlib import Path

import numpy as np
import pytest

from pneumo_batch import dataset
from pneumo_batch.errors import DatasetError


def test_real_file_has_official_split_sizes(pneumoniamnist):
    assert (len(pneumoniamnist.train), len(pneumoniamnist.val), len(pneumoniamnist.test)) == (4708, 524, 624)
    assert int(pneumoniamnist.test.labels.sum()) == 390
    assert pneumoniamnist.train.labels.ndim == 1


def test_path_argument_wins_over_environment(synthetic_npz, monkeypatch, tmp_path):
    monkeypatch.setenv(dataset.DATA_ENV, str(tmp_path / "elsewhere.npz"))
    assert dataset.locate_dataset(synthetic_npz) == synthetic_npz
    with pytest.raises(DatasetError, match="not found"):
        dataset.locate_dataset()


def test_without_path_or_cache_download_failure_is_a_clear_error():
    with pytest.raises(DatasetError, match="--data"):
        dataset.load_pneumoniamnist()


def test_cached_file_with_official_md5_is_used_without_download(synthetic_npz, monkeypatch):
    cached = dataset.cache_dir() / dataset.FILE_NAME
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(synthetic_npz.read_bytes())
    monkeypatch.setattr(dataset, "OFFICIAL_MD5", dataset.md5_of(cached))
    assert dataset.locate_dataset() == cached


def _rewrite(source: Path, target: Path, **changes) -> Path:
    with np.load(source) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(target, **arrays)
    return target


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"val_labels": None}, "missing array 'val_labels'"),
        ({"train_images": np.zeros((8, 32, 32), np.uint8)}, r"train_images must be uint8 \(N, 28, 28\)"),
        ({"train_images": np.zeros((8, 28, 28), np.float32)}, "float32"),
        ({"test_labels": np.full((4, 1), 3, np.uint8)}, "only 0"),
        ({"test_labels": np.zeros((3, 1), np.uint8)}, "one label per image"),
    ],
)
def test_malformed_files_name_what_is_wrong(synthetic_npz, tmp_path, changes, message):
    bad = _rewrite(synthetic_npz, tmp_path / "bad.npz", **changes)
    with pytest.raises(DatasetError, match=message):
        dataset.read_npz(bad)


def test_not_an_npz_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        dataset.read_npz(junk)
