"""The one place that writes files: every file appears whole or not at all.

Each writer builds the file under a temporary name in the target's own folder
(so the final rename never crosses a filesystem), flushes it to disk with
``fsync``, then moves it over the target with :func:`os.replace`, which is
atomic on POSIX and Windows. A reader, or a run that dies half-way, therefore
sees the old file or the new one, never a torn one; a failed write leaves no
temporary file behind. :func:`replace_folder` does the same for a folder
built beside its target.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, it becomes ``path``.

    The caller writes (and closes) the file at the yielded path; this then
    syncs it and renames it into place. On an error the temporary file is removed.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        sync_file(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    sync_folder(target.parent)


def write_bytes(path: str | Path, content: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(content)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """``text`` as UTF-8, byte for byte (no newline translation)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(
    path: str | Path,
    value: Any,
    *,
    default: Callable[[Any], Any] | None = None,
    allow_nan: bool = True,
) -> Path:
    """``value`` as indented JSON with a final newline (``allow_nan=False`` refuses NaN and infinities)."""
    return write_text(path, json.dumps(value, indent=2, default=default, allow_nan=allow_nan) + "\n")


def write_parquet(path: str | Path, table: pa.Table) -> Path:
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
    return Path(path)


def write_arrow(path: str | Path, table: pa.Table) -> Path:
    """``table`` as an Arrow IPC file (fast to memory-map back)."""
    with atomic_path(path) as temporary:
        with pa.ipc.new_file(str(temporary), table.schema) as writer:
            writer.write_table(table)
    return Path(path)


def replace_folder(new: Path, target: Path) -> None:
    """Swap the finished folder ``new`` (beside ``target``) in for ``target``.

    An earlier ``target`` is first renamed to ``.NAME.old-XXXXXXXX`` and
    deleted afterwards. If the process dies between the two renames,
    ``target`` is missing until the next run, but readers never see a
    half-written or doubled folder.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, retired)
    os.replace(new, target)
    sync_folder(target.parent)
    shutil.rmtree(retired, ignore_errors=True)


def copy_folder(source: Path, target: Path, *, ignore: Callable[[str, list[str]], Any] | None = None) -> None:
    """A copy of the folder ``source`` at the new path ``target`` (build it under a staging name, then
    :func:`replace_folder` it into place)."""
    shutil.copytree(source, target, ignore=ignore)
    sync_folder(target)


def check_writable(folder: str | Path) -> None:
    """Raise :class:`OSError` unless a file can be created in ``folder`` (tried, then removed).

    Permission bits alone do not tell: root ignores them, a read-only mount
    or ``/proc`` refuses anyway.
    """
    probe = Path(folder) / f".pneumo-batch-probe-{uuid.uuid4().hex[:12]}"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    probe.unlink()


#: Fault-injection seam for the reliability tests: when set, called with each
#: file about to be flushed to disk (every file this module writes, and the
#: output a scoring run builds), so a test can raise, say, ``ENOSPC`` there.
fault_injector: Callable[[Path], None] | None = None


def sync_file(path: str | Path) -> None:
    """Flush a closed file's content to disk."""
    if fault_injector is not None:
        fault_injector(Path(path))
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def sync_folder(path: str | Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform allows it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder: its renames are durable without this
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
