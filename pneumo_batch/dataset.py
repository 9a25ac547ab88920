"""PneumoniaMNIST: find it, check it, load it.

Where the file comes from, in order: the ``path`` argument (the CLI's
``--data``), the ``PNEUMO_BATCH_DATA`` environment variable, the user cache
(``PNEUMO_BATCH_CACHE``, else ``$XDG_CACHE_HOME/pneumo-batch``, else
``~/.cache/pneumo-batch``), and last a download of the official file from
Zenodo, verified by its md5 before it is kept. A file given by path is not
the official byte stream in every copy (re-saved copies differ), so it is
checked for its structure instead: keys, shapes, dtypes and label values.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumo_batch import storage
from pneumo_batch.errors import DatasetError

OFFICIAL_URL = "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1"
OFFICIAL_MD5 = "28209eda62fecd6e6a2d98b1501bb15f"
FILE_NAME = "pneumoniamnist.npz"
DATA_ENV = "PNEUMO_BATCH_DATA"
CACHE_ENV = "PNEUMO_BATCH_CACHE"
SPLITS = ("train", "val", "test")
LABEL_NAMES = ("normal", "pneumonia")


@dataclass(frozen=True)
class Split:
    images: np.ndarray
    """``uint8`` (N, 28, 28)."""
    labels: np.ndarray
    """``uint8`` (N,), 1 = pneumonia."""

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class PneumoniaMNIST:
    train: Split
    val: Split
    test: Split
    path: Path
    sha256: str

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)


def load_pneumoniamnist(path: str | Path | None = None) -> PneumoniaMNIST:
    """Load and check PneumoniaMNIST from ``path``, the environment, the cache or a download."""
    return read_npz(locate_dataset(path))


def locate_dataset(path: str | Path | None = None) -> Path:
    """Return the path of a usable dataset file, downloading it into the cache if needed."""
    explicit = path if path is not None else os.environ.get(DATA_ENV)
    if explicit:
        explicit_path = Path(explicit).expanduser()
        if not explicit_path.is_file():
            raise DatasetError(f"dataset file not found: {explicit_path}")
        return explicit_path
    cached = cache_dir() / FILE_NAME
    if cached.is_file() and md5_of(cached) == OFFICIAL_MD5:
        return cached
    return download(cached)


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pneumo-batch"


def download(target: Path, url: str = OFFICIAL_URL, expected_md5: str = OFFICIAL_MD5) -> Path:
    """Download ``url`` to ``target`` atomically, keeping it only if its md5 matches."""
    storage.make_folder(target.parent)
    try:
        with storage.atomic_path(target) as temporary:
            with temporary.open("wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            actual = md5_of(temporary)
            if actual != expected_md5:
                raise DatasetError(f"downloaded {url} has md5 {actual}, expected {expected_md5}")
    except OSError as error:
        raise DatasetError(
            f"cannot download PneumoniaMNIST ({error}); offline, pass --data PATH or set {DATA_ENV}"
        ) from None
    return target


def read_npz(path: Path) -> PneumoniaMNIST:
    """Read a PneumoniaMNIST ``.npz`` and check its structure."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(f"{path} is not a readable .npz file: {error}") from None
    splits = {name: _split(arrays, name, path) for name in SPLITS}
    return PneumoniaMNIST(**splits, path=path, sha256=sha256_of(path))


def _split(arrays: dict[str, np.ndarray], name: str, path: Path) -> Split:
    images_key, labels_key = f"{name}_images", f"{name}_labels"
    for key in (images_key, labels_key):
        if key not in arrays:
            raise DatasetError(f"{path}: missing array {key!r} (has: {', '.join(sorted(arrays)) or 'none'})")
    images, labels = arrays[images_key], arrays[labels_key]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(f"{path}: {images_key} must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(f"{path}: {labels_key} must have one label per image, got shape {arrays[labels_key].shape}")
    if not np.isin(labels, (0, 1)).all():
        raise DatasetError(f"{path}: {labels_key} must hold only 0 (normal) and 1 (pneumonia)")
    if len(images) == 0:
        raise DatasetError(f"{path}: split {name!r} is empty")
    return Split(images=images, labels=labels.astype(np.uint8))


def md5_of(path: Path) -> str:
    return _digest(path, hashlib.md5(usedforsecurity=False))


def sha256_of(path: Path) -> str:
    return _digest(path, hashlib.sha256())


def _digest(path: Path, hasher: "hashlib._Hash") -> str:
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()
