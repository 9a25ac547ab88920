"""Shared fixtures.

Real PneumoniaMNIST comes from ``PNEUMO_BATCH_DATA`` (CI sets it to the
shared copy). Every test runs with that variable and the model variable
unset, the cache in a temp dir and downloads refused, so nothing depends
on the network or on the developer's home directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pneumo_batch.dataset import PneumoniaMNIST, read_npz

_DATA_PATH = os.environ.get("PNEUMO_BATCH_DATA")


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PNEUMO_BATCH_DATA", raising=False)
    monkeypatch.delenv("PNEUMO_BATCH_MODEL", raising=False)
    monkeypatch.setenv("PNEUMO_BATCH_CACHE", str(tmp_path_factory.mktemp("cache")))

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("tests never download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    """The real PneumoniaMNIST file; skipped when PNEUMO_BATCH_DATA is unset, failing when it is wrong."""
    if not _DATA_PATH:
        pytest.skip("set PNEUMO_BATCH_DATA to a PneumoniaMNIST .npz to run tests on real data")
    path = Path(_DATA_PATH)
    assert path.is_file(), f"PNEUMO_BATCH_DATA points at a missing file: {path}"
    return path


@pytest.fixture(scope="session")
def pneumoniamnist(dataset_path: Path) -> PneumoniaMNIST:
    return read_npz(dataset_path)


@pytest.fixture()
def synthetic_npz(tmp_path: Path) -> Path:
    """A small structurally valid PneumoniaMNIST-like file (for structure checks only)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 8), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2).astype(np.uint8).reshape(-1, 1)
    path = tmp_path / "small.npz"
    np.savez(path, **arrays)
    return path
