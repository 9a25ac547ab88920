"""The work folder of a local run, ``OUT.partial/``: resume state, finished parts, the output being built, a lock.

``state.json`` is a fingerprint of the input, model and options; each
finished chunk is one ``parts/part-NNNNNNNN*.arrow`` (Arrow IPC, written by
:mod:`pneumo_batch.storage`, so a part that exists is complete). A run with
the same fingerprint takes the existing parts instead of scoring them again;
a changed input, model or ``batch_size`` starts over. A lock (``flock``)
keeps a second run from writing the same output at the same time.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from pneumo_batch import storage
from pneumo_batch.locking import hold_lock
from pneumo_batch.scoring.types import now


#: The work folder is the output's path with this suffix.
WORK_SUFFIX = ".partial"
#: Bump when the layout of parts changes, so that old work folders are discarded.
WORK_FORMAT = 1


def work_dir_for(out: str | Path) -> Path:
    """The work folder a run writing ``out`` keeps its parts in."""
    out = Path(out).absolute()
    return out.with_name(out.name + WORK_SUFFIX)


class WorkDir:
    """``OUT.partial/``: the fingerprint, the finished parts, the output being written, and a lock."""

    def __init__(self, out: Path) -> None:
        self.path = work_dir_for(out)
        self.parts = self.path / "parts"
        self.state = self.path / "state.json"
        self.final = self.path / f"{out.name}.tmp"
        self.run_id = ""
        self.started_at = ""

    @classmethod
    @contextlib.contextmanager
    def open(cls, out: Path, fingerprint: dict[str, Any]) -> Iterator[WorkDir]:
        work = cls(out)
        storage.make_folder(work.path)
        refusal = f"another pneumo-batch run is writing {out} (lock held on {work.path})"
        with hold_lock(work.path / "lock", lambda holder: refusal):  # a refused run touches nothing inside
            storage.make_folder(work.parts)
            work._load_or_reset(fingerprint)
            yield work

    def existing_parts(self) -> set[str]:
        return {path.name for path in self.parts.glob("part-*.arrow")}

    def rows_in_parts(self) -> int:
        """Rows in the finished parts (what an interrupted run keeps for the rerun)."""
        total = 0
        for part in self.parts.glob("part-*.arrow"):
            with contextlib.suppress(OSError, pa.ArrowException):
                total += pa.ipc.open_file(pa.memory_map(str(part))).count_rows()
        return total

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _load_or_reset(self, fingerprint: dict[str, Any]) -> None:
        state = _read_json(self.state)
        for stale in self.parts.glob(".*"):
            stale.unlink(missing_ok=True)
        self.final.unlink(missing_ok=True)
        if state is not None and state.get("fingerprint") == json.loads(json.dumps(fingerprint)):
            self.run_id, self.started_at = str(state["run_id"]), str(state["started_at"])
            return
        for part in self.parts.iterdir():
            part.unlink()
        self.run_id = uuid.uuid4().hex
        self.started_at = now().isoformat()
        state = {"fingerprint": fingerprint, "run_id": self.run_id, "started_at": self.started_at}
        storage.write_json(self.state, state, default=str)


def part_name(index: int, digest: str | None) -> str:
    return f"part-{index:08d}-{digest}.arrow" if digest else f"part-{index:08d}.arrow"


def read_part(path: Path, rows: int) -> pa.Table | None:
    """A finished chunk, memory-mapped; None if it is missing, damaged or of the wrong length."""
    try:
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    except (OSError, pa.ArrowException):
        return None
    return table if table.num_rows == rows else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
