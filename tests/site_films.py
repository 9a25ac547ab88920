"""A labelled site folder for the site tests: links to the first shared full-size films of each class."""

from __future__ import annotations

from pathlib import Path


def link_labelled_films(xray_jpegs_dir: Path, root: Path, per_class: int) -> Path:
    """``root`` with ``NORMAL/`` and ``PNEUMONIA/`` holding links to ``per_class`` shared JPEGs each."""
    for name in ("NORMAL", "PNEUMONIA"):
        (root / name).mkdir()
        for film in sorted((xray_jpegs_dir / name).glob("*.jpeg"))[:per_class]:
            (root / name / film.name).symlink_to(film)
    return root


def with_a_broken_film(site: Path, root: Path) -> Path:
    """``root``: the labelled folder ``site`` (links again) plus ``PNEUMONIA/broken.jpeg``, which no decoder reads."""
    for name in ("NORMAL", "PNEUMONIA"):
        (root / name).mkdir(parents=True)
        for link in (site / name).iterdir():
            (root / name / link.name).symlink_to(link.resolve())
    (root / "PNEUMONIA" / "broken.jpeg").write_bytes(b"not a JPEG")
    return root
