"""The models folder: which model is live, where each came from, and every change of the live model.

Layout of a models folder (the repository's ``models/``, or any folder a site keeps)::

    MODELS/DEFAULT                          the live model's directory name (read by model.default_model_dir)
    MODELS/AUDIT.jsonl                      one JSON record per promote or rollback, appended, never rewritten
    MODELS/NAME/                            a model directory (model.py knows its layout)
    MODELS/NAME/comparisons/CHAMPION.json   what ``compare`` found of NAME against CHAMPION

A model directory's metadata may carry ``lineage`` (written by ``adapt``):
its parent model, the site data's fingerprint (hashes, never ids), the recipe,
seeds and figures. :func:`promote` switches ``DEFAULT`` atomically (a crash
leaves the old pointer) after appending its audit record; it refuses a
challenger that was never compared with the live model, or whose verdict was
``worse`` or ``inconclusive``, unless forced, and a forced promotion says so in the record.
:func:`rollback` restores the pointer the last promotion replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pneumo_batch import storage
from pneumo_batch.errors import ModelError
from pneumo_batch.model import DEFAULT_POINTER_FILE, METADATA_FILE, load_model, read_metadata, shipped_models_dirs

AUDIT_FILE = "AUDIT.jsonl"
COMPARISONS_FOLDER = "comparisons"
#: Verdicts of ``compare`` that keep a challenger out unless forced.
REFUSED_VERDICTS = frozenset({"worse", "inconclusive"})


class PromotionRefusedError(ModelError):
    """A challenger may not become the live model (never compared, or compared worse) without ``--force``."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    live: bool
    parent: str | None
    """The model it was adapted from (``name version``), None for a trained one."""
    kind: str
    """``trained``, or the adaptation recipe (``threshold-only``, ``fine-tune``)."""
    created_at: str | None


def models_folder(folder: Path | None = None) -> Path:
    """``folder``, or the shipped models folder that has a ``DEFAULT`` pointer."""
    if folder is not None:
        if not (folder / DEFAULT_POINTER_FILE).is_file():
            raise ModelError(f"{folder} is not a models folder: it has no {DEFAULT_POINTER_FILE} file")
        return folder
    for candidate in shipped_models_dirs():
        if (candidate / DEFAULT_POINTER_FILE).is_file():
            return candidate
    raise ModelError("no models folder found; pass --models-dir DIR")


def live_model(folder: Path) -> str:
    return (folder / DEFAULT_POINTER_FILE).read_text().strip()


def list_models(folder: Path) -> list[ModelEntry]:
    """Every model directory in ``folder`` (one with metadata), sorted by name."""
    live = live_model(folder)
    entries = []
    for directory in sorted(path for path in folder.iterdir() if (path / METADATA_FILE).is_file()):
        metadata = read_metadata(directory)
        lineage = metadata.get("lineage") or {}
        parent = lineage.get("parent")
        entries.append(ModelEntry(
            name=directory.name,
            version=str(metadata.get("version")),
            live=directory.name == live,
            parent=f"{parent['name']} {parent['version']}" if parent else None,
            kind=str(lineage.get("recipe", {}).get("kind", "trained")) if lineage else "trained",
            created_at=metadata.get("created_at"),
        ))
    return entries


def record_comparison(challenger: Path, champion_name: str, comparison: dict[str, Any]) -> Path:
    """Keep ``compare``'s findings beside the challenger, where :func:`promote` looks for them."""
    storage.make_folder(challenger / COMPARISONS_FOLDER)
    return storage.write_json(challenger / COMPARISONS_FOLDER / f"{champion_name}.json", comparison)


def comparison_for(challenger: Path, champion_name: str) -> dict[str, Any] | None:
    path = challenger / COMPARISONS_FOLDER / f"{champion_name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def audit_records(folder: Path) -> list[dict[str, Any]]:
    path = folder / AUDIT_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def promote(folder: Path, name: str, *, force: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Make ``name`` the live model; returns the audit record. Raises :class:`PromotionRefusedError`."""
    live = live_model(folder)
    if name == live:
        raise PromotionRefusedError(f"{name} is already the live model")
    challenger = folder / name
    load_model(challenger)  # a complete, verified model directory, or ModelError
    comparison = comparison_for(challenger, live)
    refusal = None
    if comparison is None:
        refusal = f"{name} was never compared with the live model {live}; run: pneumo-batch compare {live} {name} LABELLED"
    elif comparison.get("verdict") in REFUSED_VERDICTS:
        refusal = (f"{name} compared {comparison['verdict']} against the live model {live} "
                   f"({comparison.get('reason', 'see its comparison')})")
    if refusal is not None and not force:
        raise PromotionRefusedError(f"{refusal}; --force promotes it anyway, and the audit log says so")
    record = {
        "at": (now or datetime.now(timezone.utc)).isoformat(),
        "action": "promote",
        "from": live,
        "to": name,
        "forced": refusal is not None,
        "refusal_overridden": refusal,
        "comparison": comparison,
    }
    _switch(folder, name, record)
    return record


def rollback(folder: Path, *, now: datetime | None = None) -> dict[str, Any]:
    """Restore the live model that the last promotion (not yet rolled back) replaced."""
    replaced: list[str] = []
    for record in audit_records(folder):
        if record["action"] == "promote":
            replaced.append(record["from"])
        elif record["action"] == "rollback" and replaced:
            replaced.pop()
    if not replaced:
        raise ModelError(f"nothing to roll back in {folder}: no promotion in {AUDIT_FILE}")
    target = replaced[-1]
    load_model(folder / target)
    record = {"at": (now or datetime.now(timezone.utc)).isoformat(), "action": "rollback",
              "from": live_model(folder), "to": target}
    _switch(folder, target, record)
    return record


def _switch(folder: Path, name: str, record: dict[str, Any]) -> None:
    """Append the record, then point ``DEFAULT`` at ``name`` (atomic: a crash leaves the old pointer)."""
    audit = folder / AUDIT_FILE
    earlier = audit.read_text() if audit.is_file() else ""
    storage.write_text(audit, earlier + json.dumps(record, sort_keys=True) + "\n")
    storage.write_text(folder / DEFAULT_POINTER_FILE, name + "\n")
