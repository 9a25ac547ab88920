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
